package replay

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// Options size the replayer.
type Options struct {
	Name     string // the target's name, for results and logs
	Workers  int    // requests in flight at once (and at most this many connections)
	MaxQueue int    // requests waiting; beyond it requests are dropped
	// MaxQueueBytes bounds the bytes of the requests waiting, so that a
	// queue of large bodies cannot exhaust memory; 0: DefaultMaxQueueBytes.
	MaxQueueBytes int64
	Edits         Edits
	RateLimit     float64 // requests per second admitted; 0: no limit
	// Block makes Submit wait for queue space and for the rate limit
	// instead of dropping: replaying a file as fast as the target allows.
	Block bool
	// Correlate, when set, is this target's table of the values it
	// created for production's (sessions, tokens, ids): each request is
	// translated with it before it is sent, and each answer teaches it.
	Correlate *correlate.Table
	// Writes, when set, follows what the target writes to its database:
	// each request is sent with its marker in the MarkerHeader header, and
	// an unsafe request alone (no other request to the target in flight),
	// so that what it writes is known to be its.
	Writes Watcher
}

// A Watcher attributes a target's database writes to the requests
// replayed to it (see writes.Watcher).
type Watcher interface {
	// Begin is called before req is sent. With alone it returns once no
	// other request to the target is in flight, and holds the others
	// until End: the watcher owns that order, so that every replayer of
	// the target (an old one draining after a reload) keeps it. It returns
	// req's marker.
	Begin(ctx context.Context, req *httpstream.Request, alone bool) (marker string)
	// End is called once req's answer came (answered) or it failed.
	End(ctx context.Context, marker string, answered bool)
}

// MarkerHeader carries a request's marker to the service when writes are
// compared, for it to leave in its transaction (see writes.MarkPrefix).
const MarkerHeader = "X-Shadowtap-Request"

// DefaultMaxQueueBytes bounds a target's queue in bytes unless set.
const DefaultMaxQueueBytes = 256 << 20

// Result is the outcome of one replay, passed to the OnResult hook.
type Result struct {
	Target   string
	Req      *httpstream.Request
	Resp     *Response // nil on failure
	Host     string    // the Host header sent
	Err      error
	Started  time.Time
	Duration time.Duration
}

// Stats count what the replayer did.
type Stats struct {
	Submitted    atomic.Uint64
	Replayed     atomic.Uint64 // a response was received
	Failed       [NumFailReasons]atomic.Uint64
	QueueDrops   atomic.Uint64 // requests dropped because the queue was full
	ConnsRefused atomic.Uint64 // new production connections not replayed because of load
	RateLimited  atomic.Uint64 // requests dropped by the rate limit
	// Resumed counts dropped connections taken back at a request boundary
	// once their own backlog, or the whole queue, had drained, or the rate
	// limit had stopped binding.
	Resumed atomic.Uint64
	// OrderWaitsExpired counts requests of a recording sent before a
	// request production had answered before they began was done here
	// (it took longer than causalWait).
	OrderWaitsExpired atomic.Uint64
	Queued            atomic.Int64
	InFlight          atomic.Int64
}

// Replayer replays requests, one production connection's in capture order
// (each after the previous one's response or failure), with a bounded
// number of workers and a bounded queue. Under load it refuses whole new
// connections first, then sheds the connections holding the most of the
// queue, each until its backlog has been replayed: the load shed follows
// the overload, and no request is ever sent in part or twice.
type Replayer struct {
	client   *Client
	opts     Options
	stats    *Stats
	log      *slog.Logger
	onResult func(Result)
	edits    atomic.Pointer[Edits]
	limiter  atomic.Pointer[rate.Limiter] // nil: no limit

	ctx    context.Context // the workers'; cancelled when a stop's deadline passes
	cancel context.CancelFunc

	mu          sync.Mutex
	space       *sync.Cond // signalled when the queue shrinks (Block)
	conns       map[uint64]*connQueue
	ready       chan *connQueue
	queued      int
	queuedBytes int64
	running     int       // connection queues owned by a worker or waiting for one
	limitedAt   time.Time // when the rate limit last dropped a request
	closed      bool
	stopped     bool // Stop has finished

	// readyClosed: Stop closed ready, and no queue may be handed over
	// (under mu).
	readyClosed bool
	// causal keeps a recording's order across connections (under mu).
	causal causal
	// answering are the live requests accepted and not done (under mu),
	// with their production answer's end once seen (see Answered).
	answering map[*httpstream.Request]int64

	wg       sync.WaitGroup
	stopOnce sync.Once
}

