// Package compare compares production's responses, seen on the mirror,
// with the test environments' answers to the replays: the candidate
// against production (passive: no extra deployment) and, where a baseline
// target runs the old version on the same test data, the candidate
// against the baseline (Diffy-style).
//
// What the client sees is compared (see package diff). Noise is learned
// three ways, each feeding only its own comparison: from how a
// reference's own answers vary by themselves (values unique per response,
// times near the exchange, counters: no second deployment needed, every
// method), from production's answers to identical safe requests, and from
// a secondary baseline against the baseline. A field is a regression when
// its difference rate is significantly above its noise rate (a one-sided
// Wilson bound) and above a minimum rate; body differences of exchanges
// whose status changed are collateral of the status finding. The work is
// bounded: under load, exchanges are dropped and counted, never queued
// without bound, and capture is never slowed.
package compare

import (
	"cmp"
	"github.com/shadowtap/shadowtap/internal/glob"
	"github.com/shadowtap/shadowtap/internal/mask"
	"hash/fnv"
	"io"
	"log/slog"
	"math/bits"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/endpoint"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/replay"
)

// The comparisons.
const (
	VsProduction = "candidate-vs-production"
	VsBaseline   = "candidate-vs-baseline"
)

// IgnoreRule drops a field from the comparison: Endpoint and Field are
// patterns of internal/glob ("*" matches any run of characters, "/" and
// "." included, so body.items[*].id matches every index and
// body.*.id any depth).
type IgnoreRule struct {
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	Field    string `yaml:"field" json:"field"`
}

// Config says what to compare.
type Config struct {
	// Paired, when set, reports whether two values, found at one field,
	// are what their sides created for one production value (see
	// correlate): ref is "production" (a is production's value, b the
	// candidate's) or "baseline" (a the baseline's). Such a difference is
	// none: each side made its own id, as it should.
	Paired func(ref string, at correlate.Field, a, b string) bool
	// Unsettled, when set, reports whether the answers to req paired
	// values that no request has carried back yet (see correlate's
	// Unsettled): an unsafe request's exchange waits, up to Settle (0:
	// DefaultSettle), for them to be, before it is compared.
	Unsettled func(req *httpstream.Request) bool
	Settle    time.Duration

	Candidate string // target names
	Baseline  string
	Secondary string // a second baseline on the same version, for noise
	// Writes names the targets whose database writes are compared: the
	// candidate's with the baseline's (both needed), the secondary's
	// with the baseline's for noise. Each such target's sets come by
	// Written.
	Writes            []string
	AgainstProduction bool
	Diff              diff.Options
	Ignore            []IgnoreRule
	// Always names fields never explained as noise: every difference
	// counts, however the reference's own values vary.
	Always       []IgnoreRule
	Patterns     []string // endpoint path templates
	MaxEndpoints int
	Wait         time.Duration // for the parts of an exchange
	MaxPending   int
	Queue        int
	// MaxBytes bounds the answers' bytes the comparator holds, queued or
	// waiting for the rest of their exchange; 0: DefaultMaxBytes.
	MaxBytes   int64
	MinSamples int     // comparisons before a field can be a regression
	Threshold  float64 // minimum difference rate of a regression (besides being above noise)
	Confidence float64 // one-sided confidence of "above noise"; 0: DefaultConfidence
	Log        io.Writer
	LogMaxBody int
	LogSamples int           // difference-log lines per endpoint, comparison and finding; 0: 5
	LogEvery   time.Duration // between statistics lines; 0: 30s
	Redact     []string
	// Mask hides personal data in what is shown (samples, the log), after
	// the comparison; nil: nothing masked.
	Mask    *mask.Masker
	Handler string // this handler's name in reports
	// Fleet, when set, shares the learned noise with the fleet's other
	// handlers every FleetEvery (0: 30s).
	Fleet      FleetNoise
	FleetEvery time.Duration
	Now        func() time.Time
}

