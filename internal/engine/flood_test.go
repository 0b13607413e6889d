package engine

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/reassembly"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// engineWith returns an engine for port 80 with the given reassembly
// options and sink.
func engineWith(t testing.TB, ropts reassembly.Options, sink Sink) (*Engine, *Stats) {
	stats := &Stats{}
	cfg := Config{Ports: []uint16{80}, Reassembly: ropts, HTTP: httpstream.DefaultOptions}
	return New(cfg, sink, stats, ratelog.New(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Minute)), stats
}

var (
	mirror     = netip.MustParseAddr("172.31.0.238")
	httpServer = netip.MustParseAddrPort("10.0.0.2:80")
)

// wire builds VXLAN datagrams into one reused buffer and hands them to an
// engine, as the capture loop does.
type wire struct {
	e     *Engine
	buf   []byte
	frame []byte
	now   int64
}

func (w *wire) send(outer netip.Addr, segs ...synth.Segment) {
	for _, s := range segs {
		w.frame = synth.AppendFrame(w.frame[:0], s)
		w.buf = synth.AppendVXLAN(w.buf[:0], 7, w.frame)
		w.e.HandleVXLAN(outer, w.buf, w.now)
	}
}

// floodSource returns the i-th flooding client and the mirror address it
// comes through: distinct inner sources behind 4096 outer ones.
func floodSource(i int) (netip.Addr, netip.AddrPort) {
	outer := netip.AddrFrom4([4]byte{172, 16, byte(i >> 8 & 0x0f), byte(i)})
	inner := netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
	return outer, netip.AddrPortFrom(inner, uint16(1024+i%60000))
}

func synFrom(c netip.AddrPort, i int) synth.Segment {
	return synth.Segment{Src: c, Dst: httpServer, Seq: uint32(i) * 2654435761, Flags: decode.FlagSYN}
}

// TestEvictedRequestIsCutShort: a connection evicted in the middle of a
// request never has that request replayed, neither at its eviction nor
// when the rest of its bytes come afterwards (picked up mid-stream).
func TestEvictedRequestIsCutShort(t *testing.T) {
	ropts := reassembly.DefaultOptions
	ropts.MaxFlows = 2
	sink := &recordSink{}
	e, st := engineWith(t, ropts, sink)
	w := &wire{e: e, now: 1}
	victim := synth.NewConn(netip.MustParseAddrPort("10.1.0.1:5000"), httpServer, 1, 1)
	w.send(mirror, victim.Handshake()...)
	head, body := "POST /pay HTTP/1.1\r\nHost: shop\r\nContent-Length: 20\r\n\r\n", "amount=100&to=alice&"
	w.send(mirror, victim.ClientData([]byte(head+body[:10]))...)
	// Two other connections with data: the victim is the least recent.
	for i := range 2 {
		c := synth.NewConn(netip.AddrPortFrom(netip.MustParseAddr("10.1.0.2"), uint16(6000+i)), httpServer, 1, 1)
		w.now += int64(time.Millisecond)
		w.send(mirror, c.Handshake()...)
		w.send(mirror, c.ClientData([]byte("GET /ok HTTP/1.1\r\nHost: shop\r\n\r\n"))...)
	}
	if st.Reassembly.FlowsEvicted[reassembly.EvictLRU].Load() != 1 || st.Reassembly.FlowsEnded[reassembly.EndEvicted].Load() != 1 {
		t.Fatalf("evicted %d", st.Reassembly.FlowsEvicted[reassembly.EvictLRU].Load())
	}
	if st.HTTP.Incomplete.Load() != 1 {
		t.Errorf("incomplete = %d, want the evicted POST", st.HTTP.Incomplete.Load())
	}
	// The rest of the body arrives after the eviction.
	w.now += int64(time.Millisecond)
	w.send(mirror, victim.ClientData([]byte(body[10:]))...)
	e.Tick(w.now + int64(time.Second))
	e.Flush()
	for _, r := range sink.reqs {
		if string(r.Method()) != "GET" {
			t.Errorf("replayed %q", r.Raw)
		}
	}
	if len(sink.reqs) != 2 {
		t.Errorf("%d requests, want the 2 GETs", len(sink.reqs))
	}
}

