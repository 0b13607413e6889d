package reassembly

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// recorder writes what a consumer sees as text: data as-is, a gap as
// "<gap N>", a FIN as "<fin>", the end as "<end R>".
type recorder struct {
	out [2]strings.Builder
	end []EndReason
}

func (r *recorder) Data(d Dir, b []byte, ts int64) { r.out[d].Write(b) }
func (r *recorder) Gap(d Dir, n int)               { fmt.Fprintf(&r.out[d], "<gap %d>", n) }
func (r *recorder) Fin(d Dir)                      { r.out[d].WriteString("<fin>") }
func (r *recorder) End(e EndReason)                { r.end = append(r.end, e) }

type factory struct{ recs []*recorder }

func (f *factory) New(Key, Dir, *decode.Packet) Consumer {
	r := &recorder{}
	f.recs = append(f.recs, r)
	return r
}

var (
	client = netip.MustParseAddrPort("10.0.0.1:40000")
	server = netip.MustParseAddrPort("10.0.0.2:80")
)

type harness struct {
	t     *testing.T
	f     *factory
	a     *Assembler
	stats Stats
	now   int64
}

func newHarness(t *testing.T, opts Options) *harness {
	h := &harness{t: t, f: &factory{}}
	h.a = New(opts, h.f, &h.stats)
	return h
}

func (h *harness) feed(segs ...synth.Segment) {
	for _, s := range segs {
		var p decode.Packet
		frame := synth.AppendFrame(nil, s) // shorter than its IP length when s.Declared is set
		if r := p.DecodeEthernet(frame); r != decode.OK {
			h.t.Fatalf("decode: %v", r)
		}
		h.now += int64(time.Millisecond)
		h.a.Assemble([16]byte{}, &p, h.now)
	}
}

// clientStream returns what the only flow's client direction produced.
func (h *harness) clientStream() string {
	if len(h.f.recs) != 1 {
		h.t.Fatalf("%d flows, want 1", len(h.f.recs))
	}
	_, d := KeyOf([16]byte{}, &decode.Packet{Src: addr16(client), Dst: addr16(server), SrcPrt: client.Port(), DstPrt: server.Port()})
	return h.f.recs[0].out[d].String()
}

func addr16(ap netip.AddrPort) [16]byte { return ap.Addr().As16() }

func split(c *synth.Conn, s string, mss int) []synth.Segment {
	c.MSS = mss
	return c.ClientData([]byte(s))
}

func TestInOrderAndClose(t *testing.T) {
	h := newHarness(t, DefaultOptions)
	c := synth.NewConn(client, server, 1000, 5000)
	h.feed(c.Handshake()...)
	h.feed(split(c, "hello world", 4)...)
	h.feed(c.Close()...)
	if got := h.clientStream(); got != "hello world<fin>" {
		t.Errorf("stream = %q", got)
	}
	if r := h.f.recs[0].end; len(r) != 1 || r[0] != EndClosed {
		t.Errorf("end = %v", r)
	}
	if h.a.Len() != 0 || h.stats.FlowsOpen.Load() != 0 {
		t.Errorf("flow not removed")
	}
}

func TestReorderDuplicateOverlapWrap(t *testing.T) {
	h := newHarness(t, DefaultOptions)
	// ISN close to 2^32 so the data wraps around.
	c := synth.NewConn(client, server, 0xffff_fff8, 5000)
	h.feed(c.Handshake()...)
	segs := split(c, "abcdefghijklmnopqrstuvwxyz", 5)
	// Overlapping retransmission: bytes 3..12 in one segment.
	overlap := segs[0]
	overlap.Payload = []byte("defghijklm")
	overlap.Seq = segs[0].Seq + 3
	h.feed(segs[2], segs[1], segs[1], overlap, segs[0], segs[4], segs[3], segs[5], segs[0])
	if got := h.clientStream(); got != "abcdefghijklmnopqrstuvwxyz" {
		t.Errorf("stream = %q", got)
	}
	if h.stats.DuplicateSegs.Load() < 2 || h.stats.OutOfOrderSegs.Load() == 0 {
		t.Errorf("dups %d ooo %d", h.stats.DuplicateSegs.Load(), h.stats.OutOfOrderSegs.Load())
	}
	if h.stats.BufferedBytes.Load() != 0 {
		t.Errorf("buffered bytes left: %d", h.stats.BufferedBytes.Load())
	}
}