// Stats count the comparator's own work.
// Every exchange expected ends counted once: Compared, Incomplete or
// Dropped, or not at all when the candidate was never to answer it (its
// filters or sampling, or a failed replay).
type Stats struct {
	Exchanges  atomic.Uint64 // expected
	Compared   atomic.Uint64 // counted once in the report
	Incomplete atomic.Uint64 // a needed part never came
	Dropped    atomic.Uint64 // not compared for the comparator's own bounds: MaxPending, its event or work queue
	// AnswersDropped counts answers the comparator had no room for (its
	// event queue, MaxBytes); their exchange goes on without them.
	AnswersDropped atomic.Uint64
	// WritesCompared counts the exchanges whose writes were compared.
	WritesCompared atomic.Uint64
	// Settling counts the exchanges held for the values they created to
	// be carried back (see Config.Unsettled); SettlingNow, those held now.
	Settling    atomic.Uint64
	SettlingNow atomic.Int64
	// LogWriteErrors counts difference-log writes that failed; LogDropped,
	// lines dropped because the log's writes were behind.
	LogWriteErrors atomic.Uint64
	LogDropped     atomic.Uint64
}

// parts of an exchange, as bits: the answers, then what the targets
// wrote (the write part of an answer's part is writeOf(part)).
const (
	partProd = 1 << iota
	partCand
	partBase
	partSec
	partCandWrites
	partBaseWrites
	partSecWrites
	numParts = iota
)

// writeOf is the part of what target part wrote.
func writeOf(part int) int { return part << 3 }

// DefaultMaxBytes is the default bound on the answers' bytes held.
const DefaultMaxBytes = 256 << 20

// DefaultConfidence is the confidence at which a difference rate must be
// above the noise rate.
const DefaultConfidence = 0.99

type side struct {
	msg       diff.Message
	writes    []byte               // what the target wrote (writes.Document), for a write part
	prod      *httpstream.Response // production's, until the worker makes msg of it
	firstByte time.Duration        // request's last byte to the answer's first
	total     time.Duration        // to the answer's last byte
	at        time.Time            // when the answer came (for times in it)
}

type exchange struct {
	req      *httpstream.Request
	endpoint string
	expect   int
	got      int
	sides    [numParts]side // by part index
	deadline time.Time
	settleBy time.Time // held until then at most (see Config.Unsettled)
	bytes    int64     // of the answers held, counted in Comparator.held
}

type key struct {
	conn  uint64
	index int
}

// Comparator joins and compares exchanges.
type Comparator struct {
	cfg Config
	log *slog.Logger
	// writeParts are the answer parts whose targets' writes are compared:
	// the candidate's and the baseline's together, or none.
	writeParts int
	grouper    *endpoint.Grouper
	ignore     []ignoreRule
	always     []ignoreRule
	Stats      Stats

	// events carry Expect, Skip, Production and Result to the joiner,
	// the one goroutine that owns pending: the callers (capture, replay
	// workers) never wait on the comparison, and never take its locks.
	events     chan event
	pending    map[key]*exchange // the joiner's
	settleWait time.Duration
	// settling are the complete exchanges held while a value they created
	// may still be carried back (the joiner's), at most maxSettling.
	settling []*exchange
	work     chan *exchange
	held     atomic.Int64 // answers' bytes in events and exchanges, at most cfg.MaxBytes
	closing  bool         // the joiner's: Close is draining

	agg   *aggregate // written by the worker under aggMu; reports read it under aggMu
	aggMu sync.Mutex

	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once

	// logQ carries the difference log's lines to logWriter, which alone
	// writes cfg.Log: the joiner and aggMu never wait for a disk.
	logQ      chan []byte
	logDone   sync.WaitGroup
	logWarned [2]atomic.Int64 // unix ns of the last warning: dropped, write
}

