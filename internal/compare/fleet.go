package compare

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// FleetNoise shares what the comparison learned as noise with the other
// handlers of a fleet (see the store package): a handler that just
// started weighs differences against what the fleet knows, rather than
// report as findings the noise the others learned long ago.
type FleetNoise interface {
	// Publish puts this handler's own learned noise in place of its last.
	Publish(state []byte)
	// Fetch returns the other handlers' last.
	Fetch() [][]byte
}

// DefaultFleetEvery is how often a handler publishes its noise and takes
// in the fleet's.
const DefaultFleetEvery = 30 * time.Second

// share runs while the comparator does: every FleetEvery it publishes
// its own noise and takes in the fleet's again (New took it in first).
func (c *Comparator) share() {
	defer c.done.Done()
	t := time.NewTicker(c.cfg.FleetEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.cfg.Fleet.Publish(c.ownNoise())
			c.takeInFleet()
		}
	}
}

// FleetState is what this handler publishes to its fleet now (see
// FleetNoise).
func (c *Comparator) FleetState() []byte { return c.ownNoise() }

// ownNoise is what this handler learned by itself as noise, per endpoint:
// the references' learners and each comparison's noise pairs, no counts
// of findings, no samples, no values (shapes and counts only).
func (c *Comparator) ownNoise() []byte {
	c.aggMu.Lock()
	out := map[string]*EndpointState{}
	for name, ep := range c.agg.endpoints {
		e := &EndpointState{Name: name, Learners: ep.Learners, Comparisons: map[string]*ComparisonState{}}
		for k, cs := range ep.Comparisons {
			e.Comparisons[k] = &ComparisonState{Noise: cs.Noise}
		}
		out[name] = e
	}
	b, _ := json.Marshal(out) // under the lock: the learners change with every answer
	c.aggMu.Unlock()
	return b
}

// takeInFleet replaces the seed with the fleet's noise, the other
// handlers' merged (never added to this handler's own, which it
// publishes: two handlers taking in each other's do not count twice).
func (c *Comparator) takeInFleet() {
	seed := map[string]*EndpointState{}
	for _, b := range c.cfg.Fleet.Fetch() {
		var eps map[string]*EndpointState
		if json.Unmarshal(b, &eps) != nil {
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(eps)) {
			o := eps[name]
			if o == nil || len(seed) >= c.cfg.MaxEndpoints && seed[name] == nil {
				continue
			}
			s := seed[name]
			if s == nil {
				s = newEndpointState(name)
				seed[name] = s
			}
			for k, l := range o.Learners {
				if l != nil && l.Fields != nil {
					s.learner(k).merge(l)
				}
			}
			for k, cs := range o.Comparisons {
				if cs != nil {
					s.comparison(k).merge(&ComparisonState{Noise: cs.Noise})
				}
			}
		}
	}
	c.aggMu.Lock()
	c.agg.seed = seed
	c.aggMu.Unlock()
}

// seeded reports whether the fleet's noise explains d (aggMu held).
func (a *aggregate) seeded(ep, cmp, ref string, d *diff.Difference) bool {
	s := a.seed[ep]
	if s == nil {
		return false
	}
	l := s.Learners[ref]
	if l.explains(d) {
		return true
	}
	cs := s.Comparisons[cmp]
	return cs != nil && cs.Noise.explains(d, l)
}

// withSeed is ep's comparison cmp and learner of ref as the report weighs
// them: this handler's own, with the fleet's noise (aggMu held).
func (a *aggregate) withSeed(ep *EndpointState, cmp, ref string) (*ComparisonState, *Learner) {
	cs, l := ep.Comparisons[cmp], ep.Learners[ref]
	s := a.seed[ep.Name]
	if s == nil || cs == nil {
		return cs, l
	}
	mcs := &ComparisonState{Fields: map[string]*FieldState{}}
	mcs.merge(cs)
	if scs := s.Comparisons[cmp]; scs != nil {
		mcs.merge(scs)
	}
	ml := &Learner{Fields: map[string]*FieldLearn{}}
	if l != nil {
		ml.merge(l)
	}
	if sl := s.Learners[ref]; sl != nil {
		ml.merge(sl)
	}
	return mcs, ml
}