func TestGapAfterReorderWait(t *testing.T) {
	opts := DefaultOptions
	opts.ReorderWait = 50 * time.Millisecond
	h := newHarness(t, opts)
	c := synth.NewConn(client, server, 1, 1)
	h.feed(c.Handshake()...)
	segs := split(c, "aaaabbbbcccc", 4)
	h.feed(segs[0], segs[2])
	h.a.Tick(h.now + int64(10*time.Millisecond))
	if got := h.clientStream(); got != "aaaa" {
		t.Fatalf("before wait: %q", got)
	}
	h.a.Tick(h.now + int64(60*time.Millisecond))
	if got := h.clientStream(); got != "aaaa<gap 4>cccc" {
		t.Errorf("after wait: %q", got)
	}
	// The late segment is now a duplicate and must not reappear.
	h.feed(segs[1])
	if got := h.clientStream(); got != "aaaa<gap 4>cccc" {
		t.Errorf("late segment delivered: %q", got)
	}
}

func TestTruncatedSegmentIsGap(t *testing.T) {
	h := newHarness(t, DefaultOptions)
	c := synth.NewConn(client, server, 1, 1)
	h.feed(c.Handshake()...)
	segs := split(c, "0123456789ABCDEF", 8)
	cut := segs[0]
	cut.Declared, cut.Payload = 8, cut.Payload[:3]
	h.feed(cut, segs[1])
	if got := h.clientStream(); got != "012<gap 5>89ABCDEF" {
		t.Errorf("stream = %q", got)
	}
	if h.stats.TruncatedSegs.Load() != 1 {
		t.Errorf("truncated = %d", h.stats.TruncatedSegs.Load())
	}
}

func TestMidstreamPickup(t *testing.T) {
	h := newHarness(t, DefaultOptions)
	c := synth.NewConn(client, server, 77, 1)
	c.Handshake() // not fed: the handler started after the connection
	h.feed(split(c, "xyz", 10)...)
	if got := h.clientStream(); got != "" {
		t.Errorf("picked up before the reorder wait: %q", got)
	}
	h.a.Tick(h.now + int64(DefaultOptions.ReorderWait) + 1)
	if got := h.clientStream(); got != "<gap -1>xyz" {
		t.Errorf("stream = %q", got)
	}
}

func TestLateSYN(t *testing.T) {
	h := newHarness(t, DefaultOptions)
	c := synth.NewConn(client, server, 77, 1)
	hs := c.Handshake()
	data := split(c, "hello world", 3)
	// Data overtakes the handshake: nothing may be lost.
	h.feed(data[1], data[2], data[0])
	h.feed(hs...)
	h.feed(data[3])
	h.a.Tick(h.now + int64(DefaultOptions.ReorderWait) + 1)
	if got := h.clientStream(); got != "hello world" {
		t.Errorf("stream = %q", got)
	}
	if h.stats.MidstreamPickups.Load() != 0 || h.stats.Gaps.Load() != 0 {
		t.Errorf("pickups %d gaps %d", h.stats.MidstreamPickups.Load(), h.stats.Gaps.Load())
	}
}

func TestResetAndIdle(t *testing.T) {
	h := newHarness(t, DefaultOptions)
	c := synth.NewConn(client, server, 1, 1)
	h.feed(c.Handshake()...)
	h.feed(synth.Segment{Src: client, Dst: server, Seq: 2, Flags: decode.FlagRST})
	if r := h.f.recs[0].end; len(r) != 1 || r[0] != EndReset {
		t.Errorf("end = %v", r)
	}
	c2 := synth.NewConn(netip.MustParseAddrPort("10.0.0.9:1234"), server, 1, 1)
	h.feed(c2.Handshake()...)
	h.a.Tick(h.now + int64(DefaultOptions.IdleTimeout) + 1)
	if r := h.f.recs[1].end; len(r) != 1 || r[0] != EndIdle {
		t.Errorf("idle end = %v", r)
	}
}