// New starts a comparator; Close stops it.
func New(cfg Config, log *slog.Logger) (*Comparator, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxEndpoints == 0 {
		cfg.MaxEndpoints = 500
	}
	if cfg.Confidence == 0 {
		cfg.Confidence = DefaultConfidence
	}
	if cfg.LogSamples == 0 {
		cfg.LogSamples = 5
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.LogEvery == 0 {
		cfg.LogEvery = 30 * time.Second
	}
	if cfg.FleetEvery == 0 {
		cfg.FleetEvery = DefaultFleetEvery
	}
	g, err := endpoint.New(cfg.Patterns, cfg.MaxEndpoints)
	if err != nil {
		return nil, err
	}
	c := &Comparator{cfg: cfg, log: log, grouper: g, pending: map[key]*exchange{}, settleWait: cmp.Or(cfg.Settle, DefaultSettle), work: make(chan *exchange, cfg.Queue),
		events: make(chan event, eventsPerExchange*max(cfg.Queue, 64)), agg: newAggregate(), stop: make(chan struct{})}
	if slices.Contains(cfg.Writes, cfg.Candidate) && cfg.Baseline != "" && slices.Contains(cfg.Writes, cfg.Baseline) {
		c.writeParts = partCand | partBase
		if cfg.Secondary != "" && slices.Contains(cfg.Writes, cfg.Secondary) {
			c.writeParts |= partSec
		}
	}
	for _, r := range cfg.Ignore {
		c.ignore = append(c.ignore, ignoreRule{glob.Compile(r.Endpoint), glob.Compile(r.Field)})
	}
	for _, r := range cfg.Always {
		c.always = append(c.always, ignoreRule{glob.Compile(r.Endpoint), glob.Compile(r.Field)})
	}
	// Before the joiner starts: it reads logQ.
	if cfg.Log != nil {
		c.logQ = make(chan []byte, logQueue)
		c.logDone.Add(1)
		go c.logWriter()
	}
	c.done.Add(2)
	go c.worker()
	go c.joiner()
	if cfg.Fleet != nil {
		c.takeInFleet() // a new handler starts with what the fleet knows (bounded by the store's timeout)
		c.done.Add(1)
		go c.share()
	}
	return c, nil
}

// An event is a part of an exchange reaching the comparator.
type event struct {
	req   *httpstream.Request
	part  int  // 0: Expect
	ok    bool // the part came (false: it will not)
	side  side
	bytes int64 // of the answer in side, counted in Comparator.held
	lost  bool  // the answer came but the comparator had no room for it
}

// answerBytes is the size of the answer a side holds.
func answerBytes(s *side) int64 {
	n := int64(len(s.msg.Body) + len(s.writes))
	if s.prod != nil {
		n += int64(len(s.prod.Raw))
	}
	return n
}

// eventsPerExchange sizes the event queue: an exchange brings its Expect
// and up to four parts.
const eventsPerExchange = 6

// send queues e; a full queue drops it, counted: the comparison sheds
// load, capture and replay never wait for it.
func (c *Comparator) send(e event) {
	counted := false
	if e.bytes = answerBytes(&e.side); e.bytes > 0 && c.held.Add(e.bytes) > c.cfg.MaxBytes {
		// Over the byte bound: the exchange goes on without this answer.
		c.held.Add(-e.bytes)
		c.Stats.AnswersDropped.Add(1)
		e.side, e.ok, e.bytes, e.lost, counted = side{}, false, 0, true, true
	}
	select {
	case c.events <- e:
	default:
		c.held.Add(-e.bytes)
		switch {
		case e.part == 0:
			c.Stats.Dropped.Add(1) // the exchange is never opened
		case !counted:
			c.Stats.AnswersDropped.Add(1) // its exchange waits for its deadline
		}
	}
}

// release gives back what an exchange held once it leaves the comparator.
func (c *Comparator) release(x *exchange) {
	c.held.Add(-x.bytes)
	x.bytes = 0
}

// Compares reports whether a target takes part in the comparison.
func (c *Comparator) Compares(target string) bool {
	return target != "" && (target == c.cfg.Candidate || target == c.cfg.Baseline || target == c.cfg.Secondary)
}

// Expect registers a request before it is sent to the targets: every
// configured answer is expected until Skip says a target will not answer.
func (c *Comparator) Expect(req *httpstream.Request) {
	c.Stats.Exchanges.Add(1)
	c.send(event{req: req})
}

// expect opens req's exchange; the joiner calls it.
func (c *Comparator) expect(req *httpstream.Request) {
	if len(c.pending) >= c.cfg.MaxPending {
		c.Stats.Dropped.Add(1)
		return
	}
	x := &exchange{req: req, expect: partCand, deadline: c.cfg.Now().Add(c.cfg.Wait),
		endpoint: c.grouper.Name(string(req.Method()), string(req.Target()))}
	if c.cfg.AgainstProduction {
		x.expect |= partProd
	}
	if c.cfg.Baseline != "" {
		x.expect |= partBase
		if c.cfg.Secondary != "" {
			x.expect |= partSec
		}
	}
	x.expect |= (c.writeParts & x.expect) << 3 // writeOf each
	c.pending[key{req.ConnID, req.Index}] = x
}

// Skip says target will not answer req (filtered, sampled out, dropped).
func (c *Comparator) Skip(req *httpstream.Request, target string) {
	if part := c.part(target); part != 0 {
		c.send(event{req: req, part: part})
		if c.writeParts&part != 0 {
			c.send(event{req: req, part: writeOf(part)})
		}
	}
}

// Written records what a target wrote to its database for req: doc is its
// rows (writes.Document; empty: nothing), complete false when they could
// not all be known (the exchange is then compared without them).
func (c *Comparator) Written(target string, req *httpstream.Request, doc []byte, complete bool) {
	part := c.part(target)
	if part == 0 || c.writeParts&part == 0 {
		return
	}
	if len(doc) == 0 {
		doc = emptyWrites
	}
	var s side
	if complete {
		s = side{writes: doc, at: c.cfg.Now()}
	}
	c.send(event{req: req, part: writeOf(part), ok: complete, side: s})
}

// emptyWrites is the document of a request that wrote nothing.
var emptyWrites = []byte("{}")

func (c *Comparator) part(target string) int {
	switch target {
	case c.cfg.Candidate:
		return partCand
	case c.cfg.Baseline:
		return partBase
	case c.cfg.Secondary:
		return partSec
	}
	return 0
}

// Production records production's response (nil: not seen). Its body is
// as mirrored: still chunked when it was sent so, which diff undoes.
// It is called on the capture path: it only queues; the message is built
// by the worker.
func (c *Comparator) Production(req *httpstream.Request, resp *httpstream.Response) {
	var s side
	if resp != nil {
		s = side{prod: resp, firstByte: time.Duration(resp.Start - req.End), total: time.Duration(resp.End - req.End),
			at: time.Unix(0, resp.Start)}
	}
	c.send(event{req: req, part: partProd, ok: resp != nil, side: s})
}

// Result records a replay's answer.
func (c *Comparator) Result(r replay.Result) {
	part := c.part(r.Target)
	if part == 0 {
		return
	}
	var s side
	if r.Resp != nil {
		s = side{msg: diff.Message{Status: r.Resp.Status, Header: r.Resp.Header, Body: r.Resp.Body, Truncated: r.Resp.BodyTruncated,
			Host: r.Host}, firstByte: r.Resp.FirstByte, total: r.Duration, at: r.Started.Add(r.Duration)}
	}
	c.send(event{req: r.Req, part: part, ok: r.Resp != nil, side: s})
}

// arrive records a part of an exchange; the joiner calls it.
func (c *Comparator) arrive(e event) {
	k := key{e.req.ConnID, e.req.Index}
	x := c.pending[k]
	if x == nil || x.expect&e.part == 0 {
		c.held.Add(-e.bytes)
		return
	}
	i := bitIndex(e.part)
	if i < 0 {
		c.held.Add(-e.bytes)
		return
	}
	x.got |= e.part
	if e.ok {
		x.sides[i] = e.side
		x.bytes += e.bytes
	} else {
		x.expect &^= e.part // it failed or was not sent: compare without it
	}
	if x.expect&partCand == 0 {
		// The candidate will not answer (its filters or sampling, a failed
		// replay): not an exchange to compare, and not a loss, unless the
		// comparator itself had no room for the answer.
		delete(c.pending, k)
		c.release(x)
		if e.lost && e.part == partCand {
			c.Stats.Dropped.Add(1)
		}
		return
	}
	if x.got&x.expect == x.expect {
		delete(c.pending, k)
		c.settle(x)
	}
}

// DefaultSettle bounds how long an exchange waits for the values its
// answers created to be carried back by a later request.
const DefaultSettle = 3 * time.Second

// maxSettling bounds the exchanges held settling: past it, one is compared
// at once.
const maxSettling = 4096

// settle submits x, or holds it while the values an unsafe request's
// answers created (an order's id, a session) have not been carried back
// by a later request: compared now, each side's own id would read as a
// difference. Production's client usually carries one back within a
// second; live, the replay may answer sooner.
func (c *Comparator) settle(x *exchange) {
	if c.cfg.Unsettled == nil || c.closing || len(c.settling) >= maxSettling || x.req.Safe() || !c.cfg.Unsettled(x.req) {
		c.submit(x)
		return
	}
	x.settleBy = c.cfg.Now().Add(c.settleWait)
	c.settling = append(c.settling, x)
	c.Stats.Settling.Add(1)
	c.Stats.SettlingNow.Add(1)
}

// settled submits the exchanges held that no longer wait (all of them
// with all).
func (c *Comparator) settled(all bool) {
	now := c.cfg.Now()
	kept := c.settling[:0]
	for _, x := range c.settling {
		if all || now.After(x.settleBy) || !c.cfg.Unsettled(x.req) {
			c.Stats.SettlingNow.Add(-1)
			c.submit(x)
			continue
		}
		kept = append(kept, x)
	}
	clear(c.settling[len(kept):])
	c.settling = kept
}

// bitIndex is the index of a part's bit (-1: not a single part).
func bitIndex(part int) int {
	if part <= 0 || part&(part-1) != 0 || part >= 1<<numParts {
		return -1
	}
	return bits.TrailingZeros(uint(part))
}

func (c *Comparator) submit(x *exchange) {
	if x.expect&partCand == 0 || x.expect&(partProd|partBase) == 0 {
		c.Stats.Incomplete.Add(1) // no candidate answer, or nothing to compare it with
		c.release(x)
		return
	}
	if c.closing {
		c.work <- x // the last exchanges: the worker takes them all
		return
	}
	select {
	case c.work <- x:
	default:
		c.Stats.Dropped.Add(1)
		c.release(x)
	}
}

// worker compares the complete exchanges until the joiner, closing,
// has handed over the last one.
func (c *Comparator) worker() {
	defer c.done.Done()
	for x := range c.work {
		c.process(x)
		c.Stats.Compared.Add(1) // once in the aggregate: a report that counts it holds it
		c.release(x)
	}
}

// joiner owns the exchanges in progress: it takes the events in order,
// hands each complete exchange to the worker, and compares at their
// deadline those some part of which never came (a target that dropped
// the request, a response not mirrored).
func (c *Comparator) joiner() {
	defer c.done.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	settleTick := time.NewTicker(50 * time.Millisecond)
	defer settleTick.Stop()
	flush := time.NewTicker(c.cfg.LogEvery)
	defer flush.Stop()
	handle := func(e event) {
		if e.part == 0 {
			c.expect(e.req)
		} else {
			c.arrive(e)
		}
	}
	for {
		select {
		case <-c.stop:
			// The producers have stopped: take what they queued, compare
			// every exchange with what it has, and let the worker finish.
			c.closing = true
			for drained := false; !drained; {
				select {
				case e := <-c.events:
					handle(e)
				default:
					drained = true
				}
			}
			c.settled(true) // every request was sent: nothing more will be carried back
			for k, x := range c.pending {
				x.expect &= x.got
				delete(c.pending, k)
				c.submit(x)
			}
			close(c.work)
			return
		case e := <-c.events:
			handle(e)
		case <-flush.C:
			c.flushLog()
		case <-settleTick.C:
			if len(c.settling) > 0 {
				c.settled(false)
			}
		case <-t.C:
			now := c.cfg.Now()
			for k, x := range c.pending {
				if now.After(x.deadline) {
					x.expect &= x.got
					delete(c.pending, k)
					c.submit(x)
				}
			}
		}
	}
}

// Close compares what is still queued or waiting, each exchange with the
// parts it has, then stops the comparator and writes the last statistics
// to the log. Call it once nothing more is sent to it (the replays have
// drained); a second Close does nothing.
func (c *Comparator) Close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		c.done.Wait()
		if c.logQ != nil {
			c.sendLog(true)
			close(c.logQ)
			c.logDone.Wait()
		}
	})
}

