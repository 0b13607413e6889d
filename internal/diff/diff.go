// Package diff compares two HTTP responses: status, headers (less those
// that differ for reasons other than the code), and bodies by media type.
// JSON is compared structurally, with field paths such as
// body.items[3].price, type changes, missing and extra fields, and
// numbers compared by value (1.0 equals 1). Text and HTML are compared by
// lines, anything else by digest. Content encodings are decoded first.
package diff

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/andybalholm/brotli"
)

// Message is one side of a comparison.
type Message struct {
	Status    int
	Header    http.Header
	Body      []byte // as sent: possibly content-encoded
	Truncated bool   // Body is a prefix of a longer body
}

// Kind says how a field differs.
type Kind string

const (
	Changed Kind = "changed"
	Missing Kind = "missing" // in the reference, not in the candidate
	Extra   Kind = "extra"   // in the candidate, not in the reference
	Type    Kind = "type"    // another JSON type
)

// Difference is one field that differs.
type Difference struct {
	Field string `json:"field"` // body.items[3].price
	Key   string `json:"key"`   // body.items[*].price: the field across requests
	Kind  Kind   `json:"kind"`
	Ref   string `json:"ref"` // short renderings
	Cand  string `json:"cand"`
}

// Options tune a comparison.
type Options struct {
	IgnoreHeaders []string // canonical header names not compared
	MaxDecoded    int64    // bound on a decoded body
}

// DefaultIgnoreHeaders differ between two deployments of the same code.
var DefaultIgnoreHeaders = []string{
	"Date", "Server", "Etag", "Last-Modified", "Expires", "Age", "Content-Length", "Transfer-Encoding",
	"Connection", "Keep-Alive", "Content-Encoding", "X-Request-Id", "X-Amzn-Trace-Id", "X-Amzn-Requestid",
	"X-Amz-Cf-Id", "X-Amz-Cf-Pop", "Via", "X-Cache", "X-Served-By", "X-Runtime", "X-Response-Time",
	"Report-To", "Nel", "Cf-Ray", "X-Shadowtap-Replay",
}

// DefaultOptions compare everything but DefaultIgnoreHeaders.
var DefaultOptions = Options{IgnoreHeaders: DefaultIgnoreHeaders, MaxDecoded: 16 << 20}

const maxRender = 160

// Compare returns how cand differs from ref.
func Compare(ref, cand Message, opts Options) []Difference {
	var out []Difference
	if ref.Status != cand.Status {
		out = append(out, Difference{"status", "status", Changed, strconv.Itoa(ref.Status), strconv.Itoa(cand.Status)})
	}
	out = append(out, compareHeaders(ref.Header, cand.Header, opts)...)
	return append(out, compareBodies(ref, cand, opts)...)
}

func compareHeaders(a, b http.Header, opts Options) []Difference {
	var out []Difference
	names := map[string]bool{}
	for k := range a {
		names[http.CanonicalHeaderKey(k)] = true
	}
	for k := range b {
		names[http.CanonicalHeaderKey(k)] = true
	}
	sorted := make([]string, 0, len(names))
	for k := range names {
		if !slices.Contains(opts.IgnoreHeaders, k) {
			sorted = append(sorted, k)
		}
	}
	slices.Sort(sorted)
	for _, k := range sorted {
		av, bv := headerValue(a, k), headerValue(b, k)
		field := "header." + k
		switch {
		case av == bv:
		case a.Values(k) == nil:
			out = append(out, Difference{field, field, Extra, "", render(bv)})
		case b.Values(k) == nil:
			out = append(out, Difference{field, field, Missing, render(av), ""})
		default:
			out = append(out, Difference{field, field, Changed, render(av), render(bv)})
		}
	}
	return out
}

// headerValue joins a header's values; for Set-Cookie only the cookie
// names count (their values are session data).
func headerValue(h http.Header, k string) string {
	vs := h.Values(k)
	if k == "Set-Cookie" {
		names := make([]string, 0, len(vs))
		for _, v := range vs {
			name, _, _ := strings.Cut(v, "=")
			names = append(names, strings.TrimSpace(name))
		}
		slices.Sort(names)
		return strings.Join(names, ", ")
	}
	return strings.Join(vs, ", ")
}

func compareBodies(ref, cand Message, opts Options) []Difference {
	a, aerr := decode(ref, opts.MaxDecoded)
	b, berr := decode(cand, opts.MaxDecoded)
	if aerr != nil || berr != nil {
		a, b = ref.Body, cand.Body // compare what was sent
	}
	if ref.Truncated || cand.Truncated {
		// Only the part both sides kept can be compared.
		n := min(len(a), len(b))
		a, b = a[:n], b[:n]
	}
	if bytes.Equal(a, b) {
		return nil
	}
	switch mediaKind(ref.Header, cand.Header) {
	case "json":
		var av, bv any
		if decodeJSON(a, &av) == nil && decodeJSON(b, &bv) == nil {
			var out []Difference
			walkJSON("body", av, bv, &out)
			return out
		}
		return compareText(a, b)
	case "text":
		return compareText(a, b)
	}
	return []Difference{{"body(digest)", "body(digest)", Changed, digest(a), digest(b)}}
}

