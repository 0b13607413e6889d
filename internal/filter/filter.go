// Package filter decides which requests reach a target: by method, path,
// Host, headers and size. A Filter is compiled once from configuration and
// is safe for concurrent use.
package filter

import (
	"bytes"
	"regexp"
	"strings"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// Reason says why a request was refused.
type Reason uint8

const (
	Pass Reason = iota
	Method
	Path
	Host
	Header
	Size
	NumReasons
)

var reasonNames = [NumReasons]string{"pass", "method", "path", "host", "header", "size"}

func (r Reason) String() string { return reasonNames[r] }

// Filter is a compiled config.Filters.
type Filter struct {
	allow, deny []string // upper-case methods; allow empty: all
	path        *regexp.Regexp
	pathNot     *regexp.Regexp
	host        *regexp.Regexp
	present     []string
	match       []headerMatch
	maxSize     int64
}

type headerMatch struct {
	name string
	re   *regexp.Regexp
}

// New compiles f; the configuration was validated, so the expressions
// compile.
func New(f config.Filters) (*Filter, error) {
	out := &Filter{present: f.HeadersPresent, maxSize: f.MaxSize}
	for _, m := range f.Methods {
		out.allow = append(out.allow, strings.ToUpper(m))
	}
	if f.SafeMethodsOnly {
		out.allow = config.SafeMethods
	}
	for _, m := range f.DenyMethods {
		out.deny = append(out.deny, strings.ToUpper(m))
	}
	var err error
	for _, c := range []struct {
		expr string
		dst  **regexp.Regexp
	}{{f.Path, &out.path}, {f.PathNot, &out.pathNot}, {f.Host, &out.host}} {
		if c.expr == "" {
			continue
		}
		if *c.dst, err = regexp.Compile(c.expr); err != nil {
			return nil, err
		}
	}
	for name, expr := range f.HeadersMatch {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, err
		}
		out.match = append(out.match, headerMatch{name, re})
	}
	return out, nil
}

// Check returns Pass when r may reach the target, else the first rule
// that refused it.
func (f *Filter) Check(r *httpstream.Request) Reason {
	method := r.Method()
	if len(f.allow) > 0 && !contains(f.allow, method) || contains(f.deny, method) {
		return Method
	}
	if f.path != nil || f.pathNot != nil {
		path := r.Target()
		if i := bytes.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if f.path != nil && !f.path.Match(path) || f.pathNot != nil && f.pathNot.Match(path) {
			return Path
		}
	}
	if f.host != nil {
		h, _ := r.Get("Host")
		if !f.host.Match(h) {
			return Host
		}
	}
	for _, name := range f.present {
		if _, ok := r.Get(name); !ok {
			return Header
		}
	}
	for _, m := range f.match {
		v, ok := r.Get(m.name)
		if !ok || !m.re.Match(v) {
			return Header
		}
	}
	if f.maxSize > 0 && int64(len(r.Raw)) > f.maxSize {
		return Size
	}
	return Pass
}

func contains(set []string, m []byte) bool {
	for _, s := range set {
		if string(m) == s {
			return true
		}
	}
	return false
}
