package recording

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"

	"github.com/shadowtap/shadowtap/internal/diff"
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

// secretKeys are JSON keys whose string values an answer gives as
// credentials (lower case, without '_' and '-').
var secretKeys = []string{"token", "accesstoken", "refreshtoken", "idtoken", "sessiontoken", "session", "sessionid", "sid",
	"jwt", "apikey", "secret", "clientsecret", "csrf", "csrftoken", "xsrftoken", "password"}

func secretKey(k string) bool {
	k = strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(k))
	return slices.Contains(secretKeys, k)
}

// message redacts a request's or an answer's head, and an answer's JSON
// secrets.
func (rd *Redactor) message(raw []byte, isRequest bool) ([]byte, bool) {
	m, ok := parseMessage(raw, isRequest)
	if !ok {
		return raw, false
	}
	changed := false
	out := append([]byte(nil), raw[:m.StartLineEnd()]...)
	jsonBody, identity, chunked := false, true, false
	for i := range m.Lines {
		name := m.Name(i)
		switch {
		case strings.EqualFold(string(name), "Content-Type"):
			jsonBody = bytes.Contains(bytes.ToLower(m.Value(i)), []byte("json"))
		case strings.EqualFold(string(name), "Content-Encoding"):
			identity = len(bytes.TrimSpace(m.Value(i))) == 0 || strings.EqualFold(string(bytes.TrimSpace(m.Value(i))), "identity")
		case strings.EqualFold(string(name), "Transfer-Encoding"):
			chunked = true
		}
		if slices.ContainsFunc(rd.names, func(n string) bool { return strings.EqualFold(n, string(name)) }) {
			l := m.LineBytes(i)
			term := l[len(l)-1:]
			if len(l) > 1 && l[len(l)-2] == '\r' {
				term = l[len(l)-2:]
			}
			out = append(append(append(append(out, name...), ": "...), rd.headerValue(string(name), string(m.Value(i)))...), term...)
			changed = true
			continue
		}
		out = append(out, m.LineBytes(i)...)
	}
	out = append(out, m.BlankLine()...)
	body := m.Body()
	if !isRequest && jsonBody && identity && len(rd.names) > 0 {
		if b, ok := rd.jsonSecrets(body, chunked); ok {
			body, changed = b, true
		}
	}
	return append(out, body...), changed
}

// jsonSecrets replaces, in a JSON body (chunked or not), the string
// values of secret keys by their pseudonyms, in place of the same length.
func (rd *Redactor) jsonSecrets(body []byte, chunked bool) ([]byte, bool) {
	doc := body
	if chunked {
		var ok bool
		if doc, ok = diff.Dechunk(body); !ok {
			return nil, false
		}
	}
	var secrets []string
	dec := json.NewDecoder(bytes.NewReader(doc))
	var key string
	depthKeys := []bool{} // whether each open container is an object
	expectKey := false
	for len(secrets) < 64 {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				depthKeys = append(depthKeys, true)
				expectKey = true
				continue
			case '[':
				depthKeys = append(depthKeys, false)
			default:
				depthKeys = depthKeys[:max(0, len(depthKeys)-1)]
			}
		case string:
			if expectKey {
				key, expectKey = t, false
				continue
			}
			if secretKey(key) && len(t) >= 8 && !diff.IsPseudonym(t) {
				secrets = append(secrets, t)
			}
		}
		expectKey = len(depthKeys) > 0 && depthKeys[len(depthKeys)-1]
	}
	if len(secrets) == 0 {
		return nil, false
	}
	out := append([]byte(nil), body...)
	for _, s := range secrets {
		q, _ := json.Marshal(s)
		if bytes.IndexByte(q, '\\') >= 0 {
			continue // written escaped: left as it is rather than guessed at
		}
		out = bytes.ReplaceAll(out, q, []byte(`"`+rd.pseudonym(s)+`"`))
	}
	return out, true
}
