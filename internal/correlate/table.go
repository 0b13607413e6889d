// Package correlate keeps a test target in step with production. A test
// environment starts from a copy of production's data, but what is
// created after the copy differs: session cookies, bearer tokens, cart
// and order ids, order numbers. Replayed as they are, production's
// requests then name sessions and orders the target never made.
//
// A Table learns, for one target, pairs (the value production's answer
// created, the value the target's answer to the same request created at
// the same site: the same cookie, header, JSON path or Location segment)
// and translates later requests before they are sent: cookies, a bearer
// token, header values, path segments, query and form values and JSON
// leaves, whole values only, never inside another value. A short number
// (an order number 1042) is translated only where a name it was created
// under names it (orders/1042, "number": 1042), never wherever its digits
// appear. A value both sides answered alike is shared data, and never
// translated.
package correlate

import (
	"bytes"
	"container/list"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// Options bound a Table.
type Options struct {
	MaxPairs int           // pairs (and pending values) kept; the oldest go first. 0: 100000
	TTL      time.Duration // a pair unused this long is forgotten. 0: 30m
	Wait     time.Duration // a request naming a value still being learned waits this long at most. 0: 2s
	// Exclude names what is never learned nor translated: cookies,
	// headers, JSON keys, query and form names (case, '-' and '_' aside).
	Exclude []string
}

// DefaultOptions are a Table's defaults.
var DefaultOptions = Options{MaxPairs: 100000, TTL: 30 * time.Minute, Wait: 2 * time.Second}

func (o Options) or() Options {
	if o.MaxPairs <= 0 {
		o.MaxPairs = DefaultOptions.MaxPairs
	}
	if o.TTL <= 0 {
		o.TTL = DefaultOptions.TTL
	}
	if o.Wait <= 0 {
		o.Wait = DefaultOptions.Wait
	}
	return o
}

// Stats count what a Table did.
type Stats struct {
	Learned    uint64 // pairs learned
	Translated uint64 // values translated in requests
	Requests   uint64 // requests with at least one translated value
	Waited     uint64 // requests that waited for a pair being learned
	GaveUp     uint64 // of those, the pair was not learned in time
	Expired    uint64 // pairs forgotten: unused for the TTL, or the oldest beyond MaxPairs
	Shared     uint64 // values both sides answered alike: never translated
	Pairs      int    // pairs held now
	Pending    int    // values production created whose target value is awaited
}

// entry is one production value: its target value once learned, the
// names it was created under, and a channel closed when it is learned.
type entry struct {
	key    uint64 // keyed hash of production's value: only looked up, never shown
	state  state
	target string
	names  []string
	sent   bool          // translated in a request: an id carried forward, not merely a value that differed
	ready  chan struct{} // closed when the state is no longer pending
	used   time.Time
	elem   *list.Element
}

type state byte

const (
	pending  state = iota // production created it; the target's answer is awaited
	learned               // the target's value is known
	unpaired              // the target's answer had none at its site, or it came too late
	shared                // both sides answered it alike: shared data, never translated
)

// settle leaves the pending state; t.mu held.
func (e *entry) settle(s state) {
	if e.state == pending {
		close(e.ready)
	}
	e.state = s
}

// A Table is one target's pairs. Its methods are safe for concurrent use.
type Table struct {
	opts    Options
	exclude map[string]bool // normalised names of Options.Exclude
	now     func() time.Time

	mu      sync.Mutex
	entries map[uint64]*entry
	created map[uint64]uint64 // the target's value's key → production's
	order   *list.List        // of *entry, least recently used at the front
	stats   Stats

	openMu    sync.Mutex
	open      map[Exchange]half // one answer in, the other awaited
	openOrder []Exchange        // oldest first; may hold exchanges already paired
}

// New returns an empty table.
func New(opts Options) *Table {
	excl := map[string]bool{}
	for _, n := range opts.Exclude {
		excl[normName(n)] = true
	}
	return &Table{opts: opts.or(), exclude: excl, now: time.Now, entries: map[uint64]*entry{}, created: map[uint64]uint64{}, order: list.New()}
}

// seed keys every table's hashes alike, so that two targets' tables name
// one production value with one key (see Origin).
var seed = maphash.MakeSeed()

func (t *Table) hash(s string) uint64 { return Key(s) }

// Key is production value v's key in every table.
func Key(v string) uint64 { return maphash.String(seed, v) }

// Origin is the key of the production value the target created v for,
// once a later request carried it back (a session, an order's id): a
// value that merely differed between the two answers (a request id, a
// wrong total) has none, and stays a difference for the comparison.
func (t *Table) Origin(v string) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, ok := t.created[t.hash(v)]
	if !ok {
		return 0, false
	}
	e := t.entries[k]
	return k, e != nil && e.state == learned && e.sent
}

