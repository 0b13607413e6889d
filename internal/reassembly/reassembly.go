// Package reassembly turns decoded TCP segments into ordered byte streams,
// one flow per connection, both directions in the same flow. It is
// sequence-number based: out-of-order segments are held (bounded) until the
// hole before them fills or a reorder wait expires; retransmissions and
// overlaps are trimmed; bytes that never arrived are reported as gaps, never
// papered over. An Assembler is owned by one goroutine and takes no locks.
//
// The flow table is bounded. When it is full a new flow evicts one: a flow
// that never carried a payload byte (handshake only, half-open: what a SYN
// flood leaves) first, unless it is young (see evict), else the least
// recently active one. Timers cost in
// proportion to the flows that expire, not to the flows that exist: flows
// sit in two lists ordered by last activity (without data, with data), and
// directions holding segments in a third ordered by the start of their
// wait, so a tick looks only at the heads.
package reassembly

import (
	"hash/maphash"
	"slices"
	"sync"
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

// lateSYNWindow is how far before the point where a stream was picked up
// its late SYN may be: the bytes lost before the pickup. A SYN further
// off, or after the pickup point, starts a new stream on a reused port.
const lateSYNWindow = 16 << 20

// UnknownGap is the size reported for a gap whose length is not known: the
// bytes before a stream that was picked up mid-connection.
const UnknownGap = -1

// EndReason says why a flow ended.
type EndReason uint8

const (
	EndClosed  EndReason = iota // FIN in both directions
	EndReset                    // RST
	EndIdle                     // idle timeout (handshake timeout for a flow that never carried data)
	EndFlushed                  // end of input or shutdown
	EndEvicted                  // the table was full: the flow made room for a new one
	NumEndReasons
)

var endNames = [NumEndReasons]string{"closed", "reset", "idle", "flushed", "evicted"}

func (r EndReason) String() string {
	if r < NumEndReasons {
		return endNames[r]
	}
	return "unknown"
}

// EvictReason says which kind of flow made room in a full table.
type EvictReason uint8

const (
	EvictNoData EvictReason = iota // never carried a payload byte: handshake only, half-open
	EvictLRU                       // the least recently active flow, all of them having carried data
	NumEvictReasons
)

var evictNames = [NumEvictReasons]string{"no_data", "lru"}

func (r EvictReason) String() string {
	if r < NumEvictReasons {
		return evictNames[r]
	}
	return "unknown"
}

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
	MaxFlows           int           // flows tracked at once; when full, a new flow evicts one
	MaxBufferedPerFlow int           // out-of-order bytes held per flow
	MaxBufferedTotal   int           // out-of-order bytes held over all flows
	ReorderWait        time.Duration // wait for a hole to fill before declaring a gap
	IdleTimeout        time.Duration // a flow with no packet for this long ends
	// HandshakeTimeout ends a flow that has not carried a payload byte
	// after this long without a packet: a half-open connection or a
	// handshake not followed by a request. Zero, or more than IdleTimeout,
	// means IdleTimeout.
	HandshakeTimeout time.Duration
}

// DefaultOptions are sized for a handler with a few GiB of memory.
var DefaultOptions = Options{
	MaxFlows:           100_000,
	MaxBufferedPerFlow: 4 << 20,
	MaxBufferedTotal:   256 << 20,
	ReorderWait:        200 * time.Millisecond,
	IdleTimeout:        2 * time.Minute,
	HandshakeTimeout:   5 * time.Second,
}

// Stats are the assembler's counters. They are written by the owning
// goroutine and may be read from any.
type Stats struct {
	FlowsOpened  atomic.Uint64
	FlowsEnded   [NumEndReasons]atomic.Uint64
	FlowsEvicted [NumEvictReasons]atomic.Uint64 // ended to make room, by which kind
	// FlowsRefused counts flows not tracked because the table was full
	// and their packet had nothing to deliver (a bare FIN): each flow
	// once, however many of its packets come (within a bounded memory
	// of recent refusals).
	FlowsRefused     atomic.Uint64
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
	// now is the latest time seen, from packets and ticks. It never goes
	// back, so appending at the tail keeps every list in time order even
	// when packet timestamps jitter.
	now     int64
	noData  flowList // flows without a payload byte yet, by last activity
	active  flowList // flows that carried data, by last activity
	waiting heldList // directions holding segments, by when their wait began
	refused refusedSet
	// segments counted since the last Publish
	segments uint64
}

