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
// (an order number 1042) is the id of what it was created under (an
// order): it is translated only where an order is named (orders/1042,
// "orderId": 1042), never wherever its digits appear, and order 1042 and
// product 1042 are two values. A value both sides answered alike is
// shared data, and never translated.
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
	// MaxPairs bounds the pairs kept, the least recently used going
	// first, and, apart, the values awaited or shared. 0: 100000
	MaxPairs int
	TTL      time.Duration // a pair unused this long is forgotten. 0: 30m
	Wait     time.Duration // a request naming a value still being learned waits this long at most. 0: 2s
	// Settle is how long after its capture a request naming values not
	// known waits for the engines to hand over the answers captured
	// before it (see TranslateCaptured). 0: 3ms
	Settle time.Duration
	// Fleet, when set, shares the table's pairs with the other handlers
	// of a fleet (see Fleet); a reload keeps the table's own.
	Fleet Fleet
	// Exclude names what is never learned nor translated: cookies,
	// headers, JSON keys, query and form names (case, '-' and '_' aside).
	Exclude []string
}

// DefaultOptions are a Table's defaults.
var DefaultOptions = Options{MaxPairs: 100000, TTL: 30 * time.Minute, Wait: 2 * time.Second, Settle: 3 * time.Millisecond}

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
	if o.Settle <= 0 {
		o.Settle = DefaultOptions.Settle
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
	Settled    uint64 // requests just captured that waited for the engines (Options.Settle)
	Expired    uint64 // pairs forgotten: unused for the TTL, or the oldest beyond MaxPairs
	Shared     uint64 // values both sides answered alike: never translated
	Pairs      int    // pairs held now
	Pending    int    // values production created whose target value is awaited
	Fleet      FleetStats
}

// entry is one production value: its target value once learned, and a
// channel closed when it is learned.
type entry struct {
	key    uint64 // keyed hash of production's value (and what a short one names): only looked up, never shown
	state  state
	target string
	entity string // what a short number names: the target's value is keyed under it too
	sent   bool   // carried back by a request (Carried, or translated): an id, not merely a value that differed
	// told is when production's answer that told of it ended (capture
	// clock; 0: not known): a request captured before then cannot name
	// it from that answer, and does not wait for its pair.
	told int64
	// fleetKey is its key in the fleet (with a Fleet); fromFleet, that
	// another handler told of it, and this one does not tell again.
	fleetKey  FleetKey
	fromFleet bool
	ready     chan struct{} // closed when the state is no longer pending
	used      time.Time
	elem      *list.Element // in the table's pairs when learned, else in its others
}

type state byte

const (
	pending  state = iota // production created it; the target's answer is awaited
	learned               // the target's value is known
	unpaired              // the target's answer had none at its site, or it came too late
	shared                // both sides answered it alike: shared data, never translated
)

// settle puts e in state s, and in the list of that state; t.mu held.
func (t *Table) settle(e *entry, s state) {
	if e.state == pending && s != pending {
		close(e.ready)
	}
	from, to := t.listOf(e.state), t.listOf(s)
	e.state = s
	if from != to {
		from.Remove(e.elem)
		e.elem = to.PushBack(e)
		t.trim(to)
	}
}

// listOf is the list of the entries in state s: learned pairs apart, so
// that values awaited or shared never push a pair out.
func (t *Table) listOf(s state) *list.List {
	if s == learned {
		return t.pairs
	}
	return t.others
}

// trim drops l's least recently used entries beyond MaxPairs; t.mu held.
func (t *Table) trim(l *list.List) {
	for l.Len() > t.opts.MaxPairs {
		t.drop(l.Front().Value.(*entry))
	}
}

// A Table is one target's pairs. Its methods are safe for concurrent use.
type Table struct {
	opts    Options
	exclude map[string]bool // normalised names of Options.Exclude
	now     func() time.Time

	mu      sync.Mutex
	entries map[uint64]*entry
	created map[uint64]uint64 // the target's value's key → production's
	pairs   *list.List        // learned entries, least recently used at the front
	others  *list.List        // the others: awaited, unpaired, shared
	stats   Stats
	// fresh are the production values each exchange paired lately, until
	// a request carried them back (see Unsettled), the oldest forgotten
	// past maxFresh.
	fresh      map[Exchange][]uint64
	freshOrder []Exchange

	openMu    sync.Mutex
	open      map[Exchange]half // one answer in, the other awaited
	openOrder []Exchange        // oldest first; may hold exchanges already paired
	openBytes int               // of the values in open
	forgotten []half            // production halves trimmed, to be settled outside openMu

	fleet  Fleet                // nil: this process alone
	missed map[uint64]time.Time // values the fleet did not know, until when (see fleetLookup)
}

