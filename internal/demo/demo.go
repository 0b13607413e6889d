// Package demo runs shadowtap end to end on one machine with no AWS and no
// root: a production server, a test server, a tap that mirrors production's
// traffic as VXLAN over loopback (as VPC Traffic Mirroring would), the real
// handler, and clients sending mixed traffic. It then checks that the test
// server received exactly what production received, changed only by the
// permitted edits.
package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/replay"
	"github.com/shadowtap/shadowtap/internal/target"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
)

// Options size the demo traffic.
type Options struct {
	Connections     int // keep-alive client connections
	RequestsPerConn int
	Log             *slog.Logger
}

// DefaultOptions run in a few seconds.
var DefaultOptions = Options{Connections: 8, RequestsPerConn: 25}

// Summary is what the demo saw.
type Summary struct {
	ClientRequests int // requests the clients sent
	Production     int // requests production received
	Captured       int // requests the handler extracted from the mirror
	Replayed       int // replays answered by the test server
	Failed         int
	TestReceived   int // requests the test server received
	Exact          int // of those, equal to production's after the permitted edits
	Mismatches     []string
}

// OK reports whether every request reached the test server exactly.
func (s Summary) OK() bool {
	return s.Production == s.ClientRequests && s.Captured == s.Production && s.TestReceived == s.Production &&
		s.Exact == s.Production && len(s.Mismatches) == 0
}

// Run runs the demo and writes a report to out.
func Run(ctx context.Context, out io.Writer, opts Options) (Summary, error) {
	var sum Summary
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	prod, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		return sum, err
	}
	defer prod.Close()
	test, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		return sum, err
	}
	defer test.Close()

	cfg := config.Default()
	cfg.Destination = "http://" + test.Addr()
	cfg.Listen, cfg.HealthListen, cfg.AdminListen = "127.0.0.1:0", "", "127.0.0.1:0"
	cfg.ReadBuffer = 8 << 20
	cfg.ReorderWait = 50 * time.Millisecond
	h, err := pipeline.New(cfg, log)
	if err != nil {
		return sum, err
	}
	hctx, stopHandler := context.WithCancel(ctx)
	handlerDone := make(chan error, 1)
	go func() { handlerDone <- h.Run(hctx) }()
	defer func() {
		stopHandler()
		<-handlerDone
	}()

	// Pace the mirror so loopback never overflows the handler's socket
	// buffer (rmem_max may cap it low without root): a real mirror has the
	// whole network in between.
	var sent uint64
	var sentMu sync.Mutex
	pace := func() {
		sentMu.Lock()
		defer sentMu.Unlock()
		sent++
		for i := 0; sent > h.Capture.Datagrams.Load()+64 && i < 2000; i++ {
			time.Sleep(50 * time.Microsecond)
		}
	}
	tp, err := newTap(prod.Addr(), h.ListenAddr(), 4242, pace)
	if err != nil {
		return sum, err
	}

	fmt.Fprintf(out, "shadowtap demo: production %s, test %s, handler udp %s, admin http://%s/metrics\n",
		prod.Addr(), test.Addr(), h.ListenAddr(), h.AdminAddr())
	sum.ClientRequests, err = drive(ctx, "http://"+tp.addr(), opts)
	if err != nil {
		return sum, err
	}
	tp.close() // closes the proxied connections: the mirror sees the FINs

	// Wait for the handler to capture and replay everything.
	rs := &h.Targets()[0].Stats.Replay
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		captured := h.Engine.HTTP.Requests.Load()
		done := rs.Replayed.Load() + failed(rs) + rs.QueueDrops.Load()
		if captured >= uint64(sum.ClientRequests) && done >= captured && h.Engine.Reassembly.FlowsOpen.Load() == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	sum.Captured = int(h.Engine.HTTP.Requests.Load())
	sum.Replayed = int(rs.Replayed.Load())
	sum.Failed = int(failed(rs))
	verify(&sum, prod.Requests(), test.Requests(), tp, Edits(cfg))

	fmt.Fprintf(out, "\n%-44s %6d\n", "requests sent by clients", sum.ClientRequests)
	fmt.Fprintf(out, "%-44s %6d\n", "received by production", sum.Production)
	fmt.Fprintf(out, "%-44s %6d\n", "captured from the VXLAN mirror", sum.Captured)
	fmt.Fprintf(out, "%-44s %6d\n", "replayed (answered by the test server)", sum.Replayed)
	fmt.Fprintf(out, "%-44s %6d\n", "replay failures", sum.Failed)
	fmt.Fprintf(out, "%-44s %6d\n", "received by the test server", sum.TestReceived)
	fmt.Fprintf(out, "%-44s %6d\n", "exact (production bytes + permitted edits)", sum.Exact)
	for _, m := range sum.Mismatches {
		fmt.Fprintf(out, "  mismatch: %s\n", m)
	}
	if sum.OK() {
		fmt.Fprintln(out, "\nOK: every request reached the test server exactly.")
	} else {
		fmt.Fprintln(out, "\nFAILED: see the counts above.")
	}
	return sum, nil
}

