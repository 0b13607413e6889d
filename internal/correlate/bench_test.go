package correlate

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// BenchmarkTranslate: a browser-like request (cookies, bearer, a path
// with an order number, trace headers) against a table of 10000 pairs.
func BenchmarkTranslate(b *testing.B) {
	tb := New(Options{})
	req := []byte("POST /api/login HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
	cookie := func(v string) diff.Message {
		return diff.Message{Status: 200, Header: http.Header{"Set-Cookie": {"sid=" + v + "; Path=/"}}}
	}
	for i := range 10000 {
		tb.Learn(req, cookie(fmt.Sprintf("prod-session-%08d", i)), cookie(fmt.Sprintf("test-session-%08d", i)))
	}
	r := []byte("GET /api/orders/1042/items?page=2 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\n" +
		"Accept: application/json\r\nCookie: theme=dark; sid=prod-session-00004242; _ga=GA1.2.1234567890.1700000000\r\n" +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.cHJvZA.sig1\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, res := tb.Translate(ctx, r); res.Translated != 1 {
			b.Fatal(res)
		}
	}
}

// BenchmarkRead: what production's answer to a login created, read on
// the capture path: a Set-Cookie, a Location and a 1 KiB JSON body.
func BenchmarkRead(b *testing.B) {
	body := []byte(`{"token":"eyJhbGciOiJIUzI1NiJ9.cHJvZA.sig1","user":{"id":1042,"name":"Ada Lovelace","email":"ada@example.com"},` +
		`"cart":{"id":"0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c","items":[`)
	for i := range 12 {
		body = fmt.Appendf(body, `{"sku":"SKU-%08d","qty":%d,"price":"%d.99","title":"A kettle of fish"},`, i, i, i)
	}
	body = append(body[:len(body)-1], "]}}"...)
	m := diff.Message{Status: 201, Header: http.Header{"Set-Cookie": {"sid=s3ss10n-prod-7f3a9c; Path=/; HttpOnly"},
		"Location": {"/api/orders/1042"}, "Content-Type": {"application/json"}, "Date": {"Mon, 07 Dec 2026 09:00:00 GMT"}}, Body: body}
	req := []byte("POST /api/login HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		Read(req, m)
	}
}
