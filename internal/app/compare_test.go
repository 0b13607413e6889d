package app

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/rawserver"
	"github.com/shadowtap/shadowtap/internal/synth"
)

// shop answers like one deployment of a small shop API: the same data,
// with its own timestamp and request id each time (noise). The planted
// one is the candidate with known differences.
type shop struct {
	mu      sync.Mutex
	rng     *rand.Rand
	planted bool
}

func (s *shop) respond(target string) []byte {
	s.mu.Lock()
	noise := fmt.Sprintf(`"generatedAt":"2026-11-22T07:%02d:%02d.%06dZ","requestId":"%016x"`, s.rng.IntN(60), s.rng.IntN(60), s.rng.IntN(1e6), s.rng.Uint64())
	s.mu.Unlock()
	status, body := 200, ""
	switch {
	case strings.HasPrefix(target, "/api/items/"):
		price := "4.25"
		if s.planted {
			price = "4.30"
		}
		body = fmt.Sprintf(`{%s,"items":[{"sku":"a","price":1},{"sku":"b","price":2},{"sku":"c","price":3},{"sku":"d","price":%s}]}`, noise, price)
	case strings.HasPrefix(target, "/api/users/"):
		body = fmt.Sprintf(`{%s,"name":"ann","email":"ann@example.com"}`, noise)
		if s.planted {
			body = fmt.Sprintf(`{%s,"name":"ann"}`, noise)
		}
	default:
		body = fmt.Sprintf(`{%s,"ok":true}`, noise)
		if s.planted {
			status = 500
		}
	}
	return fmt.Appendf(nil, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nDate: %d\r\nContent-Length: %d\r\n\r\n%s", status, time.Now().UnixNano(), len(body), body)
}

func shopServer(t *testing.T, s *shop) *rawserver.Server {
	srv, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Respond = func(r *httpstream.Request) []byte { return s.respond(string(r.Target())) }
	t.Cleanup(srv.Close)
	return srv
}

// TestCompareEndToEnd mirrors both directions of production's traffic as
// VXLAN into a handler comparing a candidate (with planted differences)
// against production and against a baseline (with a second baseline for
// noise), then reads the report's JSON API and the difference log.
func TestCompareEndToEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cand := shopServer(t, &shop{rng: rng, planted: true})
	base := shopServer(t, &shop{rng: rng})
	base2 := shopServer(t, &shop{rng: rng})
	prod := &shop{rng: rng}
	logPath := filepath.Join(t.TempDir(), "diffs.jsonl")
	cfg := config.Default()
	cfg.Targets = []config.Target{
		{Name: "candidate", Destination: "http://" + cand.Addr()},
		{Name: "baseline", Destination: "http://" + base.Addr()},
		{Name: "baseline2", Destination: "http://" + base2.Addr()},
	}
	cfg.Compare.Candidate, cfg.Compare.Baseline, cfg.Compare.Secondary = "candidate", "baseline", "baseline2"
	cfg.Compare.Log = logPath
	h, stop := start(t, cfg)
	m := newMirror(t, h)
	paths := []string{"/api/items/1", "/api/items/2", "/api/users/7", "/api/health"}
	n := 0
	for round := range 8 {
		c := synth.NewConn(client(round), server, uint32(round)*1000, uint32(round)*5000)
		m.send(1, c.Handshake())
		for _, p := range paths {
			m.send(1, c.ClientData(fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: shop\r\nCookie: sid=secret\r\n\r\n", p)))
			m.send(1, c.ServerData(prod.respond(p)))
			n++
		}
		m.send(1, c.Close())
	}
	waitFor(t, func() bool { return h.Comparator().Stats.Compared.Load() == uint64(n) })
	var r compare.Report
	if err := json.Unmarshal([]byte(get(t, "http://"+h.AdminAddr()+"/api/report")), &r); err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range r.Endpoints {
		for _, c := range e.Comparisons {
			for _, f := range c.Fields {
				if f.Regression {
					found = append(found, e.Name+" "+c.Comparison+" "+f.Key)
				}
			}
		}
	}
	got := strings.Join(found, "\n")
	for _, want := range []string{
		"GET /api/items/{id} candidate-vs-production body.items[*].price",
		"GET /api/items/{id} candidate-vs-baseline body.items[*].price",
		"GET /api/users/{id} candidate-vs-production body.email",
		"GET /api/users/{id} candidate-vs-baseline body.email",
		"GET /api/health candidate-vs-production status",
		"GET /api/health candidate-vs-baseline status",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing regression %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "generatedAt") || strings.Contains(got, "requestId") || strings.Contains(got, "header.") {
		t.Errorf("noise reported:\n%s", got)
	}
	page := get(t, "http://"+h.AdminAddr()+"/report")
	if !strings.Contains(page, "<title>shadowtap report</title>") {
		t.Error("report page missing")
	}
	if metrics := get(t, "http://"+h.AdminAddr()+"/metrics"); !strings.Contains(metrics,
		`shadowtap_compare_endpoint_regressions{comparison="candidate-vs-baseline",endpoint="GET /api/items/{id}"} 1`) {
		t.Error("per-endpoint comparison metrics missing")
	}
	stop()
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), `"type":"stats"`) || !strings.Contains(string(log), `"type":"diff"`) || strings.Contains(string(log), "secret") {
		t.Errorf("difference log: %d bytes, secret present: %v", len(log), strings.Contains(string(log), "secret"))
	}
	// Two handlers' logs merge: counts add up.
	merged, err := compare.MergeLogs([]io.Reader{strings.NewReader(string(log)), strings.NewReader(strings.ReplaceAll(string(log), `"handler":"`, `"handler":"other-`))},
		compare.Rules{MinSamples: 5, Threshold: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if len(merged.Handlers) != 2 || merged.Compared != 2*2*uint64(n) || merged.Regressions < 6 {
		t.Errorf("merged: handlers %v, compared %d, regressions %d", merged.Handlers, merged.Compared, merged.Regressions)
	}
}
