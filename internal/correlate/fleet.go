package correlate

import (
	"context"
	"time"
)

// A Fleet shares one target's pairs with the other handlers of a fleet
// (behind a Network Load Balancer, which spreads connections, not users:
// the login that creates a session is seen by one handler, the requests
// using it by another). What one handler learns, the others translate
// with. See the store package for the Redis/Valkey one.
type Fleet interface {
	// Key is the fleet-wide keyed hash of a production value (and, for a
	// short number, what it names): the store never holds the value.
	Key(entity, value string) FleetKey
	// Publish hands an item to the fleet without waiting; when the store
	// is slow or down it is dropped, and counted.
	Publish(Item)
	// Lookup reads keys' items from the fleet within ctx; a store known
	// to be down answers none at once.
	Lookup(ctx context.Context, keys []FleetKey) []Item
	// Watch has deliver called with the items other handlers publish,
	// from the fleet's own goroutine, until Close.
	Watch(deliver func(Item))
	Stats() FleetStats
	Close()
}

// FleetKey is a production value's key in the fleet.
type FleetKey [16]byte

// An Item is what the fleet knows of one production value.
type Item struct {
	Key    FleetKey
	State  ItemState
	Entity string // what a short number names
	Target string // the target's value, once Paired
	TTL    time.Duration
}

// ItemState is where one production value stands in the fleet.
type ItemState byte

const (
	Awaited  ItemState = iota + 1 // production created it; the target's answer is awaited by the handler that saw it
	Paired                        // the target's value is known
	Unpaired                      // the target's answer had none: nothing to wait for
)

// FleetStats count what a fleet link did.
type FleetStats struct {
	Up        bool   // the store answered last time it was asked
	Watching  bool   // subscribed: what the others publish arrives
	Published uint64 // items written
	Delivered uint64 // items other handlers published, received
	Found     uint64 // items looked up and found
	Dropped   uint64 // items not written: the store slow or down
	Errors    uint64 // store operations that failed
	Keys      int64  // keys the store held when last asked
}

// fleetMiss remembers, for a while, values the fleet did not know, so a
// request naming a value nobody created (a cookie from before the start)
// does not ask the store every time. What another handler publishes
// later is delivered (Watch) whatever this says.
const (
	fleetMissTTL = 10 * time.Second
	maxFleetMiss = 1 << 16
)

// fleetLookup asks the fleet about the tokens (keyed) of a request that
// this table does not know, and takes in what it knows; t.mu not held.
func (t *Table) fleetLookup(ctx context.Context, toks []keyedToken) {
	if t.fleet == nil {
		return
	}
	now := t.now()
	var keys []FleetKey
	t.mu.Lock()
	for _, tk := range toks {
		if t.entries[tk.key] != nil || now.Before(t.missed[tk.key]) {
			continue
		}
		keys = append(keys, tk.fleetKey)
	}
	t.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, fleetLookupTimeout)
	items := t.fleet.Lookup(lctx, keys)
	cancel()
	found := map[FleetKey]bool{}
	for _, it := range items {
		found[it.Key] = true
		t.takeIn(it)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.missed) > maxFleetMiss {
		clear(t.missed)
	}
	for _, fk := range keys {
		if !found[fk] {
			t.missed[fleetLocal(fk)] = now.Add(fleetMissTTL)
		}
	}
}

// fleetLookupTimeout bounds the store's answer to a request's lookup: a
// slow store costs a request this much at most.
const fleetLookupTimeout = 100 * time.Millisecond

func fleetLocal(k FleetKey) uint64 {
	return uint64(k[0])<<56 | uint64(k[1])<<48 | uint64(k[2])<<40 | uint64(k[3])<<32 |
		uint64(k[4])<<24 | uint64(k[5])<<16 | uint64(k[6])<<8 | uint64(k[7])
}

// takeIn puts what the fleet knows of a value in the table: a pair
// another handler learned, a value it awaits (a request here naming it
// waits, bounded, for the pair), or one it will never pair.
func (t *Table) takeIn(it Item) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := fleetLocal(it.Key)
	e := t.entries[k]
	if e == nil {
		if it.State == Unpaired {
			return
		}
		e = t.add(k, it.Key, it.Entity)
		e.fromFleet = true
	}
	e.used = t.now()
	switch {
	case e.state == shared || e.state == learned && it.State != Paired:
	case it.State == Paired && idLike(it.Target) || it.State == Paired && shortNumber(it.Target):
		if e.state == learned {
			delete(t.created, t.keyOf(e.target, e.entity))
		}
		e.target, e.entity = it.Target, it.Entity
		t.settle(e, learned)
		t.created[t.keyOf(e.target, e.entity)] = e.key
	case it.State == Unpaired && e.state == pending:
		t.settle(e, unpaired)
	}
}

// publish tells the fleet where production value v stands; t.mu held.
func (t *Table) publish(e *entry, state ItemState) {
	if t.fleet == nil || e.fromFleet && state != Paired {
		return
	}
	ttl := openTTL
	if state == Paired {
		ttl = t.opts.TTL
	}
	t.fleet.Publish(Item{Key: e.fleetKey, State: state, Entity: e.entity, Target: e.target, TTL: ttl})
}

// Close ends the table's link to its fleet, if any.
func (t *Table) Close() {
	if t.fleet != nil {
		t.fleet.Close()
	}
}
