// Package reassembly turns decoded TCP segments into ordered byte streams,
// one flow per connection, both directions in the same flow. It is
// sequence-number based: out-of-order segments are held (bounded) until the
// hole before them fills or a reorder wait expires; retransmissions and
// overlaps are trimmed; bytes that never arrived are reported as gaps, never
// papered over. An Assembler is owned by one goroutine and takes no locks.
package reassembly

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/decode"
)

// Key identifies a flow. Outer is the mirror's (the VXLAN sender's) address
// and VNI its network id, so that overlapping VPC address ranges mirrored
// from different sources never merge. A/B are the inner endpoints in
// canonical order (A is the lower), so both directions share one key.
type Key struct {
	Outer        [16]byte
	VNI          uint32
	A, B         [16]byte
	APort, BPort uint16
}

// Dir is a direction within a flow.
type Dir uint8

const (
	AToB Dir = 0
	BToA Dir = 1
)

// UnknownGap is the size reported for a gap whose length is not known: the
// bytes before a stream that was picked up mid-connection.
const UnknownGap = -1

// EndReason says why a flow ended.
type EndReason uint8

const (
	EndClosed  EndReason = iota // FIN in both directions
	EndReset                    // RST
	EndIdle                     // idle timeout
	EndFlushed                  // end of input or shutdown
)

// Consumer receives one flow's streams. The byte slices passed to Data are
// only valid during the call.
type Consumer interface {
	Data(d Dir, b []byte, ts int64)
	Gap(d Dir, n int) // n bytes lost; UnknownGap when not known
	Fin(d Dir)        // the direction's sender finished
	End(r EndReason)  // the flow is gone; no more calls follow
}

// Factory makes the consumer for a new flow, or returns nil to leave the
// flow untracked (asked again at its next packet).
type Factory interface {
	New(k Key, d Dir, p *decode.Packet) Consumer
}

// Options bound the assembler's memory and say how long to wait.
type Options struct {
	MaxFlows           int           // flows tracked at once; new ones beyond are refused
	MaxBufferedPerFlow int           // out-of-order bytes held per flow
	MaxBufferedTotal   int           // out-of-order bytes held over all flows
	ReorderWait        time.Duration // wait for a hole to fill before declaring a gap
	IdleTimeout        time.Duration // a flow with no packet for this long ends
}

// DefaultOptions are sized for a handler with a few GiB of memory.
var DefaultOptions = Options{
	MaxFlows:           100_000,
	MaxBufferedPerFlow: 4 << 20,
	MaxBufferedTotal:   256 << 20,
	ReorderWait:        200 * time.Millisecond,
	IdleTimeout:        2 * time.Minute,
}

// Stats are the assembler's counters. They are written by the owning
// goroutine and may be read from any.
type Stats struct {
	FlowsOpened      atomic.Uint64
	FlowsEnded       [4]atomic.Uint64 // by EndReason
	FlowsRefused     atomic.Uint64    // MaxFlows reached
	FlowsOpen        atomic.Int64
	Segments         atomic.Uint64
	DuplicateSegs    atomic.Uint64 // entirely already seen
	OutOfOrderSegs   atomic.Uint64
	Gaps             atomic.Uint64
	GapBytes         atomic.Uint64
	TruncatedSegs    atomic.Uint64 // arrived shorter than their IP length
	ForcedGaps       atomic.Uint64 // a buffer cap forced a gap before ReorderWait
	BufferedBytes    atomic.Int64
	MidstreamPickups atomic.Uint64
}

// Assembler reassembles the flows of one shard.
type Assembler struct {
	opts    Options
	factory Factory
	flows   map[Key]*flow
	stats   *Stats
}

type flow struct {
	c        Consumer
	half     [2]half
	lastSeen int64
}

type half struct {
	synced   bool
	synSeen  bool
	isn      uint32
	next     uint32 // next expected sequence number
	finSeen  bool
	finSeq   uint32
	closed   bool
	pending  []segment // out of order, sorted by seq
	buffered int
	since    int64 // when the oldest pending segment arrived
}

type segment struct {
	seq     uint32
	data    []byte
	missing int
	fin     bool
	ts      int64 // when it was captured: delivered with it, however late
}

// New returns an assembler that makes consumers with f.
func New(opts Options, f Factory, stats *Stats) *Assembler {
	return &Assembler{opts: opts, factory: f, flows: make(map[Key]*flow), stats: stats}
}

// seqDiff returns a-b as a signed distance, correct across wrap-around.
func seqDiff(a, b uint32) int { return int(int32(a - b)) }

