package target

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
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

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// buildTo builds the default configuration's one target, to addr.
func buildTo(ctx context.Context, t *testing.T, addr string) (config.Config, *Set) {
	t.Helper()
	cfg := config.Default()
	cfg.Destination = "http://" + addr
	set, _, err := Build(ctx, cfg.Resolve(), nil, discard, Observers{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, set
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
	leaks := []goleak.Option{goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("github.com/shadowtap/shadowtap/internal/testkit/rawserver.(*Server).serve")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, set := buildTo(ctx, t, srv.Addr())
	log := discard

	next := cfg.Resolve()
	next[0].Rewrite.SetHeaders = map[string]string{"X-Reloaded": "yes"}
	added := next[0]
	added.Name, added.Destination = "added", "http://127.0.0.1:1"
	broken := next[0]
	broken.Name, broken.Filters.Path = "broken", "(" // not a regexp
	if _, _, err := Build(ctx, append(next, added, broken), set, log, Observers{}); err == nil {
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

// A reload that rebuilds a target (new connection settings) hands each
// production connection over at a request boundary: while the retired
// replayer still holds a connection's requests, the new one drops (and
// counts) that connection's next requests instead of sending them ahead
// of the old ones; once the old queue is done, the connection continues.
func TestRebuiltTargetKeepsConnectionOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ok := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	srv := rawserver.ServeResponding(ln, func(*httpstream.Request) []byte {
		time.Sleep(100 * time.Millisecond)
		return ok
	})
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, set := buildTo(ctx, t, srv.Addr())
	log := discard
	f := NewFanout(set, ratelog.New(log, time.Minute))
	get := func(i int) *httpstream.Request {
		return parse(t, "GET /r"+strconv.Itoa(i)+" HTTP/1.1\r\nHost: prod\r\n\r\n")
	}
	f.Submit(1, get(0))
	f.Submit(1, get(1)) // waits behind r0: 100 ms each

	next := cfg.Resolve()
	next[0].DialTimeout += time.Second // a new replayer
	newSet, retired, err := Build(ctx, next, set, log, Observers{})
	if err != nil || len(retired) != 1 {
		t.Fatalf("rebuild: %v, %d retired", err, len(retired))
	}
	f.Swap(newSet)
	var retiring sync.WaitGroup
	Retire(retired, 5*time.Second, &retiring)
	// A second reload that keeps the new replayer (only the rate limit
	// changes) keeps the handover too.
	next[0].RateLimit = 1000
	newSet, retired, err = Build(ctx, next, newSet, log, Observers{})
	if err != nil || len(retired) != 0 {
		t.Fatalf("second reload: %v, %d retired", err, len(retired))
	}
	f.Swap(newSet)
	f.Submit(1, get(2)) // the old replayer still holds r1: dropped
	retiring.Wait()
	f.Submit(1, get(3)) // handed over
	f.EndConn(1)
	stop, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
	Stop(stop, newSet.Targets)
	cancelStop()

	var got []string
	for _, r := range srv.Requests() {
		got = append(got, strings.Fields(string(r.Raw))[1])
	}
	if want := []string{"/r0", "/r1", "/r3"}; !slices.Equal(got, want) {
		t.Errorf("the test server got %v, want %v", got, want)
	}
	if n := newSet.Targets[0].Stats.HandoverDrops.Load(); n != 1 {
		t.Errorf("%d requests counted as dropped at the handover, want 1", n)
	}
}

// A request a target never sends (filtered out here) still settles what
// production's answer to it created: a later request naming such a value
// does not wait for a pair that can never come.
func TestSkippedRequestIsNotAwaited(t *testing.T) {
	srv, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := config.Default()
	cfg.Destination = "http://" + srv.Addr()
	rs := cfg.Resolve()
	rs[0].Filters.PathNot = "^/api/login$"
	set, _, err := Build(ctx, rs, nil, discard, Observers{})
	if err != nil {
		t.Fatal(err)
	}
	defer Stop(context.Background(), set.Targets)
	f := NewFanout(set, ratelog.New(discard, time.Minute))
	login := parse(t, "POST /api/login HTTP/1.1\r\nHost: prod\r\nContent-Length: 0\r\n\r\n")
	login.ConnID = 7
	f.Submit(7, login)
	tb := set.Targets[0].Pairs
	prod := diff.Message{Status: 200, Header: http.Header{"Set-Cookie": {"sid=s3ss10n-prod-7f3a9c; Path=/"}}}
	tb.Production(correlate.Exchange{Conn: 7, Index: login.Index}, correlate.Read(login.Raw, prod))
	_, res := tb.Translate(ctx, []byte("GET /api/cart HTTP/1.1\r\nCookie: sid=s3ss10n-prod-7f3a9c\r\n\r\n"))
	if res.Waited {
		t.Errorf("waited for the answer to a request never sent: %+v", res)
	}
}

// A reload keeps what a target's table learned, and puts its new
// correlation settings in force.
func TestReloadKeepsPairsAndAppliesSettings(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, set := buildTo(ctx, t, "127.0.0.1:1")
	defer Stop(context.Background(), set.Targets)
	tb := set.Targets[0].Pairs
	login := []byte("POST /api/login HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
	cookie := func(v string) diff.Message {
		return diff.Message{Status: 200, Header: http.Header{"Set-Cookie": {"sid=" + v + "; Path=/"}}}
	}
	tb.Learn(login, cookie("s3ss10n-prod-7f3a9c"), cookie("s3ss10n-test-1b2d4e"))
	next := cfg.Resolve()
	next[0].Correlate.Exclude = []string{"sid"}
	newSet, _, err := Build(ctx, next, set, discard, Observers{})
	if err != nil {
		t.Fatal(err)
	}
	if newSet.Targets[0].Pairs != tb {
		t.Fatal("the reload dropped the learned pairs")
	}
	req := "GET /api/cart HTTP/1.1\r\nCookie: sid=s3ss10n-prod-7f3a9c\r\n\r\n"
	if out, _ := tb.Translate(ctx, []byte(req)); string(out) != req {
		t.Errorf("the excluded cookie still translated: %q", out)
	}
}
