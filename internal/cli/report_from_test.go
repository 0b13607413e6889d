package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/testkit/ec2fake"
	"github.com/shadowtap/shadowtap/internal/testkit/elbfake"
	"github.com/shadowtap/shadowtap/internal/testkit/fakeshop"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// fleetHandler is a running handler comparing a candidate with the
// production answers mirrored to it, on loopback.
type fleetHandler struct {
	h    *pipeline.Handler
	out  *net.UDPConn
	sent uint64
	stop func()
}

func startFleetHandler(t *testing.T, candidate string) *fleetHandler {
	t.Helper()
	cfg := config.Default()
	cfg.Targets = []config.Target{{Name: "candidate", Destination: candidate}}
	cfg.Compare.Candidate = "candidate"
	cfg.Listen, cfg.AdminListen, cfg.HealthListen, cfg.ReadBuffer = "127.0.0.1:0", "127.0.0.1:0", "", 4<<20
	h, err := pipeline.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx) }()
	out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(h.ListenAddr()))
	if err != nil {
		t.Fatal(err)
	}
	f := &fleetHandler{h: h, out: out}
	f.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		out.Close()
	}
	t.Cleanup(func() {
		if f.stop != nil {
			f.stop()
		}
	})
	return f
}

// send mirrors segments as VXLAN, paced so that loopback never overflows
// the handler's socket buffer.
func (f *fleetHandler) send(segs []synth.Segment) {
	for _, s := range segs {
		for i := 0; f.sent > f.h.Capture.Datagrams.Load()+64 && i < 4000; i++ {
			time.Sleep(50 * time.Microsecond)
		}
		f.out.Write(synth.AppendVXLAN(nil, 1, synth.AppendFrame(nil, s)))
		f.sent++
	}
}

func (f *fleetHandler) admin() string { return "http://" + f.h.AdminAddr() }

