package correlate

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/internal/jsonspan"
)

// A token is one whole value of a request that may be translated: where
// its raw text lies, its decoded text, the name it is given there (what
// Exclude applies to), what a short number there names, and how a
// replacement is written.
type token struct {
	start, end int
	text       string
	name       string
	entity     string
	enc        encoding
}

// A keyedToken is a token that can be a created value, with its keys.
type keyedToken struct {
	token
	key      uint64   // in the table
	fleetKey FleetKey // with a fleet, in it
}

type encoding byte

const (
	rawText    encoding = iota // as it is (a cookie value, a header value)
	pathText                   // a path segment: percent-encoded
	queryText                  // a query or form value
	jsonText                   // a JSON string: quoted
	jsonNumber                 // a JSON number: as it is if the target's is one, else a JSON string
)

// Result tells what Translate did to one request.
type Result struct {
	Translated int  // values translated
	Waited     bool // it waited for a value being learned
	// Missed: a value it names was still being learned when the wait
	// ended: sent untranslated it would name production's value. The
	// caller sends a safe request as it is and drops an unsafe one.
	Missed bool
	// Settled: just captured and naming values not known, it waited for
	// the engines to hand production's answers over (see Options.Settle).
	Settled bool
}

// Translate returns req (a whole HTTP/1.x request as captured, head and
// body) with each whole value the table learned replaced by the target's,
// and Content-Length fixed. A request naming a value production created
// whose target value is still awaited waits for it, up to the table's
// Wait or ctx's end. With nothing to translate it returns req itself.
func (t *Table) Translate(ctx context.Context, req []byte) ([]byte, Result) {
	return t.TranslateCaptured(ctx, req, 0)
}

// TranslateCaptured is Translate for a request captured at captured (unix
// ns; 0: long ago). The answer that created a value the request names was
// captured before it, but may still be in another engine's hands (each
// engine owns its connections, and the login was on another): a request
// naming a value not known waits until Options.Settle after its capture
// before it is taken as one production did not create.
func (t *Table) TranslateCaptured(ctx context.Context, req []byte, captured int64) ([]byte, Result) {
	var res Result
	if t.empty() && t.fleet == nil {
		return req, res
	}
	t.mu.Lock()
	excl, opts := t.exclude, t.opts // a reload may replace them (SetOptions)
	t.mu.Unlock()
	toks := t.keyed(tokens(req), excl)
	if len(toks) == 0 {
		return req, res
	}
	if captured != 0 {
		if wait := time.Until(time.Unix(0, captured).Add(opts.Settle)); wait > 0 && t.namesUnknown(toks) {
			res.Settled = true
			t.count(func(s *Stats) { s.Settled++ })
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
			timer.Stop()
		}
	}
	t.fleetLookup(ctx, toks)
	// Wait, bounded, for the values still being learned.
	var deadline <-chan time.Time
	for _, tk := range toks {
		k := tk.key
		wait := t.awaited(k, captured)
		if wait == nil {
			continue
		}
		if deadline == nil {
			res.Waited = true
			t.count(func(s *Stats) { s.Waited++ })
			timer := time.NewTimer(opts.Wait)
			defer timer.Stop()
			deadline = timer.C
		}
		select {
		case <-wait:
		case <-deadline:
			res.Missed = true
		case <-ctx.Done():
			res.Missed = true
		}
		if res.Missed {
			t.gaveUp(k)
			break
		}
	}
	if res.Missed {
		t.count(func(s *Stats) { s.GaveUp++ })
		return req, res
	}
	var reps []replacement
	for _, tk := range toks {
		target, ok, _ := t.lookup(tk.key)
		t.markSent(tk.key) // carried back: translated, or the target's own value (shared)
		if !ok {
			continue
		}
		reps = append(reps, replacement{tk.start, tk.end, encode(target, tk.enc)})
	}
	if len(reps) == 0 {
		return req, res
	}
	res.Translated = len(reps)
	t.count(func(s *Stats) { s.Translated += uint64(len(reps)); s.Requests++ })
	return splice(req, reps), res
}

