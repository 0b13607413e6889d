// Package target routes extracted requests to the test environments: each
// target has its own filters, sampling, rewrites, limits and replayer, so
// a slow or failing target never holds up another. The set of targets can
// be replaced while running (configuration reload) without losing queued
// requests or reordering a connection.
package target

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/filter"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/replay"
	"github.com/shadowtap/shadowtap/internal/sample"
	"github.com/shadowtap/shadowtap/internal/store"
	"github.com/shadowtap/shadowtap/internal/writes"
)

// Observers see what the targets do, on the targets' goroutines: every
// finished replay, and what each request wrote where writes are compared.
// Either may be nil.
type Observers struct {
	Result  func(replay.Result)
	Written func(writes.Set)
}

// Stats count what a target did with the requests offered to it.
type Stats struct {
	Filtered   [filter.NumReasons]atomic.Uint64
	SampledOut atomic.Uint64
	// HandoverDrops counts requests dropped after a reload rebuilt the
	// target, because the retired replayer still held their connection's
	// earlier requests (see Target.predecessor).
	HandoverDrops atomic.Uint64
	Replay        replay.Stats
}

// Target is one test environment.
type Target struct {
	Name     string
	Conf     config.Resolved
	Stats    *Stats
	filter   *filter.Filter
	sampling *sample.Policy
	replayer *replay.Replayer
	// Pairs is the target's correlation table (nil: off): what it
	// created for what production created, kept across reloads; owns
	// says this target closes it (and its fleet link) when stopped, as
	// no newer target took it over.
	Pairs *correlate.Table
	owns  bool
	// Writes follows what the target writes to its database (nil: not
	// compared), kept across reloads as Pairs is; ownsWrites says this
	// target closes it.
	Writes     *writes.Watcher
	ownsWrites bool
	// predecessors are the replayers this target's replaced at reloads
	// and still draining: a production connection moves over at a request
	// boundary, once none of them holds any of its requests, so that its
	// requests never overtake each other across replayers.
	predecessors atomic.Pointer[[]*replay.Replayer]
}

// handedOver says whether conn's requests may go to t's replayer: not
// while a replayer t's replaced still holds some of them.
func (t *Target) handedOver(conn uint64) bool {
	ps := t.predecessors.Load()
	if ps == nil {
		return true
	}
	draining := (*ps)[:0:0]
	for _, p := range *ps {
		if !p.Stopped() {
			draining = append(draining, p)
		}
	}
	if len(draining) == 0 {
		t.predecessors.CompareAndSwap(ps, nil)
		return true
	}
	for _, p := range draining {
		if p.Holds(conn) {
			return false
		}
	}
	return true
}

// Keyless returns how many requests lacked their sampling key.
func (t *Target) Keyless() uint64 { return t.sampling.Keyless() }

// Conns returns how many production connections the target's replayer
// keeps a queue for (replay.Replayer.Conns).
func (t *Target) Conns() int { return t.replayer.Conns() }

// Set is the targets in force.
type Set struct {
	Targets []*Target
}

// Comparer is told which requests the compared targets will answer, and
// production's responses.
type Comparer interface {
	Compares(target string) bool
	Expect(req *httpstream.Request)
	Skip(req *httpstream.Request, target string)
	Production(req *httpstream.Request, resp *httpstream.Response)
}

// Fanout offers every request to every target. It is the engine's sink.
type Fanout struct {
	cur     atomic.Pointer[Set]
	log     *ratelog.Limiter
	compare Comparer // nil: no comparison
}

// SetComparer makes the fanout report to c; call it before traffic.
func (f *Fanout) SetComparer(c Comparer) { f.compare = c }

// Response hands production's response to the comparison, to each
// target's correlation table, and to each replayer (production's order).
func (f *Fanout) Response(_ uint64, req *httpstream.Request, resp *httpstream.Response) {
	if f.compare != nil {
		f.compare.Production(req, resp)
	}
	if resp == nil {
		return
	}
	var created correlate.Created
	read := false
	for _, t := range f.cur.Load().Targets {
		t.replayer.Answered(req, resp.End) // what production received after it waits for it
		if t.Pairs == nil {
			continue
		}
		if !read { // once for every target
			created, read = correlate.Read(req.Raw, diff.FromResponse(resp)), true
			created.Told = resp.End
		}
		t.Pairs.Production(correlate.Exchange{Conn: req.ConnID, Index: req.Index}, created)
	}
}

