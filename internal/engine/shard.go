package engine

import (
	"hash/maphash"
	"net/netip"
	"sync"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/ratelog"
)

// Shards spreads VXLAN datagrams over n engines, each owned by its own
// goroutine, so that reassembly and extraction use every core. A
// symmetric hash of the flow (outer source and VNI, and both inner
// endpoints in either order) sends both directions of a connection to the
// same engine, whatever the outer UDP ports, so each engine owns its flows
// without locks and a connection's requests keep their order. With Dedup
// the outer source and VNI are left out of the hash, as they are of the
// flow key, so the two mirrored copies of a connection meet in one engine.
//
// The reader copies datagrams into per-shard batches (its receive buffers
// are reused) and hands a batch over when it is full or when the socket
// read that filled it ends (EndBatch). One shard runs inline, with no
// goroutine and no copy: exactly the single-engine handler.
//
// The engines share the counters and the sink: counters are atomic, and
// the sink (the targets) already takes requests from several engines.
type Shards struct {
	engines []*Engine
	work    []chan *batch
	pending []*batch // the reader's batch in progress, per shard
	free    chan *batch
	pkt     decode.Packet // the reader's, to find a datagram's shard
	seed    maphash.Seed
	dedup   bool
	wg      sync.WaitGroup
	flushed bool
}

type batch struct {
	buf   []byte
	items []item
	tick  int64 // after the items, run the timers at this time (0: none)
}

type item struct {
	outer  netip.Addr
	off, n int
	ts     int64
}

// A batch is handed to its shard at this size, or at the end of a read.
const (
	batchBytes = 128 << 10
	batchItems = 256
	// queued batches per shard: the reader waits beyond it, as it would
	// on a single engine busy with a packet (the socket buffer absorbs it)
	shardQueue = 8
)

// NewShards starts n engines (at least one) sharing stats and sink; their
// connection ids are numbered apart from cfg.FirstConnID.
func NewShards(n int, cfg Config, sink Sink, stats *Stats, log *ratelog.Limiter) *Shards {
	n = max(n, 1)
	s := &Shards{engines: ShardEngines(n, cfg, sink, stats, log), seed: maphash.MakeSeed(), dedup: cfg.Dedup,
		free: make(chan *batch, n*(shardQueue+2))}
	if n == 1 {
		return s
	}
	s.pending = make([]*batch, n)
	for _, e := range s.engines {
		ch := make(chan *batch, shardQueue)
		s.work = append(s.work, ch)
		s.wg.Add(1)
		go s.run(e, ch)
	}
	return s
}

// ShardEngines makes n engines (at least one) that share the counters,
// the sink and cfg's bounds, with connection ids numbered apart from
// cfg.FirstConnID. Each is for one goroutine: a shard of Shards, or the
// reader of one socket of a kernel-steered group (capture.ListenGroup).
func ShardEngines(n int, cfg Config, sink Sink, stats *Stats, log *ratelog.Limiter) []*Engine {
	n = max(n, 1)
	engines := make([]*Engine, n)
	for i := range n {
		c := cfg
		c.FirstConnID = cfg.FirstConnID + uint64(i)<<52
		// The flow table's bound is the handler's, shared out: each
		// engine counts its own flows. The out-of-order bytes are counted
		// once for all (Stats.Reassembly.BufferedBytes is shared), so each
		// engine holds them to the handler's whole cap.
		c.Reassembly.MaxFlows = max(1, cfg.Reassembly.MaxFlows/n)
		engines[i] = New(c, sink, stats, log)
	}
	return engines
}

// Len returns the number of engines.
func (s *Shards) Len() int { return len(s.engines) }

// run is a shard's goroutine: it ends when the reader closes its queue,
// after flushing its flows.
func (s *Shards) run(e *Engine, work <-chan *batch) {
	defer s.wg.Done()
	for b := range work {
		for _, it := range b.items {
			e.HandleVXLAN(it.outer, b.buf[it.off:it.off+it.n], it.ts)
		}
		if b.tick != 0 {
			e.Tick(b.tick)
		}
		e.EndBatch()
		s.put(b)
	}
	e.Flush()
}