// New returns an empty table.
func New(opts Options) *Table {
	t := &Table{now: time.Now, entries: map[uint64]*entry{}, created: map[uint64]uint64{}, pairs: list.New(), others: list.New(),
		fleet: opts.Fleet, missed: map[uint64]time.Time{}, fresh: map[Exchange][]uint64{}}
	t.SetOptions(opts)
	if t.fleet != nil {
		t.fleet.Watch(t.takeIn)
	}
	return t
}

// SetOptions puts new bounds and exclusions in force (a reload): what
// the table holds beyond the new bounds goes, the least recently used
// first.
func (t *Table) SetOptions(opts Options) {
	excl := map[string]bool{}
	for _, n := range opts.Exclude {
		excl[normName(n)] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	opts.Fleet = nil // the table's own, set by New
	t.opts, t.exclude = opts.or(), excl
	t.trim(t.pairs)
	t.trim(t.others)
	t.expire()
}

// seed keys every table's hashes alike, so that two targets' tables name
// one production value with one key (see Origin).
var seed = maphash.MakeSeed()

// keyOf is the key of value v, a short number's with what it names.
func keyOf(v, entity string) uint64 {
	if !shortNumber(v) {
		return maphash.String(seed, v)
	}
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(entity)
	h.WriteByte(0)
	h.WriteString(v)
	return h.Sum64()
}

// A Field is where the comparison found a value: a field of an answer to
// Request (diff's key: body.order.number, header.X-Order-Id) or, with
// Segment set, the path segment after Segment in it (a Location's
// /orders/1042).
type Field struct {
	Request []byte
	Key     string
	Segment string
}

// entity is what a short number at f names (see keyEntity).
func (f Field) entity() string {
	if f.Segment != "" {
		return segmentEntity(f.Segment)
	}
	kind, path, _ := strings.Cut(f.Key, ".")
	if kind == "header" {
		return headerEntity(path)
	}
	parts := strings.Split(path, ".")
	for i, p := range parts {
		parts[i], _, _ = strings.Cut(p, "[")
	}
	key, parent := parts[len(parts)-1], ""
	if len(parts) > 1 {
		parent = parts[len(parts)-2]
	}
	return nameEntity(key, or(parent, collection(f.Request)))
}

// KeyAt is the key of production value v found at f: the same in every
// table of a process (and, with a Fleet, of the fleet).
func (t *Table) KeyAt(v string, f Field) uint64 { return t.keyOf(v, f.entity()) }

// keyOf is value v's key in t: with a fleet, its fleet key's first
// bytes, so that what another handler publishes finds its entry here.
func (t *Table) keyOf(v, entity string) uint64 {
	k, _ := t.keys(v, entity)
	return k
}

// keys is value v's key in t and, with a fleet, its key there (a long
// value's without what it names, as keyOf).
func (t *Table) keys(v, entity string) (uint64, FleetKey) {
	if t.fleet == nil {
		return keyOf(v, entity), FleetKey{}
	}
	if !shortNumber(v) {
		entity = ""
	}
	fk := t.fleet.Key(entity, v)
	return fleetLocal(fk), fk
}

// Origin is the key of the production value the target created v for
// (found at f; v itself when the target made the same value), once a
// later request carried it back (a session, an order's id): a value that
// merely differed between the two answers (a
// request id, a wrong total, a quantity) has none, and stays a difference
// for the comparison.
func (t *Table) Origin(v string, f Field) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	own := t.keyOf(v, f.entity())
	k, ok := t.created[own]
	if !ok {
		// The target made the very value production made (a copy whose
		// sequence is where production's was): v is its own origin.
		e := t.entries[own]
		return own, e != nil && e.state == shared && e.sent
	}
	e := t.entries[k]
	return k, e != nil && e.state == learned && e.sent
}

// markSent marks the production value of key k as carried back by a
// request.
func (t *Table) markSent(k uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[k]; e != nil {
		e.sent = true
	}
}

// Stats returns the counts so far.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	if t.fleet != nil {
		s.Fleet = t.fleet.Stats()
	}
	s.Pairs = t.pairs.Len()
	for f := t.others.Front(); f != nil; f = f.Next() {
		if f.Value.(*entry).state == pending {
			s.Pending++
		}
	}
	return s
}

// entry returns production value v's entry, made (awaited) if absent;
// t.mu held.
func (t *Table) entry(v value) *entry {
	k, fk := t.keys(v.text, v.entity)
	e := t.entries[k]
	if e == nil {
		e = t.add(k, fk, v.entity)
		t.publish(e, Awaited)
	} else {
		t.listOf(e.state).MoveToBack(e.elem)
	}
	e.used = t.now()
	return e
}