// Correlating reports whether a target in force learns from production's
// answers.
func (f *Fanout) Correlating() bool {
	for _, t := range f.cur.Load().Targets {
		if t.Pairs != nil {
			return true
		}
	}
	return false
}

// NewFanout returns a fanout over set.
func NewFanout(set *Set, log *ratelog.Limiter) *Fanout {
	f := &Fanout{log: log}
	f.cur.Store(set)
	return f
}

// Current returns the targets in force.
func (f *Fanout) Current() *Set { return f.cur.Load() }

// Swap puts set in force and returns the previous one.
func (f *Fanout) Swap(set *Set) *Set { return f.cur.Swap(set) }

// Submit offers r, of production connection conn, to each target.
func (f *Fanout) Submit(conn uint64, r *httpstream.Request) {
	// The comparison learns of the request before any target can answer.
	if f.compare != nil {
		f.compare.Expect(r)
	}
	names := correlate.Named(r.Raw)
	for _, t := range f.cur.Load().Targets {
		if t.Pairs != nil {
			t.Pairs.Carried(&names) // before its replay: the comparison may ask first
		}
		sent := false
		switch reason := t.filter.Check(r); {
		case reason != filter.Pass:
			t.Stats.Filtered[reason].Add(1)
		case !t.sampling.Keep(r):
			t.Stats.SampledOut.Add(1)
		case !t.handedOver(conn):
			t.Stats.HandoverDrops.Add(1)
		case !t.replayer.Submit(conn, r):
			f.log.Warn("drop_"+t.Name, "target over its queue or rate limit: dropping requests (whole connections first)",
				"target", t.Name, "queued", t.Stats.Replay.Queued.Load())
		default:
			sent = true
		}
		if !sent && f.compare != nil && f.compare.Compares(t.Name) {
			f.compare.Skip(r, t.Name)
		}
		if !sent && t.Pairs != nil {
			t.Pairs.Skipped(correlate.Exchange{Conn: r.ConnID, Index: r.Index})
		}
	}
}

// EndConn tells every target that production connection conn is over.
func (f *Fanout) EndConn(conn uint64) {
	for _, t := range f.cur.Load().Targets {
		t.replayer.EndConn(conn)
	}
}