// flow is one connection. It is kept small: a SYN flood fills the table
// with them. The out-of-order state lives apart (held), allocated only
// while a direction holds segments.
type flow struct {
	key        Key
	c          Consumer
	prev, next *flow // in Assembler.noData or Assembler.active
	lastSeen   int64
	half       [2]half
	hasData    bool // a payload byte was seen: the flow is in active
}

type half struct {
	isn     uint32
	next    uint32 // next expected sequence number
	finSeq  uint32
	synced  bool
	synSeen bool
	finSeen bool
	closed  bool
	held    *held // out-of-order segments; nil when there are none
}

// held is what one direction holds ahead of a hole, and its place in the
// assembler's list of reorder waits.
type held struct {
	segs       []segment // sorted by seq
	bytes      int
	since      int64 // when the wait for the first hole began
	f          *flow
	d          Dir
	prev, next *held
}

type segment struct {
	seq     uint32
	data    []byte
	missing int
	fin     bool
	ts      int64 // when it was captured: delivered with it, however late
}

// flowPool and heldPool recycle the structs. Under a flood, flows are
// opened and evicted at the packet rate: reuse keeps allocation and GC
// work flat through it, and a sync.Pool (unlike a free list kept by the
// assembler) lets the GC return the memory once the flood is over. Both
// are zeroed before Put.
var (
	flowPool = sync.Pool{New: func() any { return new(flow) }}
	heldPool = sync.Pool{New: func() any { return new(held) }}
)