func (c *Comparator) process(x *exchange) {
	prod, cand, base, sec := x.sides[0], x.sides[1], x.sides[2], x.sides[3]
	opts := c.cfg.Diff
	// Parse each answer once, before taking the lock: it is most of the work.
	pc := diff.Parse(cand.msg, opts)
	var pp, pb, ps *diff.Parsed
	if x.expect&partProd != 0 {
		prod.msg = diff.FromResponse(prod.prod)
		if h, ok := x.req.Get("Host"); ok {
			prod.msg.Host = string(h)
		}
		pp = diff.Parse(prod.msg, opts)
	}
	if x.expect&partBase != 0 {
		pb = diff.Parse(base.msg, opts)
		if x.expect&partSec != 0 {
			ps = diff.Parse(sec.msg, opts)
		}
	}
	c.aggMu.Lock()
	defer c.aggMu.Unlock()
	ep := c.agg.endpoint(x.endpoint)
	ep.Requests++
	ep.dirty = true
	ep.lat("candidate first_byte", cand.firstByte)
	ep.lat("candidate total", cand.total)
	if pp != nil {
		ep.lat("production first_byte", prod.firstByte)
		ep.lat("production total", prod.total)
		ep.learner("production").observe(pp, opts, x.req, prod.at)
		c.identical(ep, x.req, pp)
		cs := ep.comparison(VsProduction)
		o := opts
		o.Unordered = unorderedBy(&cs.Noise, ep.Learners["production"])
		c.record(ep, VsProduction, "production", x, prod, cand, pp, pc, c.paired("production", x.req.Raw, c.filter(x.endpoint, diff.CompareParsed(pp, pc, o))))
	}
	if pb != nil {
		ep.lat("baseline first_byte", base.firstByte)
		ep.lat("baseline total", base.total)
		ep.learner("baseline").observe(pb, opts, x.req, base.at)
		cs := ep.comparison(VsBaseline)
		if ps != nil {
			// Two deployments of the same version: what differs is noise,
			// of this comparison only.
			cs.Noise.Source = "baseline vs secondary"
			cs.Noise.add(c.filter(x.endpoint, diff.CompareParsed(pb, ps, opts)))
		}
		o := opts
		o.Unordered = unorderedBy(&cs.Noise, ep.Learners["baseline"])
		ds := c.paired("baseline", x.req.Raw, c.filter(x.endpoint, diff.CompareParsed(pb, pc, o)))
		ds = append(ds, c.compareWrites(ep, cs, x)...)
		c.record(ep, VsBaseline, "baseline", x, base, cand, pb, pc, ds)
	}
}