// TestEvictedResponseIsCutShort: with responses paired, a response whose
// body runs to the close is not complete when its connection is evicted:
// the request is reported unanswered, not paired with a truncated answer.
func TestEvictedResponseIsCutShort(t *testing.T) {
	ropts := reassembly.DefaultOptions
	ropts.MaxFlows = 1
	sink := &pairSink{}
	e, _ := engineWith(t, ropts, sink)
	e.rsink, e.cfg.PairResponses = sink, true
	w := &wire{e: e, now: 1}
	c := synth.NewConn(netip.MustParseAddrPort("10.1.0.1:5000"), httpServer, 1, 1)
	w.send(mirror, c.Handshake()...)
	w.send(mirror, c.ClientData([]byte("GET /report HTTP/1.0\r\nHost: shop\r\n\r\n"))...)
	w.send(mirror, c.ServerData([]byte("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst half of the body, "))...)
	w.now += int64(time.Millisecond)
	w.send(mirror, synFrom(netip.MustParseAddrPort("10.1.0.9:7000"), 1)) // evicts c
	if len(sink.pairs) != 1 || sink.pairs[0].resp != nil {
		for _, p := range sink.pairs {
			if p.resp != nil {
				t.Errorf("paired with a cut-short response: %q", p.resp.Raw)
			}
		}
		t.Fatalf("%d pairs, want 1 unanswered", len(sink.pairs))
	}
}

// realConn is one genuine connection sent during or after a flood: its
// segments, and the request it carries.
type realConn struct {
	segs []synth.Segment
	want string
}

// newRealConn returns connection i: handshake, a request (a POST in
// several segments for odd i), the response, an ACK and the close.
func newRealConn(i int) realConn {
	cl := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), uint16(40000+i%20000))
	c := synth.NewConn(cl, httpServer, uint32(i)*7919, uint32(i)*104729)
	req := fmt.Sprintf("GET /items/%d HTTP/1.1\r\nHost: shop\r\nX-Conn: %d\r\n\r\n", i, i)
	if i%2 == 1 {
		body := strings.Repeat(strconv.Itoa(i), 300)
		req = fmt.Sprintf("POST /orders HTTP/1.1\r\nHost: shop\r\nX-Conn: %d\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
		c.MSS = 500
	}
	segs := c.Handshake()
	segs = append(segs, c.ClientData([]byte(req))...)
	segs = append(segs, c.ServerData([]byte("HTTP/1.1 204 No Content\r\n\r\n"))...)
	segs = append(segs, c.ClientACK())
	segs = append(segs, c.Close()...)
	return realConn{segs: segs, want: req}
}

// exact counts the requests among got that are byte for byte the one
// their connection sent (by X-Conn), and fails on any other request.
func exact(t *testing.T, got []*httpstream.Request, conns map[int]realConn) int {
	n := 0
	for _, r := range got {
		i := bytes.Index(r.Raw, []byte("X-Conn: "))
		if i < 0 {
			t.Errorf("a request nobody sent: %q", r.Raw)
			continue
		}
		id, _ := strconv.Atoi(string(r.Raw[i+8 : i+8+bytes.IndexByte(r.Raw[i+8:], '\r')]))
		if c, ok := conns[id]; !ok || string(r.Raw) != c.want {
			t.Errorf("connection %d: extracted %q", id, r.Raw)
			continue
		}
		delete(conns, id) // a second copy would not count
		n++
	}
	return n
}

// TestFloodKeepsRealTraffic sends 200,000 flows from distinct sources
// (through 4096 mirror addresses) in 2 s of packet time, twice the default
// flow table, through the engine with default settings: SYN-only flows, or
// data segments truncated by the mirror, without a handshake. Interleaved
// with it, 1000 real connections each send a packet every 500 us; after
// it, 200 more connect. At least 99% of the first and all of the second
// must have their request extracted exactly. Before eviction, the table
// filled halfway through the flood and stayed full for the idle timeout:
// every later connection was refused.
func TestFloodKeepsRealTraffic(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 16)
	for _, tt := range []struct {
		name  string
		flood func(c netip.AddrPort, i int) synth.Segment
		// evicted is the kind of flow the flood's flows are evicted as;
		// expire, how long until the flood's flows are gone.
		evicted reassembly.EvictReason
		expire  time.Duration
	}{
		{"syn", synFrom, reassembly.EvictNoData, reassembly.DefaultOptions.HandshakeTimeout},
		{"truncated-data", func(c netip.AddrPort, i int) synth.Segment {
			return synth.Segment{Src: c, Dst: httpServer, Seq: uint32(i) * 2654435761, Flags: decode.FlagACK | decode.FlagPSH,
				Payload: payload, Declared: 1400}
		}, reassembly.EvictLRU, reassembly.DefaultOptions.IdleTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testFlood(t, tt.flood, tt.evicted, tt.expire)
		})
	}
}