// HandleVXLAN routes one datagram to its shard. b is only read during the
// call. It is called by the one reader goroutine.
func (s *Shards) HandleVXLAN(outer netip.Addr, b []byte, ts int64) {
	if len(s.engines) == 1 {
		s.engines[0].HandleVXLAN(outer, b, ts)
		return
	}
	i := s.shardOf(outer, b)
	bt := s.pending[i]
	if bt == nil {
		bt = s.get()
		s.pending[i] = bt
	}
	bt.items = append(bt.items, item{outer: outer, off: len(bt.buf), n: len(b), ts: ts})
	bt.buf = append(bt.buf, b...)
	if len(bt.buf) >= batchBytes || len(bt.items) >= batchItems {
		s.send(i)
	}
}

// EndBatch hands every batch in progress to its shard: the reader calls it
// after each socket read, so a datagram never waits for the next one.
func (s *Shards) EndBatch() {
	if len(s.engines) == 1 {
		s.engines[0].EndBatch()
		return
	}
	for i, b := range s.pending {
		if b != nil {
			s.send(i)
		}
	}
}

// Tick runs every shard's timers at time now (no datagram came for a while).
func (s *Shards) Tick(now int64) {
	if len(s.engines) == 1 {
		s.engines[0].Tick(now)
		return
	}
	for i := range s.engines {
		if s.pending[i] == nil {
			s.pending[i] = s.get()
		}
		s.pending[i].tick = now
		s.send(i)
	}
}

// Flush ends every flow of every shard and waits for the shards to stop.
// The Shards take no datagram afterwards; a second Flush does nothing.
func (s *Shards) Flush() {
	if s.flushed {
		return
	}
	s.flushed = true
	if len(s.engines) == 1 {
		s.engines[0].Flush()
		return
	}
	s.EndBatch()
	for _, ch := range s.work {
		close(ch)
	}
	s.wg.Wait()
}

// shardOf hashes a datagram's flow symmetrically. A datagram that does not
// decode goes to shard 0, which counts it.
func (s *Shards) shardOf(outer netip.Addr, b []byte) int {
	p := &s.pkt
	if p.DecodeVXLAN(b) != decode.OK {
		return 0
	}
	var ep [18]byte
	copy(ep[:16], p.Src[:])
	ep[16], ep[17] = byte(p.SrcPrt>>8), byte(p.SrcPrt)
	a := maphash.Bytes(s.seed, ep[:])
	copy(ep[:16], p.Dst[:])
	ep[16], ep[17] = byte(p.DstPrt>>8), byte(p.DstPrt)
	h := a ^ maphash.Bytes(s.seed, ep[:]) // the same either way round
	if !s.dedup {
		var o [20]byte
		o16 := outer.As16()
		copy(o[:16], o16[:])
		o[16], o[17], o[18], o[19] = byte(p.VNI>>24), byte(p.VNI>>16), byte(p.VNI>>8), byte(p.VNI)
		h ^= maphash.Bytes(s.seed, o[:]) * 0x9e3779b97f4a7c15
	}
	return int(h % uint64(len(s.engines)))
}

func (s *Shards) send(i int) {
	s.work[i] <- s.pending[i]
	s.pending[i] = nil
}

// get takes an empty batch; batches are reused because the reader makes
// one per shard per read, and their buffers are large.
func (s *Shards) get() *batch {
	select {
	case b := <-s.free:
		return b
	default:
		return &batch{buf: make([]byte, 0, batchBytes+64<<10), items: make([]item, 0, batchItems)}
	}
}

func (s *Shards) put(b *batch) {
	b.buf, b.items, b.tick = b.buf[:0], b.items[:0], 0
	select {
	case s.free <- b:
	default: // enough spares: let it go
	}
}
