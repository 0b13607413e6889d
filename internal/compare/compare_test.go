package compare

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/replay"
)

// service answers like one deployment: the same data, but a timestamp and
// a request id of its own every time (noise). planted makes it the
// candidate with known differences.
type service struct {
	rng     *rand.Rand
	planted bool
}

func (s *service) answer(path string) (status int, body string, latency time.Duration) {
	noise := fmt.Sprintf(`"generatedAt":"2026-11-22T07:%02d:%02d.%06dZ","requestId":"%016x"`,
		s.rng.IntN(60), s.rng.IntN(60), s.rng.IntN(1e6), s.rng.Uint64())
	latency = time.Duration(5+s.rng.IntN(5)) * time.Millisecond
	switch {
	case strings.HasPrefix(path, "/api/items/"):
		price := "4.25"
		if s.planted {
			price = "4.3" // planted: a value deep in a list
		}
		return 200, fmt.Sprintf(`{%s,"items":[{"sku":"a","price":1},{"sku":"b","price":2.0},{"sku":"c","price":3},{"sku":"d","price":%s}]}`, noise, price), latency
	case path == "/api/status":
		if s.planted {
			return 503, fmt.Sprintf(`{%s,"ok":false}`, noise), latency // planted: status
		}
		return 200, fmt.Sprintf(`{%s,"ok":true}`, noise), latency
	case strings.HasPrefix(path, "/api/users/"):
		if s.planted {
			return 200, fmt.Sprintf(`{%s,"name":"ann"}`, noise), latency // planted: a missing field
		}
		return 200, fmt.Sprintf(`{%s,"name":"ann","email":"ann@example.com"}`, noise), latency
	case path == "/api/slow":
		if s.planted {
			latency += 200 * time.Millisecond // planted: slower
		}
		return 200, fmt.Sprintf(`{%s,"n":1}`, noise), latency
	}
	return 404, `{}`, latency
}

func request(t *testing.T, conn uint64, path string) *httpstream.Request {
	var r *httpstream.Request
	httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(q *httpstream.Request) { r = q }).
		Feed([]byte("GET "+path+" HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer secret\r\n\r\n"), 0)
	r.ConnID, r.Client = conn, netip.MustParseAddrPort("10.0.0.1:1")
	return r
}

func response(t *testing.T, status int, body string, start int64) *httpstream.Response {
	var r *httpstream.Response
	p := httpstream.NewResponseParser(httpstream.DefaultOptions, &httpstream.ResponseStats{}, &httpstream.Stats{},
		func() bool { return false }, func(q *httpstream.Response, _ bool) { r = q })
	p.Feed([]byte(fmt.Sprintf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nDate: now\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body)), start)
	r.Start = start
	return r
}

func replayed(target string, req *httpstream.Request, status int, body string, lat time.Duration) replay.Result {
	h := http.Header{"Content-Type": {"application/json"}, "Date": {"later"}}
	return replay.Result{Target: target, Req: req, Duration: lat, Resp: &replay.Response{Status: status, Header: h, Body: []byte(body), FirstByte: lat}}
}

// run simulates a release: production (mirrored), candidate, and
// optionally two baselines, over repeated requests.
func run(t *testing.T, planted, withBaselines bool) Report {
	cfg := Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Minute,
		MaxPending: 10000, Queue: 10000, MinSamples: 5, Threshold: 0.05, Redact: []string{"Authorization"}, Handler: "test"}
	if withBaselines {
		cfg.Baseline, cfg.Secondary = "base", "base2"
	}
	c, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	prod, cand := &service{rng: rng}, &service{rng: rng, planted: planted}
	base, base2 := &service{rng: rng}, &service{rng: rng}
	paths := []string{"/api/items/1", "/api/items/2", "/api/items/3", "/api/status", "/api/users/7", "/api/users/8", "/api/slow"}
	n := 0
	for round := range 12 { // each request repeats: production's own noise shows
		for i, p := range paths {
			n++
			req := request(t, uint64(round*100+i), p)
			c.Expect(req)
			st, body, lat := prod.answer(p)
			c.Production(req, response(t, st, body, req.End+int64(lat)))
			st, body, lat = cand.answer(p)
			c.Result(replayed("cand", req, st, body, lat))
			if withBaselines {
				st, body, lat = base.answer(p)
				c.Result(replayed("base", req, st, body, lat))
				st, body, lat = base2.answer(p)
				c.Result(replayed("base2", req, st, body, lat))
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats.Compared.Load() < uint64(n) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.Stats.Compared.Load() != uint64(n) {
		t.Fatalf("compared %d of %d", c.Stats.Compared.Load(), n)
	}
	return c.Report()
}

// regressions lists "endpoint comparison field" for every regression.
func regressions(r Report) []string {
	var out []string
	for _, e := range r.Endpoints {
		for _, c := range e.Comparisons {
			if c.LatencyRegression {
				out = append(out, e.Name+" "+c.Comparison+" latency")
			}
			for _, f := range c.Fields {
				if f.Regression {
					out = append(out, e.Name+" "+c.Comparison+" "+f.Key)
				}
			}
		}
	}
	return out
}

func TestPlantedDifferencesFoundNoiseIgnored(t *testing.T) {
	for _, withBaselines := range []bool{false, true} {
		r := run(t, true, withBaselines)
		got := strings.Join(regressions(r), "\n")
		want := []string{
			"GET /api/items/{id} candidate-vs-production body.items[*].price",
			"GET /api/status candidate-vs-production status",
			"GET /api/users/{id} candidate-vs-production body.email",
			"GET /api/slow candidate-vs-production latency",
		}
		if withBaselines {
			for _, w := range want[:4] {
				want = append(want, strings.Replace(w, "production", "baseline", 1))
			}
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("baselines %v: %q not found in\n%s", withBaselines, w, got)
			}
		}
		if len(regressions(r)) != len(want) {
			t.Errorf("baselines %v: %d regressions, want %d:\n%s", withBaselines, len(regressions(r)), len(want), got)
		}
		for _, noisy := range []string{"generatedAt", "requestId"} {
			if strings.Contains(got, noisy) {
				t.Errorf("noise %s reported as a regression", noisy)
			}
		}
		// The secret never reaches a sample.
		for _, e := range r.Endpoints {
			for _, s := range e.Samples {
				if strings.Contains(s.Request, "secret") {
					t.Errorf("credential in sample: %q", s.Request)
				}
			}
		}
	}
}

func TestAA(t *testing.T) {
	for _, withBaselines := range []bool{false, true} {
		if r := run(t, false, withBaselines); len(regressions(r)) != 0 || r.Regressions != 0 {
			t.Errorf("A/A with baselines %v: regressions %v", withBaselines, regressions(r))
		}
	}
}

// stalledClock returns a clock that stalls from its second reading on,
// until release is closed: the comparator's joiner reads it for every
// exchange it opens, so it stalls the joiner.
func stalledClock() (now func() time.Time, release chan struct{}) {
	release = make(chan struct{})
	var calls atomic.Int64
	return func() time.Time {
		if calls.Add(1) > 1 {
			<-release
		}
		return time.Now()
	}, release
}

// A stalled comparison never stalls its callers: with the comparator's
// own goroutine stuck (here in its clock), Expect, Production and Result
// still return at once, the excess dropped and counted.
func TestStalledComparisonNeverBlocksCapture(t *testing.T) {
	now, release := stalledClock()
	cfg := Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Minute,
		MaxPending: 100, Queue: 100, MinSamples: 5, Threshold: 0.05, Handler: "test", Now: now}
	c, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			req := request(t, uint64(i), "/api/items/1")
			c.Expect(req)
			c.Production(req, response(t, 200, `{"id":1}`, req.End+1000))
			c.Result(replayed("cand", req, 200, `{"id":1}`, time.Millisecond))
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		close(release)
		t.Fatal("the callers waited for the stalled comparison")
	}
	if c.Stats.Dropped.Load() == 0 {
		t.Error("nothing dropped although the comparison was stalled")
	}
	close(release)
	c.Close()
}