// KeyOf returns p's flow key and the direction p travels in.
func KeyOf(outer [16]byte, p *decode.Packet) (Key, Dir) {
	k := Key{Outer: outer, VNI: p.VNI}
	c := slices.Compare(p.Src[:], p.Dst[:])
	if c < 0 || (c == 0 && p.SrcPrt <= p.DstPrt) {
		k.A, k.APort, k.B, k.BPort = p.Src, p.SrcPrt, p.Dst, p.DstPrt
		return k, AToB
	}
	k.A, k.APort, k.B, k.BPort = p.Dst, p.DstPrt, p.Src, p.SrcPrt
	return k, BToA
}

// Assemble feeds one decoded segment, seen at ts (unix nanoseconds).
func (a *Assembler) Assemble(outer [16]byte, p *decode.Packet, ts int64) {
	k, d := KeyOf(outer, p)
	f := a.flows[k]
	if f == nil {
		// Only a SYN, a FIN or data opens a flow: a bare ACK or an RST for
		// a connection not tracked (or just closed) tells nothing.
		if p.Flags&decode.FlagRST != 0 || len(p.Payload) == 0 && p.Missing == 0 && p.Flags&(decode.FlagSYN|decode.FlagFIN) == 0 {
			return
		}
		if len(a.flows) >= a.opts.MaxFlows {
			a.stats.FlowsRefused.Add(1)
			return
		}
		c := a.factory.New(k, d, p)
		if c == nil {
			return
		}
		f = &flow{c: c}
		a.flows[k] = f
		a.stats.FlowsOpened.Add(1)
		a.stats.FlowsOpen.Add(1)
	}
	a.stats.Segments.Add(1)
	f.lastSeen = ts
	if p.Flags&decode.FlagRST != 0 {
		a.end(k, f, EndReset)
		return
	}
	h := &f.half[d]
	seq := p.Seq
	if p.Flags&decode.FlagSYN != 0 {
		switch {
		case h.synced && h.synSeen && seq == h.isn:
			// A retransmitted SYN: nothing new.
		case h.synced:
			// A SYN with another ISN on a synced direction: the port was
			// reused after a missed close. What follows is a new stream.
			a.flushPending(f, d)
			f.c.Gap(d, UnknownGap)
			h.next = seq + 1
		default:
			h.next = seq + 1
		}
		h.synced, h.synSeen, h.isn = true, true, seq
		seq++
	}
	if p.Missing > 0 {
		a.stats.TruncatedSegs.Add(1)
	}
	fin := p.Flags&decode.FlagFIN != 0
	if len(p.Payload) == 0 && p.Missing == 0 && !fin {
		if h.synced && len(h.pending) > 0 {
			a.drain(f, d) // a late SYN may have made held segments deliverable
		}
		return
	}
	// Without a SYN, segments are held like out-of-order ones: the SYN may
	// just be late. If none comes within the reorder wait, the stream is
	// picked up mid-connection at the first byte held.
	if !h.synced || seqDiff(seq, h.next) > 0 {
		a.hold(f, d, seq, p.Payload, p.Missing, fin, ts)
		return
	}
	a.deliver(f, d, seq, p.Payload, p.Missing, fin, ts)
	a.drain(f, d)
	a.checkClosed(k, f)
}

// deliver passes the part of a segment at or before h.next that is new.
func (a *Assembler) deliver(f *flow, d Dir, seq uint32, data []byte, missing int, fin bool, ts int64) {
	h := &f.half[d]
	trim := seqDiff(h.next, seq) // bytes already delivered
	end := seq + uint32(len(data)+missing)
	if seqDiff(end, h.next) <= 0 && len(data)+missing > 0 {
		a.stats.DuplicateSegs.Add(1)
	}
	if trim < len(data) {
		f.c.Data(d, data[trim:], ts)
		h.next += uint32(len(data) - trim)
		trim = 0
	} else {
		trim -= len(data)
	}
	if missing > trim {
		a.gap(f, d, missing-trim)
		h.next += uint32(missing - trim)
	}
	if fin && !h.finSeen {
		h.finSeen, h.finSeq = true, end
	}
}

func (a *Assembler) gap(f *flow, d Dir, n int) {
	a.stats.Gaps.Add(1)
	a.stats.GapBytes.Add(uint64(n))
	f.c.Gap(d, n)
}