// decode undoes the Content-Encoding, bounded in size.
func decode(m Message, limit int64) ([]byte, error) {
	enc := strings.ToLower(strings.TrimSpace(m.Header.Get("Content-Encoding")))
	var r io.Reader
	switch enc {
	case "", "identity":
		return m.Body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(m.Body))
		if err != nil {
			return nil, err
		}
		r = zr
	case "deflate":
		// "deflate" is zlib-wrapped by the RFC, raw by some servers.
		if zr, err := zlib.NewReader(bytes.NewReader(m.Body)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(m.Body))
		}
	case "br":
		r = brotli.NewReader(bytes.NewReader(m.Body))
	default:
		return nil, fmt.Errorf("content encoding %q", enc)
	}
	b, err := io.ReadAll(io.LimitReader(r, limit))
	if err != nil && !(m.Truncated && (err == io.ErrUnexpectedEOF || err == io.EOF)) {
		return nil, err
	}
	return b, nil
}

func mediaKind(a, b http.Header) string {
	ct := a.Get("Content-Type")
	if ct == "" {
		ct = b.Get("Content-Type")
	}
	mt, _, _ := mime.ParseMediaType(ct)
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return "json"
	case strings.HasPrefix(mt, "text/") || mt == "application/xml" || strings.HasSuffix(mt, "+xml") ||
		mt == "application/javascript" || mt == "application/x-www-form-urlencoded":
		return "text"
	}
	return "binary"
}

func decodeJSON(b []byte, v *any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

var indexRe = regexp.MustCompile(`\[\d+\]`)

// Key generalises a field path across requests: list indices become [*].
func Key(field string) string { return indexRe.ReplaceAllString(field, "[*]") }

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func child(path, key string) string {
	if identRe.MatchString(key) {
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

func walkJSON(path string, a, b any, out *[]Difference) {
	add := func(k Kind, av, bv any) {
		ra, rb := "", ""
		if av != nil || k != Extra {
			ra = renderJSON(av)
		}
		if bv != nil || k != Missing {
			rb = renderJSON(bv)
		}
		*out = append(*out, Difference{path, Key(path), k, ra, rb})
	}
	if typeOf(a) != typeOf(b) {
		add(Type, a, b)
		return
	}
	switch av := a.(type) {
	case map[string]any:
		bv := b.(map[string]any)
		keys := make([]string, 0, len(av)+len(bv))
		for k := range av {
			keys = append(keys, k)
		}
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			x, inA := av[k]
			y, inB := bv[k]
			p := child(path, k)
			switch {
			case !inB:
				*out = append(*out, Difference{p, Key(p), Missing, renderJSON(x), ""})
			case !inA:
				*out = append(*out, Difference{p, Key(p), Extra, "", renderJSON(y)})
			default:
				walkJSON(p, x, y, out)
			}
		}
	case []any:
		bv := b.([]any)
		for i := range max(len(av), len(bv)) {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(bv):
				*out = append(*out, Difference{p, Key(p), Missing, renderJSON(av[i]), ""})
			case i >= len(av):
				*out = append(*out, Difference{p, Key(p), Extra, "", renderJSON(bv[i])})
			default:
				walkJSON(p, av[i], bv[i], out)
			}
		}
	case json.Number:
		if !sameNumber(av, b.(json.Number)) {
			add(Changed, a, b)
		}
	default:
		if a != b {
			add(Changed, a, b)
		}
	}
}

func typeOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case json.Number:
		return "number"
	case string:
		return "string"
	case bool:
		return "bool"
	}
	return "null"
}

// sameNumber compares numbers by value at full precision: 1.0 == 1,
// 1e2 == 100.
func sameNumber(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, ok1 := new(big.Float).SetPrec(256).SetString(string(a))
	y, ok2 := new(big.Float).SetPrec(256).SetString(string(b))
	return ok1 && ok2 && x.Cmp(y) == 0
}

func renderJSON(v any) string {
	b, _ := json.Marshal(v)
	return render(string(b))
}

func render(s string) string {
	if len(s) > maxRender {
		return s[:maxRender] + "…"
	}
	return s
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return fmt.Sprintf("%d bytes, sha256 %s", len(b), hex.EncodeToString(h[:8]))
}

// compareText reports the first differing line and how many differ.
func compareText(a, b []byte) []Difference {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	first := 0
	for first < len(al) && first < len(bl) && al[first] == bl[first] {
		first++
	}
	line := func(ls []string) string {
		if first < len(ls) {
			return render(fmt.Sprintf("line %d: %s", first+1, ls[first]))
		}
		return fmt.Sprintf("(%d lines)", len(ls))
	}
	count := map[string]int{}
	for _, l := range al {
		count[l]++
	}
	changed := 0
	for _, l := range bl {
		if count[l] > 0 {
			count[l]--
		} else {
			changed++
		}
	}
	for _, n := range count {
		changed += n
	}
	return []Difference{{"body(text)", "body(text)", Changed, line(al), line(bl) + fmt.Sprintf(" (%d lines differ)", changed)}}
}