func testFlood(t *testing.T, flood func(netip.AddrPort, int) synth.Segment, evicted reassembly.EvictReason, expire time.Duration) {
	const (
		floodN  = 200_000
		during  = 1000
		after   = 200
		every   = floodN / during // a real connection starts every 200 flood packets
		spacing = 50              // and sends one packet every 50 flood packets
		tick    = int64(10 * time.Microsecond)
	)
	sink := &recordSink{}
	e, st := engineWith(t, reassembly.DefaultOptions, sink)
	ra := &st.Reassembly
	w := &wire{e: e, now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixNano()}
	reals := make([]realConn, during)
	wantDuring := map[int]realConn{}
	for i := range reals {
		reals[i] = newRealConn(i)
		wantDuring[i] = reals[i]
	}
	deadline := time.Now().Add(60 * time.Second)
	for k := range floodN {
		w.now += tick
		outer, src := floodSource(k)
		w.send(outer, flood(src, k))
		// Real connections whose next packet is due at k.
		for r := k / every; r >= 0 && r > k/every-len(reals[0].segs)*spacing/every-2; r-- {
			if r >= during {
				continue
			}
			off := k - r*every
			if off%spacing == 0 && off/spacing < len(reals[r].segs) {
				w.send(mirror, reals[r].segs[off/spacing])
			}
		}
		if k%10000 == 0 && time.Now().After(deadline) {
			t.Fatalf("flood too slow: %d packets in 60 s", k)
		}
	}
	// Connections still in progress at the end of the flood finish.
	for r := range reals {
		for j := range reals[r].segs {
			if r*every+j*spacing >= floodN {
				w.now += tick
				w.send(mirror, reals[r].segs[j])
			}
		}
	}
	got := exact(t, sink.reqs, wantDuring)
	t.Logf("during the flood: %d of %d requests extracted exactly; flows evicted: %d without data, %d least recent; %d tracked",
		got, during, ra.FlowsEvicted[reassembly.EvictNoData].Load(), ra.FlowsEvicted[reassembly.EvictLRU].Load(), e.Flows())
	if got < during*99/100 {
		t.Errorf("during the flood only %d of %d requests extracted exactly", got, during)
	}
	if ra.FlowsEvicted[evicted].Load() < floodN-uint64(reassembly.DefaultOptions.MaxFlows) {
		t.Errorf("%d flows evicted as %v, the flood alone should have made %d", ra.FlowsEvicted[evicted].Load(), evicted, floodN-reassembly.DefaultOptions.MaxFlows)
	}
	if evicted == reassembly.EvictNoData && ra.FlowsEvicted[reassembly.EvictLRU].Load() != 0 {
		t.Errorf("a SYN flood evicted %d flows that carried data", ra.FlowsEvicted[reassembly.EvictLRU].Load())
	}
	// Just after the flood: the table is still full of its flows.
	sink.reqs = nil
	wantAfter := map[int]realConn{}
	for i := during; i < during+after; i++ {
		c := newRealConn(i)
		wantAfter[i] = c
		for _, s := range c.segs {
			w.now += int64(100 * time.Microsecond)
			w.send(mirror, s)
		}
	}
	if got := exact(t, sink.reqs, wantAfter); got != after {
		t.Errorf("after the flood %d of %d requests extracted exactly", got, after)
	}
	// Once their timeout has passed, the flood's flows are gone.
	e.Tick(w.now + int64(expire) + 1)
	if e.Flows() != 0 || ra.BufferedBytes.Load() != 0 {
		t.Errorf("%d flows, %d bytes buffered after %v", e.Flows(), ra.BufferedBytes.Load(), expire)
	}
}

