// Package engine wires the capture-side stages for one shard: decode,
// reassembly and HTTP request extraction. It is owned by one goroutine; the
// requests it extracts go to a Sink (the targets, which filter and sample).
package engine

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/reassembly"
)

// Sink takes the extracted requests; it must not block.
type Sink interface {
	Submit(conn uint64, r *httpstream.Request)
	EndConn(conn uint64)
}

// ResponseSink, when the sink implements it and Config.PairResponses is
// set, receives production's response for every request submitted, once,
// after it: resp is nil when the response was not seen (lost to a gap,
// not mirrored, the connection ended first).
type ResponseSink interface {
	Response(conn uint64, req *httpstream.Request, resp *httpstream.Response)
}

// maxPending bounds the requests of one connection awaiting a response.
const maxPending = 1024

// Config selects what the engine tracks.
type Config struct {
	Ports      []uint16 // server ports whose requests are extracted
	VNIs       []uint32 // allowed VNIs; empty means any
	Reassembly reassembly.Options
	HTTP       httpstream.Options
	TickEvery  time.Duration // how often timers run (packet time)
	// Dedup keys flows by the inner 5-tuple alone, so the two copies of a
	// connection mirrored from both ends (two sessions, two outer sources,
	// perhaps two VNIs) merge and each request is extracted once.
	Dedup bool
	// PairResponses parses the server's direction too and pairs each
	// response with its request (recording, inspection, comparison).
	PairResponses bool
	// FirstConnID numbers this engine's connections from it, so that two
	// engines feeding one sink (VXLAN and Geneve) never share an id.
	FirstConnID uint64
	// AllPorts treats every TCP connection as a possible HTTP one (for
	// inspecting a capture): the server is the side that answered the
	// SYN, or the lower port. Connections that are not HTTP stop parsing.
	AllPorts bool
}

// Stats count packets and requests at the engine.
type Stats struct {
	Datagrams   atomic.Uint64
	Bytes       atomic.Uint64
	Decode      [decode.NumReasons]atomic.Uint64
	VNIFiltered atomic.Uint64
	Paired      atomic.Uint64 // requests paired with production's response
	NoResponse  atomic.Uint64 // requests whose response was not seen
	Unmatched   atomic.Uint64 // responses without a request waiting

	Reassembly reassembly.Stats
	HTTP       httpstream.Stats
	Responses  httpstream.ResponseStats
}

// Engine processes the packets of one shard.
type Engine struct {
	cfg      Config
	ports    [65536 / 64]uint64 // bit set of server ports
	vnis     map[uint32]bool
	asm      *reassembly.Assembler
	sink     Sink
	rsink    ResponseSink // nil: responses are not parsed
	stats    *Stats
	log      *ratelog.Limiter
	warned   [decode.NumReasons]int64 // when this engine last warned of each reason, unix ns
	pkt      decode.Packet
	nextID   uint64
	lastTick int64
	// Per-datagram counts, added to the shared counters every
	// publishEvery datagrams and at every batch end, tick and flush:
	// shards adding to the same atomic counters for every datagram fight
	// over their cache line (BenchmarkSteeredShards -cpu 1,2 on an idle
	// 2-core machine: 1.80x one shard with an add per datagram, 1.88x
	// without).
	unpublished struct{ datagrams, bytes uint64 }
}

// publishEvery bounds how stale the per-datagram counters may be.
const publishEvery = 64

// New returns an engine.
func New(cfg Config, sink Sink, stats *Stats, log *ratelog.Limiter) *Engine {
	e := &Engine{cfg: cfg, sink: sink, stats: stats, log: log, nextID: cfg.FirstConnID}
	if rs, ok := sink.(ResponseSink); ok && cfg.PairResponses {
		e.rsink = rs
	}
	for _, p := range cfg.Ports {
		e.ports[p/64] |= 1 << (p % 64)
	}
	if len(cfg.VNIs) > 0 {
		e.vnis = make(map[uint32]bool)
		for _, v := range cfg.VNIs {
			e.vnis[v] = true
		}
	}
	if e.cfg.TickEvery <= 0 {
		e.cfg.TickEvery = 50 * time.Millisecond
	}
	e.asm = reassembly.New(cfg.Reassembly, (*factory)(e), &stats.Reassembly)
	return e
}

func (e *Engine) isPort(p uint16) bool { return e.cfg.AllPorts || e.ports[p/64]&(1<<(p%64)) != 0 }

// HandleVXLAN processes one VXLAN datagram from outer, seen at ts (unix ns).
// b is only read during the call.
func (e *Engine) HandleVXLAN(outer netip.Addr, b []byte, ts int64) {
	e.count(len(b))
	e.tunnel(outer, e.pkt.DecodeVXLAN(b), ts)
}

// HandleGeneve processes one Geneve datagram from outer, seen at ts.
func (e *Engine) HandleGeneve(outer netip.Addr, b []byte, ts int64) {
	e.count(len(b))
	e.tunnel(outer, e.pkt.DecodeGeneve(b), ts)
}

