package writes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// A Set is what one replayed request wrote to its target's database.
type Set struct {
	Target  string
	Req     *httpstream.Request
	Changes []Change
	// Complete says every change the request caused is in Changes: the
	// barrier emitted after its answer came through the stream. A set not
	// complete (the database or its stream failed, the barrier was late)
	// is not compared.
	Complete bool
}

// Doc is the set as the comparison reads it (see Document).
func (s Set) Doc() []byte { return Document(s.Changes) }

// A Source delivers a database's committed transactions and barriers in
// commit order (PGSource, DebeziumSource).
type Source interface {
	Txns() <-chan Txn
	Err() error
	Close()
}

// WatchOptions configure a Watcher.
type WatchOptions struct {
	Target string
	Source Source
	// Sync emits a barrier with the token into the source's stream: it
	// returns once the barrier is in the database's log, after every
	// transaction committed before the call.
	Sync func(ctx context.Context, token string) error
	// Deliver receives each request's set, on the watcher's goroutine,
	// which it must not hold up (the comparator only queues it).
	Deliver func(Set)
	// MarkersOnly attributes only the transactions that carry a request's
	// marker: handlers of a fleet replaying to one database see each
	// other's writes in their windows.
	MarkersOnly bool
	// Wait bounds how long a request's set waits for its barrier after
	// its answer; 0: 5s.
	Wait time.Duration
	Log  *slog.Logger
}

// WatchStats count the attribution.
type WatchStats struct {
	Requests atomic.Uint64 // sets delivered complete
	Marked   atomic.Uint64 // transactions attributed by the request's marker
	Windowed atomic.Uint64 // transactions attributed by the request's window (it alone in flight)
	// Unattributed transactions committed outside any window without a
	// marker of a request in flight (a safe request's write among others,
	// a job of the service's own): counted, never guessed.
	Unattributed atomic.Uint64
	Late         atomic.Uint64 // marked for a request whose set was already delivered
	Incomplete   atomic.Uint64 // sets delivered incomplete: not compared
}

// Watcher ties each transaction a target's database commits to the
// replayed request that caused it, and hands over each request's set.
//
// Attribution: a transaction carrying a request's marker (the service
// emitted pg_logical_emit_message(true, 'shadowtap', <marker>) with the
// marker of the X-Shadowtap-Request header it was sent) is that
// request's. A transaction without one is the request's whose window it
// falls in: the replayer sends an unsafe request alone (no other request
// to the target in flight) between a start barrier and an end barrier,
// so what the stream delivers between them is its. Anything else is
// counted unattributed. A request's set is complete when its end barrier
// comes through the stream: every transaction committed before its
// answer came has been delivered.
type Watcher struct {
	o     WatchOptions
	Stats WatchStats

	mu      sync.Mutex
	rows    rows
	pending map[string]*pendingSet // by marker
	open    *pendingSet            // the window the stream is in (between its barriers)
	seq     atomic.Uint64
	logged  time.Time

	stop chan struct{}
	done chan struct{}
}

type pendingSet struct {
	marker   string
	req      *httpstream.Request
	changes  []Change
	ended    bool      // End was called
	deadline time.Time // once ended: the barrier must have come by then
}

