// Package endpoint groups requests by method and a path template: ids
// (numbers, UUIDs, long hex, opaque tokens) collapse to placeholders on
// their own, and user patterns ("/users/{name}/orders") take precedence.
// The number of endpoints is bounded; beyond it requests fall into one
// "other" group.
package endpoint

import (
	"regexp"
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
}

type pattern struct {
	re   *regexp.Regexp
	name string
}

var placeholder = regexp.MustCompile(`\{[^/{}]+\}`)

// New returns a grouper with user patterns (paths with {placeholders},
// matched segment by segment) and a bound on distinct endpoints.
func New(patterns []string, max int) (*Grouper, error) {
	g := &Grouper{max: max, seen: map[string]bool{}}
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
	name := method + " " + g.template(path)
	g.mu.Lock()
	defer g.mu.Unlock()
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

func (g *Grouper) template(path string) string {
	for _, p := range g.patterns {
		if p.re.MatchString(path) {
			return p.name
		}
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		switch {
		case s == "":
		case numRe.MatchString(s):
			segs[i] = "{id}"
		case uuidRe.MatchString(s):
			segs[i] = "{uuid}"
		case hexRe.MatchString(s) && strings.ContainsAny(s, "0123456789"):
			segs[i] = "{hex}"
		case tokenRe.MatchString(s) && strings.ContainsAny(s, "0123456789"):
			segs[i] = "{token}"
		}
	}
	return strings.Join(segs, "/")
}