// HandleFrame processes one Ethernet frame that was not encapsulated.
func (e *Engine) HandleFrame(b []byte, ts int64) {
	e.count(len(b))
	e.plain(e.pkt.DecodeEthernet(b), ts)
}

// HandleIP processes one raw IP packet that was not encapsulated.
func (e *Engine) HandleIP(b []byte, ts int64) {
	e.count(len(b))
	e.plain(e.pkt.DecodeIP(b), ts)
}

// tunnel assembles a decapsulated packet (decoded with result r), keyed by
// its tunnel's sender and network id, or with Dedup by the inner 5-tuple
// alone.
func (e *Engine) tunnel(outer netip.Addr, r decode.Reason, ts int64) {
	p := &e.pkt
	if r != decode.OK {
		e.dropped(r, outer)
		return
	}
	if e.vnis != nil && !e.vnis[p.VNI] {
		e.stats.VNIFiltered.Add(1)
		return
	}
	key := outer.As16()
	if e.cfg.Dedup {
		key, p.VNI = [16]byte{}, 0
	}
	e.asm.Assemble(key, p, ts)
	e.maybeTick(ts)
}

// plain assembles a packet that came without a tunnel.
func (e *Engine) plain(r decode.Reason, ts int64) {
	if r != decode.OK {
		e.dropped(r, netip.Addr{})
		return
	}
	e.asm.Assemble([16]byte{}, &e.pkt, ts)
	e.maybeTick(ts)
}

func (e *Engine) count(n int) {
	e.unpublished.datagrams++
	e.unpublished.bytes += uint64(n)
	if e.unpublished.datagrams >= publishEvery {
		e.publish()
	}
}

// publish adds the counts kept locally to the shared counters.
func (e *Engine) publish() {
	if u := &e.unpublished; u.datagrams > 0 {
		e.stats.Datagrams.Add(u.datagrams)
		e.stats.Bytes.Add(u.bytes)
		u.datagrams, u.bytes = 0, 0
	}
	e.asm.Publish()
}

// EndBatch publishes the counters after the datagrams of one socket read.
func (e *Engine) EndBatch() { e.publish() }

// dropped counts a packet that did not decode. A flood of them costs a
// counter each: whether a warning is due is the engine's own clock (one
// goroutine's: no lock, no allocation), and only a due one reaches the
// shared limiter.
func (e *Engine) dropped(r decode.Reason, outer netip.Addr) {
	e.stats.Decode[r].Add(1)
	if r == decode.NotIP || r == decode.NotTCP || r >= decode.NumReasons {
		return
	}
	now := time.Now().UnixNano()
	if last := e.warned[r]; last != 0 && now-last < int64(decodeWarnEvery) {
		return
	}
	e.warned[r] = now
	e.log.Warn(decodeKinds[r], "dropped a malformed mirrored packet", "from", outer, "reason", r.String())
}

// decodeWarnEvery is how often an engine warns of one reason at most.
const decodeWarnEvery = 10 * time.Second

// decodeKinds are the warnings' kinds, made once.
var decodeKinds = func() (k [decode.NumReasons]string) {
	for r := range k {
		k[r] = "decode_" + decode.Reason(r).String()
	}
	return k
}()

func (e *Engine) maybeTick(ts int64) {
	if ts-e.lastTick >= e.cfg.TickEvery.Nanoseconds() {
		e.Tick(ts)
	}
}

// Tick runs the timers (reorder waits, idle flows) at time now.
func (e *Engine) Tick(now int64) {
	e.lastTick = now
	e.asm.Tick(now)
	e.publish()
}

// Flush ends every flow (end of a capture file, or shutdown).
func (e *Engine) Flush() {
	e.asm.Flush()
	e.publish()
}

// Flows returns the number of flows tracked.
func (e *Engine) Flows() int { return e.asm.Len() }

// factory makes a flow consumer for connections to a server port.
type factory Engine

func (f *factory) New(k reassembly.Key, d reassembly.Dir, p *decode.Packet) reassembly.Consumer {
	e := (*Engine)(f)
	// Which side is the server: the one that answered a SYN, else the one
	// on a server port (the destination when both are).
	var serverIsDst bool
	switch {
	case p.Flags&(decode.FlagSYN|decode.FlagACK) == decode.FlagSYN|decode.FlagACK:
		serverIsDst = false
	case e.cfg.AllPorts:
		serverIsDst = p.Flags&decode.FlagSYN != 0 || p.DstPrt <= p.SrcPrt
	case e.isPort(p.DstPrt):
		serverIsDst = true
	case e.isPort(p.SrcPrt):
		serverIsDst = false
	default:
		return nil
	}
	if !serverIsDst && !e.isPort(p.SrcPrt) {
		return nil
	}
	e.nextID++
	hf := &httpFlow{e: e, id: e.nextID}
	hf.client, hf.server = p.SrcAddr(), p.DstAddr()
	hf.clientDir = d
	if !serverIsDst {
		hf.client, hf.server = hf.server, hf.client
		hf.clientDir = 1 - d
	}
	return hf
}

