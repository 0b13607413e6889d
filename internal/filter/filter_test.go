package filter

import (
	"testing"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/httpstream"
)

func req(t *testing.T, raw string) *httpstream.Request {
	var r *httpstream.Request
	httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(q *httpstream.Request) { r = q }).Feed([]byte(raw), 0)
	if r == nil {
		t.Fatalf("no request in %q", raw)
	}
	return r
}

func TestFilters(t *testing.T) {
	get := "GET /api/items?id=1 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0\r\nX-Request-Id: 7\r\n\r\n"
	post := "POST /api/orders HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 5\r\n\r\nhello"
	del := "DELETE /api/orders/1 HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
	admin := "GET /api/admin/users HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
	other := "GET /api/x HTTP/1.1\r\nHost: other.example.com\r\nUser-Agent: curl/8\r\n\r\n"
	tests := []struct {
		name string
		f    config.Filters
		in   string
		want Reason
	}{
		{"empty passes all", config.Filters{}, del, Pass},
		{"allow list", config.Filters{Methods: []string{"get", "HEAD"}}, get, Pass},
		{"allow list refuses", config.Filters{Methods: []string{"GET"}}, post, Method},
		{"deny list", config.Filters{DenyMethods: []string{"DELETE"}}, del, Method},
		{"safe methods refuse POST", config.Filters{SafeMethodsOnly: true}, post, Method},
		{"safe methods allow GET", config.Filters{SafeMethodsOnly: true}, get, Pass},
		{"path matches without query", config.Filters{Path: "^/api/items$"}, get, Pass},
		{"path refuses", config.Filters{Path: "^/static/"}, get, Path},
		{"path_not", config.Filters{PathNot: "^/api/admin"}, admin, Path},
		{"host", config.Filters{Host: `^shop\.example\.com$`}, other, Host},
		{"header present", config.Filters{HeadersPresent: []string{"x-request-id"}}, get, Pass},
		{"header absent", config.Filters{HeadersPresent: []string{"X-Request-Id"}}, post, Header},
		{"header matches", config.Filters{HeadersMatch: map[string]string{"User-Agent": "^Mozilla/"}}, get, Pass},
		{"header does not match", config.Filters{HeadersMatch: map[string]string{"User-Agent": "^Mozilla/"}}, other, Header},
		{"header missing for match", config.Filters{HeadersMatch: map[string]string{"User-Agent": "."}}, post, Header},
		{"size", config.Filters{MaxSize: 40}, post, Size},
		{"size fits", config.Filters{MaxSize: int64(len(post))}, post, Pass},
	}
	for _, tt := range tests {
		f, err := New(tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Check(req(t, tt.in)); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
