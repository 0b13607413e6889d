// Package diff compares two HTTP responses as a client sees them: bodies
// de-chunked and content-decoded, headers by meaning where HTTP defines it
// (media types parsed, comma lists by element), JSON structurally (field
// paths such as body.items[3].price, type changes, missing and extra
// fields and elements, reordered arrays reported once as "order"),
// text line by line with a real diff (locators line:N in the reference),
// CSV by row and column, anything else by digest.
//
// Every difference carries a Key that generalises it across requests
// (list indices become [*], a text line becomes its template) and the
// Shape of both values, so that the caller can learn which keys are noise
// and whether a difference keeps the value's shape.
package diff

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/andybalholm/brotli"
)

// Message is one side of a comparison.
type Message struct {
	Status    int
	Header    http.Header
	Body      []byte // as sent: possibly content-encoded
	Chunked   bool   // Body still carries its chunked transfer framing (as mirrored)
	Truncated bool   // Body is a prefix of a longer body
	// Host is the Host the request was sent with (production's as
	// captured, the test environment's as replayed): where the answer
	// repeats it, in a header value or the body, it reads as OwnHost, so
	// that a Location or a link compares by the rest of its value.
	Host string
}

// OwnHost stands for the Host an answer was asked as.
const OwnHost = "{host}"

// Kind says how a field differs.
type Kind string

const (
	Changed Kind = "changed"
	Missing Kind = "missing" // in the reference, not in the candidate
	Extra   Kind = "extra"   // in the candidate, not in the reference
	Type    Kind = "type"    // another JSON type
	Order   Kind = "order"   // the same elements in another order
)

// Difference is one field that differs.
type Difference struct {
	Field     string `json:"field"`                // body.items[3].price, line:12, row:3 col:price
	CandField string `json:"cand_field,omitempty"` // where the candidate's side is, when it is elsewhere (line:13)
	Key       string `json:"key"`                  // body.items[*].price: the field across requests
	Kind      Kind   `json:"kind"`
	Ref       string `json:"ref"` // short renderings
	Cand      string `json:"cand"`
	// Shapes of both values (see Shape), for changed scalars and lines:
	// equal shapes and a key known to vary on its own make noise.
	RefShape  string `json:"-"`
	CandShape string `json:"-"`
	// The instants of changed times (values of shape "time" or "date",
	// lines with a time): the caller tells a time that is each side's
	// "now" from a changed one.
	RefTime  time.Time `json:"-"`
	CandTime time.Time `json:"-"`
}

// changed is a Changed difference of two scalar values (their texts as
// read: a JSON string unquoted), with their shapes and, for times, instants.
func changed(field, key, ref, cand, refShape, candShape string) Difference {
	d := Difference{Field: field, Key: key, Kind: Changed, Ref: render(ref), Cand: render(cand), RefShape: refShape, CandShape: candShape}
	d.RefTime = instant(ref, refShape)
	d.CandTime = instant(cand, candShape)
	return d
}

func instant(v, shape string) time.Time {
	var t time.Time
	switch {
	case shape == "time" || shape == "date":
		t, _ = TimeOf(v)
	case strings.Contains(shape, "{time}"):
		t, _ = LineTime([]byte(v))
	}
	return t
}

// Options tune a comparison.
type Options struct {
	IgnoreHeaders []string // canonical header names not compared
	MaxDecoded    int64    // bound on a decoded body
	// Unordered reports whether the array at a key is a set: its order is
	// not compared. nil: every array is ordered.
	Unordered func(key string) bool
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
	return CompareParsed(Parse(ref, opts), Parse(cand, opts), opts)
}

// Parsed is a message made ready to compare: body decoded and, by media
// type, parsed. Parse once, compare many times (production's answer is
// compared with the candidate and learned from).
type Parsed struct {
	Msg   Message
	Body  []byte // de-chunked and content-decoded (or as sent when decoding failed)
	Media string // json, csv, text or binary
	json  *jdoc  // nil unless Media is json and the body parsed
	csv   [][]string
	root  string // the first word of the body's keys: "body", or a document's
}