// New returns an assembler that makes consumers with f.
func New(opts Options, f Factory, stats *Stats) *Assembler {
	if opts.HandshakeTimeout <= 0 || opts.HandshakeTimeout > opts.IdleTimeout {
		opts.HandshakeTimeout = opts.IdleTimeout
	}
	return &Assembler{opts: opts, factory: f, flows: make(map[Key]*flow), stats: stats, refused: refusedSet{seed: maphash.MakeSeed()}}
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
	a.now = max(a.now, ts)
	k, d := KeyOf(outer, p)
	f := a.flows[k]
	if f == nil {
		// Only a SYN, a FIN or data opens a flow: a bare ACK or an RST for
		// a connection not tracked (or just closed) tells nothing.
		if p.Flags&decode.FlagRST != 0 || len(p.Payload) == 0 && p.Missing == 0 && p.Flags&(decode.FlagSYN|decode.FlagFIN) == 0 {
			return
		}
		if f = a.open(k, d, p); f == nil {
			return
		}
	}
	// Counted locally, published by Publish, Tick and Flush: an atomic add
	// per segment on a counter shared by shards contends for its line.
	if a.segments++; a.segments >= 64 {
		a.Publish()
	}
	a.touch(f, len(p.Payload) > 0)
	if p.Flags&decode.FlagRST != 0 {
		a.end(f, EndReset)
		return
	}
	h := &f.half[d]
	seq := p.Seq
	if p.Flags&decode.FlagSYN != 0 {
		switch {
		case h.synced && h.synSeen && seq == h.isn:
			// A retransmitted SYN: nothing new.
		case h.synced && !h.synSeen && seqDiff(h.isn, seq) > 0 && seqDiff(h.isn, seq) <= lateSYNWindow:
			// The SYN of a stream picked up without it (h.isn holds the
			// pickup point), later than the reorder wait. What lay
			// before the pickup was declared lost: delivering it now
			// would take the stream backwards, and a request seen once
			// could be seen twice.
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
		if h.synced && h.held != nil {
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
	a.checkClosed(f)
}

// open starts tracking flow k, evicting one if the table is full. It
// returns nil when the factory declines the flow or the table has no room
// for it.
func (a *Assembler) open(k Key, d Dir, p *decode.Packet) *flow {
	if len(a.flows) >= a.opts.MaxFlows {
		// Only a new connection (SYN) or bytes to deliver are worth
		// cutting another flow short for. A bare FIN is typically the
		// close of a connection evicted or expired before; letting it
		// evict would cascade.
		worth := p.Flags&decode.FlagSYN != 0 || len(p.Payload) > 0
		if !worth || a.noData.head == nil && a.active.head == nil {
			if a.refused.add(k) {
				a.stats.FlowsRefused.Add(1)
			}
			return nil
		}
	}
	c := a.factory.New(k, d, p)
	if c == nil {
		return nil
	}
	for len(a.flows) >= a.opts.MaxFlows {
		a.evict()
	}
	f := flowPool.Get().(*flow)
	f.key, f.c, f.lastSeen = k, c, a.now
	a.noData.pushBack(f)
	a.flows[k] = f
	a.stats.FlowsOpened.Add(1)
	a.stats.FlowsOpen.Add(1)
	return f
}

// evict ends one flow to make room. A flow that has carried no data goes
// first once it has been quiet for a tenth of the handshake timeout: a
// real connection's first bytes follow its handshake within a round trip,
// so by then it is likely half-open. A younger one goes first only if it
// is also the least recently active: under a flood of data segments (new
// flows that carry data), the handshakes of real connections are the
// youngest flows, and they must last until their first request comes.
// Otherwise the least recently active flow with data goes.
func (a *Assembler) evict() {
	nd, lru := a.noData.head, a.active.head
	if nd != nil && (lru == nil || nd.lastSeen <= lru.lastSeen || a.now-nd.lastSeen >= a.opts.HandshakeTimeout.Nanoseconds()/10) {
		a.stats.FlowsEvicted[EvictNoData].Add(1)
		a.end(nd, EndEvicted)
		return
	}
	a.stats.FlowsEvicted[EvictLRU].Add(1)
	a.end(lru, EndEvicted)
}

// touch records activity on f: it moves to the tail of its list, the
// list of flows with data once it has carried a payload byte.
func (a *Assembler) touch(f *flow, data bool) {
	f.lastSeen = a.now
	a.listOf(f).remove(f)
	f.hasData = f.hasData || data
	a.listOf(f).pushBack(f)
}

func (a *Assembler) listOf(f *flow) *flowList {
	if f.hasData {
		return &a.active
	}
	return &a.noData
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
	w := h.held
	if w == nil {
		w = heldPool.Get().(*held)
		w.f, w.d, w.since = f, d, a.now
		h.held = w
		a.waiting.pushBack(w)
	}
	i, found := slices.BinarySearchFunc(w.segs, seq, func(s segment, seq uint32) int { return seqDiff(s.seq, seq) })
	// A segment at the same place is a duplicate unless it is longer or
	// brings the FIN (a retransmission may add it).
	if found && len(w.segs[i].data)+w.segs[i].missing >= len(data)+missing && (w.segs[i].fin || !fin) {
		a.stats.DuplicateSegs.Add(1)
		return
	}
	s := segment{seq: seq, data: append([]byte(nil), data...), missing: missing, fin: fin, ts: ts}
	if found {
		a.unbuffer(w, len(w.segs[i].data))
		w.segs[i] = s
	} else {
		w.segs = slices.Insert(w.segs, i, s)
	}
	w.bytes += len(data)
	a.stats.BufferedBytes.Add(int64(len(data)))
	if w.bytes > a.opts.MaxBufferedPerFlow || a.stats.BufferedBytes.Load() > int64(a.opts.MaxBufferedTotal) {
		a.stats.ForcedGaps.Add(1)
		a.skipToPending(f, d)
	}
}

func (a *Assembler) unbuffer(w *held, n int) {
	w.bytes -= n
	a.stats.BufferedBytes.Add(-int64(n))
}

// drain delivers held segments that the stream has reached.
func (a *Assembler) drain(f *flow, d Dir) {
	h := &f.half[d]
	w := h.held
	if w == nil {
		return
	}
	n := 0
	for ; n < len(w.segs) && seqDiff(w.segs[n].seq, h.next) <= 0; n++ {
		s := w.segs[n]
		a.unbuffer(w, len(s.data))
		a.deliver(f, d, s.seq, s.data, s.missing, s.fin, s.ts)
	}
	w.segs = slices.Delete(w.segs, 0, n)
	if len(w.segs) == 0 {
		a.release(h)
	}
}

// release returns a direction's empty held state to the pool.
func (a *Assembler) release(h *half) {
	w := h.held
	h.held = nil
	a.waiting.remove(w)
	segs := w.segs[:0]
	clear(segs[:cap(segs)]) // no data kept alive from the pool
	if cap(segs) > 64 {
		segs = nil // do not keep a burst's worth of slots for every flow
	}
	*w = held{segs: segs}
	heldPool.Put(w)
}

// skipToPending declares the hole before the first held segment a gap and
// delivers what follows it. If segments remain behind another hole, that
// hole's wait starts now.
func (a *Assembler) skipToPending(f *flow, d Dir) {
	h := &f.half[d]
	if h.held == nil {
		return
	}
	switch hole := seqDiff(h.held.segs[0].seq, h.next); {
	case !h.synced:
		// Picked up mid-connection: tell the consumer it is not at the
		// start of the stream.
		h.synced = true
		a.stats.MidstreamPickups.Add(1)
		f.c.Gap(d, UnknownGap)
		h.next = h.held.segs[0].seq
		h.isn = h.next // the pickup point, until a SYN says otherwise
	case hole > 0:
		a.gap(f, d, hole)
		h.next = h.held.segs[0].seq
	}
	a.drain(f, d)
	if w := h.held; w != nil {
		w.since = a.now
		a.waiting.remove(w)
		a.waiting.pushBack(w)
	}
}

// flushPending gives up on every hole in direction d.
func (a *Assembler) flushPending(f *flow, d Dir) {
	for f.half[d].held != nil {
		a.skipToPending(f, d)
	}
}

// checkClosed ends f if both directions have finished. f must not be
// used after it.
func (a *Assembler) checkClosed(f *flow) {
	for d := range f.half {
		h := &f.half[d]
		if h.finSeen && !h.closed && seqDiff(h.next, h.finSeq) >= 0 {
			h.closed = true
			f.c.Fin(Dir(d))
		}
	}
	if f.half[0].closed && f.half[1].closed {
		a.end(f, EndClosed)
	}
}

// end delivers what f holds (with gaps declared), tells its consumer and
// forgets it. f goes back to the pool: it must not be used after.
func (a *Assembler) end(f *flow, r EndReason) {
	a.flushPending(f, AToB)
	a.flushPending(f, BToA)
	f.c.End(r)
	a.listOf(f).remove(f)
	delete(a.flows, f.key)
	a.stats.FlowsEnded[r].Add(1)
	a.stats.FlowsOpen.Add(-1)
	*f = flow{}
	flowPool.Put(f)
}

// Tick declares gaps whose reorder wait has passed and ends idle flows. Call
// it regularly with the current time (packet time when reading a file). It
// looks only at the heads of the time-ordered lists: its cost is that of
// the flows and holes that expire, not of the flows tracked.
func (a *Assembler) Tick(now int64) {
	a.now = max(a.now, now)
	now = a.now
	wait := a.opts.ReorderWait.Nanoseconds()
	for w := a.waiting.head; w != nil && now-w.since > wait; w = a.waiting.head {
		f, d := w.f, w.d
		// The first hole has waited long enough. Holes behind it go too
		// while the flow is quiet (no packet for a wait): nothing is on
		// its way to fill them. Otherwise the next hole waits anew.
		a.skipToPending(f, d)
		for f.half[d].held != nil && now-f.lastSeen > wait {
			a.skipToPending(f, d)
		}
		a.checkClosed(f)
	}
	a.expire(&a.noData, a.opts.HandshakeTimeout)
	a.expire(&a.active, a.opts.IdleTimeout)
	a.Publish()
}

// expire ends the flows of l without a packet for longer than timeout.
func (a *Assembler) expire(l *flowList, timeout time.Duration) {
	for f := l.head; f != nil && a.now-f.lastSeen > timeout.Nanoseconds(); f = l.head {
		a.end(f, EndIdle)
	}
}

// Flush ends every flow, delivering what is held with gaps declared.
func (a *Assembler) Flush() {
	for _, l := range []*flowList{&a.noData, &a.active} {
		for l.head != nil {
			a.end(l.head, EndFlushed)
		}
	}
	a.Publish()
}

// Publish adds the segments counted since the last call to Stats.
func (a *Assembler) Publish() {
	if a.segments > 0 {
		a.stats.Segments.Add(a.segments)
		a.segments = 0
	}
}

// Len returns the number of flows tracked.
func (a *Assembler) Len() int { return len(a.flows) }

// flowList is an intrusive doubly-linked list of flows, oldest at head.
type flowList struct{ head, tail *flow }

func (l *flowList) pushBack(f *flow) {
	f.prev, f.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = f
	} else {
		l.head = f
	}
	l.tail = f
}

func (l *flowList) remove(f *flow) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		l.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		l.tail = f.prev
	}
	f.prev, f.next = nil, nil
}

// heldList is the same for held directions.
type heldList struct{ head, tail *held }

func (l *heldList) pushBack(w *held) {
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
}

func (l *heldList) remove(w *held) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
}

// refusedSet remembers recently refused flows by hash, so that a refused
// flow's further packets are not counted again. It is a fixed array:
// a newer refusal that lands in the same slot replaces the older one, which
// is then counted again if it comes back (an overcount, never a miss).
type refusedSet struct {
	seed  maphash.Seed
	slots [1024]uint64
}

// add reports whether k was not among the recent refusals, and records it.
func (s *refusedSet) add(k Key) bool {
	h := maphash.Comparable(s.seed, k) | 1 // never 0, the empty slot
	i := h % uint64(len(s.slots))
	if s.slots[i] == h {
		return false
	}
	s.slots[i] = h
	return true
}