type connQueue struct {
	id       uint64
	reqs     []*httpstream.Request
	bytes    int64 // of reqs
	running  bool  // a worker owns it
	ended    bool  // the production connection is gone
	dropping bool  // refused or lost a request: drop until taken back
	// overflow: dropping because the queue was full or the connection held
	// more than its share of it, so it may resume once drained (see
	// drained); otherwise the rate limit's drop, which lasts until the
	// limit no longer binds (see refilled).
	overflow bool
	accepted int
	// parkedAt: when its next request was set aside to keep the
	// recording's order (causal); unordered: it is sent without waiting
	// further (it waited causalWait).
	parkedAt  time.Time
	unordered bool
}

// New returns a replayer; onResult (may be nil) is called by workers for
// every finished replay.
func New(client *Client, opts Options, stats *Stats, log *slog.Logger, onResult func(Result)) *Replayer {
	r := &Replayer{
		client: client, opts: opts, stats: stats, log: log, onResult: onResult,
		conns: make(map[uint64]*connQueue), answering: map[*httpstream.Request]int64{},
		// Each connection queue is in ready at most once, and holds at least
		// one request while there; at most MaxQueue requests wait, and
		// Workers more may be admitted past it to start at once.
		ready: make(chan *connQueue, opts.MaxQueue+opts.Workers+1),
	}
	if r.opts.MaxQueueBytes <= 0 {
		r.opts.MaxQueueBytes = DefaultMaxQueueBytes
	}
	r.space = sync.NewCond(&r.mu)
	r.SetPolicy(opts.Edits, opts.RateLimit)
	return r
}

// SetPolicy replaces the edits and the rate limit, for a configuration
// reload; requests already queued are sent with the new edits.
func (r *Replayer) SetPolicy(e Edits, rateLimit float64) {
	r.edits.Store(&e)
	if rateLimit <= 0 {
		r.limiter.Store(nil)
		return
	}
	// A burst of a tenth of a second's worth smooths arrivals without
	// letting the measured rate stray from the limit.
	r.limiter.Store(rate.NewLimiter(rate.Limit(rateLimit), max(1, int(math.Ceil(rateLimit/10)))))
}

// Start launches the workers; they stop when ctx ends or Stop is called.
func (r *Replayer) Start(ctx context.Context) {
	r.ctx, r.cancel = context.WithCancel(ctx)
	for range r.opts.Workers {
		r.wg.Add(1)
		go r.worker(r.ctx)
	}
}