// compareWrites compares what the candidate wrote for an exchange with
// what the baseline wrote, when both are known, as the answers are: the
// same diff, noise learned from the baseline's own writes (sequences,
// now(), UUIDs) and from the secondary's, correlation's pairs. Its keys
// start with "write" (write.insert.public.orders[*].total). c.aggMu is
// held.
func (c *Comparator) compareWrites(ep *EndpointState, cs *ComparisonState, x *exchange) []diff.Difference {
	if x.expect&(partCandWrites|partBaseWrites) != partCandWrites|partBaseWrites {
		return nil
	}
	base, cand := x.sides[bitIndex(partBaseWrites)], x.sides[bitIndex(partCandWrites)]
	c.Stats.WritesCompared.Add(1)
	pb, pc := diff.ParseDocument(WriteRoot, base.writes), diff.ParseDocument(WriteRoot, cand.writes)
	opts := c.cfg.Diff
	ep.learner("baseline").observe(pb, opts, x.req, base.at)
	if x.expect&partSecWrites != 0 {
		sec := diff.ParseDocument(WriteRoot, x.sides[bitIndex(partSecWrites)].writes)
		cs.Noise.add(c.filter(x.endpoint, diff.CompareParsed(pb, sec, opts)))
	}
	opts.Unordered = unorderedBy(&cs.Noise, ep.Learners["baseline"])
	return c.paired("baseline", x.req.Raw, c.filter(x.endpoint, diff.CompareParsed(pb, pc, opts)))
}