// sent marks production value v as carried back by a request.
func (t *Table) markSent(v string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[t.hash(v)]; e != nil {
		e.sent = true
	}
}

// Stats returns the counts so far.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	for _, e := range t.entries {
		switch e.state {
		case learned:
			s.Pairs++
		case pending:
			s.Pending++
		}
	}
	return s
}

// entry returns production value v's entry, made if absent; t.mu held.
func (t *Table) entry(v string) *entry {
	k := t.hash(v)
	e := t.entries[k]
	if e == nil {
		e = &entry{key: k, ready: make(chan struct{})}
		t.entries[k] = e
		e.elem = t.order.PushBack(e)
		for t.order.Len() > t.opts.MaxPairs {
			t.drop(t.order.Front().Value.(*entry))
		}
	} else {
		t.order.MoveToBack(e.elem)
	}
	e.used = t.now()
	return e
}

// drop forgets an entry; t.mu held.
func (t *Table) drop(e *entry) {
	t.order.Remove(e.elem)
	delete(t.entries, e.key)
	if e.state == learned {
		delete(t.created, t.hash(e.target))
	}
	e.settle(unpaired)
	t.stats.Expired++
}

// expire forgets entries unused for the TTL; t.mu held.
func (t *Table) expire() {
	cut := t.now().Add(-t.opts.TTL)
	for f := t.order.Front(); f != nil; f = t.order.Front() {
		e := f.Value.(*entry)
		if e.used.After(cut) {
			return
		}
		t.drop(e)
	}
}

// excludes reports whether a value's own name (its cookie, header, key)
// is excluded.
func (t *Table) excludes(names []string) bool {
	return len(names) > 0 && t.exclude[normName(names[0])]
}

// expect notes production's values as awaited.
func (t *Table) expect(vals map[site]value) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire()
	for _, v := range vals {
		if !idLike(v.text) && !shortNumber(v.text) || t.excludes(v.names) {
			continue
		}
		e := t.entry(v.text)
		e.names = mergeNames(e.names, v.names)
	}
}

// learn pairs the values of production's answer with the target's at the
// same sites.
func (t *Table) learn(prod, target map[site]value) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire()
	for s, p := range prod {
		if !idLike(p.text) && !shortNumber(p.text) || t.excludes(p.names) {
			continue
		}
		e := t.entry(p.text)
		c, ok := target[s]
		switch {
		case e.state == shared:
		case ok && c.text == p.text:
			// Shared data: the copy both sides started from, or a value
			// both derive from the request. Never translated.
			if e.state == learned {
				delete(t.created, t.hash(e.target))
			}
			e.settle(shared)
			e.target = ""
			t.stats.Shared++
		case ok && (shortNumber(p.text) && shortNumber(c.text) || idLike(p.text) && idLike(c.text)):
			if e.state != learned {
				t.stats.Learned++
			}
			if e.state == learned {
				delete(t.created, t.hash(e.target))
			}
			e.settle(learned)
			e.target = c.text
			t.created[t.hash(c.text)] = e.key
			e.names = mergeNames(e.names, p.names)
		case e.state == pending:
			e.settle(unpaired) // nothing to wait for
		}
	}
}

func mergeNames(have, add []string) []string {
	for _, n := range add {
		found := false
		for _, h := range have {
			if h == n {
				found = true
				break
			}
		}
		if !found && len(have) < 8 {
			have = append(have, n)
		}
	}
	return have
}

// lookup is production value v's state: its target value when learned,
// or a channel to wait on while it is awaited.
func (t *Table) lookup(v string) (target string, names []string, ok bool, wait <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[t.hash(v)]
	if e == nil {
		return "", nil, false, nil
	}
	e.used = t.now()
	t.order.MoveToBack(e.elem)
	switch e.state {
	case learned:
		return e.target, e.names, true, nil
	case pending:
		return "", nil, false, e.ready
	}
	return "", nil, false, nil
}

// gaveUp settles a value still pending after a request waited for it: the
// next request naming it does not wait again.
func (t *Table) gaveUp(v string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[t.hash(v)]; e != nil && e.state == pending {
		e.settle(unpaired)
	}
}