func (f *fleetHandler) waitCompared(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for f.h.Comparator().Stats.Compared.Load() < uint64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("compared %d of %d", f.h.Comparator().Stats.Compared.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fleetReport is what the gate's JSON says, per endpoint: the counts and
// verdicts that must not depend on how the traffic was split. Left out:
// how many noise pairs production's identical requests made (a pair whose
// requests went to two handlers is seen by neither) and how many
// differences each handler explained as noise while comparing (it learns
// from its own share); both are the handlers' own learning, merged
// exactly, but not what one handler would have learned.
type fleetReport struct {
	Handlers    []string
	Regressions int
	Endpoints   map[string]string
}

func readFleetReport(t *testing.T, path string) fleetReport {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r compare.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	out := fleetReport{Handlers: r.Handlers, Regressions: r.Regressions, Endpoints: map[string]string{}}
	for _, e := range r.Endpoints {
		var b strings.Builder
		fmt.Fprintf(&b, "requests %d, regressions %d %v", e.Requests, e.Regressions, e.Findings)
		for _, c := range e.Comparisons {
			fmt.Fprintf(&b, "; %s %s: compared %d, exact %d, matched %d, regressions %d, latency regression %v", c.Comparison, c.Verdict,
				c.Compared, c.Exact, c.Matched, c.Regressions, c.LatencyRegression)
			for _, f := range c.Fields {
				fmt.Fprintf(&b, "; %s diffs %d/%d regression %v", f.Key, f.Diffs, f.Compared, f.Regression)
			}
		}
		out.Endpoints[e.Name] = b.String()
	}
	return out
}

// TestReportFromFleet is the fleet's proof: two real handlers each see
// half of production's connections (as behind a Network Load Balancer),
// a third sees all of them; `report -from h1 -from h2` gives the same
// endpoints, counts, findings and verdicts as `report -from all`. The
// three handlers share a host name, as on one machine: the merge must
// keep both halves apart. Then the target group finds the same two
// handlers through the ELBv2 and EC2 APIs (the fakes), an instance target
// and an IP target; an unreachable handler fails the report with its
// address, or is left out with -allow-missing.
func TestReportFromFleet(t *testing.T) {
	cand, err := fakeshop.New(1, true).Listen("127.0.0.1:0") // planted: a price, a missing field, a failing status
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cand.Close)
	all, h1, h2 := startFleetHandler(t, "http://"+cand.Addr()), startFleetHandler(t, "http://"+cand.Addr()), startFleetHandler(t, "http://"+cand.Addr())
	prod := fakeshop.New(4, false)
	server := netip.MustParseAddrPort("10.0.0.2:80")
	const rounds = 16
	n := 0
	for round := range rounds {
		// Each connection goes whole to one of the halves, as a load
		// balancer's flow hash sends it, and to the handler that sees all.
		half := []*fleetHandler{h1, h2}[round%2]
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(round)}), uint16(1000+round))
		c := synth.NewConn(client, server, uint32(round)*1000, uint32(round)*5000)
		send := func(segs []synth.Segment) { all.send(segs); half.send(segs) }
		send(c.Handshake())
		for _, p := range fakeshop.Paths {
			send(c.ClientData(fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: shop\r\n\r\n", p)))
			send(c.ServerData(prod.Respond(p))) // the same production answer to both
			n++
		}
		send(c.Close())
	}
	all.waitCompared(t, n)
	h1.waitCompared(t, n/2)
	h2.waitCompared(t, n/2)

	dir := t.TempDir()
	single, merged := filepath.Join(dir, "single.json"), filepath.Join(dir, "merged.json")
	out, code := runReport(t, "report", "-o", "", "-json", single, "-from", all.admin())
	if code != 1 {
		t.Fatalf("one handler: exit %d, want 1 (planted regressions)\n%s", code, out)
	}
	page := filepath.Join(dir, "merged.html")
	out, code = runReport(t, "report", "-o", page, "-json", merged, "-junit", filepath.Join(dir, "junit.xml"), "-from", h1.admin(), "-from", strings.TrimPrefix(h2.admin(), "http://"),
		"-from", h1.admin()+"/") // named twice, read once
	if code != 1 {
		t.Fatalf("two handlers: exit %d, want 1\n%s", code, out)
	}
	if !strings.Contains(out, "live state of 2 of 2 handler(s)") || strings.Count(out, "both call themselves") != 1 || !strings.Contains(out, "from 2 handler(s)") ||
		!strings.Contains(out, "both call themselves") {
		t.Errorf("output:\n%s", out)
	}
	// The page says how many handlers it merges, and names them.
	if b, _ := os.ReadFile(page); !strings.Contains(string(b), `"title":"shadowtap release report: 2 handler(s)"`) {
		t.Error("the merged page does not say it merges 2 handlers")
	}
	want, got := readFleetReport(t, single), readFleetReport(t, merged)
	if len(got.Handlers) != 2 || len(want.Handlers) != 1 {
		t.Errorf("handlers: merged %q, single %q", got.Handlers, want.Handlers)
	}
	if want.Regressions != 3 || got.Regressions != want.Regressions {
		t.Errorf("regressions: merged %d, single %d, want 3 (price, email, status)", got.Regressions, want.Regressions)
	}
	if len(want.Endpoints) != 3 {
		t.Errorf("single handler's endpoints: %v", want.Endpoints)
	}
	for name, w := range want.Endpoints {
		if g := got.Endpoints[name]; g != w {
			t.Errorf("%s:\nmerged %s\nsingle %s", name, g, w)
		}
	}
	for name := range got.Endpoints {
		if _, ok := want.Endpoints[name]; !ok {
			t.Errorf("merged report has an endpoint the single one lacks: %s", name)
		}
	}
	if failures, _ := readJUnit(t, filepath.Join(dir, "junit.xml")); len(failures[compare.VsProduction]) != 3 {
		t.Errorf("JUnit failures %q", failures)
	}

	// An unreachable handler: exit 2 naming it; -allow-missing leaves it
	// out with a warning and merges the rest (h1 alone: half the counts).
	dead := deadAddr(t)
	out, code = runReport(t, "report", "-o", "", "-from", h1.admin(), "-from", "http://"+dead)
	if code != 2 || !strings.Contains(out, dead) || !strings.Contains(out, "-allow-missing") {
		t.Errorf("unreachable handler: exit %d\n%s", code, out)
	}
	half := filepath.Join(dir, "half.json")
	out, code = runReport(t, "report", "-o", "", "-json", half, "-allow-missing", "-from", h1.admin(), "-from", "http://"+dead)
	if code != 1 || !strings.Contains(out, "warning: left out handler http://"+dead) || !strings.Contains(out, "live state of 1 of 2 handler(s)") {
		t.Errorf("-allow-missing: exit %d\n%s", code, out)
	}
	if r := readFleetReport(t, half); len(r.Handlers) != 1 || !strings.HasPrefix(r.Endpoints["GET /api/health"], fmt.Sprintf("requests %d,", rounds/2)) {
		t.Errorf("-allow-missing merged %v: %v", r.Handlers, r.Endpoints["GET /api/health"])
	}
	// A log of the same handler (its name) is superseded by its live
	// state, which is newer: MergeLogs keeps the last state per handler
	// and endpoint, and live states come after the logs.
	var name struct{ Handler string }
	first, _, _ := strings.Cut(getBody(t, h1.admin()+"/api/state"), "\n")
	json.Unmarshal([]byte(first), &name)
	stale := filepath.Join(dir, "stale.jsonl")
	os.WriteFile(stale, fmt.Appendf(nil, `{"type":"stats","handler":%q,"endpoint":"GET /api/health","state":{"requests":1000,`+
		`"comparisons":{"candidate-vs-production":{"compared":1000,"exact":1000,"matched":1000}}}}`+"\n", name.Handler), 0o644)
	superseded := filepath.Join(dir, "superseded.json")
	if out, code = runReport(t, "report", "-o", "", "-json", superseded, stale, "-from", h1.admin()); code != 1 {
		t.Errorf("log and live state: exit %d\n%s", code, out)
	}
	if r := readFleetReport(t, superseded); !strings.HasPrefix(r.Endpoints["GET /api/health"], fmt.Sprintf("requests %d,", rounds/2)) {
		t.Errorf("the live state does not supersede its handler's log: %s", r.Endpoints["GET /api/health"])
	}
	// Not a handler's state (a handler without comparison answers 404).
	notState := httptest.NewServer(nil)
	defer notState.Close()
	if out, code = runReport(t, "report", "-o", "", "-from", notState.URL); code != 2 || !strings.Contains(out, "404") {
		t.Errorf("404: exit %d\n%s", code, out)
	}

	// The target group: h1 registered as an instance (its private
	// address from EC2), h2 as an IP target, each on its admin port
	// (-admin-port 0: the registered port).
	port := func(f *fleetHandler) int {
		_, p, _ := net.SplitHostPort(f.h.AdminAddr())
		n, _ := strconv.Atoi(p)
		return n
	}
	ec2srv := httptest.NewServer(&ec2fake.Server{PageSize: 1, Instances: []ec2fake.Instance{
		{ID: "i-0other", State: "running", IP: "10.0.9.9"},
		{ID: "i-0h1", State: "running", IP: "127.0.0.1"}}})
	defer ec2srv.Close()
	lb := &elbfake.Server{TargetGroups: []elbfake.TargetGroup{{ARN: "tg-admin", Targets: []elbfake.Target{
		{ID: "i-0h1", State: "healthy", Port: port(h1)}, {ID: "127.0.0.1", State: "healthy", Port: port(h2)}}}}}
	elbsrv := httptest.NewServer(lb)
	defer elbsrv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	aws := []string{"-region", "us-east-1", "-elb-endpoint", elbsrv.URL, "-ec2-endpoint", ec2srv.URL, "-admin-port", "0"}
	tgJSON := filepath.Join(dir, "tg.json")
	out, code = runReport(t, append([]string{"report", "-o", "", "-json", tgJSON, "-from-target-group", "tg-admin"}, aws...)...)
	if code != 1 || !strings.Contains(out, "live state of 2 of 2 handler(s): i-0h1 127.0.0.1:") {
		t.Fatalf("target group: exit %d\n%s", code, out)
	}
	if tg := readFleetReport(t, tgJSON); !slices.Equal(slices.Sorted(mapKeys(tg.Endpoints)), slices.Sorted(mapKeys(want.Endpoints))) ||
		tg.Regressions != want.Regressions {
		t.Errorf("target group: %v", tg)
	} else {
		for name, w := range want.Endpoints {
			if g := tg.Endpoints[name]; g != w {
				t.Errorf("target group %s:\nmerged %s\nsingle %s", name, g, w)
			}
		}
	}
	// A draining handler that no longer answers fails the report, named
	// with its state; an instance EC2 no longer knows too.
	deadPort, _ := strconv.Atoi(dead[strings.LastIndexByte(dead, ':')+1:])
	lb.Mu.Lock()
	lb.TargetGroups[0].Targets = append(lb.TargetGroups[0].Targets, elbfake.Target{ID: "127.0.0.1", State: "draining", Port: deadPort},
		elbfake.Target{ID: "i-0gone", State: "unhealthy", Port: 4790})
	lb.Mu.Unlock()
	out, code = runReport(t, append([]string{"report", "-o", "", "-from-target-group", "tg-admin"}, aws...)...)
	if code != 2 || !strings.Contains(out, "handler "+dead+" (draining)") {
		t.Errorf("dead target: exit %d\n%s", code, out)
	}
	out, code = runReport(t, append([]string{"report", "-o", "", "-allow-missing", "-from-target-group", "tg-admin"}, aws...)...)
	if code != 1 || !strings.Contains(out, "left out handler i-0gone (unhealthy): instance not found") ||
		!strings.Contains(out, "live state of 2 of 4 handler(s)") {
		t.Errorf("dead target, -allow-missing: exit %d\n%s", code, out)
	}
	// An unknown target group is an error of the API, exit 2.
	if out, code = runReport(t, append([]string{"report", "-o", "", "-from-target-group", "tg-nope"}, aws...)...); code != 2 ||
		!strings.Contains(out, "TargetGroupNotFound") {
		t.Errorf("unknown target group: exit %d\n%s", code, out)
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// runReport runs the command, stdout and stderr together.
func runReport(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var o bytes.Buffer
	code := Main("dev", args, &o, &o)
	return o.String(), code
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A handler behind -web-config (TLS and basic auth) is read with
// -from-auth-file and -from-ca-file; without the credentials it is
// refused, and the report says what to give.
func TestReportFromGuardedHandler(t *testing.T) {
	state := `{"type":"handler","handler":"guarded"}` + "\n" + `{"type":"stats","handler":"guarded","endpoint":"GET /api/health","state":{"requests":10,` +
		`"comparisons":{"candidate-vs-production":{"compared":10,"exact":10,"matched":10}}}}` + "\n"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ops" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", "Basic")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(state))
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca, auth := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "auth")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	os.WriteFile(auth, []byte("ops:s3cret\n"), 0o600)
	out, code := runReport(t, "report", "-o", "", "-from", srv.URL, "-from-ca-file", ca)
	if code != 2 || !strings.Contains(out, "-from-auth-file") {
		t.Errorf("without credentials: exit %d\n%s", code, out)
	}
	out, code = runReport(t, "report", "-o", "", "-from", srv.URL, "-from-ca-file", ca, "-from-auth-file", auth)
	if code != 0 || !strings.Contains(out, "live state of 1 of 1 handler(s)") {
		t.Errorf("with credentials: exit %d\n%s", code, out)
	}
}