// ParseDocument makes a JSON document other than an answer's body ready
// to compare: its keys start with root ("write" for what a request wrote)
// rather than "body".
func ParseDocument(root string, doc []byte) *Parsed {
	p := &Parsed{Body: doc, Media: "json", root: root}
	if d, err := parseJSON(doc); err == nil {
		p.json = d
	}
	return p
}

func (p *Parsed) rootKey() string {
	if p.root == "" {
		return "body"
	}
	return p.root
}

// Parse decodes and parses m's body.
func Parse(m Message, opts Options) *Parsed {
	p := &Parsed{Msg: m}
	b, err := Decode(m, opts.MaxDecoded)
	if err != nil {
		b = m.Body
		if m.Chunked {
			b, _ = Dechunk(m.Body)
		}
	}
	p.Body = b
	if len(m.Host) >= minHost {
		p.Body = replaceHost(b, m.Host)
		p.Msg.Header = hostInHeader(m.Header, m.Host)
	}
	p.Media = mediaKind(m.Header)
	switch p.Media {
	case "json":
		if !m.Truncated {
			if d, err := parseJSON(b); err == nil {
				p.json = d
			}
		}
	case "csv":
		if !m.Truncated {
			p.csv = parseCSV(b)
		}
	}
	return p
}

// minHost is the shortest Host replaced: a shorter one ("a", "db") could
// as well be a word of the answer.
const minHost = 3

// replaceHost is b with each occurrence of host read as OwnHost; b itself
// when it has none (the common case costs a search, no copy).
func replaceHost(b []byte, host string) []byte {
	if !bytes.Contains(b, []byte(host)) {
		return b
	}
	return bytes.ReplaceAll(b, []byte(host), []byte(OwnHost))
}

// hostInHeader is h with host read as OwnHost in its values: h itself when
// no value has it, else a copy (h belongs to the caller).
func hostInHeader(h http.Header, host string) http.Header {
	has := false
	for _, vs := range h {
		for _, v := range vs {
			has = has || strings.Contains(v, host)
		}
	}
	if !has {
		return h
	}
	out := make(http.Header, len(h))
	for k, vs := range h {
		c := make([]string, len(vs))
		for i, v := range vs {
			c[i] = strings.ReplaceAll(v, host, OwnHost)
		}
		out[k] = c
	}
	return out
}

// CompareParsed returns how cand differs from ref.
func CompareParsed(ref, cand *Parsed, opts Options) []Difference {
	var out []Difference
	if ref.Msg.Status != cand.Msg.Status {
		a, b := strconv.Itoa(ref.Msg.Status), strconv.Itoa(cand.Msg.Status)
		out = append(out, Difference{Field: "status", Key: "status", Kind: Changed, Ref: a, Cand: b})
	}
	out = compareHeaders(out, ref.Msg.Header, cand.Msg.Header, opts)
	return dropPseudonyms(compareBodies(out, ref, cand, opts))
}

func compareBodies(out []Difference, ref, cand *Parsed, opts Options) []Difference {
	a, b := ref.Body, cand.Body
	if ref.Msg.Truncated || cand.Msg.Truncated {
		// Only the part both sides kept can be compared.
		n := min(len(a), len(b))
		a, b = a[:n], b[:n]
	}
	if bytes.Equal(a, b) {
		return out
	}
	kind := ref.Media
	if kind == "binary" && cand.Media != "binary" {
		kind = cand.Media
	}
	switch {
	case ref.json != nil && cand.json != nil:
		w := jwalker{a: ref.json, b: cand.json, opts: &opts, out: out}
		w.path = append(w.path, ref.rootKey()...)
		w.key = append(w.key, ref.rootKey()...)
		w.walk(0, 0)
		return w.out
	case ref.csv != nil && cand.csv != nil:
		return compareCSV(out, ref.csv, cand.csv)
	case kind == "json" || kind == "csv" || kind == "text":
		return compareText(out, a, b)
	}
	return append(out, Difference{Field: "body(digest)", Key: "body(digest)", Kind: Changed, Ref: digest(a), Cand: digest(b)})
}