// add makes an entry, awaited, for the value of keys k and fk; t.mu held.
func (t *Table) add(k uint64, fk FleetKey, entity string) *entry {
	e := &entry{key: k, fleetKey: fk, entity: entity, ready: make(chan struct{})}
	t.entries[k] = e
	e.elem = t.others.PushBack(e)
	t.trim(t.others)
	return e
}

// drop forgets an entry; t.mu held.
func (t *Table) drop(e *entry) {
	t.listOf(e.state).Remove(e.elem)
	delete(t.entries, e.key)
	if e.state == learned {
		delete(t.created, t.keyOf(e.target, e.entity))
	}
	if e.state == pending {
		close(e.ready)
	}
	e.state = unpaired
	t.stats.Expired++
}

// expire forgets entries unused for the TTL; t.mu held.
func (t *Table) expire() {
	cut := t.now().Add(-t.opts.TTL)
	for _, l := range []*list.List{t.pairs, t.others} {
		for f := l.Front(); f != nil && !f.Value.(*entry).used.After(cut); f = l.Front() {
			t.drop(f.Value.(*entry))
		}
	}
}

// expect notes production's values as awaited.
func (t *Table) expect(vals map[site]value, told int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire()
	for _, v := range vals {
		if !t.exclude[normName(v.name)] {
			if e := t.entry(v); e.state == pending && told != 0 && (e.told == 0 || told < e.told) {
				e.told = told
			}
		}
	}
}

// learn pairs the values of production's answer with the target's at the
// same sites, and returns the keys of those it paired as different.
func (t *Table) learn(prod, target map[site]value) (paired []uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire()
	for s, p := range prod {
		if t.exclude[normName(p.name)] {
			continue
		}
		e := t.entry(p)
		c, ok := target[s]
		switch {
		case e.state == shared:
		case ok && c.text == p.text:
			// Shared data: the copy both sides started from, or a value
			// both derive from the request. Never translated.
			if e.state == learned {
				delete(t.created, t.keyOf(e.target, e.entity))
			}
			t.settle(e, shared)
			e.target = ""
			t.stats.Shared++
		case ok && learnable(c.text, p.entity):
			if e.state == learned {
				delete(t.created, t.keyOf(e.target, e.entity))
			} else {
				t.stats.Learned++
			}
			t.settle(e, learned)
			e.target = c.text
			t.created[t.keyOf(c.text, e.entity)] = e.key
			e.fromFleet = false
			t.publish(e, Paired)
			paired = append(paired, e.key)
		case e.state == pending:
			t.settle(e, unpaired) // nothing to wait for
			t.publish(e, Unpaired)
		}
	}
	return paired
}

// lookup is the state of the production value of key k: its target
// value when learned, or a channel to wait on while it is awaited.
func (t *Table) lookup(k uint64) (target string, ok bool, wait <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[k]
	if e == nil {
		return "", false, nil
	}
	e.used = t.now()
	t.listOf(e.state).MoveToBack(e.elem)
	switch e.state {
	case learned:
		return e.target, true, nil
	case pending:
		return "", false, e.ready
	}
	return "", false, nil
}

// awaited is the channel a request captured at captured waits on for the
// value of key k: nil when it is not pending, or when production told of
// it only after the request was captured (the request cannot have it
// from there: the same text in it is something else, a product's code).
func (t *Table) awaited(k uint64, captured int64) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[k]
	if e == nil || e.state != pending || captured != 0 && e.told > captured {
		return nil
	}
	return e.ready
}