// hold buffers an out-of-order segment, forcing a gap if a cap is reached.
func (a *Assembler) hold(f *flow, d Dir, seq uint32, data []byte, missing int, fin bool, ts int64) {
	h := &f.half[d]
	a.stats.OutOfOrderSegs.Add(1)
	if len(h.pending) == 0 {
		h.since = ts
	}
	i, found := slices.BinarySearchFunc(h.pending, seq, func(s segment, seq uint32) int { return seqDiff(s.seq, seq) })
	if found && len(h.pending[i].data)+h.pending[i].missing >= len(data)+missing {
		a.stats.DuplicateSegs.Add(1)
		return
	}
	s := segment{seq: seq, data: append([]byte(nil), data...), missing: missing, fin: fin, ts: ts}
	if found {
		a.unbuffer(h, len(h.pending[i].data))
		h.pending[i] = s
	} else {
		h.pending = slices.Insert(h.pending, i, s)
	}
	h.buffered += len(data)
	a.stats.BufferedBytes.Add(int64(len(data)))
	if h.buffered > a.opts.MaxBufferedPerFlow || a.stats.BufferedBytes.Load() > int64(a.opts.MaxBufferedTotal) {
		a.stats.ForcedGaps.Add(1)
		a.skipToPending(f, d)
	}
}

func (a *Assembler) unbuffer(h *half, n int) {
	h.buffered -= n
	a.stats.BufferedBytes.Add(-int64(n))
}

// drain delivers held segments that the stream has reached.
func (a *Assembler) drain(f *flow, d Dir) {
	h := &f.half[d]
	for len(h.pending) > 0 && seqDiff(h.pending[0].seq, h.next) <= 0 {
		s := h.pending[0]
		h.pending[0] = segment{}
		h.pending = h.pending[1:]
		a.unbuffer(h, len(s.data))
		a.deliver(f, d, s.seq, s.data, s.missing, s.fin, s.ts)
	}
	if len(h.pending) == 0 {
		h.pending = nil
	}
}

// skipToPending declares the hole before the first held segment a gap and
// delivers what follows it.
func (a *Assembler) skipToPending(f *flow, d Dir) {
	h := &f.half[d]
	if len(h.pending) == 0 {
		return
	}
	switch hole := seqDiff(h.pending[0].seq, h.next); {
	case !h.synced:
		// Picked up mid-connection: tell the consumer it is not at the
		// start of the stream.
		h.synced = true
		a.stats.MidstreamPickups.Add(1)
		f.c.Gap(d, UnknownGap)
		h.next = h.pending[0].seq
	case hole > 0:
		a.gap(f, d, hole)
		h.next = h.pending[0].seq
	}
	a.drain(f, d)
	if len(h.pending) > 0 {
		h.since = f.lastSeen
	}
}

// flushPending gives up on every hole in direction d.
func (a *Assembler) flushPending(f *flow, d Dir) {
	for len(f.half[d].pending) > 0 {
		a.skipToPending(f, d)
	}
}

func (a *Assembler) checkClosed(k Key, f *flow) {
	for d := range f.half {
		h := &f.half[d]
		if h.finSeen && !h.closed && seqDiff(h.next, h.finSeq) >= 0 {
			h.closed = true
			f.c.Fin(Dir(d))
		}
	}
	if f.half[0].closed && f.half[1].closed {
		a.end(k, f, EndClosed)
	}
}

func (a *Assembler) end(k Key, f *flow, r EndReason) {
	a.flushPending(f, AToB)
	a.flushPending(f, BToA)
	f.c.End(r)
	delete(a.flows, k)
	a.stats.FlowsEnded[r].Add(1)
	a.stats.FlowsOpen.Add(-1)
}

// Tick declares gaps whose reorder wait has passed and ends idle flows. Call
// it regularly with the current time (packet time when reading a file).
func (a *Assembler) Tick(now int64) {
	wait, idle := a.opts.ReorderWait.Nanoseconds(), a.opts.IdleTimeout.Nanoseconds()
	for k, f := range a.flows {
		if now-f.lastSeen > idle {
			a.end(k, f, EndIdle)
			continue
		}
		for d := range f.half {
			h := &f.half[d]
			for len(h.pending) > 0 && now-h.since > wait {
				a.skipToPending(f, Dir(d))
			}
		}
		a.checkClosed(k, f)
	}
}

// Flush ends every flow, delivering what is held with gaps declared.
func (a *Assembler) Flush() {
	for k, f := range a.flows {
		a.end(k, f, EndFlushed)
	}
}

// Len returns the number of flows tracked.
func (a *Assembler) Len() int { return len(a.flows) }
