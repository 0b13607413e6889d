package replay

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// parse extracts the single request in raw.
func parse(t *testing.T, raw string) *httpstream.Request {
	t.Helper()
	var got *httpstream.Request
	p := httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(r *httpstream.Request) { got = r })
	p.Feed([]byte(raw), 0)
	if got == nil {
		t.Fatalf("no request in %q", raw)
	}
	got.Client = netip.MustParseAddrPort("192.0.2.7:51000")
	got.Server = netip.MustParseAddrPort("10.1.2.3:8080")
	return got
}

func TestAppendRequest(t *testing.T) {
	tests := []struct {
		name  string
		edits Edits
		in    string
		want  string
	}{
		{"permitted edits only",
			Edits{Host: "test.internal:9000"},
			"GET /a%2Fb?x=1&y=%20 HTTP/1.1\r\nhost: shop.example\r\nX-Custom:  Odd  Spacing \r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nAccept: */*\r\n\r\n",
			"GET /a%2Fb?x=1&y=%20 HTTP/1.1\r\nhost: test.internal:9000\r\nX-Custom:  Odd  Spacing \r\nAccept: */*\r\n" +
				"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Port: 8080\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: shop.example\r\n\r\n"},
		{"keep host, append to the last X-Forwarded-For, keep existing X-Forwarded-*",
			Edits{Host: "test", KeepHost: true},
			"POST /p HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Host: shop.example\r\nContent-Length: 3\r\n\r\nabc",
			"POST /p HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Host: shop.example\r\nContent-Length: 3\r\n\r\nabc"},
		{"chunked stays chunked with trailers",
			Edits{Host: "t"},
			"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
			"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Port: 8080\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"},
		{"HTTP/1.0 without Host, path prefix",
			Edits{Host: "t:81", PathPrefix: "/shadow"},
			"GET /1 HTTP/1.0\r\nAccept: */*\r\n\r\n",
			"GET /shadow/1 HTTP/1.1\r\nAccept: */*\r\nHost: t:81\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Port: 8080\r\nX-Forwarded-Proto: http\r\n\r\n"},
		{"empty X-Forwarded-For",
			Edits{Host: "t"},
			"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For:\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For:192.0.2.7\r\nX-Forwarded-Port: 8080\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"},
	}
	for _, tt := range tests {
		got, headLen := tt.edits.AppendRequest(nil, parse(t, tt.in))
		if string(got) != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
		req := parse(t, tt.in)
		if string(got[headLen:]) != string(req.Body()) {
			t.Errorf("%s: body after head = %q", tt.name, got[headLen:])
		}
		{
			host, _ := parse(t, string(got)).Get("Host")
			if h := tt.edits.SentHost(req); h != string(host) {
				t.Errorf("%s: SentHost %q, the request sent has Host %q", tt.name, h, host)
			}
		}
	}
}

// TestSentHost is the Host sent under each rule, with and without a
// captured Host.
func TestSentHost(t *testing.T) {
	with, without := "GET / HTTP/1.1\r\nHost: shop\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"
	for _, tt := range []struct {
		edits    Edits
		in, want string
	}{
		{Edits{Host: "t:81"}, with, "t:81"},
		{Edits{Host: "t:81", KeepHost: true}, with, "shop"},
		{Edits{Host: "t:81", KeepHost: true}, without, "10.1.2.3"},
		{Edits{Host: "t:81", FixedHost: "fixed", KeepHost: true}, with, "fixed"},
		{Edits{Host: "t:81", FixedHost: "fixed"}, without, "fixed"},
	} {
		req := parse(t, tt.in)
		got, _ := tt.edits.AppendRequest(nil, req)
		sent, _ := parse(t, string(got)).Get("Host")
		if h := tt.edits.SentHost(req); h != tt.want || string(sent) != tt.want {
			t.Errorf("%+v %q: SentHost %q, sent %q, want %q", tt.edits, tt.in, h, sent, tt.want)
		}
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	var p *httpstream.Request
	httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(r *httpstream.Request) { p = r }).
		Feed([]byte("GET /api/items?id=42 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"), 0)
	e := Edits{Host: "test:8080"}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = e.AppendRequest(buf[:0], p)
	}
}

func TestAppendRequestRewrites(t *testing.T) {
	e := Edits{
		Host:        "cand.internal",
		FixedHost:   "fixed.internal",
		PathMatch:   regexp.MustCompile(`^/api/v1/(.*)$`),
		PathReplace: "/api/v2/$1",
		Remove:      []string{"x-debug", "cookie"},
		Set:         []Header{{"X-Env", "staging"}, {"X-Tenant", "t2"}},
		Replace:     []Header{{"Authorization", "Bearer staging"}, {"X-Api-Key", "k2"}},
		Add:         []Header{{"X-Extra", "1"}},
		Marker:      Header{"X-Shadowtap-Replay", "candidate"},
	}
	in := "POST /api/v1/orders?id=5 HTTP/1.1\r\nHost: shop\r\nX-Debug: 1\r\nCookie: a=b\r\nauthorization: Bearer prod\r\n" +
		"X-Env: prod\r\nX-Env: again\r\nContent-Length: 2\r\n\r\nok"
	want := "POST /api/v2/orders?id=5 HTTP/1.1\r\nHost: fixed.internal\r\nauthorization: Bearer staging\r\nX-Env: staging\r\nContent-Length: 2\r\n" +
		"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Port: 8080\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: shop\r\n" +
		"X-Tenant: t2\r\nX-Extra: 1\r\nX-Shadowtap-Replay: candidate\r\n\r\nok"
	got, _ := e.AppendRequest(nil, parse(t, in))
	if string(got) != want {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
	// A path that does not match is left alone; X-Api-Key is only replaced
	// where present, never added.
	got, _ = e.AppendRequest(nil, parse(t, "GET /health HTTP/1.1\r\nHost: shop\r\n\r\n"))
	if !strings.HasPrefix(string(got), "GET /health HTTP/1.1\r\n") || strings.Contains(string(got), "X-Api-Key") {
		t.Errorf("got %q", got)
	}
}
