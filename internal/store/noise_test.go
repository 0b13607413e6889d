package store

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/replay"
	"github.com/shadowtap/shadowtap/internal/testkit/redistest"
)

// A handler that just started weighs differences against the noise the
// fleet learned: a random number production makes anew for every answer is
// noise to it from its first comparisons, where a handler alone (the
// control) has not seen enough of it and reports it.
func TestRedisSharesLearnedNoise(t *testing.T) {
	noLeaks(t)
	srv := redistest.Start(t)
	link := func() *NoiseLink {
		l, err := OpenNoise(Options{URL: srv.URL(), Namespace: "shop", Log: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		return l
	}
	comparator := func(fleet compare.FleetNoise) *compare.Comparator {
		cfg := compare.Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Minute,
			MaxPending: 1000, Queue: 1000, MinSamples: 5, Threshold: 0.05, Handler: "h", Fleet: fleet, FleetEvery: time.Hour}
		c, err := compare.New(cfg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// feed compares n exchanges; alike, the requests are all one, and
	// production is seen against itself: its noise is learned.
	feed := func(c *compare.Comparator, n int, alike bool) compare.Report {
		for i := range n {
			path := fmt.Sprintf("/api/items/7?v=%d", i)
			if alike {
				path = "/api/items/7"
			}
			req := request(t, uint64(i+1), path)
			c.Expect(req)
			c.Production(req, response(t, `{"item":7,"request_id":`+nonce()+`}`, req.End+int64(time.Millisecond)))
			c.Result(replay.Result{Target: "cand", Req: req, Duration: time.Millisecond, Resp: &replay.Response{Status: 200,
				Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"item":7,"request_id":` + nonce() + `}`), FirstByte: time.Millisecond}})
		}
		deadline := time.Now().Add(5 * time.Second)
		for c.Stats.Compared.Load() < uint64(n) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		return c.Report()
	}
	// Handler A has compared for a while (production's answers to one
	// request repeated), and publishes what it learned. B and the control
	// see requests none alike.
	la := link()
	a := comparator(la)
	if r := regressions(feed(a, 40, true)); len(r) != 0 {
		t.Fatalf("handler A did not learn the noise: %v", r)
	}
	la.Publish(compareNoise(t, a, la))
	a.Close()

	b := comparator(link()) // takes in the fleet's noise as it starts
	got := regressions(feed(b, 6, false))
	b.Close()
	control := comparator(nil)
	alone := regressions(feed(control, 6, false))
	control.Close()
	if len(got) != 0 {
		t.Errorf("a handler of the fleet reports the fleet's noise: %v", got)
	}
	if !strings.Contains(fmt.Sprint(alone), "request_id") {
		t.Errorf("control: a handler alone after 6 answers reports %v: the test would not see the sharing fail", alone)
	}
}

// compareNoise publishes a's noise now (the comparator does it every
// FleetEvery) by a second fetch round: what A's sharing goroutine would
// write.
func compareNoise(t *testing.T, c *compare.Comparator, _ *NoiseLink) []byte {
	t.Helper()
	return c.FleetState()
}

func regressions(r compare.Report) []string {
	var out []string
	for _, e := range r.Endpoints {
		for _, c := range e.Comparisons {
			for _, f := range c.Fields {
				if f.Regression {
					out = append(out, f.Key)
				}
			}
		}
	}
	return out
}

// nonce is a random number, as a server's random_int writes one.
func nonce() string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprint(100000 + (uint32(b[0])<<16|uint32(b[1])<<8|uint32(b[2]))%900000)
}

func request(t *testing.T, conn uint64, path string) *httpstream.Request {
	var r *httpstream.Request
	httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(q *httpstream.Request) { r = q }).
		Feed([]byte("GET "+path+" HTTP/1.1\r\nHost: shop\r\n\r\n"), 0)
	r.ConnID, r.Client = conn, netip.MustParseAddrPort("10.0.0.1:1")
	return r
}

func response(t *testing.T, body string, start int64) *httpstream.Response {
	var r *httpstream.Response
	p := httpstream.NewResponseParser(httpstream.DefaultOptions, &httpstream.ResponseStats{}, &httpstream.Stats{},
		func() bool { return false }, func(q *httpstream.Response, _ bool) { r = q })
	p.Feed([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)), start)
	r.Start = start
	return r
}