// rssBytes returns the process's resident set size, or 0 where /proc is
// not available.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// BenchmarkSYNFloodMemory floods an engine with default settings with
// 1,000,000 SYN-only flows (VXLAN bytes, distinct sources), five times,
// the handshake timeout passing between floods. It reports the peak heap
// in use (sampled every 10,000 packets), the live heap with the table full
// (after a GC), the RSS after the first and the last flood (it levels off:
// the memory is reused, not grown), the heap once the flows have expired,
// and the cost per flood packet; the log has the RSS after each flood and
// as the scavenger returns it. Run it with -benchtime 1x.
func BenchmarkSYNFloodMemory(b *testing.B) {
	const flood, floods = 1_000_000, 5
	for b.Loop() {
		e, st := engineWith(b, reassembly.DefaultOptions, &discardSink{})
		w := &wire{e: e, now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixNano()}
		var ms runtime.MemStats
		var peak, live uint64
		rss := make([]uint64, floods)
		start := time.Now()
		for n := range floods {
			for k := range flood {
				w.now += int64(2 * time.Microsecond)
				outer, src := floodSource(k)
				w.send(outer, synFrom(src, k+n*flood))
				if k%10_000 == 0 {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
				}
			}
			rss[n] = rssBytes()
			if n == 0 {
				runtime.GC()
				runtime.ReadMemStats(&ms)
				live = ms.HeapAlloc
			}
			w.now += int64(reassembly.DefaultOptions.HandshakeTimeout) + 1
			e.Tick(w.now)
			if e.Flows() != 0 {
				b.Fatalf("%d flows left after the handshake timeout", e.Flows())
			}
		}
		elapsed := time.Since(start)
		runtime.GC()
		runtime.GC() // the second empties the pools
		runtime.ReadMemStats(&ms)
		rssGC := rssBytes()
		time.Sleep(2 * time.Second) // the background scavenger returns what is not reused
		rssLater := rssBytes()
		mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
		b.ReportMetric(mib(peak), "peak-heap-MiB")
		b.ReportMetric(mib(rss[0]), "rss-first-MiB")
		b.ReportMetric(mib(rss[floods-1]), "rss-last-MiB")
		b.ReportMetric(mib(ms.HeapInuse), "heap-after-MiB")
		b.ReportMetric(mib(live), "live-MiB")
		b.Logf("RSS after each flood (MiB): %v; after the flows expired and a GC %.0f, 2 s later %.0f", rssMiB(rss), mib(rssGC), mib(rssLater))
		b.ReportMetric(float64(elapsed.Nanoseconds())/flood/floods, "ns/pkt")
		if got := st.Reassembly.FlowsOpened.Load(); got != flood*floods {
			b.Fatalf("%d flows opened, want %d", got, flood*floods)
		}
	}
}

func rssMiB(v []uint64) []uint64 {
	out := make([]uint64, len(v))
	for i, x := range v {
		out[i] = x >> 20
	}
	return out
}

// TestSYNFloodFlowsAreCheap: in a full table, a new half-open flow costs
// one allocation, its consumer: the flow struct is reused and the HTTP
// parsers wait for a first byte that a flood never sends. (Before, four.)
func TestSYNFloodFlowsAreCheap(t *testing.T) {
	const table, runs = 100, 1000
	ropts := reassembly.DefaultOptions
	ropts.MaxFlows = table
	e, st := engineWith(t, ropts, &discardSink{})
	pkts := make([][]byte, table+runs+1)
	for i := range pkts {
		_, src := floodSource(i)
		pkts[i] = synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, synFrom(src, i)))
	}
	now := int64(1)
	next := 0
	send := func() {
		now += int64(time.Microsecond)
		e.HandleVXLAN(mirror, pkts[next], now)
		next++
	}
	for range table {
		send()
	}
	allocs := testing.AllocsPerRun(runs, send)
	if e.Flows() != table || st.Reassembly.FlowsEvicted[reassembly.EvictNoData].Load() != runs+1 {
		t.Fatalf("%d flows, %d evicted", e.Flows(), st.Reassembly.FlowsEvicted[reassembly.EvictNoData].Load())
	}
	if allocs > 1.1 {
		t.Errorf("%.2f allocations per new half-open flow, want 1", allocs)
	}
}

// A flood of malformed packets costs a counter each: no allocation and no
// lock shared with the other engines (the warning is the engine's own,
// at most once per interval and reason).
func TestMalformedPacketCostsNoAllocation(t *testing.T) {
	e, stats := engineWith(t, reassembly.DefaultOptions, &recordSink{})
	junk := []byte{0x08, 0, 0, 0, 0, 0, 0x4d, 0, 1, 2, 3} // a VXLAN header, then no Ethernet frame
	e.HandleVXLAN(mirror, junk, 1)                        // the first warning is logged: allowed to allocate
	if allocs := testing.AllocsPerRun(1000, func() { e.HandleVXLAN(mirror, junk, 2) }); allocs != 0 {
		t.Errorf("%v allocations per malformed packet", allocs)
	}
	var n uint64
	for i := range stats.Decode {
		n += stats.Decode[i].Load()
	}
	if n != 1002 {
		t.Errorf("%d counted, want 1002", n)
	}
}
