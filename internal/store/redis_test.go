package store

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/testkit/redistest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// handler is one handler's table for the target, linked to the store.
func handler(t *testing.T, url string) (*correlate.Table, *Link) {
	t.Helper()
	l, err := Open(Options{URL: url, Namespace: "shop", Target: "copy", Secret: []byte("fleet secret"), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tb := correlate.New(correlate.Options{Fleet: l, Wait: 3 * time.Second})
	t.Cleanup(tb.Close)
	waitFor(t, func() bool { return l.Stats().Watching })
	return tb, l
}

func cookie(v string) diff.Message {
	return diff.Message{Status: 200, Header: http.Header{"Set-Cookie": {"sid=" + v + "; Path=/; HttpOnly"}}}
}

var login = []byte("POST /api/login HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n")

func cart(sid string) []byte {
	return []byte("GET /api/cart HTTP/1.1\r\nHost: shop\r\nCookie: sid=" + sid + "\r\n\r\n")
}

// The login is seen by handler A, the request using its session by
// handler B: B waits for the pair A is learning, and translates with it;
// a handler started later finds it in the store.
func TestRedisSharesPairsAcrossHandlers(t *testing.T) {
	noLeaks(t)
	srv := redistest.Start(t)
	a, _ := handler(t, srv.URL())
	b, _ := handler(t, srv.URL())
	const prodSid, copySid = "s3ss10n-prod-7f3a9c1d", "s3ss10n-copy-2b4e6f8a"
	x := correlate.Exchange{Conn: 1}
	a.Production(x, correlate.Read(login, cookie(prodSid)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(100 * time.Millisecond) // the copy answers the login later
		a.Answered(x, login, cookie(copySid))
	}()
	// Handler B's request, captured after production's answer.
	waitFor(t, func() bool { return b.Stats().Pending == 1 }) // A's awaited value reached B
	out, res := b.TranslateCaptured(context.Background(), cart(prodSid), time.Now().UnixNano())
	<-done
	if !strings.Contains(string(out), "sid="+copySid) || !res.Waited || res.Missed {
		t.Fatalf("handler B: %+v %q", res, out)
	}
	c, lc := handler(t, srv.URL())
	waitFor(t, func() bool { return lc.Stats().Keys > 0 }) // the store's size, for /metrics
	if out, res := c.Translate(context.Background(), cart(prodSid)); !strings.Contains(string(out), "sid="+copySid) {
		t.Errorf("a handler started later: %+v %q", res, out)
	}
	// The store holds neither session in clear.
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	keys, _ := rc.Keys(context.Background(), "*").Result()
	if len(keys) == 0 {
		t.Fatal("nothing in the store")
	}
	for _, k := range keys {
		v, _ := rc.Get(context.Background(), k).Result()
		ttl, _ := rc.PTTL(context.Background(), k).Result()
		if strings.Contains(k+v, prodSid) || strings.Contains(k+v, copySid) || !strings.HasPrefix(k, "shadowtap:shop:copy:p:") || ttl <= 0 {
			t.Errorf("store holds %q = %q (ttl %v)", k, v, ttl)
		}
	}
}

// The store killed mid-run, then back: capture and replay never wait on
// it, what is learned while it is down stays local, and sharing resumes
// by itself.
func TestRedisDownAndBack(t *testing.T) {
	noLeaks(t)
	srv := redistest.Start(t)
	a, la := handler(t, srv.URL())
	b, lb := handler(t, srv.URL())
	pair := func(i int) (string, string) {
		return "prod-session-" + strconv.Itoa(1000+i), "copy-session-" + strconv.Itoa(1000+i)
	}
	learn := func(i int) {
		p, c := pair(i)
		x := correlate.Exchange{Conn: uint64(i)}
		a.Production(x, correlate.Read(login, cookie(p)))
		a.Answered(x, login, cookie(c))
	}
	translatedOn := func(tb *correlate.Table, i int) bool {
		p, c := pair(i)
		out, _ := tb.Translate(context.Background(), cart(p))
		return strings.Contains(string(out), "sid="+c)
	}
	learn(1)
	waitFor(t, func() bool { return translatedOn(b, 1) })

	srv.Stop()
	for i := 2; i < 50; i++ {
		learn(i) // capture goes on: never blocked by the store
		if i == 10 {
			// Down long enough for a write to fail: what is learned now
			// is dropped, counted.
			waitFor(t, func() bool { return la.Stats().Errors > 0 && !la.Stats().Up })
			time.Sleep(1500 * time.Millisecond)
		}
	}
	if !translatedOn(a, 49) {
		t.Error("handler A lost what it learned itself while the store was down")
	}
	start := time.Now()
	if translatedOn(b, 49) {
		t.Error("a pair learned while the store was down reached B")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a request on B waited %v on a dead store", d) // a hang, not a speed: the lookup's bound is 100 ms
	}
	if s := la.Stats(); s.Dropped == 0 {
		t.Errorf("nothing dropped while the store was down: %+v", s)
	}
	srv.Start()
	waitFor(t, func() bool { return lb.Stats().Watching })
	// Sharing resumes: a pair learned now reaches B.
	waitFor(t, func() bool {
		learn(100)
		return translatedOn(b, 100)
	})
	if !translatedOn(b, 1) {
		t.Error("what B had before the store went down is lost")
	}
	if s := la.Stats(); !s.Up {
		t.Errorf("link A: %+v", s)
	}
}

// noLeaks checks, once the test and its cleanups are done, that no
// goroutine it started is left.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
