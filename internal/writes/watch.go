package writes

import (
	"container/list"
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
	// its answer, and how long writing a barrier may take; 0: 5s.
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

// quarantine: after a request failed (its answer never came: the service
// may still be running it), the windows opened within Wait may hold its
// late writes, so their sets are delivered incomplete rather than charged
// with what another request wrote.

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

	// alone is held exclusively by an unsafe request from Begin to End,
	// shared by the others: the watcher, not a replayer, owns it, so that
	// two replayers of one target (the old one draining after a reload)
	// never send a request into another's window.
	alone sync.RWMutex

	mu         sync.Mutex
	rows       rows
	pending    map[string]*pendingSet // by marker
	holds      map[string]bool        // by marker, from Begin to End: whether it holds alone exclusively
	open       *pendingSet            // the window the stream is in (between its barriers)
	quarantine time.Time              // windows opened before it are not trusted (see quarantine)
	dead       bool                   // the source ended: no set can complete
	seq        atomic.Uint64
	logged     time.Time

	stop chan struct{}
	done chan struct{}
}

type pendingSet struct {
	marker   string
	req      *httpstream.Request
	changes  []Change
	ended    bool      // End was called
	deadline time.Time // once ended: the barrier must have come by then
	// untrusted: its window cannot be known whole (its start barrier
	// failed, a failed request's writes may come in it, its own answer
	// never came): delivered incomplete, at its End.
	untrusted bool
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
	w := &Watcher{o: o, pending: map[string]*pendingSet{}, holds: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Begin is called before req is sent. With alone it returns once no
// other request to the target is in flight, and none starts until End, so
// that the transactions of its window are its; without, it waits only
// for a request alone to end. It returns the marker the request carries.
// Every Begin must be followed by End.
func (w *Watcher) Begin(ctx context.Context, req *httpstream.Request, alone bool) string {
	if alone {
		w.alone.Lock()
	} else {
		w.alone.RLock()
	}
	marker := runID + "." + strconv.FormatUint(w.seq.Add(1), 10)
	p := &pendingSet{marker: marker, req: req}
	w.mu.Lock()
	w.holds[marker] = alone
	if w.dead {
		w.mu.Unlock()
		w.Stats.Incomplete.Add(1) // nothing will come: not compared
		w.o.Deliver(Set{Target: w.o.Target, Req: req})
		return marker
	}
	w.pending[marker] = p
	p.untrusted = alone && !w.o.MarkersOnly && time.Now().Before(w.quarantine)
	w.mu.Unlock()
	if alone && !w.o.MarkersOnly && !p.untrusted {
		if err := w.sync(ctx, "s:"+marker); err != nil {
			w.mu.Lock()
			p.untrusted = true // its window will not open: its unmarked writes would be missing
			w.warnLocked("writes: a barrier could not be written: the request's writes are not compared", err)
			w.mu.Unlock()
		}
	}
	return marker
}

// End is called once the request's answer came (answered) or it failed:
// its set is delivered when its barrier comes through the stream, or
// incomplete after Wait. It lets the next request alone go.
func (w *Watcher) End(ctx context.Context, marker string, answered bool) {
	defer w.release(marker)
	w.mu.Lock()
	p := w.pending[marker]
	if !answered {
		// Still running at the service, maybe: what it writes later must
		// not be charged to the next window.
		w.quarantine = time.Now().Add(w.o.Wait)
		if p != nil {
			p.untrusted = true
		}
	}
	if p == nil || p.untrusted {
		if p != nil {
			w.deliver(p, false)
		}
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	err := w.sync(ctx, "e:"+marker)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending[marker] != p {
		return // delivered meanwhile (the source ended)
	}
	p.ended = true
	p.deadline = time.Now().Add(w.o.Wait)
	if err != nil {
		p.deadline = time.Time{} // no barrier will come: incomplete at the next tick
		w.warnLocked("writes: the end barrier could not be written: the request's writes are not compared", err)
	}
}

// release lets go of what Begin took for marker.
func (w *Watcher) release(marker string) {
	w.mu.Lock()
	alone, ok := w.holds[marker]
	delete(w.holds, marker)
	w.mu.Unlock()
	switch {
	case !ok:
	case alone:
		w.alone.Unlock()
	default:
		w.alone.RUnlock()
	}
}

// sync writes a barrier, within Wait: a database that hangs must not hold
// the request, or a stop, with it.
func (w *Watcher) sync(ctx context.Context, token string) error {
	ctx, cancel := context.WithTimeout(ctx, w.o.Wait)
	defer cancel()
	return w.o.Sync(ctx, token)
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
	defer func() {
		w.mu.Lock()
		w.dead = true
		w.mu.Unlock()
	}()
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
	if x.Lost {
		// Whose it was is not known: any set in flight may miss it.
		for _, p := range w.pending {
			p.untrusted = true
		}
		w.Stats.Unattributed.Add(1)
		return
	}
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
// request's difference, not the update's. Bounded in rows and in bytes;
// the row written longest ago is forgotten first (its next update is
// compared whole).
type rows struct {
	byKey map[string]*list.Element // of *knownRow
	order list.List                // least recently written first
	bytes int
}

type knownRow struct {
	key  string
	cols map[string]*string
	size int
}

const (
	maxRows     = 100000
	maxRowBytes = 64 << 20
)

// written updates what is known of c's row and, for an update, leaves in
// c.New the key and the columns it changed, and in c.Old the key and those
// columns' values before (REPLICA IDENTITY FULL sends the whole row).
func (r *rows) written(c *Change) {
	if len(c.Key) == 0 {
		return
	}
	if r.byKey == nil {
		r.byKey = map[string]*list.Element{}
	}
	switch c.Op {
	case "delete":
		r.forget(rowKey(c.Table, c.Key, c.Old))
	case "insert":
		r.remember(rowKey(c.Table, c.Key, c.New), c.New)
	case "update":
		// The row is found by its key before the update: a key the update
		// changed is in Old.
		was := c.New
		if c.Old != nil {
			was = c.Old
		}
		oldKey := rowKey(c.Table, c.Key, was)
		var before map[string]*string
		if e := r.byKey[oldKey]; e != nil {
			before = e.Value.(*knownRow).cols
		} else if len(c.Old) > len(c.Key) {
			before = c.Old // the whole row before, from the replica identity
		}
		after := c.New
		if before != nil {
			after = maps.Clone(before)
			maps.Copy(after, c.New)
			changed := make(map[string]*string, len(c.Key)+2)
			var prior map[string]*string
			for col, v := range c.New {
				old, had := before[col]
				if !had || !sameValue(old, v) || slices.Contains(c.Key, col) {
					changed[col] = v
					if c.Old != nil && !slices.Contains(c.Key, col) {
						if prior == nil {
							prior = map[string]*string{}
						}
						prior[col] = old
					}
				}
			}
			if c.Old != nil {
				for _, k := range c.Key {
					if prior == nil {
						prior = map[string]*string{}
					}
					prior[k] = c.Old[k]
				}
			}
			c.New, c.Old = changed, prior
		}
		r.forget(oldKey)
		r.remember(rowKey(c.Table, c.Key, c.New), after)
	}
}

// rowKey names a row by its table and key columns' values.
func rowKey(table string, key []string, row map[string]*string) string {
	if row == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(table)
	for _, k := range key {
		b.WriteByte(0)
		if v := row[k]; v != nil {
			b.WriteString(*v)
		}
	}
	return b.String()
}

func (r *rows) remember(key string, cols map[string]*string) {
	if key == "" || cols == nil {
		return
	}
	r.forget(key)
	size := len(key)
	for col, v := range cols {
		size += len(col) + 16
		if v != nil {
			size += len(*v)
		}
	}
	if size > maxRowBytes/16 {
		return // one row must not push out all the others
	}
	r.byKey[key] = r.order.PushBack(&knownRow{key: key, cols: maps.Clone(cols), size: size})
	r.bytes += size
	for r.order.Len() > maxRows || r.bytes > maxRowBytes {
		r.forget(r.order.Front().Value.(*knownRow).key)
	}
}

func (r *rows) forget(key string) {
	if e := r.byKey[key]; e != nil {
		r.bytes -= e.Value.(*knownRow).size
		r.order.Remove(e)
		delete(r.byKey, key)
	}
}

func sameValue(a, b *string) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

// deliver hands p's set over. w.mu is held.
func (w *Watcher) deliver(p *pendingSet, complete bool) {
	complete = complete && !p.untrusted
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
	w.dead = w.dead || all // no Begin after this waits for what will not come
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
