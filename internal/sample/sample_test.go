package sample

import (
	"fmt"
	"math"
	"net/netip"
	"sync"
	"testing"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/httpstream"
)

func request(t *testing.T, raw string, client string) *httpstream.Request {
	var r *httpstream.Request
	httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(q *httpstream.Request) { r = q }).Feed([]byte(raw), 0)
	r.Client = netip.MustParseAddrPort(client)
	return r
}

func TestShareOfKeys(t *testing.T) {
	for _, pct := range []float64{1, 12.5, 50, 99} {
		s, err := New(pct, ByHeader, "X-User")
		if err != nil {
			t.Fatal(err)
		}
		const n = 200_000
		kept := 0
		for i := range n {
			if s.KeepKey(fmt.Appendf(nil, "user-%d", i)) {
				kept++
			}
		}
		// Binomial: 5 standard deviations is far beyond chance.
		p := pct / 100
		sd := math.Sqrt(n * p * (1 - p))
		if d := math.Abs(float64(kept) - n*p); d > 5*sd {
			t.Errorf("%v%%: kept %d of %d (off by %.0f, sd %.0f)", pct, kept, n, d, sd)
		}
	}
}

func TestKeyedIsPure(t *testing.T) {
	a, _ := New(30, ByHeader, "X-User")
	b, _ := New(30, ByHeader, "x-user") // another instance, header named in another case
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				raw := fmt.Sprintf("GET / HTTP/1.1\r\nX-User: u%d\r\n\r\n", i)
				r1 := request(t, raw, "10.0.0.1:1")
				r2 := request(t, raw, fmt.Sprintf("10.0.0.%d:2", w+2))
				if a.Keep(r1) != b.Keep(r2) {
					t.Errorf("user u%d decided differently", i)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestByAddrAndKeyless(t *testing.T) {
	s, _ := New(50, ByHeader, "X-User")
	// Without the header, the decision follows the client address.
	kept, dropped := 0, 0
	for i := range 200 {
		addr := fmt.Sprintf("10.0.%d.%d:4000", i/250, i%250)
		r1 := request(t, "GET / HTTP/1.1\r\n\r\n", addr)
		r2 := request(t, "POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", addr)
		if s.Keep(r1) != s.Keep(r2) || s.Keep(r1) != s.KeepAddr(r1.Client.Addr()) {
			t.Fatalf("%s: keyless decisions disagree", addr)
		}
		if s.Keep(r1) {
			kept++
		} else {
			dropped++
		}
	}
	if kept == 0 || dropped == 0 || s.Keyless.Load() == 0 {
		t.Errorf("kept %d dropped %d keyless %d", kept, dropped, s.Keyless.Load())
	}
	// The port does not matter: one client, one decision.
	r := request(t, "GET / HTTP/1.1\r\n\r\n", "10.9.9.9:1")
	addr, _ := New(50, ByAddr, "")
	for port := range 100 {
		r2 := request(t, "GET / HTTP/1.1\r\n\r\n", fmt.Sprintf("10.9.9.9:%d", port+2))
		if addr.Keep(r) != addr.Keep(r2) {
			t.Fatal("port changed the decision")
		}
	}
}

func TestBounds(t *testing.T) {
	all, _ := New(100, PerRequest, "")
	none, _ := New(0, PerRequest, "")
	r := request(t, "GET / HTTP/1.1\r\n\r\n", "10.0.0.1:1")
	for range 1000 {
		if !all.Keep(r) || none.Keep(r) {
			t.Fatal("100% must keep all, 0% none")
		}
	}
	for _, bad := range []struct {
		p  float64
		by By
		h  string
	}{{-1, "", ""}, {100.5, "", ""}, {math.NaN(), "", ""}, {50, "header", ""}, {50, "cookie", ""}} {
		if _, err := New(bad.p, bad.by, bad.h); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestCookieQueryXFF(t *testing.T) {
	const n = 20_000
	for _, mode := range []struct {
		by  By
		key string
		req func(i int) string
	}{
		{ByCookie, "sid", func(i int) string {
			return fmt.Sprintf("GET / HTTP/1.1\r\nCookie: theme=dark; sid=s%d; lang=en\r\n\r\n", i)
		}},
		{ByQuery, "user", func(i int) string { return fmt.Sprintf("GET /p?a=1&user=u%d&b=2 HTTP/1.1\r\n\r\n", i) }},
		{ByXFF, "", func(i int) string {
			return fmt.Sprintf("GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.%d.%d, 10.0.0.1\r\n\r\n", i/250, i%250)
		}},
	} {
		s, err := New(30, mode.by, mode.key)
		if err != nil {
			t.Fatal(err)
		}
		kept := 0
		for i := range n {
			// The same key from another balancer address decides the same.
			r1 := request(t, mode.req(i), "10.0.0.1:1")
			r2 := request(t, mode.req(i), "10.0.0.2:2")
			k := s.Keep(r1)
			if k != s.Keep(r2) {
				t.Fatalf("%s: key %d decided differently", mode.by, i)
			}
			if k {
				kept++
			}
		}
		sd := math.Sqrt(n * 0.3 * 0.7)
		if d := math.Abs(float64(kept) - n*0.3); d > 5*sd {
			t.Errorf("%s: kept %d of %d", mode.by, kept, n)
		}
		if s.Keyless.Load() != 0 {
			t.Errorf("%s: %d keyless", mode.by, s.Keyless.Load())
		}
	}
	// The real client behind a balancer decides as it would directly.
	x, _ := New(50, ByXFF, "")
	a, _ := New(50, ByAddr, "")
	for i := range 200 {
		ip := fmt.Sprintf("198.51.100.%d", i)
		via := request(t, "GET / HTTP/1.1\r\nX-Forwarded-For: "+ip+"\r\n\r\n", "10.0.0.9:1")
		direct := request(t, "GET / HTTP/1.1\r\n\r\n", ip+":5000")
		if x.Keep(via) != a.Keep(direct) {
			t.Fatalf("%s: xff and remoteaddr disagree", ip)
		}
	}
}

func TestPolicyRoutes(t *testing.T) {
	p, err := NewPolicy(config.Sampling{Percentage: 100, By: "header", Key: "X-User", Routes: []config.Route{
		{Path: "^/api/payments", Percentage: 0}, {Path: "^/api/search$", Percentage: 100},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		user := fmt.Sprintf("X-User: u%d\r\n", i)
		if p.Keep(request(t, "POST /api/payments/charge?x=1 HTTP/1.1\r\n"+user+"Content-Length: 0\r\n\r\n", "10.0.0.1:1")) {
			t.Fatal("payments replayed at 0%")
		}
		if !p.Keep(request(t, "GET /api/search?q=x HTTP/1.1\r\n"+user+"\r\n", "10.0.0.1:1")) {
			t.Fatal("search not replayed at 100%")
		}
	}
}