// gaveUp settles a value still pending after a request waited for it: the
// next request naming it does not wait again.
func (t *Table) gaveUp(k uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[k]; e != nil && e.state == pending {
		t.settle(e, unpaired)
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

// Bounds of the exchanges whose one answer waits for the other: in number,
// and in the bytes of the values they hold.
const (
	maxOpen      = 1 << 16
	maxOpenBytes = 32 << 20
)

// half is one side's values of an exchange, waiting for the other side's.
type half struct {
	vals       map[site]value
	production bool
	at         time.Time
	size       int // bytes of vals' texts
}

func sizeOf(vals map[site]value) int {
	n := 0
	for s, v := range vals {
		n += len(s.key) + len(v.text) + len(v.name) + len(v.entity) + 64
	}
	return n
}

// Created is what one answer created, read once for every target's
// table (see Read).
type Created struct {
	vals map[site]value
	// Told is when production's answer ended (capture clock), if known.
	Told int64
}

// Read reads the values production's answer to req created: done once
// per answer, on the capture path, whatever the number of targets.
func Read(req []byte, prod diff.Message) Created {
	return Created{vals: values(prod, collection(req))}
}

// Production takes production's answer (Read): its values are awaited
// (a request naming one waits for the pair, see Translate) until the
// target's answer to the same request pairs them.
func (t *Table) Production(x Exchange, prod Created) {
	t.expect(prod.vals, prod.Told)
	t.arrive(x, half{vals: prod.vals, production: true})
}

// Answered takes the target's answer to req; a target that did not
// answer gives an empty message, and production's values of the exchange
// are no longer awaited.
func (t *Table) Answered(x Exchange, req []byte, target diff.Message) {
	t.arrive(x, half{vals: values(target, collection(req))})
}

// Skipped says the target will never answer exchange x (filtered out,
// sampled out, dropped): production's values of it are no longer awaited,
// and no request naming one waits for it.
func (t *Table) Skipped(x Exchange) { t.arrive(x, half{}) }

// arrive pairs one side's values of x with the other's, or keeps them
// until it comes (production's answer is seen on the mirror after the
// request, and the target may answer first), bounded in number and time.
func (t *Table) arrive(x Exchange, h half) {
	t.openMu.Lock()
	other, ok := t.open[x]
	if ok && other.production != h.production {
		delete(t.open, x)
		t.openBytes -= other.size
	} else {
		ok = false
		if t.open == nil {
			t.open = map[Exchange]half{}
		}
		h.at, h.size = t.now(), sizeOf(h.vals)
		if old, dup := t.open[x]; dup {
			t.openBytes -= old.size
		}
		t.open[x] = h
		t.openBytes += h.size
		t.openOrder = append(t.openOrder, x)
		t.trimOpen()
	}
	var forgotten []half
	forgotten, t.forgotten = t.forgotten, nil
	t.openMu.Unlock()
	for _, f := range forgotten {
		t.learn(f.vals, nil) // production's values of an exchange the target never answered in time
	}
	if !ok {
		return
	}
	var paired []uint64
	if h.production {
		paired = t.learn(h.vals, other.vals)
	} else {
		paired = t.learn(other.vals, h.vals)
	}
	if len(paired) > 0 {
		t.mu.Lock()
		t.fresh[x] = paired
		t.freshOrder = append(t.freshOrder, x)
		for len(t.freshOrder) > maxFresh {
			delete(t.fresh, t.freshOrder[0])
			t.freshOrder = t.freshOrder[1:]
		}
		t.mu.Unlock()
	}
}

// maxFresh bounds the exchanges remembered as unsettled.
const maxFresh = 1 << 14

// Unsettled reports whether exchange x's answers paired values, different
// on each side, that no request has carried back yet: until one does, the
// comparison cannot tell a created id (each side its own) from a value
// that merely differs (a wrong total), and waits.
func (t *Table) Unsettled(x Exchange) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys, ok := t.fresh[x]
	if !ok {
		return false
	}
	for _, k := range keys {
		if e := t.entries[k]; e != nil && e.state == learned && !e.sent {
			return true
		}
	}
	delete(t.fresh, x) // its order entry goes when it is the oldest
	return false
}

// trimOpen forgets the oldest open exchanges beyond maxOpen, the byte
// bound or the TTL, keeping the production halves among them in
// t.forgotten for their values to be settled; t.openMu held.
func (t *Table) trimOpen() {
	cut := t.now().Add(-openTTL)
	for len(t.openOrder) > 0 {
		x := t.openOrder[0]
		h, ok := t.open[x]
		if ok && len(t.open) <= maxOpen && t.openBytes <= maxOpenBytes && h.at.After(cut) {
			break
		}
		t.openOrder = t.openOrder[1:]
		if ok {
			delete(t.open, x)
			t.openBytes -= h.size
			if h.production && len(h.vals) > 0 {
				t.forgotten = append(t.forgotten, h)
			}
		}
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
	t.expect(values(prod, collection(req)), 0)
}

// collection is the resource a request acts on, the last path segment
// that is a name and not an id: POST /api/orders → orders,
// POST /api/carts/c7/items → items.
func collection(req []byte) string {
	line, _, _ := bytes.Cut(req, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 2 {
		return ""
	}
	path, _, _ := bytes.Cut(f[1], []byte("?"))
	for len(path) > 0 {
		i := bytes.LastIndexByte(path, '/')
		seg := path[i+1:]
		if len(seg) > 0 && bytes.IndexAny(seg, "0123456789") < 0 {
			return string(seg)
		}
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return ""
}