// Dechunk removes chunked transfer framing: the body a client sees. ok is
// false when the framing is broken or cut short; the data up to there is
// returned.
func Dechunk(b []byte) (out []byte, ok bool) {
	out = make([]byte, 0, len(b))
	for {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return out, false
		}
		line := bytes.TrimRight(b[:nl], "\r")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 62)
		if err != nil {
			return out, false
		}
		b = b[nl+1:]
		if n == 0 {
			return out, true // trailers follow; not part of the body
		}
		if uint64(len(b)) < n {
			return append(out, b...), false
		}
		out = append(out, b[:n]...)
		b = b[n:]
		switch {
		case bytes.HasPrefix(b, []byte("\r\n")):
			b = b[2:]
		case bytes.HasPrefix(b, []byte("\n")):
			b = b[1:]
		default:
			return out, false
		}
	}
}

// Decode returns the body a client sees: de-chunked, then the
// Content-Encoding undone, bounded in size.
func Decode(m Message, limit int64) ([]byte, error) {
	body := m.Body
	if m.Chunked {
		var ok bool
		body, ok = Dechunk(body)
		if !ok && !m.Truncated {
			return nil, fmt.Errorf("diff: broken chunked framing")
		}
	}
	if limit <= 0 {
		limit = DefaultOptions.MaxDecoded
	}
	var r io.Reader
	enc := strings.ToLower(strings.TrimSpace(m.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("diff: gzip: %w", err)
		}
		r = zr
	case "deflate":
		// "deflate" is zlib-wrapped by the RFC, raw by some servers.
		if zr, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(body))
		}
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	default:
		return nil, fmt.Errorf("diff: content encoding %q", enc)
	}
	b, err := io.ReadAll(io.LimitReader(r, limit))
	if err != nil && !(m.Truncated && (err == io.ErrUnexpectedEOF || err == io.EOF)) {
		return nil, fmt.Errorf("diff: %s: %w", enc, err)
	}
	return b, nil
}

func mediaKind(h http.Header) string {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return "json"
	case mt == "text/csv":
		return "csv"
	case strings.HasPrefix(mt, "text/") || mt == "application/xml" || strings.HasSuffix(mt, "+xml") ||
		mt == "application/javascript" || mt == "application/x-www-form-urlencoded":
		return "text"
	}
	return "binary"
}

func render(s string) string {
	if len(s) > maxRender {
		return s[:maxRender] + "…"
	}
	return s
}

func renderBytes(b []byte) string {
	if len(b) > maxRender {
		return string(b[:maxRender]) + "…"
	}
	return string(b)
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return fmt.Sprintf("%d bytes, sha256 %s", len(b), hex.EncodeToString(h[:8]))
}

// Headers compared as comma-separated lists, element by element and in any
// order (RFC 9110 5.6.1: optional whitespace around the commas). The value
// says whether the elements are case-insensitive tokens.
var listHeaders = map[string]bool{
	"Vary": true, "Allow": false, "Cache-Control": true, "Access-Control-Allow-Methods": false,
	"Access-Control-Allow-Headers": true, "Access-Control-Expose-Headers": true, "Content-Language": true,
	"Accept-Ranges": true, "Accept-Patch": true, "Accept-Post": true, "Pragma": true, "Trailer": true,
}

