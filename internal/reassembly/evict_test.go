package reassembly

import (
	"net/netip"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// port returns a client address that differs from client by its port only,
// so every i is a distinct flow to the same server.
func port(i int) netip.AddrPort { return netip.AddrPortFrom(client.Addr(), uint16(20000+i)) }

// dirOf returns the direction in which c's client sends.
func dirOf(c *synth.Conn) Dir {
	_, d := KeyOf([16]byte{}, &decode.Packet{Src: addr16(c.Client), Dst: addr16(c.Server), SrcPrt: c.Client.Port(), DstPrt: c.Server.Port()})
	return d
}

func ends(r *recorder) []EndReason { return r.end }

// TestFullOfHandshakesAdmitsNewData: a table full of handshake-only flows
// (a SYN flood) must not keep a real connection out. The oldest half-open
// flow makes room, and the new connection's bytes are all delivered.
func TestFullOfHandshakesAdmitsNewData(t *testing.T) {
	opts := DefaultOptions
	opts.MaxFlows = 3
	h := newHarness(t, opts)
	for i := range 3 {
		h.feed(synth.Segment{Src: port(i), Dst: server, Seq: uint32(i), Flags: decode.FlagSYN})
	}
	c := synth.NewConn(port(100), server, 1000, 5000)
	h.feed(c.Handshake()...)
	h.feed(split(c, "GET / HTTP/1.1\r\n\r\n", 5)...)
	h.feed(c.Close()...)
	if len(h.f.recs) != 4 {
		t.Fatalf("%d flows made, want 4 (3 SYNs and the real one)", len(h.f.recs))
	}
	real := h.f.recs[3]
	if got := real.out[dirOf(c)].String(); got != "GET / HTTP/1.1\r\n\r\n<fin>" {
		t.Errorf("real connection's stream = %q", got)
	}
	if e := ends(real); len(e) != 1 || e[0] != EndClosed {
		t.Errorf("real connection ended %v", e)
	}
	// The oldest SYN made room; the two younger ones are still tracked.
	if e := ends(h.f.recs[0]); len(e) != 1 || e[0] != EndEvicted {
		t.Errorf("oldest half-open flow ended %v, want evicted", e)
	}
	for _, r := range h.f.recs[1:3] {
		if len(r.end) != 0 {
			t.Errorf("younger half-open flow ended %v", r.end)
		}
	}
	if h.a.Len() != 2 || h.stats.FlowsEvicted[EvictNoData].Load() != 1 || h.stats.FlowsEvicted[EvictLRU].Load() != 0 {
		t.Errorf("flows %d, evicted no-data %d lru %d", h.a.Len(), h.stats.FlowsEvicted[EvictNoData].Load(), h.stats.FlowsEvicted[EvictLRU].Load())
	}
	if h.stats.FlowsRefused.Load() != 0 {
		t.Errorf("refused %d", h.stats.FlowsRefused.Load())
	}
}

// TestFullOfDataEvictsLeastRecent: when every flow has carried data, the
// least recently active one makes room. It ends evicted, with what it held
// delivered behind an explicit gap, and the new flow is tracked.
func TestFullOfDataEvictsLeastRecent(t *testing.T) {
	opts := DefaultOptions
	opts.MaxFlows = 3
	h := newHarness(t, opts)
	conns := make([]*synth.Conn, 3)
	for i := range conns {
		conns[i] = synth.NewConn(port(i), server, 1, 1)
		h.feed(conns[i].Handshake()...)
		h.feed(split(conns[i], "one", 10)...)
	}
	// Flow 1 holds a segment behind a hole; flow 0 is touched again, so
	// flow 1 is now the least recently active.
	segs := split(conns[1], "xxyy", 2)
	h.feed(segs[1])
	h.feed(split(conns[2], "two", 10)...)
	h.feed(split(conns[0], "two", 10)...)

	n := synth.NewConn(port(100), server, 1, 1)
	h.feed(n.Handshake()...)
	h.feed(split(n, "new", 10)...)

	if e := ends(h.f.recs[1]); len(e) != 1 || e[0] != EndEvicted {
		t.Fatalf("least recent flow ended %v, want evicted", e)
	}
	if got := h.f.recs[1].out[dirOf(conns[1])].String(); got != "one<gap 2>yy" {
		t.Errorf("evicted flow's stream = %q", got)
	}
	for _, i := range []int{0, 2} {
		if len(h.f.recs[i].end) != 0 {
			t.Errorf("flow %d ended %v", i, h.f.recs[i].end)
		}
	}
	if got := h.f.recs[3].out[dirOf(n)].String(); got != "new" {
		t.Errorf("new flow's stream = %q", got)
	}
	if h.stats.FlowsEvicted[EvictLRU].Load() != 1 || h.stats.FlowsEvicted[EvictNoData].Load() != 0 || h.a.Len() != 3 {
		t.Errorf("evicted lru %d no-data %d, flows %d", h.stats.FlowsEvicted[EvictLRU].Load(), h.stats.FlowsEvicted[EvictNoData].Load(), h.a.Len())
	}
	if h.stats.BufferedBytes.Load() != 0 {
		t.Errorf("buffered bytes left: %d", h.stats.BufferedBytes.Load())
	}
}

// TestNoDataEvictedBeforeOlderData: a half-open flow goes before a data
// flow even when the data flow has been quiet for longer, once it has been
// quiet for a tenth of the handshake timeout.
func TestNoDataEvictedBeforeOlderData(t *testing.T) {
	opts := DefaultOptions
	opts.MaxFlows = 2
	h := newHarness(t, opts)
	old := synth.NewConn(port(0), server, 1, 1)
	h.feed(old.Handshake()...)
	h.feed(split(old, "data", 10)...)
	h.feed(synth.Segment{Src: port(1), Dst: server, Seq: 7, Flags: decode.FlagSYN})
	h.now += int64(opts.HandshakeTimeout / 10)
	h.feed(synth.Segment{Src: port(2), Dst: server, Seq: 7, Flags: decode.FlagSYN})
	if len(h.f.recs[0].end) != 0 {
		t.Errorf("data flow ended %v", h.f.recs[0].end)
	}
	if e := ends(h.f.recs[1]); len(e) != 1 || e[0] != EndEvicted {
		t.Errorf("half-open flow ended %v, want evicted", e)
	}
}

// TestHandshakeOutlastsDataFlood: under a flood of data segments (new
// flows without a handshake, all carrying data), a real connection's
// handshake is the youngest flow, not the first to go: it keeps its place
// until its request comes, which is delivered from its first byte, not
// picked up mid-stream.
func TestHandshakeOutlastsDataFlood(t *testing.T) {
	opts := DefaultOptions
	opts.MaxFlows = 50
	h := newHarness(t, opts)
	flood := func(from, to int) {
		for i := from; i < to; i++ {
			h.feed(synth.Segment{Src: port(1000 + i), Dst: server, Seq: 1, Flags: decode.FlagACK, Payload: []byte("junk")})
		}
	}
	flood(0, 100)
	c := synth.NewConn(port(1), server, 1, 1)
	hs := c.Handshake()
	for _, s := range hs {
		h.feed(s)
		flood(100, 110) // the flood goes on between the real packets
	}
	h.feed(split(c, "GET / HTTP/1.1\r\n\r\n", 100)...)
	flood(110, 130)
	real := h.f.recs[100]
	if len(real.end) != 0 {
		t.Fatalf("real connection ended %v", real.end)
	}
	if got := real.out[dirOf(c)].String(); got != "GET / HTTP/1.1\r\n\r\n" {
		t.Errorf("real connection's stream = %q", got)
	}
	if h.stats.FlowsEvicted[EvictNoData].Load() != 0 {
		t.Errorf("%d flows without data evicted", h.stats.FlowsEvicted[EvictNoData].Load())
	}
}

// TestRefusedCountsFlows: a bare FIN of a connection not tracked carries
// nothing to deliver, so when the table is full it is refused rather than
// allowed to evict a flow. Its retransmissions and the other side's FIN
// are the same flow: counted once.
func TestRefusedCountsFlows(t *testing.T) {
	opts := DefaultOptions
	opts.MaxFlows = 2
	h := newHarness(t, opts)
	for i := range 2 {
		c := synth.NewConn(port(i), server, 1, 1)
		h.feed(c.Handshake()...)
		h.feed(split(c, "data", 10)...)
	}
	for range 3 {
		h.feed(synth.Segment{Src: port(50), Dst: server, Seq: 9, Flags: decode.FlagFIN | decode.FlagACK})
	}
	h.feed(synth.Segment{Src: server, Dst: port(50), Seq: 99, Flags: decode.FlagFIN | decode.FlagACK})
	h.feed(synth.Segment{Src: port(51), Dst: server, Seq: 9, Flags: decode.FlagFIN | decode.FlagACK})
	h.feed(synth.Segment{Src: port(51), Dst: server, Seq: 9, Flags: decode.FlagFIN | decode.FlagACK})
	if got := h.stats.FlowsRefused.Load(); got != 2 {
		t.Errorf("refused = %d, want 2 (two flows, six packets)", got)
	}
	if h.a.Len() != 2 || len(h.f.recs) != 2 || len(h.f.recs[0].end)+len(h.f.recs[1].end) != 0 {
		t.Errorf("a FIN disturbed the table: %d flows, %d made", h.a.Len(), len(h.f.recs))
	}
	// With room, a bare FIN still opens a flow (the close of a connection
	// picked up late is still a close).
	h.a.Flush()
	h.feed(synth.Segment{Src: port(52), Dst: server, Seq: 9, Flags: decode.FlagFIN | decode.FlagACK})
	if h.a.Len() != 1 {
		t.Errorf("FIN with room: %d flows", h.a.Len())
	}
}

// TestHandshakeTimeout: a flow that never carried data ends after the
// handshake timeout; one that did waits for the idle timeout.
func TestHandshakeTimeout(t *testing.T) {
	opts := DefaultOptions
	opts.HandshakeTimeout = 5 * time.Second
	h := newHarness(t, opts)
	h.feed(synth.Segment{Src: port(0), Dst: server, Seq: 1, Flags: decode.FlagSYN})
	c := synth.NewConn(port(1), server, 1, 1)
	h.feed(c.Handshake()...)
	h.feed(split(c, "data", 10)...)
	h.a.Tick(h.now + int64(4*time.Second))
	if h.a.Len() != 2 {
		t.Fatalf("flows ended before the handshake timeout: %d left", h.a.Len())
	}
	h.a.Tick(h.now + int64(6*time.Second))
	if e := ends(h.f.recs[0]); len(e) != 1 || e[0] != EndIdle || h.a.Len() != 1 {
		t.Errorf("half-open flow ended %v, %d flows left", e, h.a.Len())
	}
	h.a.Tick(h.now + int64(opts.IdleTimeout) - 1)
	if len(h.f.recs[1].end) != 0 {
		t.Errorf("data flow ended early: %v", h.f.recs[1].end)
	}
	h.a.Tick(h.now + int64(opts.IdleTimeout) + 1)
	if e := ends(h.f.recs[1]); len(e) != 1 || e[0] != EndIdle || h.a.Len() != 0 {
		t.Errorf("data flow ended %v, %d flows left", e, h.a.Len())
	}
}

// TestActivityKeepsFlowsAlive: the idle timeout counts from a flow's last
// packet, and a flow's place in the eviction order moves with it.
func TestActivityKeepsFlowsAlive(t *testing.T) {
	opts := DefaultOptions
	opts.IdleTimeout = 10 * time.Second
	h := newHarness(t, opts)
	c := synth.NewConn(port(0), server, 1, 1)
	h.feed(c.Handshake()...)
	for range 5 {
		h.feed(split(c, "x", 10)...)
		h.now += int64(8 * time.Second)
		h.a.Tick(h.now)
	}
	if h.a.Len() != 1 {
		t.Errorf("an active flow expired")
	}
	h.a.Tick(h.now + int64(11*time.Second))
	if h.a.Len() != 0 {
		t.Errorf("an idle flow did not expire")
	}
}

// TestReorderWaitsOfManyFlows: each flow's hole is declared after its own
// reorder wait, in the order the holes began, whatever the number of flows.
func TestReorderWaitsOfManyFlows(t *testing.T) {
	opts := DefaultOptions
	opts.ReorderWait = 100 * time.Millisecond
	h := newHarness(t, opts)
	conns := make([]*synth.Conn, 4)
	for i := range conns {
		conns[i] = synth.NewConn(port(i), server, 1, 1)
		h.feed(conns[i].Handshake()...)
	}
	start := h.now
	for i, c := range conns {
		segs := split(c, "aabb", 2)
		h.now = start + int64(i)*int64(30*time.Millisecond)
		h.feed(segs[1]) // held at start+30ms*i+1ms: the hole is "aa"
	}
	for step := range 5 {
		h.a.Tick(start + int64(95*time.Millisecond) + int64(step)*int64(30*time.Millisecond))
		want := step
		gaps := 0
		for i, c := range conns {
			if got := h.f.recs[i].out[dirOf(c)].String(); got == "<gap 2>bb" {
				gaps++
			} else if got != "" {
				t.Fatalf("flow %d: %q", i, got)
			}
		}
		if gaps != want {
			t.Errorf("step %d: %d holes declared, want %d", step, gaps, want)
		}
	}
}