func TestCaps(t *testing.T) {
	opts := DefaultOptions
	opts.MaxFlows = 2
	opts.MaxBufferedPerFlow = 10
	h := newHarness(t, opts)
	for i := range 3 {
		c := synth.NewConn(netip.AddrPortFrom(client.Addr(), uint16(1000+i)), server, 1, 1)
		h.feed(c.Handshake()...)
	}
	// The third handshake made room by evicting the first.
	if h.a.Len() != 2 || h.stats.FlowsEvicted[EvictNoData].Load() != 1 || h.stats.FlowsRefused.Load() != 0 {
		t.Errorf("flows %d evicted %d refused %d", h.a.Len(), h.stats.FlowsEvicted[EvictNoData].Load(), h.stats.FlowsRefused.Load())
	}
	// Hold more than 10 bytes behind a hole: a gap is forced at once.
	c := synth.NewConn(netip.AddrPortFrom(client.Addr(), 1002), server, 1, 1)
	c.Handshake()
	segs := split(c, "aaaaaaaabbbbbbbbcccccccc", 8)
	h.feed(segs[1], segs[2])
	if h.stats.ForcedGaps.Load() != 1 || h.stats.BufferedBytes.Load() != 0 {
		t.Errorf("forced %d buffered %d", h.stats.ForcedGaps.Load(), h.stats.BufferedBytes.Load())
	}
	if got := h.f.recs[2].out[dirOf(c)].String(); got != "<gap 8>bbbbbbbbcccccccc" {
		t.Errorf("stream = %q", got)
	}
}

type tsRecorder struct {
	recorder
	ts []int64
}

func (r *tsRecorder) Data(d Dir, b []byte, ts int64) {
	r.recorder.Data(d, b, ts)
	r.ts = append(r.ts, ts)
}

type tsFactory struct{ r *tsRecorder }

func (f *tsFactory) New(Key, Dir, *decode.Packet) Consumer { return f.r }

// TestHeldSegmentsKeepTheirTime: a segment delivered after waiting for a
// hole carries the time it was captured, not the time of delivery.
func TestHeldSegmentsKeepTheirTime(t *testing.T) {
	var st Stats
	rec := &tsRecorder{}
	a := New(DefaultOptions, &tsFactory{rec}, &st)
	c := synth.NewConn(client, server, 1, 1)
	feed := func(s synth.Segment, ts int64) {
		var p decode.Packet
		p.DecodeEthernet(synth.AppendFrame(nil, s))
		a.Assemble([16]byte{}, &p, ts)
	}
	for _, s := range c.Handshake() {
		feed(s, 1)
	}
	segs := split(c, "aaaabbbb", 4)
	feed(segs[1], 100) // held
	feed(segs[0], 500) // fills the hole: both delivered now
	if len(rec.ts) != 2 || rec.ts[0] != 500 || rec.ts[1] != 100 {
		t.Errorf("delivery times %v, want [500 100]", rec.ts)
	}
}

// TestVeryLateSYNDoesNotRewind: a stream picked up without its SYN (the
// SYN later than the reorder wait) stays where it is when the SYN comes:
// the bytes before the pickup were declared lost, and delivering their
// retransmission would deliver what follows them a second time.
func TestVeryLateSYNDoesNotRewind(t *testing.T) {
	h := newHarness(t, DefaultOptions)
	c := synth.NewConn(client, server, 77, 1)
	hs := c.Handshake()
	data := split(c, "GET /a HTTP/1.1\r\n\r\n", 6)
	h.feed(data[1:]...)
	h.a.Tick(h.now + int64(DefaultOptions.ReorderWait) + 1)
	h.feed(hs...)
	h.feed(data...) // retransmitted
	h.a.Tick(h.now + int64(DefaultOptions.ReorderWait) + 1)
	if got := h.clientStream(); got != "<gap -1> HTTP/1.1\r\n\r\n" {
		t.Errorf("stream = %q", got)
	}
	// A SYN after the pickup point is a new connection on the same port.
	h.feed(synth.Segment{Src: client, Dst: server, Seq: 1 << 20, Flags: decode.FlagSYN})
	h.feed(synth.Segment{Src: client, Dst: server, Seq: 1<<20 + 1, Flags: decode.FlagACK, Payload: []byte("new")})
	if got := h.clientStream(); got != "<gap -1> HTTP/1.1\r\n\r\n<gap -1>new" {
		t.Errorf("after a new SYN: %q", got)
	}
}

// TestHeldRetransmissionAddsFIN: a segment held behind a hole, then sent
// again with the FIN set, brings the FIN; it is not a duplicate. (Found by
// FuzzReassembly.)
func TestHeldRetransmissionAddsFIN(t *testing.T) {
	h := newHarness(t, DefaultOptions)
	c := synth.NewConn(client, server, 1, 1)
	h.feed(c.Handshake()...)
	segs := split(c, "aaaabbbb", 4)
	fin := segs[1]
	fin.Flags |= decode.FlagFIN
	h.feed(segs[1], fin, segs[0])
	if got := h.clientStream(); got != "aaaabbbb<fin>" {
		t.Errorf("stream = %q", got)
	}
}