func compareHeaders(out []Difference, a, b http.Header, opts Options) []Difference {
	names := make([]string, 0, len(a)+len(b))
	for k := range a {
		names = append(names, http.CanonicalHeaderKey(k))
	}
	for k := range b {
		names = append(names, http.CanonicalHeaderKey(k))
	}
	slices.Sort(names)
	names = slices.Compact(names)
	for _, k := range names {
		if slices.Contains(opts.IgnoreHeaders, k) {
			continue
		}
		av, bv := a.Values(k), b.Values(k)
		field := "header." + k
		switch {
		case av == nil && bv == nil:
		case av == nil:
			out = append(out, Difference{Field: field, Key: field, Kind: Extra, Cand: render(strings.Join(bv, ", "))})
		case bv == nil:
			out = append(out, Difference{Field: field, Key: field, Kind: Missing, Ref: render(strings.Join(av, ", "))})
		case redacted(av) || redacted(bv):
			// A recording keeps credentials' values out (Set-Cookie,
			// Authorization): what was hidden cannot be compared, only
			// that it was there.
		default:
			x, y := HeaderMeaning(k, av), HeaderMeaning(k, bv)
			if x != y {
				out = append(out, changed(field, field, x, y, Shape(x), Shape(y)))
			}
		}
	}
	return out
}

// Redacted is the value a recording writes in place of a credential's.
const Redacted = "REDACTED"

// PseudonymPrefix starts the pseudonym a recording writes in place of a
// secret (see recording.Redactor): the same secret, the same pseudonym,
// within one recording.
const PseudonymPrefix = "~p"

// IsPseudonym reports whether v is a recording's stand-in for a secret.
func IsPseudonym(v string) bool {
	return len(v) > len(PseudonymPrefix) && strings.HasPrefix(v, PseudonymPrefix)
}

// redacted reports whether a header's values were hidden by a recording:
// REDACTED, or pseudonyms (a cookie's value, an Authorization's
// credentials).
func redacted(vs []string) bool {
	for _, v := range vs {
		v = strings.TrimSpace(v)
		if v != Redacted && !IsPseudonym(v) && !strings.Contains(v, "="+PseudonymPrefix) && !strings.Contains(v, " "+PseudonymPrefix) {
			return false
		}
	}
	return len(vs) > 0
}

// dropPseudonyms leaves out the differences where the reference's value
// is a recording's pseudonym: a secret it did not keep is not comparable.
func dropPseudonyms(ds []Difference) []Difference {
	return slices.DeleteFunc(ds, func(d Difference) bool {
		return d.Kind == Changed && (IsPseudonym(d.Ref) || IsPseudonym(strings.Trim(d.Ref, `"`)))
	})
}

// HeaderMeaning renders a header's values so that two renderings are
// equal when the values mean the same: media types parsed (type, subtype
// and parameter names case-insensitive, charset's value too, parameters
// in any order, whitespace ignored), comma lists by element, Set-Cookie by
// cookie names (values are session data), anything else verbatim.
func HeaderMeaning(name string, vs []string) string {
	switch name {
	case "Content-Type":
		v := strings.Join(vs, ",")
		mt, params, err := mime.ParseMediaType(v)
		if err != nil {
			return strings.TrimSpace(v)
		}
		keys := make([]string, 0, len(params))
		for k := range params {
			keys = append(keys, k) // ParseMediaType lower-cases the names
		}
		slices.Sort(keys)
		var b strings.Builder
		b.WriteString(mt)
		for _, k := range keys {
			v := params[k]
			if k == "charset" {
				v = strings.ToLower(v)
			}
			b.WriteString("; " + k + "=" + v)
		}
		return b.String()
	case "Set-Cookie":
		names := make([]string, 0, len(vs))
		for _, v := range vs {
			n, _, _ := strings.Cut(v, "=")
			names = append(names, strings.TrimSpace(n))
		}
		slices.Sort(names)
		return strings.Join(names, ", ")
	}
	fold, isList := listHeaders[name]
	if !isList {
		return strings.Join(vs, ", ")
	}
	var elems []string
	for _, v := range vs {
		for e := range strings.SplitSeq(v, ",") {
			e = strings.Trim(e, " \t")
			if e == "" {
				continue // empty list elements are allowed and mean nothing
			}
			if fold {
				e = strings.ToLower(e)
			}
			elems = append(elems, e)
		}
	}
	slices.Sort(elems)
	return strings.Join(elems, ", ")
}