// httpFlow extracts the requests of one connection and, when asked, the
// responses, pairing them in order.
type httpFlow struct {
	e              *Engine
	id             uint64
	clientDir      reassembly.Dir
	client, server netip.AddrPort
	// The parsers are made at their direction's first byte (requests,
	// responses): they are most of a flow's memory, and the flows of a
	// SYN flood never carry a byte.
	parser  *httpstream.Parser
	resp    *httpstream.ResponseParser // nil until the server's first byte, or unless pairing
	pending []*httpstream.Request      // submitted, awaiting a response
	// skip counts responses still to come for requests dropped from a
	// full pending list: they are discarded so that pairing stays aligned.
	skip int
}

// requests returns the request parser, made at the first call.
func (h *httpFlow) requests() *httpstream.Parser {
	if h.parser == nil {
		e := h.e
		h.parser = httpstream.NewParser(e.cfg.HTTP, &e.stats.HTTP, h.emit)
		h.parser.Report = func(reason string) {
			e.log.Warn("http_"+reason, "stopped parsing a connection", "reason", reason,
				"client", h.client.String(), "server", h.server.String())
		}
	}
	return h.parser
}

// responses returns the response parser, made at the first call; nil
// unless pairing.
func (h *httpFlow) responses() *httpstream.ResponseParser {
	if h.resp == nil && h.e.rsink != nil {
		e := h.e
		h.resp = httpstream.NewResponseParser(e.cfg.HTTP, &e.stats.Responses, &e.stats.HTTP, h.nextIsHead, h.response)
	}
	return h.resp
}

func (h *httpFlow) Data(d reassembly.Dir, b []byte, ts int64) {
	if d == h.clientDir {
		h.requests().Feed(b, ts)
	} else if r := h.responses(); r != nil {
		r.Feed(b, ts)
	}
}

func (h *httpFlow) Gap(d reassembly.Dir, n int) {
	if d == h.clientDir {
		h.requests().Gap(n)
	} else if r := h.responses(); r != nil {
		r.Gap(n)
	}
}

// Fin and End leave a parser never made unmade: it would have nothing to
// end.
func (h *httpFlow) Fin(d reassembly.Dir) {
	if d == h.clientDir {
		if h.parser != nil {
			h.parser.End()
		}
	} else if h.resp != nil {
		h.resp.End() // a body delimited by the close ends here
	}
}

func (h *httpFlow) End(r reassembly.EndReason) {
	if h.parser != nil {
		h.parser.End() // a request in progress is counted incomplete, never emitted
	}
	if h.resp != nil && r == reassembly.EndEvicted {
		// The connection did not close: a body running to the close was
		// cut short, not completed.
		h.resp.Gap(reassembly.UnknownGap)
	}
	if h.resp != nil {
		h.resp.End()
	}
	if h.e.rsink != nil {
		h.lost(len(h.pending))
	}
	h.e.sink.EndConn(h.id)
}

func (h *httpFlow) emit(r *httpstream.Request) {
	r.Client, r.Server, r.ConnID = h.client, h.server, h.id
	h.e.sink.Submit(h.id, r)
	if h.e.rsink != nil {
		if len(h.pending) == maxPending {
			h.lost(1)
			h.skip++
		}
		h.pending = append(h.pending, r)
	}
}

func (h *httpFlow) nextIsHead() bool {
	return len(h.pending) > 0 && string(h.pending[0].Method()) == "HEAD"
}

// response pairs a response with the oldest request awaiting one. After
// a gap in the server's direction (resynced) the responses lost with it
// are not known: the response is paired with the newest request that had
// ended before it began, and older ones count as unanswered. That is
// exact for keep-alive without pipelining, by far the common case.
func (h *httpFlow) response(r *httpstream.Response, resynced bool) {
	if resynced {
		h.skip = 0 // the resync below realigns
		k := -1
		for i, q := range h.pending {
			if q.End <= r.Start {
				k = i
			}
		}
		if k > 0 {
			h.lost(k)
		}
	}
	if h.skip > 0 {
		h.skip--
		return
	}
	if len(h.pending) == 0 {
		h.e.stats.Unmatched.Add(1)
		return
	}
	req := h.pending[0]
	h.pending[0] = nil
	h.pending = h.pending[1:]
	h.e.stats.Paired.Add(1)
	h.e.rsink.Response(h.id, req, r)
}

// lost reports the n oldest pending requests as unanswered.
func (h *httpFlow) lost(n int) {
	for _, q := range h.pending[:n] {
		h.e.stats.NoResponse.Add(1)
		h.e.rsink.Response(h.id, q, nil)
	}
	h.pending = append(h.pending[:0], h.pending[n:]...)
}
