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