// keyed keeps the tokens that could be created values and that excl does
// not exclude, each with its keys made once (with a fleet, a keyed hash:
// not to be made again in every loop).
func (t *Table) keyed(toks []token, excl map[string]bool) []keyedToken {
	kept := make([]keyedToken, 0, len(toks))
	for _, tok := range toks {
		if !learnable(tok.text, tok.entity) || excl[normName(tok.name)] {
			continue
		}
		tk := keyedToken{token: tok}
		tk.key, tk.fleetKey = t.keys(tok.text, tok.entity)
		kept = append(kept, tk)
	}
	return kept
}

// namesUnknown reports whether a token (keyed) is not in the table at all.
func (t *Table) namesUnknown(toks []keyedToken) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tk := range toks {
		if t.entries[tk.key] == nil {
			return true
		}
	}
	return false
}

// normName is a name without case, '_' or '-': order_id, Order-Id and
// orderId are one. It runs for every value of every request: without a
// copy when the name is already so.
func normName(s string) string {
	clean := true
	for i := 0; i < len(s) && clean; i++ {
		c := s[i]
		clean = c != '_' && c != '-' && (c < 'A' || c > 'Z')
	}
	if clean {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '_' || c == '-':
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// singular is a collection's item name: orders → order, addresses → address.
func singular(s string) string {
	switch {
	case strings.HasSuffix(s, "sses"):
		return s[:len(s)-2]
	case strings.HasSuffix(s, "ies"):
		return s[:len(s)-3] + "y"
	case strings.HasSuffix(s, "s") && !strings.HasSuffix(s, "ss"):
		return s[:len(s)-1]
	}
	return s
}

func encode(v string, enc encoding) string {
	switch enc {
	case pathText:
		return url.PathEscape(v)
	case queryText:
		return url.QueryEscape(v)
	case jsonNumber:
		if _, err := strconv.ParseInt(v, 10, 64); err == nil {
			return v
		}
		return jsonQuote(v) // the target made a string where production made a number: a client sends it back as a string
	case jsonText:
		return jsonQuote(v)
	}
	return v
}

// jsonQuote writes v as a JSON string, as a client's encoder would: no
// HTML escapes.
func jsonQuote(v string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

type replacement struct {
	start, end int
	with       string
}

// splice applies replacements (in order, not overlapping) and fixes
// Content-Length when the body changed length.
func splice(req []byte, reps []replacement) []byte {
	slices.SortFunc(reps, func(a, b replacement) int { return a.start - b.start })
	headEnd := headEnd(req) + 4
	bodyDelta := 0
	var out []byte
	last := 0
	for _, r := range reps {
		if r.start < last {
			continue
		}
		out = append(out, req[last:r.start]...)
		out = append(out, r.with...)
		if r.start >= headEnd {
			bodyDelta += len(r.with) - (r.end - r.start)
		}
		last = r.end
	}
	out = append(out, req[last:]...)
	if bodyDelta != 0 {
		out = fixContentLength(out, len(req)-headEnd+bodyDelta)
	}
	return out
}

// fixContentLength rewrites the head's Content-Length to n.
func fixContentLength(req []byte, n int) []byte {
	headEnd := headEnd(req)
	lines := bytes.Split(req[:headEnd], []byte("\r\n"))
	for i, l := range lines {
		if name, _, ok := bytes.Cut(l, []byte(":")); ok && strings.EqualFold(string(bytes.TrimSpace(name)), "Content-Length") {
			lines[i] = []byte("Content-Length: " + strconv.Itoa(n))
		}
	}
	out := bytes.Join(lines, []byte("\r\n"))
	return append(out, req[headEnd:]...)
}

// Headers whose values are framing, caching or the client's own, never a
// value a server created.
var notTranslated = map[string]bool{
	"host": true, "content-length": true, "transfer-encoding": true, "connection": true, "content-type": true,
	"accept": true, "accept-encoding": true, "accept-language": true, "user-agent": true, "expect": true,
	"te": true, "upgrade": true, "date": true, "if-modified-since": true, "if-unmodified-since": true,
	"content-encoding": true, "keep-alive": true, "cache-control": true, "pragma": true, "referer": true, "origin": true,
	// tracing: made by the client or a proxy for this request alone
	"traceparent": true, "tracestate": true, "baggage": true, "x-request-id": true, "x-correlation-id": true,
	"x-amzn-trace-id": true, "x-b3-traceid": true, "x-b3-spanid": true, "x-b3-parentspanid": true, "b3": true,
	"x-cloud-trace-context": true, "sentry-trace": true, "x-forwarded-for": true, "x-real-ip": true,
}

// tokens lists a request's whole values: the path's segments, the
// query's values, cookies, a bearer token, other header values, and the
// leaves of a JSON or form body with a Content-Length.
func tokens(req []byte) []token {
	headEnd := headEnd(req)
	if headEnd < 0 {
		return nil
	}
	coll := collection(req)
	toks := make([]token, 0, 8)
	lineEnd := bytes.Index(req, []byte("\r\n"))
	line := req[:lineEnd]
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 < 0 || sp2 <= sp1 {
		return nil
	}
	target := line[sp1+1 : sp2]
	path, query := target, []byte(nil)
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		path, query = target[:q], target[q+1:]
	}
	base := sp1 + 1
	prev := ""
	for off := 0; off <= len(path); {
		end := bytes.IndexByte(path[off:], '/')
		if end < 0 {
			end = len(path) - off
		}
		seg := path[off : off+end]
		if len(seg) > 0 {
			if v, err := url.PathUnescape(string(seg)); err == nil {
				toks = add(toks, token{base + off, base + off + end, v, prev, "", pathText}, segmentEntity)
				prev = v
			}
		}
		off += end + 1
	}
	if query != nil {
		toks = formTokens(toks, query, base+len(path)+1, coll)
	}
	bodyStart := headEnd + 4
	var contentType string
	hasLength, chunked := false, false
	for off := lineEnd + 2; off < headEnd; {
		end := bytes.Index(req[off:], []byte("\r\n"))
		if end < 0 || off+end > headEnd {
			end = headEnd - off
		}
		l := req[off : off+end]
		name, _, ok := bytes.Cut(l, []byte(":"))
		if ok {
			var scratch [64]byte
			nb := appendLower(scratch[:0], bytes.TrimSpace(name))
			vstart := off + len(name) + 1
			for vstart < off+end && (req[vstart] == ' ' || req[vstart] == '\t') {
				vstart++
			}
			vend := off + end
			for vend > vstart && (req[vend-1] == ' ' || req[vend-1] == '\t') {
				vend--
			}
			v := req[vstart:vend]
			switch {
			case string(nb) == "cookie":
				toks = cookieTokens(toks, req, vstart, vend)
			case string(nb) == "authorization":
				if scheme, _, ok := bytes.Cut(v, []byte(" ")); ok && bytes.EqualFold(scheme, []byte("Bearer")) {
					s := vstart + len(scheme) + 1
					for s < vend && req[s] == ' ' {
						s++
					}
					toks = add(toks, token{s, vend, string(req[s:vend]), "authorization", "", rawText}, nil)
				}
			case string(nb) == "content-type":
				contentType = strings.ToLower(string(v))
			case string(nb) == "content-length":
				hasLength = true
			case string(nb) == "transfer-encoding":
				chunked = true
			case !notTranslated[string(nb)] && (len(v) >= minToken || len(v) > 0 && v[0] >= '0' && v[0] <= '9'):
				toks = add(toks, token{vstart, vend, string(v), string(nb), "", rawText}, headerEntity)
			}
		}
		off += end + 2
	}
	if !hasLength || chunked || bodyStart >= len(req) {
		return toks
	}
	body := req[bodyStart:]
	switch {
	case strings.Contains(contentType, "json"):
		jsonspan.Scan(body, jsonspan.Limits{Leaves: maxLeaves, Depth: maxDepth}, func(l jsonspan.Leaf) {
			enc := jsonNumber
			if l.Quoted {
				enc = jsonText
			}
			tk := token{bodyStart + l.Start, bodyStart + l.End, l.Text, l.Key, "", enc}
			toks = add(toks, tk, func(string) string { return nameEntity(l.Key, or(l.Parent, coll)) })
		})
	case strings.HasPrefix(contentType, "application/x-www-form-urlencoded"):
		toks = formTokens(toks, body, bodyStart, coll)
	}
	return toks
}

// formTokens adds the values of a query or form (k=v&k=v), at base, of a
// request on collection coll.
func formTokens(toks []token, b []byte, base int, coll string) []token {
	for off := 0; off < len(b); {
		end := bytes.IndexByte(b[off:], '&')
		if end < 0 {
			end = len(b) - off
		}
		pair := b[off : off+end]
		if k, v, ok := bytes.Cut(pair, []byte("=")); ok && len(v) > 0 {
			key, err1 := url.QueryUnescape(string(k))
			val, err2 := url.QueryUnescape(string(v))
			if err1 == nil && err2 == nil {
				s := base + off + len(k) + 1
				toks = add(toks, token{s, s + len(v), val, key, "", queryText}, func(string) string { return nameEntity(key, coll) })
			}
		}
		off += end + 1
	}
	return toks
}

// cookieTokens adds the values of a Cookie header's pairs.
func cookieTokens(toks []token, req []byte, start, end int) []token {
	for off := start; off < end; {
		e := bytes.IndexByte(req[off:end], ';')
		if e < 0 {
			e = end - off
		}
		pair := req[off : off+e]
		lead := len(pair) - len(bytes.TrimLeft(pair, " "))
		if k, v, ok := bytes.Cut(pair[lead:], []byte("=")); ok && len(v) > 0 {
			s := off + lead + len(k) + 1
			vv := bytes.TrimRight(v, " ")
			if len(vv) >= 2 && vv[0] == '"' && vv[len(vv)-1] == '"' {
				toks = add(toks, token{s + 1, s + len(vv) - 1, string(vv[1 : len(vv)-1]), string(k), "", rawText}, cookieEntity)
			} else {
				toks = add(toks, token{s, s + len(vv), string(vv), string(k), "", rawText}, cookieEntity)
			}
		}
		off += e + 1
	}
	return toks
}

// headEnd is where a request's head ends (its blank line's CRLF CRLF), or
// -1 when a line of it ends in a bare LF: the strict parser refuses such
// a head, and where another reader would end it is not for this package
// to guess. A translation leaves such a request as it is.
func headEnd(req []byte) int {
	end := bytes.Index(req, []byte("\r\n\r\n"))
	if end < 0 {
		return -1
	}
	for i := bytes.IndexByte(req[:end], '\n'); i >= 0; {
		if i == 0 || req[i-1] != '\r' {
			return -1
		}
		j := bytes.IndexByte(req[i+1:end], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return end
}

// add appends tk if its value could be one a server created: an id, or a
// short number, whose entity (what it names) entity makes from tk's name
// (nil: it names nothing).
func add(toks []token, tk token, entity func(name string) string) []token {
	if idLike(tk.text) {
		return append(toks, tk)
	}
	if shortNumber(tk.text) && entity != nil {
		if tk.entity = entity(tk.name); tk.entity != "" {
			return append(toks, tk)
		}
	}
	return toks
}

// appendLower appends b in lower case (ASCII).
func appendLower(dst, b []byte) []byte {
	for _, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Names are the values production's request names, read at most once for
// every target's table (see Carried), and only when a table holds values.
type Names struct {
	req  []byte
	toks []token
	read bool
}

// Named returns req's names, read when first needed (a value: on the
// capture path, no allocation unless a table reads them).
func Named(req []byte) Names { return Names{req: req} }

func (n *Names) tokens() []token {
	if !n.read {
		n.toks, n.read = tokens(n.req), true
	}
	return n.toks
}

// Carried notes the values production's request names: its client carried
// back what an answer gave it, the evidence that they are created ids
// (see Origin), known when the request is captured, before its replay,
// which may come after the comparison of the answer that created them.
func (t *Table) Carried(n *Names) {
	if t.empty() {
		return
	}
	t.mu.Lock()
	excl := t.exclude
	t.mu.Unlock()
	toks := t.keyed(n.tokens(), excl)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tk := range toks {
		if e := t.entries[tk.key]; e != nil {
			e.sent = true
		}
	}
}