// empty reports whether the table holds nothing: a request needs no look.
func (t *Table) empty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries) == 0
}

func (t *Table) count(f func(*Stats)) {
	t.mu.Lock()
	f(&t.stats)
	t.mu.Unlock()
}

// Exchange names one request: its production connection and its place
// on it.
type Exchange struct {
	Conn  uint64
	Index int
}

// maxOpen bounds the exchanges whose one answer waits for the other.
const maxOpen = 1 << 16

// half is one side's values of an exchange, waiting for the other side's.
type half struct {
	vals       map[site]value
	production bool
	at         time.Time
}

// Created is what one answer created, read once for every target's
// table (see Read).
type Created struct{ vals map[site]value }

// Read reads the values production's answer to req created: done once
// per answer, on the capture path, whatever the number of targets.
func Read(req []byte, prod diff.Message) Created {
	return Created{values(prod, collection(req))}
}

// Production takes production's answer (Read): its values are awaited
// (a request naming one waits for the pair, see Translate) until the
// target's answer to the same request pairs them.
func (t *Table) Production(x Exchange, prod Created) {
	t.expect(prod.vals)
	t.arrive(x, half{vals: prod.vals, production: true})
}

// Answered takes the target's answer to req; a target that did not
// answer gives an empty message, and production's values of the exchange
// are no longer awaited.
func (t *Table) Answered(x Exchange, req []byte, target diff.Message) {
	t.arrive(x, half{vals: values(target, collection(req))})
}

// arrive pairs one side's values of x with the other's, or keeps them
// until it comes (production's answer is seen on the mirror after the
// request, and the target may answer first), bounded in number and time.
func (t *Table) arrive(x Exchange, h half) {
	t.openMu.Lock()
	other, ok := t.open[x]
	if ok && other.production != h.production {
		delete(t.open, x)
	} else {
		ok = false
		if t.open == nil {
			t.open = map[Exchange]half{}
		}
		h.at = t.now()
		t.open[x] = h
		t.openOrder = append(t.openOrder, x)
		t.trimOpen()
	}
	t.openMu.Unlock()
	if !ok {
		return
	}
	if h.production {
		t.learn(h.vals, other.vals)
	} else {
		t.learn(other.vals, h.vals)
	}
}

// trimOpen forgets the oldest open exchanges beyond maxOpen or the TTL;
// t.openMu held.
func (t *Table) trimOpen() {
	cut := t.now().Add(-openTTL)
	for len(t.openOrder) > 0 {
		x := t.openOrder[0]
		h, ok := t.open[x]
		if ok && len(t.open) <= maxOpen && h.at.After(cut) {
			break
		}
		t.openOrder = t.openOrder[1:]
		delete(t.open, x)
	}
	if len(t.openOrder) > 2*len(t.open)+1024 {
		// Mostly exchanges paired since: keep those still open.
		kept := t.openOrder[:0]
		for _, x := range t.openOrder {
			if _, ok := t.open[x]; ok {
				kept = append(kept, x)
			}
		}
		t.openOrder = slices.Clip(kept)
	}
}

// openTTL is how long one answer of an exchange waits for the other: a
// target that answers at all answers within its response timeout.
const openTTL = 2 * time.Minute

// Learn pairs the values production's answer to req created with those
// the target's answer to the same request created at the same sites.
func (t *Table) Learn(req []byte, prod, target diff.Message) {
	c := collection(req)
	t.learn(values(prod, c), values(target, c))
}

// Expect notes the values production's answer to req created, as
// Production does, without an exchange to pair them in.
func (t *Table) Expect(req []byte, prod diff.Message) {
	t.expect(values(prod, collection(req)))
}

// collection is the resource a request acts on, the last path segment
// that is a name and not an id: POST /api/orders → orders,
// POST /api/carts/c7/items → items.
func collection(req []byte) string {
	line, _, _ := bytes.Cut(req, []byte("\r\n"))
	f := bytes.Fields(line)
	if len(f) < 2 {
		return ""
	}
	path, _, _ := bytes.Cut(f[1], []byte("?"))
	segs := strings.Split(string(path), "/")
	for i := len(segs) - 1; i >= 0; i-- {
		if s := segs[i]; s != "" && !strings.ContainsAny(s, "0123456789") {
			return s
		}
	}
	return ""
}
