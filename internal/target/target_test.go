package target

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/rawserver"
)

func parse(t *testing.T, raw string) *httpstream.Request {
	t.Helper()
	var req *httpstream.Request
	p := httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(r *httpstream.Request) { req = r })
	p.Feed([]byte(raw), 0)
	if req == nil {
		t.Fatalf("no request in %q", raw)
	}
	req.Client, req.Server = netip.MustParseAddrPort("10.0.0.1:1000"), netip.MustParseAddrPort("10.0.0.2:80")
	return req
}

// A reload refused half way changes nothing: the targets it keeps keep
// their rewrites, and no replayer is left running for the targets it
// would have added.
func TestRefusedBuildChangesNothing(t *testing.T) {
	srv, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	leaks := []goleak.Option{goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("github.com/shadowtap/shadowtap/internal/rawserver.(*Server).serve")}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config.Default()
	cfg.Destination = "http://" + srv.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, _, err := Build(ctx, cfg.Resolve(), nil, log, nil)
	if err != nil {
		t.Fatal(err)
	}

	next := cfg.Resolve()
	next[0].Rewrite.SetHeaders = map[string]string{"X-Reloaded": "yes"}
	added := next[0]
	added.Name, added.Destination = "added", "http://127.0.0.1:1"
	broken := next[0]
	broken.Name, broken.Filters.Path = "broken", "(" // not a regexp
	if _, _, err := Build(ctx, append(next, added, broken), set, log, nil); err == nil {
		t.Fatal("a target with a broken filter was accepted")
	}

	f := NewFanout(set, ratelog.New(log, time.Minute))
	f.Submit(1, parse(t, "GET /after HTTP/1.1\r\nHost: prod\r\n\r\n"))
	f.EndConn(1)
	stop, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
	Stop(stop, set.Targets)
	cancelStop()
	got := srv.Requests()
	if len(got) != 1 {
		t.Fatalf("the kept target replayed %d requests", len(got))
	}
	if strings.Contains(string(got[0].Raw), "X-Reloaded") {
		t.Errorf("the refused reload's rewrite was applied: %q", got[0].Raw)
	}
	// With the kept set stopped and the context still live, a replayer
	// the refused reload started would still be running.
	if err := goleak.Find(leaks...); err != nil {
		t.Errorf("the refused reload left goroutines: %v", err)
	}
}
