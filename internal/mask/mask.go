// Package mask hides production's personal data in what shadowtap shows
// (the report's samples, its JSON and JUnit, the difference log): the
// headers, cookies and fields a configuration names, and what detectors
// find in any text (e-mail addresses, card numbers that pass Luhn's
// check, JWTs, IBANs that pass their mod-97 check, bearer tokens).
//
// A masked value becomes a pseudonym, [kind:hash], the hash keyed for the
// run (or for a fleet, by a shared key): a reader still sees that two
// values are the same or not. The comparison runs on the real values
// before anything is masked, and two different values never get the same
// pseudonym (a collision needs 2^32 values), so masking never hides a
// difference.
package mask

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/shadowtap/shadowtap/internal/glob"
	"github.com/shadowtap/shadowtap/internal/jsonspan"
)

// Rules say what to mask.
type Rules struct {
	Headers []string // header names whose values are masked whole
	Cookies []string // cookie names whose values are masked whole (Cookie, Set-Cookie)
	// Fields are a body's (or a write's) fields masked whole: a key as
	// the report names it (body.customer.address, body.items[*].email,
	// write.insert.public.users[*].phone; "*" matches any run), or a bare
	// name (email) matching that member anywhere.
	Fields []string
	// Detect names the detectors run on every text shown (DefaultDetectors
	// when nil; "none" for none).
	Detect []string
}

// DefaultDetectors run unless the rules name others.
var DefaultDetectors = []string{"email", "card", "jwt", "iban", "bearer"}

// A Masker masks by one set of rules under one key. A nil *Masker masks
// nothing.
type Masker struct {
	key       []byte
	headers   []string
	cookies   []string
	fields    []*regexp.Regexp
	names     []string
	detectors []detector
}

// New returns a masker for rules under key (nil: a key made for this run,
// never written: pseudonyms are consistent within the run only).
func New(r Rules, key []byte) *Masker {
	if key == nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	m := &Masker{key: key}
	for _, h := range r.Headers {
		m.headers = append(m.headers, http.CanonicalHeaderKey(h))
	}
	m.cookies = slices.Clone(r.Cookies)
	for _, f := range r.Fields {
		if strings.ContainsAny(f, ".[*") {
			m.fields = append(m.fields, glob.Compile(f))
		} else {
			m.names = append(m.names, f)
		}
	}
	detect := r.Detect
	if detect == nil {
		detect = DefaultDetectors
	}
	for _, name := range detect {
		if d, ok := detectors[name]; ok {
			m.detectors = append(m.detectors, d)
		}
	}
	return m
}

// Known reports whether name is a detector (or "none").
func Known(name string) bool {
	_, ok := detectors[name]
	return ok || name == "none"
}

// Pseudonym is v's pseudonym as kind: [kind:hash].
func (m *Masker) Pseudonym(kind, v string) string {
	mac := hmac.New(sha256.New, m.key)
	mac.Write([]byte(v))
	return "[" + kind + ":" + hex.EncodeToString(mac.Sum(nil)[:6]) + "]"
}

// Text masks what the detectors find in s.
func (m *Masker) Text(s string) string {
	if m == nil {
		return s
	}
	for _, d := range m.detectors {
		found := d.re.FindAllStringIndex(s, -1)
		if found == nil {
			continue
		}
		var b strings.Builder
		at := 0
		for _, f := range found {
			v := s[f[0]:f[1]]
			if d.digits && partOfNumber(s, f[0], f[1]) {
				continue // part of a longer number: an id, a timestamp, a decimal (JSON's 0.0000000000000, 0E0000000000000)
			}
			if d.value != nil {
				v = d.value(v)
			}
			if d.valid != nil && !d.valid(v) {
				continue
			}
			b.WriteString(s[at:f[0]])
			b.WriteString(strings.Replace(s[f[0]:f[1]], v, m.Pseudonym(d.kind, v), 1))
			at = f[1]
		}
		b.WriteString(s[at:])
		s = b.String()
	}
	return s
}

// Field masks value, found at key (a report's key: body.items[*].email),
// whole when the rules name the field, else what the detectors find.
func (m *Masker) Field(key, value string) string {
	if m == nil {
		return value
	}
	if m.namesField(key) {
		return m.Pseudonym("field", value)
	}
	return m.Text(value)
}

func (m *Masker) namesField(key string) bool {
	for _, f := range m.fields {
		if f.MatchString(key) {
			return true
		}
	}
	if len(m.names) > 0 {
		last := key[strings.LastIndexAny(key, ".]")+1:]
		return slices.Contains(m.names, last)
	}
	return false
}

