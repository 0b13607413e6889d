package sample

import (
	"fmt"
	"regexp"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// Policy is a target's sampling: a default sampler and per-route ones
// (the first route whose expression matches the path decides), all keyed
// the same way so one user's decision differs only by route.
type Policy struct {
	def    *Sampler
	routes []route
}

type route struct {
	re *regexp.Regexp
	s  *Sampler
}

// NewPolicy builds the policy of a validated configuration.
func NewPolicy(c config.Sampling) (*Policy, error) {
	def, err := New(c.Percentage, By(c.By), c.Key)
	if err != nil {
		return nil, err
	}
	p := &Policy{def: def}
	for i, r := range c.Routes {
		re, err := regexp.Compile(r.Path)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		s, err := New(r.Percentage, By(c.By), c.Key)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		p.routes = append(p.routes, route{re, s})
	}
	return p, nil
}

// Keep reports whether r is replayed.
func (p *Policy) Keep(r *httpstream.Request) bool { return p.sampler(r).Keep(r) }

func (p *Policy) sampler(r *httpstream.Request) *Sampler {
	if len(p.routes) > 0 {
		path := r.Target()
		for i, c := range path {
			if c == '?' {
				path = path[:i]
				break
			}
		}
		for _, rt := range p.routes {
			if rt.re.Match(path) {
				return rt.s
			}
		}
	}
	return p.def
}

// Keyless returns how many requests lacked their key, over all routes.
func (p *Policy) Keyless() uint64 {
	n := p.def.Keyless.Load()
	for _, rt := range p.routes {
		n += rt.s.Keyless.Load()
	}
	return n
}