// Submit queues a request of production connection conn; it returns false
// when the request was dropped. It never waits for a replay, except with
// Options.Block (replaying files): then it waits for the rate limit and
// for room in the queue (submitWait).
func (r *Replayer) Submit(conn uint64, req *httpstream.Request) bool {
	r.stats.Submitted.Add(1)
	if r.opts.Block {
		return r.submitWait(conn, req)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queueOf(conn)
	size := int64(len(req.Raw))
	// Load is shed in proportion to the overload, whole requests at a
	// time: a connection dropped because the queue was full, or because
	// it held more than its share of it, is taken back at its next request
	// (a request boundary) once its own backlog has been replayed or the
	// whole queue has drained below a quarter; one dropped by the rate
	// limit, once the limit no longer binds. Each request is still whole
	// and sent at most once; the connection misses those dropped between.
	resumed := false
	if q.dropping && !r.closed && (q.overflow && r.drained(q) || !q.overflow && r.refilled()) {
		q.dropping, q.overflow, resumed = false, false, true
	}
	if q.dropping || r.closed {
		r.stats.QueueDrops.Add(1)
		return false
	}
	// New connections are refused at three quarters of the queue (count or
	// bytes), so the rest is kept for connections already being replayed.
	limit, bytesLimit := r.opts.MaxQueue, r.opts.MaxQueueBytes
	if r.queued >= limit && !r.startsNow(q) || r.queuedBytes+size > bytesLimit ||
		(q.accepted == 0 && (r.queued >= limit*3/4 || r.queuedBytes+size > bytesLimit*3/4)) ||
		r.overShare(q, size) {
		q.dropping, q.overflow = true, true
		if q.accepted == 0 {
			r.stats.ConnsRefused.Add(1)
		}
		r.stats.QueueDrops.Add(1)
		return false
	}
	// The rate limit: likewise, new connections are refused while tokens
	// are scarce, and a connection that meets an empty bucket loses its
	// requests until the limit no longer binds (see refilled).
	if lim := r.limiter.Load(); lim != nil {
		if q.accepted == 0 && lim.Tokens() < float64(lim.Burst())/2 || !lim.Allow() {
			q.dropping = true
			r.limitedAt = time.Now()
			if q.accepted == 0 {
				r.stats.ConnsRefused.Add(1)
			}
			r.stats.RateLimited.Add(1)
			return false
		}
	}
	if resumed { // counted once the request is in
		r.stats.Resumed.Add(1)
	}
	r.enqueue(q, req)
	return true
}

// overShare tells whether connection q, adding a request of size bytes,
// would hold more than its share of a queue that is at least half full
// (count or bytes). Each connection's requests are replayed one after
// another, so a queue held by a few connections keeps few workers busy:
// under pressure the connections with the longest backlogs are shed, and
// every connection keeps a request waiting. r.mu is held.
func (r *Replayer) overShare(q *connQueue, size int64) bool {
	limit, bytesLimit := r.opts.MaxQueue, r.opts.MaxQueueBytes
	if r.queued < limit/2 && r.queuedBytes+size <= bytesLimit/2 {
		return false
	}
	n := len(r.conns)
	return len(q.reqs) >= max(1, limit/n) || q.bytes > 0 && q.bytes+size > bytesLimit/int64(n)
}

// startsNow tells whether a request of connection q, already being
// replayed, would go to an idle worker at once rather than wait: the queue
// bounds the requests waiting, and a worker left idle while a connection
// has a request for it is capacity thrown away. r.mu is held.
func (r *Replayer) startsNow(q *connQueue) bool {
	return q.accepted > 0 && !q.running && r.running < r.opts.Workers
}

// drained tells whether dropped connection q may be taken back: its own
// backlog has been replayed (what it sends next waits behind at most the
// request in flight), or the whole queue is below a quarter. A connection
// refused before any of its requests was taken waits for the latter: whole
// new connections are shed first. r.mu is held.
func (r *Replayer) drained(q *connQueue) bool {
	return q.accepted > 0 && len(q.reqs) == 0 || r.queued <= r.opts.MaxQueue/4 && r.queuedBytes <= r.opts.MaxQueueBytes/4
}

// refilled tells whether a connection dropped by the rate limit may be
// taken back: the limit was lifted, or it has not bound for a while and
// its bucket would take a new connection. While the limit binds a dropped
// connection stays dropped, so a steady overload cuts no hole in a
// connection; once the load has fallen below the limit every connection
// comes back. r.mu is held.
func (r *Replayer) refilled() bool {
	lim := r.limiter.Load()
	return lim == nil || time.Since(r.limitedAt) >= rateResume && lim.Tokens() >= float64(lim.Burst())/2
}

// rateResume is how long the rate limit must not have bound before the
// connections it dropped are taken back.
const rateResume = time.Second

// submitWait queues a request, waiting for the rate limit and for room in
// the queue; it drops only when the replayer is stopping.
func (r *Replayer) submitWait(conn uint64, req *httpstream.Request) bool {
	if lim := r.limiter.Load(); lim != nil && r.ctx != nil {
		if lim.Wait(r.ctx) != nil {
			r.stats.QueueDrops.Add(1)
			return false
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// A request larger than the whole byte bound waits for an empty queue.
	for (r.queued >= r.opts.MaxQueue || r.queued > 0 && r.queuedBytes+int64(len(req.Raw)) > r.opts.MaxQueueBytes) && !r.closed {
		r.space.Wait()
	}
	if r.closed {
		r.stats.QueueDrops.Add(1)
		return false
	}
	q := r.queueOf(conn)
	r.enqueue(q, req)
	return true
}

// queueOf returns conn's queue, making it. r.mu is held.
func (r *Replayer) queueOf(conn uint64) *connQueue {
	q := r.conns[conn]
	if q == nil {
		q = &connQueue{id: conn}
		r.conns[conn] = q
	}
	return q
}

// enqueue appends req to q and hands q to a worker unless one has it.
// r.mu is held.
func (r *Replayer) enqueue(q *connQueue, req *httpstream.Request) {
	q.accepted++
	if req.Answered == 0 {
		r.answering[req] = 0
	} else {
		r.causal.add(req.Answered)
	}
	if len(r.causal.parked) > 0 {
		r.unpark(false) // those parked too long go on
	}
	q.reqs = append(q.reqs, req)
	q.bytes += int64(len(req.Raw))
	r.queued++
	r.queuedBytes += int64(len(req.Raw))
	r.stats.Queued.Store(int64(r.queued))
	if !q.running && len(q.reqs) == 1 {
		q.running = true
		r.running++
		r.ready <- q
	}
}

// EndConn says production connection conn is over; its queue is forgotten
// once its requests are done.
func (r *Replayer) EndConn(conn uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q := r.conns[conn]; q != nil {
		q.ended = true
		if !q.running {
			delete(r.conns, conn)
		}
	}
}

func (r *Replayer) worker(ctx context.Context) {
	defer r.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case q, ok := <-r.ready:
			if !ok {
				return
			}
			r.drain(ctx, q)
		}
	}
}

// drain replays q's requests in order until it is empty.
func (r *Replayer) drain(ctx context.Context, q *connQueue) {
	buf := make([]byte, 0, 4096)
	for {
		r.mu.Lock()
		if len(q.reqs) > 0 && !q.unordered && ctx.Err() == nil && !r.causal.ready(q.reqs[0]) {
			// It waits for a request of another connection: park it, and
			// take another (it stays running: no one else hands it over).
			// Never once stopping: what is left is dropped below, and
			// ready is closed.
			r.causal.park(q)
			r.mu.Unlock()
			return
		}
		q.unordered = false
		if len(q.reqs) == 0 {
			q.running = false
			r.running--
			q.reqs = nil
			if q.ended {
				delete(r.conns, q.id)
			}
			r.mu.Unlock()
			return
		}
		req := q.reqs[0]
		q.reqs[0] = nil
		q.reqs = q.reqs[1:]
		q.bytes -= int64(len(req.Raw))
		r.queued--
		r.queuedBytes -= int64(len(req.Raw))
		r.stats.Queued.Store(int64(r.queued))
		// Counted in flight under the lock that took it off the queue, so
		// Stop never sees it in neither.
		r.stats.InFlight.Add(1)
		r.space.Signal()
		r.mu.Unlock()
		if ctx.Err() != nil { // past the stop deadline: drop what is left
			r.stats.QueueDrops.Add(1)
			r.stats.InFlight.Add(-1)
			r.requestDone(req)
			if tb := r.opts.Correlate; tb != nil {
				tb.Skipped(correlate.Exchange{Conn: req.ConnID, Index: req.Index})
			}
			continue
		}
		var headLen int
		edits := r.edits.Load()
		buf, headLen = edits.AppendRequest(buf[:0], req)
		send := buf
		start := time.Now()
		var resp *Response
		var err error
		if tb := r.opts.Correlate; tb != nil {
			var tr correlate.Result
			send, tr = tb.TranslateCaptured(ctx, buf, req.End)
			if tr.Translated > 0 {
				headLen = bytes.Index(send, []byte("\r\n\r\n")) + 4
			}
			if tr.Missed && !req.Safe() {
				err = &Error{Reason: FailUntranslated, Err: errors.New("a value it names was not learned in time")}
			}
		}
		if err == nil {
			resp, err = r.send(ctx, req, send, headLen)
		}
		r.stats.InFlight.Add(-1)
		if tb := r.opts.Correlate; tb != nil {
			var m diff.Message
			if resp != nil {
				m = diff.Message{Status: resp.Status, Header: resp.Header, Body: resp.Body, Truncated: resp.BodyTruncated}
			}
			tb.Answered(correlate.Exchange{Conn: req.ConnID, Index: req.Index}, req.Raw, m)
		}
		res := Result{Target: r.opts.Name, Req: req, Resp: resp, Host: edits.SentHost(req), Err: err, Started: start, Duration: time.Since(start)}
		if err != nil {
			var re *Error
			if errors.As(err, &re) {
				r.stats.Failed[re.Reason].Add(1)
			} else {
				r.stats.Failed[FailRead].Add(1)
			}
		} else {
			r.stats.Replayed.Add(1)
		}
		if r.onResult != nil {
			r.onResult(res)
		}
		r.requestDone(req)
	}
}

// requestDone ends req for production's order: the connections parked
// waiting for it go back to the workers.
func (r *Replayer) requestDone(req *httpstream.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := req.Answered
	if end == 0 {
		end = r.answering[req]
		delete(r.answering, req)
	}
	if end != 0 {
		r.causal.done(end)
		r.unpark(false)
	}
}

// Answered says production's answer to req, live, ended at end (capture
// clock): a request production received after it is sent once req is
// done here. Shared by every target: req itself is not changed.
func (r *Replayer) Answered(req *httpstream.Request, end int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if was, ok := r.answering[req]; ok && was == 0 && end != 0 {
		r.answering[req] = end
		r.causal.add(end)
	}
}

// unpark hands the parked connections that may go on back to the workers.
// r.mu is held; ready has room for every connection queue.
func (r *Replayer) unpark(all bool) {
	if r.readyClosed {
		return
	}
	ready, expired := r.causal.unpark(all)
	r.stats.OrderWaitsExpired.Add(uint64(expired))
	for _, q := range ready {
		r.ready <- q
	}
}

// send sends one request; with writes watched, marked, and an unsafe one
// alone, from its first barrier to its last.
func (r *Replayer) send(ctx context.Context, req *httpstream.Request, msg []byte, headLen int) (*Response, error) {
	w := r.opts.Writes
	if w == nil {
		return r.client.Do(ctx, msg, headLen, string(req.Method()), req.Expect100)
	}
	marker := w.Begin(ctx, req, !req.Safe())
	msg, headLen = withHeader(msg, headLen, MarkerHeader, marker)
	resp, err := r.client.Do(ctx, msg, headLen, string(req.Method()), req.Expect100)
	w.End(context.WithoutCancel(ctx), marker, err == nil) // its barrier is written even as a stop cuts the request short
	return resp, err
}

// withHeader is msg with a header line added at the end of its head
// (headLen bytes, ending in CRLF CRLF), and the head's new length.
func withHeader(msg []byte, headLen int, name, value string) ([]byte, int) {
	if headLen < 4 || string(msg[headLen-4:headLen]) != "\r\n\r\n" {
		return msg, headLen // a head this replayer did not frame: left as it is
	}
	line := name + ": " + value + "\r\n"
	out := make([]byte, 0, len(msg)+len(line))
	out = append(out, msg[:headLen-2]...)
	out = append(out, line...)
	out = append(out, msg[headLen-2:]...)
	return out, headLen + len(line)
}

// Holds says whether requests of production connection conn are queued
// or being replayed.
func (r *Replayer) Holds(conn uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.conns[conn]
	return !r.stopped && q != nil && (q.running || len(q.reqs) > 0)
}

// Conns returns how many production connections the replayer keeps a
// queue for: those with requests queued or in flight, and those idle
// until EndConn says they are over.
func (r *Replayer) Conns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Stopped says whether Stop has finished: nothing is queued or in flight.
func (r *Replayer) Stopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

// Stop refuses new requests and lets the workers finish what is queued
// until ctx ends; then it aborts what is in flight, drops (and counts) what
// is left, and closes idle connections.
func (r *Replayer) Stop(ctx context.Context) {
	// A second Stop (a retired target stopped again by the final drain)
	// waits for the first and does nothing else.
	r.stopOnce.Do(func() { r.stop(ctx) })
}

func (r *Replayer) stop(ctx context.Context) {
	r.mu.Lock()
	r.closed = true
	r.space.Broadcast()
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for {
			r.mu.Lock()
			idle := r.queued == 0 && r.stats.InFlight.Load() == 0
			r.unpark(false)
			r.mu.Unlock()
			if idle {
				close(done)
				return
			}
			select {
			case <-ctx.Done():
				close(done)
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	<-done
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Lock()
	r.unpark(true) // what is left is dropped below with the rest
	close(r.ready)
	r.readyClosed = true
	r.mu.Unlock()
	r.wg.Wait()
	// What no worker took is dropped, and counted.
	r.mu.Lock()
	for q := range r.ready {
		r.stats.QueueDrops.Add(uint64(len(q.reqs)))
		r.queued -= len(q.reqs)
		for _, req := range q.reqs {
			r.queuedBytes -= int64(len(req.Raw))
		}
		q.reqs, q.bytes = nil, 0
	}
	r.stats.Queued.Store(int64(r.queued))
	r.stopped = true
	r.mu.Unlock()
	r.client.CloseIdle()
}