// Document masks a JSON document shown under root ("body", "write"): the
// fields the rules name, whole, and what the detectors find in each
// string and integer, each written back as a JSON string, so that the
// document stays JSON; then what the detectors find elsewhere (a member's
// name, a document that is not JSON or is cut short).
func (m *Masker) Document(root, doc string) string {
	if m == nil {
		return doc
	}
	type replacement struct {
		start, end int
		with       string
	}
	var reps []replacement
	jsonspan.Scan([]byte(doc), jsonspan.Limits{Leaves: 1 << 16, Depth: 64}, func(l jsonspan.Leaf) {
		var with string
		switch {
		case m.namesField(root + starred(l.Path())):
			with = m.Pseudonym("field", l.Text)
		case len(m.detectors) > 0:
			if with = m.Text(l.Text); with == l.Text {
				return
			}
		default:
			return
		}
		q, _ := json.Marshal(with)
		reps = append(reps, replacement{l.Start, l.End, string(q)})
	})
	if len(reps) > 0 {
		var b strings.Builder
		at := 0
		for _, r := range reps {
			b.WriteString(doc[at:r.start])
			b.WriteString(r.with)
			at = r.end
		}
		b.WriteString(doc[at:])
		doc = b.String()
	}
	return m.Text(doc)
}

// starred is a leaf's path (.items.0.id) as the report's keys name it
// (.items[*].id).
func starred(path string) string {
	parts := strings.Split(path, ".")
	var b strings.Builder
	for _, p := range parts[1:] {
		if p != "" && strings.Trim(p, "0123456789") == "" {
			b.WriteString("[*]")
			continue
		}
		b.WriteString("." + p)
	}
	return b.String()
}

// Header masks a header's value: whole for the headers the rules name,
// the named cookies' values in Cookie and Set-Cookie, and what the
// detectors find.
func (m *Masker) Header(name, value string) string {
	if m == nil {
		return value
	}
	name = http.CanonicalHeaderKey(name)
	if slices.Contains(m.headers, name) {
		return m.Pseudonym("header", value)
	}
	if len(m.cookies) > 0 && (name == "Cookie" || name == "Set-Cookie") {
		value = m.cookieValues(value)
	}
	return m.Text(value)
}

// cookieValues masks the named cookies' values in a Cookie or Set-Cookie
// header's value.
func (m *Masker) cookieValues(v string) string {
	parts := strings.Split(v, ";")
	for i, p := range parts {
		name, val, ok := strings.Cut(p, "=")
		if ok && slices.Contains(m.cookies, strings.TrimSpace(name)) {
			parts[i] = name + "=" + m.Pseudonym("cookie", val)
		}
	}
	return strings.Join(parts, ";")
}

// Headers returns h with every value masked (h itself when m is nil).
func (m *Masker) Headers(h http.Header) http.Header {
	if m == nil || h == nil {
		return h
	}
	out := make(http.Header, len(h))
	for k, vs := range h {
		for _, v := range vs {
			out[k] = append(out[k], m.Header(k, v))
		}
	}
	return out
}

// A detector finds one kind of personal data in text.
type detector struct {
	kind   string
	re     *regexp.Regexp
	value  func(found string) string // the part of the match masked (all of it when nil)
	valid  func(v string) bool       // a check the value must pass (none when nil)
	digits bool                      // a match next to a digit is part of a longer number: not one
}

// inNumber reports whether c continues a number: a digit, or a decimal point.
func inNumber(c byte) bool { return c >= '0' && c <= '9' || c == '.' }

// partOfNumber reports whether the digits s[from:to] are part of a longer
// number: a digit or a decimal point next to them, or an exponent (1e5,
// 2.5E-3) joining them to a mantissa before or after.
func partOfNumber(s string, from, to int) bool {
	exp := func(c byte) bool { return c == 'e' || c == 'E' }
	sign := func(c byte) bool { return c == '+' || c == '-' }
	if from > 0 {
		switch p := s[from-1]; {
		case inNumber(p):
			return true
		case exp(p) && from > 1 && inNumber(s[from-2]):
			return true
		case sign(p) && from > 2 && exp(s[from-2]) && inNumber(s[from-3]):
			return true
		}
	}
	if to < len(s) {
		switch n := s[to]; {
		case inNumber(n):
			return true
		case exp(n) && to+1 < len(s) && (inNumber(s[to+1]) || sign(s[to+1]) && to+2 < len(s) && inNumber(s[to+2])):
			return true
		}
	}
	return false
}

var detectors = map[string]detector{
	"email": {kind: "email", re: regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`)},
	// 13 to 19 digits, maybe grouped by spaces or dashes, not inside a
	// longer run of digits (an id, a timestamp).
	"card": {kind: "card", re: regexp.MustCompile(`[0-9](?:[ -]?[0-9]){12,18}`), valid: luhn, digits: true},
	"jwt":  {kind: "jwt", re: regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)},
	"iban": {kind: "iban", re: regexp.MustCompile(`\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b`),
		valid: iban},
	"bearer": {kind: "bearer", re: regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}`),
		value: func(found string) string { return strings.TrimSpace(found[len("bearer"):]) }},
}

// luhn reports whether the digits of v pass the Luhn check.
func luhn(v string) bool {
	sum, n, double := 0, 0, false
	for i := len(v) - 1; i >= 0; i-- {
		c := v[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		n++
		double = !double
	}
	return n >= 13 && sum%10 == 0
}

// iban reports whether v (spaces allowed) passes the IBAN mod-97 check.
func iban(v string) bool {
	s := strings.ReplaceAll(v, " ", "")
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	s = s[4:] + s[:4]
	rem := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			rem = (rem*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			rem = (rem*100 + int(c-'A'+10)) % 97
		default:
			return false
		}
	}
	return rem == 1
}
