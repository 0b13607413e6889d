package recording

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// encodeJSON is what Go's encoding/json writes: it escapes < and & (as
// PHP's json_encode escapes /), so a secret's raw text in the body is not
// the secret.
func encodeJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func brotlied(b []byte) []byte {
	var out bytes.Buffer
	bw := brotli.NewWriter(&out)
	bw.Write(b)
	bw.Close()
	return out.Bytes()
}

// chunked frames b in chunks of n bytes: a secret may straddle two.
func chunked(b []byte, n int) []byte {
	var out []byte
	for len(b) > 0 {
		c := b[:min(n, len(b))]
		b = b[len(c):]
		out = append(append(append(out, strconv.FormatInt(int64(len(c)), 16)+"\r\n"...), c...), "\r\n"...)
	}
	return append(out, "0\r\n\r\n"...)
}

// Every copy of a secret is replaced, however the body carries it:
// escaped by the encoder, split across chunks, compressed, or in a
// request's body; and each is replaced by the pseudonym its other copies
// get, in a body that still parses.
func TestRedactionFindsEverySecret(t *testing.T) {
	secrets := map[string]string{ // answer → its secret
		"escaped":  "tok<3f9a8b7c6d5e&x",
		"chunked":  "tok-chunked-0a1b2c3d4e5f",
		"gzip":     "tok-gzipped-9f8e7d6c5b4a",
		"br":       "tok-brotli-1122334455667",
		"identity": "tok-plain-abcdef0123456",
	}
	resp := func(name string) []byte {
		body := encodeJSON(t, map[string]any{"user": "ada", "access_token": secrets[name], "note": "<b>"})
		head := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		switch name {
		case "chunked":
			return []byte(head + "Transfer-Encoding: chunked\r\n\r\n" + string(chunked(body, 25)))
		case "gzip":
			body = gzipped(body)
			head += "Content-Encoding: gzip\r\n"
		case "br":
			body = brotlied(body)
			head += "Content-Encoding: br\r\n"
		}
		return []byte(head + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))
	}
	path := filepath.Join(t.TempDir(), "x"+Ext)
	w, _ := Create(WriterOptions{Path: path, Redact: DefaultRedact})
	addr := func(p int) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(p)) }
	server := netip.MustParseAddrPort("10.0.0.2:80")
	names := []string{"escaped", "chunked", "gzip", "br", "identity"}
	for i, name := range names {
		w.Write(Record{Conn: uint64(i + 1), Client: addr(1000 + i), Server: server,
			Request:     []byte("POST /login HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
			HasResponse: true, Status: 200, Response: resp(name)})
		// A later request sends it back, in a header and in its body.
		body := encodeJSON(t, map[string]any{"refresh_token": secrets[name]})
		w.Write(Record{Conn: uint64(100 + i), Client: addr(2000 + i), Server: server,
			Request: []byte("POST /refresh HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + secrets[name] +
				"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))})
	}
	w.Close()
	got, _ := readAll(t, path)
	if len(got) != 2*len(names) {
		t.Fatalf("%d records", len(got))
	}
	bearer := regexp.MustCompile(`Authorization: Bearer (\S+)\r\n`)
	for i, name := range names {
		answer, later := got[2*i], got[2*i+1]
		req, err := answer.ParseRequest()
		if err != nil {
			t.Fatal(err)
		}
		r := answer.ParseResponse(req)
		if r == nil {
			t.Errorf("%s: the redacted answer does not parse: %q", name, answer.Response)
			continue
		}
		body, err := diff.Decode(diff.FromResponse(r), 1<<20)
		var doc struct {
			AccessToken string `json:"access_token"`
		}
		if err != nil || json.Unmarshal(body, &doc) != nil {
			t.Errorf("%s: body %q: %v", name, body, err)
			continue
		}
		lreq, err := later.ParseRequest()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var sent struct {
			Refresh string `json:"refresh_token"`
		}
		json.Unmarshal(lreq.Body(), &sent)
		m := bearer.FindSubmatch(later.Request)
		if strings.Contains(string(body), secrets[name]) || bytes.Contains(later.Request, []byte(secrets[name])) || doc.AccessToken == secrets[name] {
			t.Errorf("%s: the secret written:\n%q\n%q", name, body, later.Request)
		}
		if !diff.IsPseudonym(doc.AccessToken) || m == nil || string(m[1]) != doc.AccessToken || sent.Refresh != doc.AccessToken {
			t.Errorf("%s: pseudonyms %q, %q, %q differ", name, doc.AccessToken, m, sent.Refresh)
		}
		if !strings.Contains(string(body), `"note":"\u003cb\u003e"`) {
			t.Errorf("%s: other bytes changed: %s", name, body)
		}
	}
}
