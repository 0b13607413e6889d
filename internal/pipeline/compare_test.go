package pipeline

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/testkit/fakeshop"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

func shopServer(t *testing.T, s *fakeshop.Shop) *rawserver.Server {
	srv, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// TestCompareEndToEnd mirrors both directions of production's traffic as
// VXLAN into a handler comparing a candidate (with planted differences)
// against production and against a baseline (with a second baseline for
// noise), then reads the report's JSON API and the difference log.
func TestCompareEndToEnd(t *testing.T) {
	cand := shopServer(t, fakeshop.New(1, true))
	base := shopServer(t, fakeshop.New(2, false))
	base2 := shopServer(t, fakeshop.New(3, false))
	prod := fakeshop.New(4, false)
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
	paths := fakeshop.Paths
	n := 0
	for round := range 8 {
		c := synth.NewConn(client(round), server, uint32(round)*1000, uint32(round)*5000)
		m.send(1, c.Handshake())
		for _, p := range paths {
			m.send(1, c.ClientData(fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: shop\r\nCookie: sid=secret\r\n\r\n", p)))
			m.send(1, c.ServerData(prod.Respond(p)))
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
	// The gauges are read at scrape time; give a loaded machine a moment.
	metricsOK := false
	for end := time.Now().Add(5 * time.Second); !metricsOK && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		metricsOK = strings.Contains(get(t, "http://"+h.AdminAddr()+"/metrics"),
			`shadowtap_compare_endpoint_regressions{comparison="candidate-vs-baseline",endpoint="GET /api/items/{id}"} 1`)
	}
	if !metricsOK {
		t.Error("per-endpoint comparison metrics missing")
	}
	stop()
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), `"type":"stats"`) || !strings.Contains(string(log), `"type":"diff"`) || strings.Contains(string(log), "secret") {
		t.Errorf("difference log: %d bytes, secret present: %v", len(log), strings.Contains(string(log), "secret"))
	}
	// Two handlers' logs merge: counts add up (exchanges, and distinct
	// findings: endpoint and field, over the comparisons).
	merged, err := compare.MergeLogs([]io.Reader{strings.NewReader(string(log)), strings.NewReader(strings.ReplaceAll(string(log), `"handler":"`, `"handler":"other-`))},
		compare.Rules{MinSamples: 5, Threshold: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if len(merged.Handlers) != 2 || merged.Compared != 2*uint64(n) || merged.Regressions != 3 {
		t.Errorf("merged: handlers %v, compared %d, regressions %d", merged.Handlers, merged.Compared, merged.Regressions)
	}
}
