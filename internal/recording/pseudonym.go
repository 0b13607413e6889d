package recording

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/andybalholm/brotli"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/jsonspan"
)

// A Redactor replaces credentials in records with pseudonyms: the same
// secret gets the same pseudonym throughout one recording (a keyed hash
// under a key made for the recording and never written), so a session
// cookie set in one answer and sent in later requests, or a token an
// answer's body gave and a later Authorization carries, still match, and
// a replay can translate them (see correlate), while no secret is
// written. Pseudonyms keep the secret's length (Content-Length and chunk
// sizes stay right) and start with diff.PseudonymPrefix, so the
// comparison knows them for what they are: not comparable.
type Redactor struct {
	names []string
	key   [32]byte
}

// NewRedactor redacts the named headers' values (and, in answers, the
// values of JSON keys that name secrets: token, session, ...).
func NewRedactor(names []string) *Redactor {
	r := &Redactor{names: names}
	rand.Read(r.key[:])
	return r
}

// Record returns rec with its credentials replaced.
func (rd *Redactor) Record(r Record) Record {
	if out, changed := rd.message(r.Request, true); changed {
		r.Request, r.Redacted = out, true
	}
	if r.HasResponse {
		if out, changed := rd.message(r.Response, false); changed {
			r.Response, r.Redacted = out, true
		}
	}
	return r
}

// pseudonym is secret's stand-in: as long as it (from 3 bytes), of
// letters, digits, '-' and '_' after the prefix.
func (rd *Redactor) pseudonym(secret string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	n := max(len(secret), len(diff.PseudonymPrefix)+1)
	out := make([]byte, 0, n)
	out = append(out, diff.PseudonymPrefix...)
	for block := uint32(0); len(out) < n; block++ {
		m := hmac.New(sha256.New, rd.key[:])
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], block)
		m.Write(b[:])
		m.Write([]byte(secret))
		for _, c := range m.Sum(nil) {
			if len(out) == n {
				break
			}
			out = append(out, alphabet[c&63])
		}
	}
	return string(out)
}

// headerValue is a redacted header's value with its secrets replaced:
// each cookie's value, Set-Cookie's value, the credentials after an
// Authorization scheme, or the whole value.
func (rd *Redactor) headerValue(name, v string) string {
	switch strings.ToLower(name) {
	case "cookie":
		parts := strings.Split(v, ";")
		for i, p := range parts {
			if k, val, ok := strings.Cut(p, "="); ok && val != "" {
				parts[i] = k + "=" + rd.pseudonym(val)
			}
		}
		return strings.Join(parts, ";")
	case "set-cookie":
		pair, attrs, _ := strings.Cut(v, ";")
		if k, val, ok := strings.Cut(pair, "="); ok && val != "" {
			pair = k + "=" + rd.pseudonym(val)
		}
		if attrs != "" || strings.Contains(v, ";") {
			return pair + ";" + attrs
		}
		return pair
	case "authorization", "proxy-authorization":
		if scheme, cred, ok := strings.Cut(v, " "); ok && cred != "" {
			return scheme + " " + rd.pseudonym(cred)
		}
	}
	return rd.pseudonym(v)
}

// secretKeys are the keys (JSON, form) whose string values are
// credentials (lower case, without '_' and '-').
var secretKeys = []string{"token", "accesstoken", "refreshtoken", "idtoken", "sessiontoken", "session", "sessionid", "sid",
	"jwt", "apikey", "secret", "clientsecret", "csrf", "csrftoken", "xsrftoken", "password"}

// secretKey reports whether k names a credential. A password a client
// sends is kept: a replayed login needs it, and the test copy holds the
// same users (see README, "Recordings and credentials").
// keySeparators are left out of a key's name: access_token, access-token
// and accessToken are one (made once: secretKey runs for every JSON leaf).
var keySeparators = strings.NewReplacer("_", "", "-", "")

func secretKey(k string, isRequest bool) bool {
	k = keySeparators.Replace(strings.ToLower(k))
	return slices.Contains(secretKeys, k) && !(isRequest && k == "password")
}

// secretHints are what a body holding a credential cannot lack: a body
// that cannot be searched (broken JSON, an unknown encoding) and holds
// one of them is blanked rather than written.
var secretHints = [][]byte{[]byte("token"), []byte("session"), []byte("sid"), []byte("jwt"), []byte("api"), []byte("secret"),
	[]byte("csrf"), []byte("xsrf"), []byte("password")}

// Limits of a body searched for credentials.
const (
	maxRedactBody = 8 << 20 // decoded bytes; a larger body holding a hint is blanked
	maxLeaves     = 1 << 20
	maxDepth      = 512
)

