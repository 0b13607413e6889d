package correlate

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// A site is where an answer carries a value: a cookie, a header, a JSON
// leaf (by its path, indices kept) or a segment of the Location's path.
// Two answers to one request carry the value each side created at the
// same site.
type site struct {
	kind byte   // 'c' cookie, 'h' header, 'j' JSON leaf, 'l' Location segment, 'q' Location query value
	key  string // cookie or header name, JSON path, segment index or query name
}

// A created value, with the names a later request may give it: a short
// number is only translated where one of these names it.
type value struct {
	text  string
	names []string
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

// values lists the values an answer carries, by site. collection is the
// request's resource name (POST /api/orders: "orders"), a name the
// answer's ids are given in later paths.
func values(m diff.Message, collection string) map[site]value {
	out := map[site]value{}
	for _, line := range m.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Value != "" {
			out[site{'c', c.Name}] = value{text: c.Value, names: []string{c.Name}}
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
					var names []string
					if i > 0 && segs[i-1] != "" {
						names = append(names, segs[i-1])
					}
					out[site{'l', strconv.Itoa(i) + "/" + strconv.Itoa(len(segs))}] = value{text: v, names: names}
				}
			}
			for k, vs := range u.Query() {
				if len(vs) == 1 {
					out[site{'q', k}] = value{text: vs[0], names: []string{k}}
				}
			}
		}
	}
	for name, vs := range m.Header {
		if len(vs) == 1 && !notCreated[name] && idLike(vs[0]) {
			out[site{'h', name}] = value{text: vs[0], names: []string{name}}
		}
	}
	if isJSON(m.Header.Get("Content-Type")) {
		body, err := diff.Decode(m, maxBody)
		if err == nil && len(body) <= maxBody {
			scanJSON(body, func(l jsonLeaf) {
				names := []string{l.key}
				if collection != "" {
					names = append(names, collection)
				}
				out[site{'j', l.path}] = value{text: l.text, names: names}
			})
		}
	}
	return out
}

func isJSON(ct string) bool {
	ct = strings.ToLower(ct)
	return strings.Contains(ct, "json")
}

// idLike reports whether a value can be an id or a token a server made:
// 16 characters or more, or 8 with a digit. A word ("ok", "kettle") is
// never translated, nor a value with spaces or quotes.
func idLike(s string) bool {
	if len(s) < minToken || len(s) > maxToken {
		return false
	}
	if strings.ContainsAny(s, " \t\"") {
		return false
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
