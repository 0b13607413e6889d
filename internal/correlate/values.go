package correlate

import (
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/jsonspan"
)

// A site is where an answer carries a value: a cookie, a header, a JSON
// leaf (by its path, indices kept) or a segment of the Location's path.
// Two answers to one request carry the value each side created at the
// same site.
type site struct {
	kind byte   // 'c' cookie, 'h' header, 'j' JSON leaf, 'l' Location segment, 'q' Location query value
	key  string // cookie or header name, JSON path, segment index or query name
}

// A created value: its text, its own name (its cookie, header, JSON key
// or query name, or the Location segment before it; Exclude applies to
// it) and, for a short number, what it names (see entity).
type value struct {
	text   string
	name   string
	entity string
}

// learnable reports whether a value can be learned and translated: an id
// or a token anywhere, a short number only as the id of something named.
func learnable(text, entity string) bool {
	return idLike(text) || shortNumber(text) && entity != ""
}

// Limits of what one answer is searched for values.
// MaxBody is how much of an answer's body is searched for the values it
// created (decoded bytes): a target keeps this much of each answer.
const MaxBody = maxBody

const (
	maxBody   = 1 << 20 // decoded bytes
	maxLeaves = 2048
	maxDepth  = 32
)

// Headers whose values are the server's clock, framing or caching, never
// values a client sends back.
var notCreated = map[string]bool{
	"Date": true, "Content-Length": true, "Content-Type": true, "Content-Encoding": true, "Transfer-Encoding": true,
	"Connection": true, "Keep-Alive": true, "Server": true, "Vary": true, "Cache-Control": true, "Expires": true,
	"Last-Modified": true, "Age": true, "Etag": true, "Set-Cookie": true, "Location": true, "X-Powered-By": true,
	"Access-Control-Allow-Origin": true, "Strict-Transport-Security": true, "Content-Security-Policy": true,
}

// values lists the values an answer carries that can be learned, by
// site. collection is the request's resource name (POST /api/orders:
// "orders"), what a top-level "id" of the answer names.
func values(m diff.Message, collection string) map[site]value {
	var out found
	add := func(s site, v value) {
		if learnable(v.text, v.entity) {
			out.put(s, v)
		}
	}
	for _, line := range m.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Value != "" {
			add(site{'c', c.Name}, value{text: c.Value, name: c.Name, entity: cookieEntity(c.Name)})
		}
	}
	if loc := m.Header.Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil {
			segs := strings.Split(u.EscapedPath(), "/")
			for i, s := range segs {
				if s == "" {
					continue
				}
				if v, err := url.PathUnescape(s); err == nil {
					prev := ""
					if i > 0 {
						prev, _ = url.PathUnescape(segs[i-1])
					}
					add(site{'l', strconv.Itoa(i) + "/" + strconv.Itoa(len(segs))}, value{text: v, name: prev, entity: segmentEntity(prev)})
				}
			}
			for k, vs := range u.Query() {
				if len(vs) == 1 {
					add(site{'q', k}, value{text: vs[0], name: k, entity: keyEntity(k, collection)})
				}
			}
		}
	}
	for name, vs := range m.Header {
		if len(vs) == 1 && !notCreated[name] && idLike(vs[0]) {
			add(site{'h', name}, value{text: vs[0], name: name})
		}
	}
	if isJSON(m.Header.Get("Content-Type")) {
		body, err := diff.Decode(m, maxBody)
		if err == nil && len(body) <= maxBody {
			// A variable of this block: the scan's callback moves what it
			// captures to the heap, and an answer that is no JSON does
			// not pay for it.
			var leaves found
			jsonspan.Scan(body, jsonspan.Limits{Leaves: maxLeaves, Depth: maxDepth}, func(l jsonspan.Leaf) {
				switch {
				case idLike(l.Text):
					leaves.put(site{'j', l.Path()}, value{text: l.Text, name: l.Key})
				case shortNumber(l.Text):
					if e := keyEntity(l.Key, or(l.Parent, collection)); e != "" {
						leaves.put(site{'j', l.Path()}, value{text: l.Text, name: l.Key, entity: e})
					}
				}
			})
			if out == nil {
				out = leaves
			} else {
				maps.Copy(out, leaves) // sites of another kind: none overwritten
			}
		}
	}
	return out
}

// found is the values an answer carries, made at the first: most answers
// (a page, a list) carry none, and making it was most of their cost.
// Sized for those that do: grown from empty, it was a fifth of theirs.
type found map[site]value

func (f *found) put(s site, v value) {
	if *f == nil {
		*f = make(found, 32)
	}
	(*f)[s] = v
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// What a short number names, so that order 42 and product 42 are two
// values, and a quantity 42 none: the collection a path segment follows
// (/orders/42: order), the thing an id's key names (orderId, order_no:
// order), or, for a bare "id" or "number", the object holding it or the
// request's collection; a cookie or a header names its own value. Any
// other key (qty, page, total) names nothing: its numbers are data.
func segmentEntity(prev string) string {
	if prev == "" || strings.ContainsAny(prev, "0123456789") {
		return ""
	}
	return singular(normName(prev))
}

func keyEntity(key, context string) string {
	n := normName(key)
	switch n {
	case "id", "number", "no", "num":
		return segmentEntity(context)
	}
	for _, suf := range []string{"id", "number", "no", "num"} {
		if len(key) > len(suf) && strings.EqualFold(key[len(key)-len(suf):], suf) && idBoundary(key, len(key)-len(suf)) {
			return segmentEntity(strings.TrimRight(key[:len(key)-len(suf)], "_-"))
		}
	}
	return ""
}

// nameEntity is what a number a request (or an answer being compared)
// gives under key names: an id's key as for keyEntity, or the thing's own
// name ("cart": 4821937). Only for looking up: a table learns only at an
// id's site, so a quantity, never learned, never matches.
func nameEntity(key, context string) string {
	if e := keyEntity(key, context); e != "" {
		return e
	}
	return segmentEntity(key)
}

// idBoundary reports whether key's suffix at i is a word of its own:
// order_id, order-id, orderId, ORDER_ID; not paid, valid or casino.
func idBoundary(key string, i int) bool {
	before, at := key[i-1], key[i]
	return before == '_' || before == '-' || at >= 'A' && at <= 'Z' && (before >= 'a' && before <= 'z' || before >= '0' && before <= '9')
}

func cookieEntity(name string) string { return "cookie:" + normName(name) }
func headerEntity(name string) string { return "header:" + normName(name) }

func isJSON(ct string) bool {
	ct = strings.ToLower(ct)
	return strings.Contains(ct, "json")
}

// idLike reports whether a value can be an id or a token a server made:
// 16 characters or more, or 8 with a digit. A word ("ok", "kettle") is
// never translated, nor a value with spaces, quotes, control characters
// or broken UTF-8 (nothing could write it back as it was).
func idLike(s string) bool {
	if len(s) < minToken || len(s) > maxToken || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '"' || c == 0x7f {
			return false
		}
	}
	if len(s) >= 16 || diff.IsPseudonym(s) {
		return true // a token (random letters need not hold a digit), or a recording's stand-in for one
	}
	return strings.ContainsAny(s, "0123456789")
}

// shortNumber reports whether s is a number too short to be translated
// wherever it occurs (an order number 1042 is also a quantity, a year, a
// page): only where a name it was created under names it.
func shortNumber(s string) bool {
	if len(s) == 0 || len(s) >= minToken {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

const (
	minToken = 8 // characters of a value translated wherever it is a whole token
	maxToken = 4096
)