// WriteRoot begins the keys of what a request wrote: a finding's kind is
// "write" when its key does.
const WriteRoot = "write"

// KindOf is what a finding's key is about: "write" (the rows a request
// wrote), "latency", or "answer".
func KindOf(key string) string {
	switch {
	case key == WriteRoot || strings.HasPrefix(key, WriteRoot+".") || strings.HasPrefix(key, WriteRoot+"["):
		return "write"
	case strings.HasPrefix(key, "latency"):
		return "latency"
	}
	return "answer"
}

// paired leaves out the differences between two values their sides
// created for one production value, in the answers to req: whole values,
// or the differing segments of two paths of the same form (a Location).
func (c *Comparator) paired(ref string, req []byte, ds []diff.Difference) []diff.Difference {
	if c.cfg.Paired == nil {
		return ds
	}
	return slices.DeleteFunc(ds, func(d diff.Difference) bool {
		if d.Kind != diff.Changed {
			return false
		}
		a, b := strings.Split(strings.Trim(d.Ref, `"`), "/"), strings.Split(strings.Trim(d.Cand, `"`), "/")
		if len(a) != len(b) {
			return false
		}
		some := false
		for i := range a {
			if a[i] == b[i] {
				continue
			}
			at := correlate.Field{Request: req, Key: d.Key}
			if i > 0 {
				at.Segment = a[i-1]
			}
			if !c.cfg.Paired(ref, at, a[i], b[i]) {
				return false
			}
			some = true
		}
		return some
	})
}