// Build makes the targets of a resolved configuration and starts the
// replayers it creates with ctx. A replayer of prev whose connection
// settings (destination, TLS, pool, timeouts) are unchanged is kept, its
// edits and rate limit updated; the others are returned as retired, to be
// stopped by the caller once the new set is in force.
func Build(ctx context.Context, rs []config.Resolved, prev *Set, log *slog.Logger, obs Observers) (set *Set, retired []*Target, err error) {
	// Everything that can fail is checked first: a refused configuration
	// changes no kept target's policy and starts no replayer.
	type planned struct {
		t     *Target
		dest  replay.Destination
		edits replay.Edits
	}
	plan := make([]planned, 0, len(rs))
	for _, r := range rs {
		t, err := build(r)
		if err != nil {
			return nil, nil, fmt.Errorf("target %q: %w", r.Name, err)
		}
		dest, err := replay.ParseDestination(r.Destination)
		if err != nil {
			return nil, nil, fmt.Errorf("target %q: %w", r.Name, err)
		}
		if err := config.CheckStore(r.Fleet.Store); err != nil {
			return nil, nil, fmt.Errorf("target %q: %w", r.Name, err)
		}
		plan = append(plan, planned{t, dest, Edits(r, dest)})
	}
	// The databases' streams last: the only step that reaches out.
	var opened []*writes.Watcher
	for _, p := range plan {
		r := p.t.Conf
		if r.Writes == nil {
			continue
		}
		if old := find(prev, r.Name); old != nil && old.Writes != nil {
			p.t.Writes = old.Writes // a change of its source needs a restart
			continue
		}
		w, err := watchWrites(ctx, r, log, obs.Written)
		if err != nil {
			for _, w := range opened {
				w.Close()
			}
			return nil, nil, fmt.Errorf("target %q: %w", r.Name, err)
		}
		p.t.Writes, p.t.ownsWrites = w, true
		opened = append(opened, w)
	}
	set = &Set{}
	kept := map[*Target]bool{}
	for _, p := range plan {
		t, r := p.t, p.t.Conf
		if !r.Correlate.Off {
			opts := correlate.Options{Wait: r.Correlate.Wait, MaxPairs: r.Correlate.MaxPairs, TTL: r.Correlate.TTL, Exclude: r.Correlate.Exclude}
			if old := find(prev, r.Name); old != nil && old.Pairs != nil {
				t.Pairs = old.Pairs // what it learned stays, under the new settings (a store's change needs a restart)
				t.Pairs.SetOptions(opts)
				old.owns = false
			} else {
				if r.Fleet.Shared() {
					link, err := store.Open(store.Options{URL: r.Fleet.Store, Namespace: r.Fleet.Namespace, Target: r.Name, Secret: r.Fleet.Secret(), Log: log})
					if err != nil {
						return nil, nil, fmt.Errorf("target %q: %w", r.Name, err) // checked by Validate: not reached with a kept target changed
					}
					opts.Fleet = link
				}
				t.Pairs = correlate.New(opts)
			}
			t.owns = true
		}
		if old := find(prev, r.Name); old != nil && old.Writes != nil && old.Writes == t.Writes {
			old.ownsWrites, t.ownsWrites = false, true
		}
		if old := find(prev, r.Name); old != nil && sameConnection(old.Conf, r) && old.Pairs == t.Pairs && old.Writes == t.Writes {
			old.replayer.SetPolicy(p.edits, r.RateLimit)
			t.Stats, t.replayer = old.Stats, old.replayer
			t.predecessors.Store(old.predecessors.Load()) // still draining, maybe
			kept[old] = true
		} else {
			if old := find(prev, r.Name); old != nil {
				var ps []*replay.Replayer
				if prev := old.predecessors.Load(); prev != nil {
					ps = append(ps, *prev...)
				}
				ps = append(ps, old.replayer)
				t.predecessors.Store(&ps)
			}
			t.Stats = &Stats{}
			copts := replay.DefaultClientOptions
			copts.DialTimeout, copts.ResponseTimeout, copts.InsecureTLS, copts.MaxIdle = r.DialTimeout, r.ResponseTimeout, r.InsecureSkipVerify, r.Workers
			copts.KeepBody, copts.IdleTimeout = r.KeepBody, r.IdleConnTimeout
			ropts := replay.Options{Name: r.Name, Workers: r.Workers, MaxQueue: r.Queue, MaxQueueBytes: r.QueueBytes, Edits: p.edits, RateLimit: r.RateLimit, Block: r.Block,
				Correlate: t.Pairs}
			if t.Writes != nil {
				ropts.Writes = t.Writes
			}
			t.replayer = replay.New(replay.NewClient(p.dest, copts), ropts, &t.Stats.Replay, log, obs.Result)
			t.replayer.Start(ctx)
		}
		set.Targets = append(set.Targets, t)
	}
	if prev != nil {
		for _, t := range prev.Targets {
			if !kept[t] {
				retired = append(retired, t)
			}
		}
	}
	return set, retired, nil
}