// runID tells this process's markers apart from another handler's.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// Watch starts a watcher over o.Source; Close stops it.
func Watch(o WatchOptions) *Watcher {
	if o.Wait <= 0 {
		o.Wait = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{o: o, pending: map[string]*pendingSet{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Begin is called before req is sent; alone says no other request to the
// target is in flight until End (the replayer holds it alone), so that
// the transactions of its window are its. It returns the marker the
// request carries.
func (w *Watcher) Begin(ctx context.Context, req *httpstream.Request, alone bool) string {
	marker := runID + "." + strconv.FormatUint(w.seq.Add(1), 10)
	w.mu.Lock()
	w.pending[marker] = &pendingSet{marker: marker, req: req}
	w.mu.Unlock()
	if alone && !w.o.MarkersOnly {
		if err := w.o.Sync(ctx, "s:"+marker); err != nil {
			w.warn("writes: a barrier could not be written: the request's unmarked writes are not attributed", err)
		}
	}
	return marker
}

// End is called once the request's answer came (or it failed): its set is
// delivered when its barrier comes through the stream, or incomplete
// after Wait. With alone, call it before another request may start.
func (w *Watcher) End(ctx context.Context, marker string) {
	err := w.o.Sync(ctx, "e:"+marker)
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending[marker]
	if p == nil {
		return
	}
	p.ended = true
	p.deadline = time.Now().Add(w.o.Wait)
	if err != nil {
		p.deadline = time.Time{} // no barrier will come: incomplete at the next tick
		w.warnLocked("writes: the end barrier could not be written: the request's writes are not compared", err)
	}
}

// Close delivers what is pending (complete if its barrier comes within
// Wait) and stops the watcher and its source.
func (w *Watcher) Close() {
	close(w.stop)
	<-w.done
	w.o.Source.Close()
}

func (w *Watcher) run() {
	defer close(w.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var closing <-chan time.Time
	stop, txns := w.stop, w.o.Source.Txns()
	for {
		select {
		case x, ok := <-txns:
			if !ok {
				if err := w.o.Source.Err(); err != nil {
					w.warn("writes: the database's stream ended: writes are no longer compared", err)
				}
				w.expire(true)
				return
			}
			w.take(x)
		case <-tick.C:
			w.expire(false)
		case <-stop:
			stop = nil // a closed channel no longer selected
			closing = time.After(w.o.Wait)
			w.mu.Lock()
			for _, p := range w.pending {
				if !p.ended { // the replayer has stopped: it will not end
					p.ended, p.deadline = true, time.Now().Add(w.o.Wait)
				}
			}
			w.mu.Unlock()
		case <-closing:
			w.expire(true)
			return
		}
		if closing != nil && w.idle() {
			return
		}
	}
}

func (w *Watcher) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending) == 0
}

// take attributes one transaction, or passes one barrier.
func (w *Watcher) take(x Txn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if x.Sync != "" {
		kind, marker, _ := strings.Cut(x.Sync, ":")
		p := w.pending[marker]
		switch {
		case p == nil:
		case kind == "s":
			w.open = p
		case kind == "e":
			if w.open == p {
				w.open = nil
			}
			w.deliver(p, true)
		}
		return
	}
	for i := range x.Changes {
		w.rows.written(&x.Changes[i])
	}
	for _, m := range x.Marks {
		if p := w.pending[m]; p != nil {
			p.changes = append(p.changes, x.Changes...)
			w.Stats.Marked.Add(1)
			return
		}
		if strings.HasPrefix(m, runID+".") {
			w.Stats.Late.Add(1)
			return
		}
	}
	if w.open != nil && len(x.Marks) == 0 {
		w.open.changes = append(w.open.changes, x.Changes...)
		w.Stats.Windowed.Add(1)
		return
	}
	w.Stats.Unattributed.Add(1)
}

// rows are the rows the stream wrote, as last written, so that an update
// says what it changed: PostgreSQL sends the whole row after an update,
// and a column an earlier request wrote differently (a total) is that
// request's difference, not the update's.
type rows struct {
	last map[string]map[string]*string // by table and key
}

// maxRows bounds the rows remembered; past it one is forgotten (its next
// update is compared whole).
const maxRows = 100000

// written updates what is known of c's row and, for an update of a known
// row, leaves in c.New the key and the columns it changed.
func (r *rows) written(c *Change) {
	row := c.New
	if c.Op == "delete" {
		row = c.Old
	}
	if len(c.Key) == 0 || row == nil {
		return
	}
	var b strings.Builder
	b.WriteString(c.Table)
	for _, k := range c.Key {
		b.WriteByte(0)
		if v := row[k]; v != nil {
			b.WriteString(*v)
		}
	}
	key := b.String()
	if r.last == nil {
		r.last = map[string]map[string]*string{}
	}
	switch c.Op {
	case "delete":
		delete(r.last, key)
		return
	case "update":
		if before, ok := r.last[key]; ok {
			after := maps.Clone(before)
			changed := make(map[string]*string, len(c.Key)+2)
			for col, v := range c.New {
				after[col] = v
				if old, had := before[col]; !had || !sameValue(old, v) || slices.Contains(c.Key, col) {
					changed[col] = v
				}
			}
			r.last[key], c.New = after, changed
			return
		}
	}
	if len(r.last) >= maxRows {
		for k := range r.last {
			delete(r.last, k)
			break
		}
	}
	r.last[key] = maps.Clone(c.New)
}

func sameValue(a, b *string) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

// deliver hands p's set over. w.mu is held.
func (w *Watcher) deliver(p *pendingSet, complete bool) {
	delete(w.pending, p.marker)
	if w.open == p {
		w.open = nil
	}
	if complete {
		w.Stats.Requests.Add(1)
	} else {
		w.Stats.Incomplete.Add(1)
	}
	w.o.Deliver(Set{Target: w.o.Target, Req: p.req, Changes: p.changes, Complete: complete})
}

// expire delivers incomplete the sets whose barrier is overdue (all of
// them, with all).
func (w *Watcher) expire(all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for _, p := range w.pending {
		if all || p.ended && now.After(p.deadline) {
			w.deliver(p, false)
		}
	}
}

func (w *Watcher) warn(msg string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnLocked(msg, err)
}

// warnLocked logs at most once a minute. w.mu is held.
func (w *Watcher) warnLocked(msg string, err error) {
	if time.Since(w.logged) < time.Minute {
		return
	}
	w.logged = time.Now()
	w.o.Log.Warn(msg, "target", w.o.Target, "err", err)
}
