// Command nsbench measures shadowtap end to end in network namespaces (see
// internal/testkit/netlab): keep-alive clients send small GETs to a production
// server at a fixed rate, the kernel mirrors production's interface as
// VXLAN to a shadowtap process, which replays to a test server. It reports
// the share of requests delivered exactly, the handler's CPU and memory.
// It needs root. It is a benchmark, not a pass/fail test.
//
//	go run ./cmd/nsbench -rate 10000 -conns 64 -duration 60s
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/demo"
	"github.com/shadowtap/shadowtap/internal/testkit/netlab"
	"github.com/shadowtap/shadowtap/internal/testkit/procstat"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
)

func main() {
	rate := flag.Int("rate", 10000, "requests per second, all connections together")
	conns := flag.Int("conns", 64, "keep-alive client connections")
	duration := flag.Duration("duration", 60*time.Second, "how long to send")
	mtu := flag.Int("mtu", 1500, "MTU between client and production")
	bin := flag.String("shadowtap", "", "shadowtap binary (default: build ./cmd/shadowtap)")
	flag.Parse()
	if err := run(*rate, *conns, *duration, *mtu, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "nsbench:", err)
		os.Exit(1)
	}
}

func run(rate, conns int, duration time.Duration, mtu int, bin string) error {
	if err := netlab.Available(); err != nil {
		return err
	}
	if bin == "" {
		dir, err := os.MkdirTemp("", "nsbench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "shadowtap")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/shadowtap").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v: %s", err, out)
		}
	}
	lab, err := netlab.Setup(netlab.Options{InnerMTU: mtu})
	if err != nil {
		return err
	}
	defer lab.Close()

	var prod, test *rawserver.Server
	if err := lab.Do(lab.Prod, func() error {
		ln, err := net.Listen("tcp", "198.18.0.2:80")
		prod = rawserver.Serve(ln)
		return err
	}); err != nil {
		return err
	}
	defer prod.Close()
	if err := lab.Do(lab.Mon, func() error {
		ln, err := net.Listen("tcp", "198.18.1.1:8081")
		test = rawserver.Serve(ln)
		return err
	}); err != nil {
		return err
	}
	defer test.Close()

	handler := lab.Exec(lab.Mon, bin, "-listen", "198.18.1.1:4789", "-destination", "http://198.18.1.1:8081",
		"-health-listen", "", "-admin-listen", "198.18.1.1:4790", "-vni", "4242", "-log-level", "warn")
	handler.Stdout, handler.Stderr = os.Stdout, os.Stderr
	if err := handler.Start(); err != nil {
		return err
	}
	defer handler.Process.Kill()
	pid := handler.Process.Pid // ip netns exec execs the binary: same pid
	time.Sleep(300 * time.Millisecond)

	fmt.Printf("nsbench: %d req/s over %d keep-alive connections for %v, MTU %d, handler pid %d\n", rate, conns, duration, mtu, pid)
	cpu0 := procstat.CPUSeconds(pid)
	wall0 := time.Now()
	var rss []int64
	stopSampling := make(chan struct{})
	var samplerWG sync.WaitGroup
	samplerWG.Add(1)
	go func() {
		defer samplerWG.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				rss = append(rss, procstat.RSSKiB(pid))
			}
		}
	}()

	sent, errs := load(lab, rate, conns, duration)
	loadEnd := time.Now()
	// Let the handler finish: bounded wait for the test server to catch up.
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if len(test.Requests()) >= len(prod.Requests()) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cpu := procstat.CPUSeconds(pid) - cpu0
	wall := time.Since(wall0).Seconds()
	close(stopSampling)
	samplerWG.Wait()
	metrics, _ := lab.Exec(lab.Mon, "curl", "-s", "--max-time", "5", "http://198.18.1.1:4790/metrics").Output()
	handler.Process.Signal(syscall.SIGTERM)
	handler.Wait()

	prodReqs, testReqs := prod.Requests(), test.Requests()
	cfg := config.Default()
	cfg.Destination = "http://198.18.1.1:8081"
	exact, mismatches := demo.Compare(prodReqs, testReqs, demo.Edits(cfg),
		func(r rawserver.Received) (netip.AddrPort, bool) {
			ap, err := netip.ParseAddrPort(r.Remote)
			return ap, err == nil
		}, netip.MustParseAddrPort("198.18.0.2:80"))

	fmt.Printf("\n%-40s %d (%d client errors), %.0f req/s achieved\n", "requests sent", sent, errs, float64(sent)/loadEnd.Sub(wall0).Seconds())
	fmt.Printf("%-40s %d\n", "received by production", len(prodReqs))
	fmt.Printf("%-40s %d\n", "received by the test server", len(testReqs))
	fmt.Printf("%-40s %d (%.4f of production)\n", "exact", exact, float64(exact)/float64(max(1, len(prodReqs))))
	for _, m := range mismatches {
		fmt.Println("  mismatch:", m)
	}
	fmt.Printf("%-40s %.2f cores (%.1f CPU-s over %.1f s)\n", "handler CPU", cpu/wall, cpu, wall)
	if len(rss) > 0 {
		n := max(1, len(rss)/6)
		fmt.Printf("%-40s first %ds avg %d KiB, last %ds avg %d KiB, max %d KiB\n", "handler RSS", n, avg(rss[:n]), n, avg(rss[len(rss)-n:]), maxOf(rss))
	}
	for _, line := range strings.Split(string(metrics), "\n") {
		for _, name := range []string{"shadowtap_socket_kernel_drops_total", "shadowtap_truncated_segments_total", "shadowtap_tcp_gaps_total ",
			"shadowtap_requests_captured_total", "shadowtap_requests_replayed_total", "shadowtap_replay_queue_drops_total", "shadowtap_requests_failed_total"} {
			if strings.HasPrefix(line, name) && !strings.HasSuffix(line, " 0") {
				fmt.Println("  " + line)
			}
		}
	}
	return nil
}

// load runs conns keep-alive connections from the client namespace, each
// sending its share of rate on a fixed schedule (catching up when late),
// for duration. It is bounded in count (rate*duration) and time.
func load(lab *netlab.Lab, rate, conns int, duration time.Duration) (sent, errs int64) {
	var nsent, nerr atomic.Int64
	per := time.Duration(int64(time.Second) * int64(conns) / int64(rate))
	total := int64(rate) * int64(duration/time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), duration+5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for c := range conns {
		var conn net.Conn
		if err := lab.Do(lab.Client, func() (err error) {
			conn, err = net.Dial("tcp", "198.18.0.2:80")
			return err
		}); err != nil {
			nerr.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			br := bufio.NewReader(conn)
			n := total / int64(conns)
			offset := per * time.Duration(c) / time.Duration(conns)
			for i := range n {
				if ctx.Err() != nil {
					return
				}
				if d := time.Until(start.Add(offset + per*time.Duration(i))); d > 0 {
					time.Sleep(d)
				}
				fmt.Fprintf(conn, "GET /api/items?id=%d&conn=%d HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: nsbench\r\nAccept: */*\r\n\r\n", i, c)
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if err := readResponse(br); err != nil {
					nerr.Add(1)
					return
				}
				nsent.Add(1)
			}
		}()
	}
	wg.Wait()
	return nsent.Load(), nerr.Load()
}

// readResponse reads one rawserver response (fixed Content-Length).
func readResponse(br *bufio.Reader) error {
	length := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	_, err := br.Discard(length)
	return err
}

func avg(v []int64) int64 {
	var s int64
	for _, x := range v {
		s += x
	}
	return s / int64(max(1, len(v)))
}

func maxOf(v []int64) int64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