// message redacts a request's or an answer's head, and the credentials of
// its JSON or form body.
func (rd *Redactor) message(raw []byte, isRequest bool) ([]byte, bool) {
	m, chunked, ok := parseFramed(raw, isRequest)
	if !ok {
		return raw, false
	}
	var kind bodyKind
	h := http.Header{}
	for i := range m.Lines {
		name, v := string(m.Name(i)), string(bytes.TrimSpace(m.Value(i)))
		switch {
		case strings.EqualFold(name, "Content-Type"):
			kind = kindOf(v)
		case strings.EqualFold(name, "Content-Encoding"), strings.EqualFold(name, "Transfer-Encoding"):
			h.Add(name, v)
		}
	}
	body, bodyChanged, blanked := m.Body(), false, false
	if kind != noSecrets && len(rd.names) > 0 {
		body, bodyChanged, blanked = rd.bodySecrets(m.Body(), kind, h, chunked, isRequest)
	}
	changed := bodyChanged
	// The parser's message may start after empty lines raw begins with,
	// and its offsets are its own: the lines before it are kept as they
	// were, and what follows it too.
	lead := bytes.Index(raw, m.Raw)
	if lead < 0 {
		return raw, false
	}
	out := append([]byte(nil), raw[:lead]...)
	out = append(out, m.Raw[:m.StartLineEnd()]...)
	for i := range m.Lines {
		name := m.Name(i)
		l := m.LineBytes(i)
		term := l[len(l)-1:]
		if len(l) > 1 && l[len(l)-2] == '\r' {
			term = l[len(l)-2:]
		}
		switch {
		case bodyChanged && !chunked && strings.EqualFold(string(name), "Content-Length"):
			out = append(append(append(out, name...), ": "+strconv.Itoa(len(body))...), term...)
			continue
		case blanked && strings.EqualFold(string(name), "Content-Encoding"):
			continue // an empty body is no gzip stream
		case slices.ContainsFunc(rd.names, func(n string) bool { return strings.EqualFold(n, string(name)) }):
			out = append(append(append(append(out, name...), ": "...), rd.headerValue(string(name), string(m.Value(i)))...), term...)
			changed = true
			continue
		}
		out = append(out, l...)
	}
	out = append(out, m.BlankLine()...)
	out = append(out, body...)
	return append(out, raw[lead+len(m.Raw):]...), changed
}

type bodyKind byte

const (
	noSecrets bodyKind = iota
	jsonBody
	formBody
)

func kindOf(contentType string) bodyKind {
	ct := strings.ToLower(contentType)
	switch {
	case strings.Contains(ct, "json"):
		return jsonBody
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		return formBody
	}
	return noSecrets
}

// bodySecrets replaces the credentials of a JSON or form body, whatever
// its framing (chunked: a secret may straddle chunks) and encoding (gzip,
// deflate, br: written back the same way), by their pseudonyms. A body
// that cannot be searched or written back but may hold one is blanked:
// no secret is ever written because it was hard to find. It returns the
// body as written, whether it changed, and whether it was blanked.
func (rd *Redactor) bodySecrets(body []byte, kind bodyKind, h http.Header, chunked, isRequest bool) ([]byte, bool, bool) {
	if len(body) == 0 {
		return body, false, false
	}
	blank := func() ([]byte, bool, bool) {
		if chunked {
			return []byte("0\r\n\r\n"), true, true
		}
		return nil, true, true
	}
	doc, err := diff.Decode(diff.Message{Header: h, Body: body, Chunked: chunked}, maxRedactBody+1)
	if err != nil || len(doc) > maxRedactBody {
		if hinted(body) || h.Get("Content-Encoding") != "" {
			return blank()
		}
		return body, false, false
	}
	var reps []span
	whole := true
	switch kind {
	case jsonBody:
		whole = jsonspan.Scan(doc, jsonspan.Limits{Leaves: maxLeaves, Depth: maxDepth}, func(l jsonspan.Leaf) {
			if l.Quoted && secretKey(l.Key, isRequest) && len(l.Text) >= 3 && !diff.IsPseudonym(l.Text) {
				reps = append(reps, span{l.Start, l.End, `"` + rd.pseudonym(l.Text) + `"`})
			}
		})
	case formBody:
		reps = rd.formSecrets(doc, isRequest)
	}
	if !whole && hinted(doc) {
		return blank()
	}
	if len(reps) == 0 {
		return body, false, false
	}
	var out []byte
	last := 0
	for _, r := range reps {
		out = append(append(out, doc[last:r.start]...), r.with...)
		last = r.end
	}
	out = append(out, doc[last:]...)
	out, ok := encodeAs(out, h.Get("Content-Encoding"))
	if !ok {
		return blank()
	}
	if chunked {
		out = append(append([]byte(strconv.FormatInt(int64(len(out)), 16)+"\r\n"), out...), "\r\n0\r\n\r\n"...)
	}
	return out, true, false
}

type span struct {
	start, end int
	with       string
}

// formSecrets are the replacements of a form's credential values.
func (rd *Redactor) formSecrets(doc []byte, isRequest bool) []span {
	var reps []span
	for off := 0; off < len(doc); {
		end := bytes.IndexByte(doc[off:], '&')
		if end < 0 {
			end = len(doc) - off
		}
		if k, v, ok := bytes.Cut(doc[off:off+end], []byte("=")); ok && len(v) > 0 {
			key, err1 := url.QueryUnescape(string(k))
			val, err2 := url.QueryUnescape(string(v))
			if err1 == nil && err2 == nil && secretKey(key, isRequest) && !diff.IsPseudonym(val) {
				s := off + len(k) + 1
				reps = append(reps, span{s, s + len(v), rd.pseudonym(val)})
			}
		}
		off += end + 1
	}
	return reps
}

func hinted(b []byte) bool {
	lower := bytes.ToLower(b)
	return slices.ContainsFunc(secretHints, func(h []byte) bool { return bytes.Contains(lower, h) })
}

// encodeAs compresses b with the content coding it was read in.
func encodeAs(b []byte, coding string) ([]byte, bool) {
	var out bytes.Buffer
	var w io.WriteCloser
	switch strings.ToLower(strings.TrimSpace(coding)) {
	case "", "identity":
		return b, true
	case "gzip", "x-gzip":
		w = gzip.NewWriter(&out)
	case "deflate":
		w = zlib.NewWriter(&out)
	case "br":
		w = brotli.NewWriter(&out)
	default:
		return nil, false
	}
	w.Write(b)
	if w.Close() != nil {
		return nil, false
	}
	return out.Bytes(), true
}