// Edits returns the edits the handler applies for cfg's single target.
func Edits(cfg config.Config) replay.Edits {
	r := cfg.Resolve()[0]
	dest, _ := replay.ParseDestination(r.Destination)
	return target.Edits(r, dest)
}

func failed(s *replay.Stats) uint64 {
	var n uint64
	for i := range s.Failed {
		n += s.Failed[i].Load()
	}
	return n
}

// verify compares what the test server got with what production got after
// the permitted edits.
func verify(sum *Summary, prod, test []rawserver.Received, tp *tap, edits replay.Edits) {
	sum.Production, sum.TestReceived = len(prod), len(test)
	sum.Exact, sum.Mismatches = Compare(prod, test, edits, func(r rawserver.Received) (netip.AddrPort, bool) {
		return tp.clientFor(r.Remote)
	}, tp.server)
}

// Compare matches the requests a test server received against those
// production received, each changed by the permitted edits, as multisets
// of exact byte strings. client maps a production request to the client
// address the handler saw. It returns how many matched exactly and up to
// five descriptions of those that did not.
func Compare(prod, test []rawserver.Received, edits replay.Edits, client func(rawserver.Received) (netip.AddrPort, bool), server netip.AddrPort) (exact int, mismatches []string) {
	want := map[string]int{}
	for _, r := range prod {
		c, ok := client(r)
		if !ok {
			mismatches = append(mismatches, "production request from an unknown connection "+r.Remote)
			continue
		}
		var req *httpstream.Request
		httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(q *httpstream.Request) { req = q }).Feed(r.Raw, 0)
		if req == nil {
			mismatches = append(mismatches, fmt.Sprintf("production request does not parse: %q", truncate(r.Raw)))
			continue
		}
		req.Client, req.Server = c, server
		b, _ := edits.AppendRequest(nil, req)
		want[string(b)]++
	}
	for _, r := range test {
		if want[string(r.Raw)] > 0 {
			want[string(r.Raw)]--
			exact++
		} else if len(mismatches) < 5 {
			mismatches = append(mismatches, fmt.Sprintf("test server got %q", truncate(r.Raw)))
		}
	}
	return exact, mismatches
}

func truncate(b []byte) []byte {
	if len(b) > 200 {
		return append(b[:200:200], "..."...)
	}
	return b
}

// drive sends the demo's client traffic through the tap and returns how
// many requests were sent.
func drive(ctx context.Context, base string, opts Options) (int, error) {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: opts.Connections, ExpectContinueTimeout: time.Second}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var mu sync.Mutex
	sent := 0
	var firstErr error
	var wg sync.WaitGroup
	for c := range opts.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range opts.RequestsPerConn {
				req := demoRequest(ctx, base, c, i)
				resp, err := client.Do(req)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				sent++
				mu.Unlock()
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return sent, fmt.Errorf("demo client: %w", firstErr)
	}
	n, err := pipelined(base, 3)
	return sent + n, err
}

// demoRequest returns the i-th request of connection c: a mix of GETs,
// JSON POSTs, chunked uploads, HEADs, Expect: 100-continue and a 1 MiB body.
func demoRequest(ctx context.Context, base string, c, i int) *http.Request {
	var req *http.Request
	switch k := (c + i) % 7; {
	case c == 0 && i == 1:
		req, _ = http.NewRequestWithContext(ctx, "PUT", base+"/upload/large", bytes.NewReader(bytes.Repeat([]byte("0123456789abcdef"), 1<<16)))
	case k == 1:
		body := fmt.Sprintf(`{"order":%d,"items":[{"sku":"A-%d","qty":%d}]}`, i, c, i%3+1)
		req, _ = http.NewRequestWithContext(ctx, "POST", base+"/api/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	case k == 2:
		// An io.Reader of unknown length: Go sends it chunked.
		req, _ = http.NewRequestWithContext(ctx, "POST", base+"/api/events", io.MultiReader(strings.NewReader("event-a\n"), strings.NewReader(strings.Repeat("x", 3000))))
	case k == 3:
		req, _ = http.NewRequestWithContext(ctx, "HEAD", fmt.Sprintf("%s/static/app.%d.js", base, i), nil)
	case k == 4:
		req, _ = http.NewRequestWithContext(ctx, "PUT", fmt.Sprintf("%s/api/profile/%d", base, c), strings.NewReader(strings.Repeat("p", 2000)))
		req.Header.Set("Expect", "100-continue")
	default:
		req, _ = http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/items?page=%d&q=caf%%C3%%A9+au+lait", base, i), nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("X-Request-Id", fmt.Sprintf("req-%d-%d", c, i))
	}
	req.Header.Set("X-User", fmt.Sprintf("user-%d", c))
	return req
}

// pipelined sends n GETs in one write on a raw connection and reads the n
// responses: net/http's client no longer pipelines.
func pipelined(base string, n int) (int, error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "GET /pipelined/%d HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: pipeliner\r\n\r\n", i)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		return 0, err
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return i, fmt.Errorf("pipelined response %d: %w", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return n, nil
}