// watchWrites opens the stream of what target r writes to its database.
func watchWrites(ctx context.Context, r config.Resolved, log *slog.Logger, deliver func(writes.Set)) (*writes.Watcher, error) {
	if deliver == nil {
		deliver = func(writes.Set) {}
	}
	wo := writes.WatchOptions{Target: r.Name, Deliver: deliver, MarkersOnly: r.Writes.MarkersOnly, Wait: r.Writes.Wait, Log: log}
	if d := r.Writes.Debezium; d != nil {
		dsn, err := d.BarrierDSN()
		if err != nil {
			return nil, err
		}
		return writes.WatchDebezium(ctx, writes.DebeziumOptions{Brokers: d.Brokers, Prefix: d.Prefix}, dsn, wo)
	}
	p := r.Writes.Postgres
	dsn, err := p.DSN()
	if err != nil {
		return nil, err
	}
	po := writes.PGOptions{DSN: dsn, Slot: p.Slot, Publication: p.Publication, MaxLag: p.MaxLag}
	if po.Slot == "" {
		po.Slot = SlotName(r.Name)
	}
	if po.Publication == "" {
		po.Publication = "shadowtap"
	}
	return writes.WatchPG(ctx, po, wo)
}

// SlotName is the replication slot shadowtap makes for a target:
// shadowtap_ and its name in lower case, other characters as _.
func SlotName(target string) string {
	b := []byte("shadowtap_")
	for _, c := range []byte(strings.ToLower(target)) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	return string(b[:min(len(b), 63)])
}

func build(r config.Resolved) (*Target, error) {
	f, err := filter.New(r.Filters)
	if err != nil {
		return nil, err
	}
	s, err := sample.NewPolicy(r.Sampling)
	if err != nil {
		return nil, err
	}
	return &Target{Name: r.Name, Conf: r, filter: f, sampling: s}, nil
}

func find(s *Set, name string) *Target {
	if s == nil {
		return nil
	}
	for _, t := range s.Targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

func sameConnection(a, b config.Resolved) bool {
	return a.Destination == b.Destination && a.InsecureSkipVerify == b.InsecureSkipVerify && a.Workers == b.Workers && a.KeepBody == b.KeepBody &&
		a.Queue == b.Queue && a.QueueBytes == b.QueueBytes && a.DialTimeout == b.DialTimeout && a.ResponseTimeout == b.ResponseTimeout &&
		a.IdleConnTimeout == b.IdleConnTimeout
}

// Edits returns the replay edits of a target: the core's, and the
// configured rewrites, credentials and marker.
func Edits(r config.Resolved, dest replay.Destination) replay.Edits {
	e := replay.Edits{Host: dest.Host, KeepHost: r.KeepHostHeader, PathPrefix: dest.PathPrefix, FixedHost: r.Rewrite.Host}
	if p := r.Rewrite.Path; p != nil {
		e.PathMatch, e.PathReplace = regexp.MustCompile(p.Match), p.Replace
	}
	e.Remove = append(slices.Clone(r.Rewrite.RemoveHeaders), r.Credentials.Remove...)
	e.Set = headers(r.Rewrite.SetHeaders)
	e.Replace = headers(r.Credentials.Replace)
	e.Add = headers(r.Rewrite.AddHeaders)
	if r.MarkerName != "" {
		e.Marker = replay.Header{Name: r.MarkerName, Value: r.Name}
	}
	return e
}

// headers returns m as header lines in name order (maps have none).
func headers(m map[string]string) []replay.Header {
	var out []replay.Header
	for k, v := range m {
		out = append(out, replay.Header{Name: k, Value: v})
	}
	slices.SortFunc(out, func(a, b replay.Header) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Stop stops the targets' replayers concurrently, each draining its queue
// until ctx ends: a blackholed target does not delay the others.
func Stop(ctx context.Context, ts []*Target) {
	var wg sync.WaitGroup
	for _, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.replayer.Stop(ctx)
			if t.owns && t.Pairs != nil {
				t.Pairs.Close() // its fleet link's goroutines end
			}
			if t.ownsWrites {
				t.Writes.Close() // after the replays: their last sets come through first; its slot goes
			}
		}()
	}
	wg.Wait()
}

// Retire stops retired targets in the background, each with its own
// drain deadline; wg lets the owner wait for them before it returns.
func Retire(ts []*Target, drain time.Duration, wg *sync.WaitGroup) {
	if len(ts) == 0 {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		Stop(ctx, ts)
	}()
}
