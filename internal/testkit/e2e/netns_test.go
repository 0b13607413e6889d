// Package e2e holds the end-to-end test in network namespaces: real
// clients (curl and a raw pipelining socket), a production server whose
// interface the kernel mirrors into VXLAN with tc, the handler receiving
// that VXLAN, and a test server that records the exact bytes it gets.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/demo"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/testkit/fakeshop"
	"github.com/shadowtap/shadowtap/internal/testkit/netlab"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
)

func TestKernelVXLANMirror(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip("network namespaces:", err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	for _, mtu := range []int{1500, 9001} {
		t.Run(fmt.Sprintf("mtu%d", mtu), func(t *testing.T) { runMirror(t, mtu) })
	}
}

func runMirror(t *testing.T, mtu int) {
	lab, err := netlab.Setup(netlab.Options{InnerMTU: mtu, VNI: 4242})
	if err != nil {
		t.Skip("cannot build namespaces here:", err)
	}
	t.Cleanup(lab.Close)

	test, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer test.Close()
	var prod *rawserver.Server
	if err := lab.Do(lab.Prod, func() error {
		ln, err := net.Listen("tcp", "198.18.0.2:80")
		if err != nil {
			return err
		}
		prod = rawserver.Serve(ln)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	cfg := config.Default()
	cfg.Destination = "http://" + test.Addr()
	cfg.Listen, cfg.HealthListen, cfg.AdminListen = "198.18.1.1:4789", "", ""
	cfg.VNIs = []uint32{4242}
	cfg.ReorderWait = 50 * time.Millisecond
	h := startHandler(t, lab, cfg)

	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 1<<16), 0o644) // 1 MiB
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte(strings.Repeat("chunk me ", 500)), 0o644)

	url := "http://198.18.0.2/"
	curl := func(args ...string) {
		t.Helper()
		out, err := lab.Exec(lab.Client, "curl", append([]string{"-sS", "--http1.1", "--max-time", "20"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v: %s", args, err, out)
		}
	}
	sent := 0
	// Keep-alive: five requests on one connection.
	curl("-H", "X-User: alice", "-o", "/dev/null", url+"a?x=1", "-o", "/dev/null", url+"b/%7Euser", "-o", "/dev/null",
		url+"c", "-o", "/dev/null", url+"d", "-o", "/dev/null", url+"e")
	sent += 5
	curl("-o", "/dev/null", "-H", "Transfer-Encoding: chunked", "--data-binary", "@"+small, url+"chunked")
	sent++
	curl("-o", "/dev/null", "-H", "Content-Type: application/octet-stream", "--data-binary", "@"+big, url+"large")
	sent++
	curl("-o", "/dev/null", "-H", "Expect: 100-continue", "--data", "q=1&r=2", url+"expect")
	sent++
	curl("-o", "/dev/null", "-I", url+"head")
	sent++
	// Pipelined: three requests in one write on a raw socket.
	if err := lab.Do(lab.Client, func() error {
		c, err := net.Dial("tcp", "198.18.0.2:80")
		if err != nil {
			return err
		}
		defer c.Close()
		var b bytes.Buffer
		for i := range 3 {
			fmt.Fprintf(&b, "GET /pipelined/%d HTTP/1.1\r\nHost: shop.example\r\n\r\n", i)
		}
		c.Write(b.Bytes())
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := 0
		buf := make([]byte, 4096)
		for got < 3 {
			n, err := c.Read(buf)
			got += bytes.Count(buf[:n], []byte("HTTP/1.1 200"))
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sent += 3

	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && (len(test.Requests()) < sent || h.Targets()[0].Stats.Replay.InFlight.Load() > 0) {
		time.Sleep(20 * time.Millisecond)
	}
	prodReqs, testReqs := prod.Requests(), test.Requests()
	if len(prodReqs) != sent {
		t.Fatalf("production received %d requests, clients sent %d", len(prodReqs), sent)
	}
	exact, mismatches := demo.Compare(prodReqs, testReqs, demo.Edits(cfg),
		func(r rawserver.Received) (netip.AddrPort, bool) {
			ap, err := netip.ParseAddrPort(r.Remote)
			return ap, err == nil
		}, netip.MustParseAddrPort("198.18.0.2:80"))
	if exact != sent || len(testReqs) != sent {
		t.Errorf("test server received %d, exact %d, want %d; mismatches: %q", len(testReqs), exact, sent, mismatches)
	}
	// An independent statement of the permitted edits for these clients
	// (no hop-by-hop or X-Forwarded headers of their own): Host replaced,
	// four X-Forwarded lines and the replay marker added before the blank
	// line, nothing else.
	want := map[string]int{}
	for _, r := range prodReqs {
		raw := string(r.Raw)
		i := strings.Index(raw, "\r\n\r\n")
		head, body := raw[:i+2], raw[i+4:]
		head = strings.Replace(head, "Host: 198.18.0.2\r\n", "Host: "+test.Addr()+"\r\n", 1)
		head = strings.Replace(head, "Host: shop.example\r\n", "Host: "+test.Addr()+"\r\n", 1)
		host := "198.18.0.2"
		if strings.Contains(raw, "shop.example") {
			host = "shop.example"
		}
		head += "X-Forwarded-For: 198.18.0.1\r\nX-Forwarded-Port: 80\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: " + host + "\r\n" +
			"X-Shadowtap-Replay: default\r\n"
		want[head+"\r\n"+body]++
	}
	for _, r := range testReqs {
		if want[string(r.Raw)] == 0 {
			t.Errorf("not production's request with the permitted edits: %q", r.Raw[:min(len(r.Raw), 300)])
		}
		want[string(r.Raw)]--
	}
	ra := &h.Engine.Reassembly
	t.Logf("mtu %d: %d datagrams, %d segments, gaps %d, truncated %d, kernel drops %d", mtu, h.Capture.Datagrams.Load(),
		ra.Segments.Load(), ra.Gaps.Load(), ra.TruncatedSegs.Load(), h.Capture.KernelDrops.Load())
	if ra.Gaps.Load() != 0 || ra.TruncatedSegs.Load() != 0 {
		t.Errorf("gaps %d truncated %d on a clean path", ra.Gaps.Load(), ra.TruncatedSegs.Load())
	}
}

// TestKernelVXLANCompare mirrors both directions of production's traffic
// with the kernel's VXLAN, compares a candidate with planted differences
// against production and against a baseline, and ends with the report's
// JSON API.
func TestKernelVXLANCompare(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip("network namespaces:", err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	lab, err := netlab.Setup(netlab.Options{InnerMTU: 1500, VNI: 77})
	if err != nil {
		t.Skip("cannot build namespaces here:", err)
	}
	t.Cleanup(lab.Close)
	serve := func(s *fakeshop.Shop) *rawserver.Server {
		srv, err := s.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		return srv
	}
	cand, base, base2 := serve(fakeshop.New(1, true)), serve(fakeshop.New(2, false)), serve(fakeshop.New(3, false))
	if err := lab.Do(lab.Prod, func() error {
		ln, err := net.Listen("tcp", "198.18.0.2:80")
		if err != nil {
			return err
		}
		prod := rawserver.ServeResponding(ln, fakeshop.New(4, false).Handler())
		t.Cleanup(prod.Close)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen, cfg.HealthListen, cfg.AdminListen = "198.18.1.1:4789", "", ""
	cfg.ReorderWait = 50 * time.Millisecond
	cfg.Targets = []config.Target{{Name: "candidate", Destination: "http://" + cand.Addr()},
		{Name: "baseline", Destination: "http://" + base.Addr()}, {Name: "baseline2", Destination: "http://" + base2.Addr()}}
	cfg.Compare.Candidate, cfg.Compare.Baseline, cfg.Compare.Secondary = "candidate", "baseline", "baseline2"
	h := startHandler(t, lab, cfg)
	const rounds = 8
	for range rounds { // one keep-alive connection per round, every path
		var args []string
		for _, p := range fakeshop.Paths {
			args = append(args, "-o", "/dev/null", "http://198.18.0.2"+p)
		}
		if out, err := lab.Exec(lab.Client, "curl", append([]string{"-sS", "--max-time", "20"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
	}
	want := uint64(rounds * len(fakeshop.Paths))
	deadline := time.Now().Add(20 * time.Second)
	for h.Comparator().Stats.Compared.Load() < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	api := httptest.NewServer(h.Comparator().Handler())
	defer api.Close()
	resp, err := http.Get(api.URL + "/api/report")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r compare.Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range r.Endpoints {
		for _, c := range e.Comparisons {
			for _, f := range c.Fields {
				if f.Regression {
					got[e.Name+" "+c.Comparison+" "+f.Key] = true
				}
			}
		}
	}
	for _, p := range fakeshop.Planted {
		for _, cmp := range []string{compare.VsProduction, compare.VsBaseline} {
			ep, field, _ := strings.Cut(strings.TrimPrefix(p, "GET "), " ")
			if key := "GET " + ep + " " + cmp + " " + field; !got[key] {
				t.Errorf("regression %q not reported (compared %d of %d); reported: %v", key, h.Comparator().Stats.Compared.Load(), want, got)
			}
		}
	}
	// The planted findings and nothing else: the noise (times, request
	// ids), the 500's body (collateral of the status) and latency are not.
	if len(got) != 2*len(fakeshop.Planted) || r.Regressions != len(fakeshop.Planted) {
		t.Errorf("reported %d findings, %d distinct, want %d and %d: %v", len(got), r.Regressions, 2*len(fakeshop.Planted), len(fakeshop.Planted), got)
	}
	for _, e := range r.Endpoints {
		for _, c := range e.Comparisons {
			if c.LatencyRegression {
				t.Errorf("%s %s: latency regression reported", e.Name, c.Comparison)
			}
		}
	}
}

// startHandler creates the handler in the monitor namespace (its sockets
// live there) and runs it until the test ends.
func startHandler(t *testing.T, lab *netlab.Lab, cfg config.Config) *pipeline.Handler {
	t.Helper()
	var h *pipeline.Handler
	if err := lab.Do(lab.Mon, func() (err error) {
		h, err = pipeline.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return h
}