// The answers the comparator holds, queued or waiting for their exchange,
// stay within MaxBytes however far behind it falls; what it holds is
// given back once each exchange is done.
func TestComparatorBoundsItsBytes(t *testing.T) {
	now, release := stalledClock()
	const maxBytes = 64 << 10
	cfg := Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Minute,
		MaxPending: 10_000, Queue: 10_000, MinSamples: 5, Threshold: 0.05, Handler: "test", Now: now, MaxBytes: maxBytes}
	c, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"pad":"` + strings.Repeat("x", 4000) + `"}`
	const n = 500
	for i := range n {
		req := request(t, uint64(i), "/api/items/1")
		c.Expect(req)
		c.Production(req, response(t, 200, body, req.End+1000))
		c.Result(replayed("cand", req, 200, body, time.Millisecond))
		if held := c.held.Load(); held > maxBytes {
			t.Fatalf("holding %d bytes, bound %d", held, maxBytes)
		}
	}
	if c.Stats.AnswersDropped.Load() == 0 {
		t.Error("no answer dropped: 500 pairs of 4 KB answers fit in 64 KiB?")
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for c.held.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if held := c.held.Load(); held != 0 {
		t.Errorf("%d bytes still counted as held after every exchange was done", held)
	}
	c.Close()
}

// Every exchange ends counted once (compared, incomplete or dropped),
// however many of its answers were dropped; and Close compares what is
// still queued or waiting instead of throwing it away.
func TestEachExchangeCountedOnceAndCloseFinishes(t *testing.T) {
	cfg := Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Hour,
		MaxPending: 10_000, Queue: 10_000, MinSamples: 5, Threshold: 0.05, Handler: "test", MaxBytes: 1 << 20}
	c, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	big := `{"pad":"` + strings.Repeat("x", 2<<20) + `"}` // over the bound by itself
	const n = 300
	for i := range n {
		req := request(t, uint64(i), "/api/items/1")
		c.Expect(req)
		switch i % 3 {
		case 0: // both answers: compared
			c.Production(req, response(t, 200, `{"id":1}`, req.End+1000))
			c.Result(replayed("cand", req, 200, `{"id":1}`, time.Millisecond))
		case 1: // production's answer over the byte bound: incomplete, once
			c.Production(req, response(t, 200, big, req.End+1000))
			c.Result(replayed("cand", req, 200, `{"id":1}`, time.Millisecond))
		case 2: // the candidate's answer never comes: waits for its deadline
			c.Production(req, response(t, 200, `{"id":1}`, req.End+1000))
		}
	}
	c.Close() // an hour before the deadline: Close must settle every one
	st := &c.Stats
	if got := st.Compared.Load() + st.Incomplete.Load() + st.Dropped.Load(); got != n {
		t.Errorf("compared %d + incomplete %d + dropped %d = %d, want each of the %d exchanges once",
			st.Compared.Load(), st.Incomplete.Load(), st.Dropped.Load(), got, n)
	}
	if st.Compared.Load() != n/3 || st.AnswersDropped.Load() != n/3 {
		t.Errorf("compared %d, answers dropped %d, want %d each", st.Compared.Load(), st.AnswersDropped.Load(), n/3)
	}
	if r := c.Report(); r.Compared != uint64(n/3) {
		t.Errorf("the report holds %d compared exchanges, want %d", r.Compared, n/3)
	}
	if held := c.held.Load(); held != 0 {
		t.Errorf("%d bytes still held after Close", held)
	}
}
