// Package endpoint groups requests by method and a path template: ids
// (numbers, UUIDs, long hex, opaque tokens) collapse to placeholders on
// their own, user patterns ("/users/{name}/orders") take precedence, and
// the rest is learned from the traffic as log template miners do: a path
// segment that takes many distinct values after the same prefix (SKU-00012,
// CPN-7KQ2X, ...) becomes a parameter. Names given before a parameter was
// learned are mapped onto it by Rename. The number of endpoints and the
// learning state are bounded; beyond the bound requests fall into one
// "other" group.
package endpoint

import (
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Other is the group of requests beyond the bound.
const Other = "OTHER"

// Grouper names endpoints. It is safe for concurrent use.
type Grouper struct {
	patterns []pattern
	max      int
	mu       sync.Mutex
	seen     map[string]bool
	overflow uint64
	prefixes map[string]*prefix // learning: by method and templated path so far
	learned  []string           // templates with a learned parameter, in learning order
}

// prefix is what follows one path prefix: its distinct next segments,
// until they are many enough to be a parameter (then only that is kept).
type prefix struct {
	values map[string]bool
	param  bool
}

// Learning bounds and thresholds. A segment becomes a parameter once
// minIDValues distinct values followed the same prefix and most of them
// hold a digit (ids: SKU-00012, CPN-7KQ2X, v2-7f3a), or once
// minAnyValues did (slugs); static path parts (/api/users, /api/orders)
// are far fewer and rarely carry digits.
const (
	maxPrefixes  = 4096
	minIDValues  = 8
	minAnyValues = 64
	learnedParam = "{id}"
)

type pattern struct {
	re   *regexp.Regexp
	name string
}

var placeholder = regexp.MustCompile(`\{[^/{}]+\}`)

// New returns a grouper with user patterns (paths with {placeholders},
// matched segment by segment) and a bound on distinct endpoints.
func New(patterns []string, max int) (*Grouper, error) {
	g := &Grouper{max: max, seen: map[string]bool{}, prefixes: map[string]*prefix{}}
	for _, p := range patterns {
		re, err := regexp.Compile("^" + quoteAround(p) + "$")
		if err != nil {
			return nil, err
		}
		g.patterns = append(g.patterns, pattern{re, p})
	}
	return g, nil
}

// quoteAround quotes a pattern's literal parts and turns each
// placeholder into one path segment.
func quoteAround(p string) string {
	var b strings.Builder
	last := 0
	for _, m := range placeholder.FindAllStringIndex(p, -1) {
		b.WriteString(regexp.QuoteMeta(p[last:m[0]]))
		b.WriteString("[^/]+")
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(p[last:]))
	return b.String()
}

// Name returns the endpoint of a request: "GET /api/items/{id}".
func (g *Grouper) Name(method, target string) string {
	path, _, _ := strings.Cut(target, "?")
	g.mu.Lock()
	defer g.mu.Unlock()
	name := method + " " + g.template(method, path, true)
	if g.seen[name] {
		return name
	}
	if len(g.seen) >= g.max {
		g.overflow++
		return Other
	}
	g.seen[name] = true
	return name
}

// Overflow returns how many requests fell into Other.
func (g *Grouper) Overflow() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.overflow
}

var (
	uuidRe  = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	hexRe   = regexp.MustCompile(`^[0-9a-fA-F]{8,}$`)
	tokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]{20,}$`)
	numRe   = regexp.MustCompile(`^[0-9]+$`)
)

// Rename maps an endpoint name given earlier onto what the grouper has
// learned since: "GET /api/items/SKU-00012" becomes "GET /api/items/{id}"
// once that segment is a parameter. Names that change leave the bound.
func (g *Grouper) Rename(name string) string {
	method, path, ok := strings.Cut(name, " ")
	if !ok || name == Other {
		return name
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	to := method + " " + g.template(method, path, false)
	if to != name {
		delete(g.seen, name)
		g.seen[to] = true
	}
	return to
}

// Learned returns the templates with a learned parameter.
func (g *Grouper) Learned() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.learned)
}

// template returns path's template; with learn, path's segments are
// counted towards learning. Called with g.mu held.
func (g *Grouper) template(method, path string, learn bool) string {
	for _, p := range g.patterns {
		if p.re.MatchString(path) {
			return p.name
		}
	}
	segs := strings.Split(path, "/")
	key := method + " "
	for i, s := range segs {
		switch {
		case s == "" || placeholder.MatchString(s):
		case numRe.MatchString(s):
			segs[i] = "{id}"
		case uuidRe.MatchString(s):
			segs[i] = "{uuid}"
		case hexRe.MatchString(s) && strings.ContainsAny(s, "0123456789"):
			segs[i] = "{hex}"
		case tokenRe.MatchString(s) && strings.ContainsAny(s, "0123456789"):
			segs[i] = "{token}"
		case i > 0:
			segs[i] = g.learn(key, s, learn)
		}
		if i > 0 {
			key += "/"
		}
		key += segs[i]
	}
	return strings.Join(segs, "/")
}

// learn counts seg after prefix key and returns what to name it.
func (g *Grouper) learn(key, seg string, learn bool) string {
	p := g.prefixes[key]
	if p == nil {
		if !learn || len(g.prefixes) >= maxPrefixes {
			return seg
		}
		p = &prefix{values: map[string]bool{}}
		g.prefixes[key] = p
	}
	if p.param {
		return learnedParam
	}
	if !learn || p.values[seg] {
		return seg
	}
	p.values[seg] = true
	digits := 0
	for v := range p.values {
		if strings.ContainsAny(v, "0123456789") {
			digits++
		}
	}
	if n := len(p.values); n >= minIDValues && digits*5 >= n*4 || n >= minAnyValues {
		p.param, p.values = true, nil
		g.learned = append(g.learned, key+"/"+learnedParam)
		return learnedParam
	}
	return seg
}