// unorderedBy says which arrays are sets: those the reference's own
// answers reorder, in noise pairs or from answer to answer.
func unorderedBy(n *NoiseState, l *Learner) func(key string) bool {
	return func(key string) bool { return n.unordered(key) || l.unordered(key) }
}

// identical learns production's noise from its answers to identical safe
// requests (unsafe ones may rightly answer differently the second time).
func (c *Comparator) identical(ep *EndpointState, req *httpstream.Request, p *diff.Parsed) {
	switch string(req.Method()) {
	case "GET", "HEAD", "OPTIONS":
	default:
		return
	}
	a := c.agg
	k := requestKey(req)
	prev, ok := a.prodLast[k]
	if ok {
		if prev.endpoint == ep.Name {
			cs := ep.comparison(VsProduction)
			cs.Noise.Source = "production, identical requests"
			cs.Noise.add(c.filter(ep.Name, diff.CompareParsed(diff.Parse(prev.msg, c.cfg.Diff), p, c.cfg.Diff)))
		}
		delete(a.prodLast, k)
		a.prodBytes -= len(prev.msg.Body)
	}
	n := len(p.Msg.Body)
	if n > maxProdLastBody {
		return
	}
	for old, v := range a.prodLast { // evict arbitrarily while over the bounds
		if len(a.prodLast) < maxProdLast && a.prodBytes+n <= maxProdLastBytes {
			break
		}
		delete(a.prodLast, old)
		a.prodBytes -= len(v.msg.Body)
	}
	a.prodLast[k] = prodAnswer{endpoint: ep.Name, msg: p.Msg}
	a.prodBytes += n
}

// filter drops ignored fields.
func (c *Comparator) filter(ep string, ds []diff.Difference) []diff.Difference {
	if len(c.ignore) == 0 {
		return ds
	}
	return slices.DeleteFunc(ds, func(d diff.Difference) bool { return matchAny(c.ignore, ep, &d) })
}

type ignoreRule struct{ endpoint, field *regexp.Regexp }

// matchAny reports whether a rule names d's field (its key or its path) at endpoint ep.
func matchAny(rules []ignoreRule, ep string, d *diff.Difference) bool {
	for _, r := range rules {
		if r.endpoint.MatchString(ep) && (r.field.MatchString(d.Key) || r.field.MatchString(d.Field)) {
			return true
		}
	}
	return false
}

// requestKey identifies identical requests (for production noise): the
// method, target, body and the headers that choose what is answered (who
// asks, in which language and format), so that two users' answers to one
// URL do not pass for noise. Cookies are left out: they carry tracking
// ids that would make no two requests identical.
func requestKey(req *httpstream.Request) uint64 {
	h := fnv.New64a()
	h.Write(req.Method())
	h.Write([]byte{' '})
	h.Write(req.Target())
	h.Write(req.Body())
	for _, name := range []string{"Authorization", "Accept", "Accept-Language"} {
		v, _ := req.Get(name)
		h.Write([]byte{0})
		h.Write(v)
	}
	return h.Sum64()
}

func redactHeaders(h http.Header, names []string) http.Header {
	out := h.Clone()
	for _, n := range names {
		if out.Values(n) != nil {
			out.Set(n, "REDACTED")
		}
	}
	return out
}

func capBody(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
