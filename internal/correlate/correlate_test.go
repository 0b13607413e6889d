package correlate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// answer is what a net/http handler writes: its own Set-Cookie and
// encoding/json, not hand-written bytes.
func answer(t *testing.T, h http.HandlerFunc) diff.Message {
	t.Helper()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("POST", "/api/login", nil))
	return diff.Message{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// login is a shop's answer to a login and first order: a session cookie,
// a bearer token and an order with a UUID and a number from a sequence.
func login(t *testing.T, sid, token, orderID string, number int) diff.Message {
	return answer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: sid, Path: "/", HttpOnly: true})
		w.Header().Set("Location", "/api/orders/"+strconv.Itoa(number))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"token": token, "user": "ada",
			"order": map[string]any{"id": orderID, "number": number, "qty": 2, "sku": "SKU-00012345"}})
	})
}

const (
	prodSid, candSid     = "s3ss10n-prod-7f3a9c", "s3ss10n-test-1b2d4e"
	prodToken, candToken = "eyJhbGciOiJIUzI1NiJ9.cHJvZA.sig1", "eyJhbGciOiJIUzI1NiJ9.dGVzdA.sig2"
	prodOrder, candOrder = "0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c", "9e1d2c3b-4a5f-4e6d-8c7b-1a2b3c4d5e6f"
)

func afterLogin(t *testing.T) *Table {
	tb := New(Options{})
	req := []byte("POST /api/orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n")
	tb.Learn(req, login(t, prodSid, prodToken, prodOrder, 1042), login(t, candSid, candToken, candOrder, 6042))
	return tb
}

func TestTranslatesWhatTheTargetCreated(t *testing.T) {
	tb := afterLogin(t)
	body := fmt.Sprintf(`{"orderId":1042,"qty":1042,"order":%q,"note":"about %s"}`, prodOrder, prodOrder)
	req := "POST /api/orders/1042/pay?order=" + prodOrder + "&page=1042 HTTP/1.1\r\nHost: shop\r\n" +
		"Cookie: theme=dark; sid=" + prodSid + "\r\nAuthorization: Bearer " + prodToken + "\r\n" +
		"X-Note: sid=" + prodSid + "-x\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	out, res := tb.Translate(context.Background(), []byte(req))
	wantBody := fmt.Sprintf(`{"orderId":6042,"qty":1042,"order":%q,"note":"about %s"}`, candOrder, prodOrder)
	want := "POST /api/orders/6042/pay?order=" + candOrder + "&page=1042 HTTP/1.1\r\nHost: shop\r\n" +
		"Cookie: theme=dark; sid=" + candSid + "\r\nAuthorization: Bearer " + candToken + "\r\n" +
		"X-Note: sid=" + prodSid + "-x\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(wantBody)) + "\r\n\r\n" + wantBody
	if string(out) != want {
		t.Errorf("translated:\n%q\nwant:\n%q", out, want)
	}
	// path, query, cookie, bearer, JSON number and string: 6; the qty,
	// the page, the note and the header holding sid inside another value
	// stay.
	if res.Translated != 6 || res.Missed || res.Waited {
		t.Errorf("result %+v", res)
	}
	// A short number elsewhere in the path is not an order number.
	req2 := "GET /api/items/1042 HTTP/1.1\r\nHost: shop\r\n\r\n"
	if out, _ := tb.Translate(context.Background(), []byte(req2)); string(out) != req2 {
		t.Errorf("an item 1042 translated: %q", out)
	}
	// A form body, with its Content-Length fixed.
	form := "sid=" + prodSid + "&order_number=1042&count=1042"
	req3 := "POST /checkout HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + strconv.Itoa(len(form)) + "\r\n\r\n" + form
	wantForm := "sid=" + candSid + "&order_number=6042&count=1042"
	out, _ = tb.Translate(context.Background(), []byte(req3))
	if want := "POST /checkout HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + strconv.Itoa(len(wantForm)) + "\r\n\r\n" + wantForm; string(out) != want {
		t.Errorf("form:\n%q\nwant\n%q", out, want)
	}
	// sid, token, the order's id and its number (in the body and the
	// Location: one value); the SKU was alike: shared; the quantity is
	// no id.
	if s := tb.Stats(); s.Learned != 4 || s.Shared != 1 || s.Translated != 8 || s.Requests != 2 {
		t.Errorf("stats %+v", s)
	}
}

// A value both sides answered alike is the data they share (the snapshot
// both started from): never translated, even where it was once paired.
func TestSharedValuesStay(t *testing.T) {
	tb := afterLogin(t)
	before := tb.Stats().Shared
	req := []byte("GET /api/users HTTP/1.1\r\nHost: shop\r\n\r\n")
	same := answer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"owner": prodOrder, "account": "ACC-20240001"})
	})
	tb.Learn(req, same, same)
	r := "GET /api/orders?owner=" + prodOrder + "&account=ACC-20240001 HTTP/1.1\r\n\r\n"
	if out, _ := tb.Translate(context.Background(), []byte(r)); string(out) != r {
		t.Errorf("shared values translated: %q", out)
	}
	if s := tb.Stats(); s.Shared-before != 2 {
		t.Errorf("shared %d more, want 2", s.Shared-before)
	}
}

// A request naming a value production created while the target's answer
// is still awaited waits for it; when it never comes, the wait ends at the
// bound, and the next request does not wait again.
func TestWaitsForAPairBeingLearned(t *testing.T) {
	tb := New(Options{Wait: 200 * time.Millisecond})
	login := []byte("POST /api/login HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
	prod := answer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: prodSid})
	})
	cand := answer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: candSid})
	})
	tb.Expect(login, prod)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(20 * time.Millisecond)
		tb.Learn(login, prod, cand)
	}()
	req := []byte("GET /api/cart HTTP/1.1\r\nCookie: sid=" + prodSid + "\r\n\r\n")
	out, res := tb.Translate(context.Background(), req)
	wg.Wait()
	if !res.Waited || res.Missed || !strings.Contains(string(out), candSid) {
		t.Errorf("%+v %q", res, out)
	}

	other := answer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "never-answered-42"})
	})
	tb.Expect(login, other)
	req = []byte("GET /api/cart HTTP/1.1\r\nCookie: sid=never-answered-42\r\n\r\n")
	if out, res := tb.Translate(context.Background(), req); !res.Missed || string(out) != string(req) {
		t.Errorf("unanswered: %+v %q", res, out)
	}
	if _, res := tb.Translate(context.Background(), req); res.Waited || res.Missed {
		t.Errorf("waited again: %+v", res)
	}
	if s := tb.Stats(); s.Waited != 2 || s.GaveUp != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestTableIsBounded(t *testing.T) {
	tb := New(Options{MaxPairs: 10})
	req := []byte("POST /api/login HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
	for i := range 100 {
		p := answer(t, func(w http.ResponseWriter, _ *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: fmt.Sprintf("prod-session-%04d", i)})
		})
		c := answer(t, func(w http.ResponseWriter, _ *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: fmt.Sprintf("test-session-%04d", i)})
		})
		tb.Learn(req, p, c)
	}
	if s := tb.Stats(); s.Pairs > 10 || s.Expired < 90 || s.Learned != 100 {
		t.Errorf("stats %+v", s)
	}
	// The newest pairs are kept.
	r := []byte("GET / HTTP/1.1\r\nCookie: sid=prod-session-0099\r\n\r\n")
	if out, _ := tb.Translate(context.Background(), r); !strings.Contains(string(out), "test-session-0099") {
		t.Errorf("%q", out)
	}
}

// Origin names, for a value the target created, production's: the
// comparison's "same id, each side's own". Only once a request carried
// it back: a value that merely differed in the two answers (a request
// id, or a wrong total) is a difference still.
func TestOriginOfACreatedValue(t *testing.T) {
	tb := afterLogin(t)
	at := Field{Key: "body.order.id"}
	if _, ok := tb.Origin(candOrder, at); ok {
		t.Error("an origin before any request carried the order back")
	}
	tb.Translate(context.Background(), []byte("GET /api/orders/"+prodOrder+" HTTP/1.1\r\n\r\n"))
	if k, ok := tb.Origin(candOrder, at); !ok || k != tb.KeyAt(prodOrder, at) {
		t.Errorf("origin of the candidate's order: %v %v", k, ok)
	}
	if _, ok := tb.Origin(prodOrder, at); ok {
		t.Error("production's own value has an origin in the target")
	}
}

// A random token need not hold a digit (Python's token_urlsafe: about one
// in a hundred has none); a word is never an id.
func TestWhatCanBeCreated(t *testing.T) {
	for v, want := range map[string]bool{"QmFzZTY0dXJsc2FmZS1fdG9rZW4": true, "~pAbCdEf": true, "ord-1042x": true,
		"kettle": false, "teapot-and-mug": false, "a b c d e f g h i": false, "1042": false} {
		if got := idLike(v); got != want {
			t.Errorf("idLike(%q) = %v", v, got)
		}
	}
}

// An excluded name is neither learned nor translated: here the session
// cookie, whatever its value; the token still is.
func TestExcludedNamesStay(t *testing.T) {
	tb := New(Options{Exclude: []string{"SID"}})
	req := []byte("POST /api/orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n")
	tb.Learn(req, login(t, prodSid, prodToken, prodOrder, 1042), login(t, candSid, candToken, candOrder, 6042))
	r := "GET /api/cart HTTP/1.1\r\nCookie: sid=" + prodSid + "\r\nAuthorization: Bearer " + prodToken + "\r\n\r\n"
	out, res := tb.Translate(context.Background(), []byte(r))
	if want := strings.Replace(r, prodToken, candToken, 1); string(out) != want || res.Translated != 1 {
		t.Errorf("%q, want %q", out, want)
	}
}

// A target whose sequence is where production's was makes the very value
// production made: once a request carried it back, it is its own origin,
// so that a baseline's order 1 and a candidate's order 5001 made for
// production's order 1 are one order to the comparison.
func TestOriginOfTheSameValue(t *testing.T) {
	tb := New(Options{})
	req := []byte("POST /api/orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n")
	tb.Learn(req, login(t, prodSid, prodToken, prodOrder, 1042), login(t, candSid, candToken, prodOrder, 1042))
	at := Field{Request: req, Key: "header.Location", Segment: "orders"}
	if _, ok := tb.Origin("1042", at); ok {
		t.Error("an origin before any request carried the order back")
	}
	tb.Translate(context.Background(), []byte("GET /api/orders/1042 HTTP/1.1\r\n\r\n"))
	if k, ok := tb.Origin("1042", at); !ok || k != tb.KeyAt("1042", at) {
		t.Errorf("origin of the same order: %v %v", k, ok)
	}
	if _, ok := tb.Origin("1043", at); ok {
		t.Error("an order never made has an origin")
	}
}

// A request captured before production's answer that told of a value had
// ended cannot have the value from there: it does not wait for its pair
// (in a replay, that answer's request may itself wait for this one, as
// production's order is kept), while a request captured after it does.
func TestNoWaitForAValueToldAfterTheRequest(t *testing.T) {
	tb := New(Options{Wait: 50 * time.Millisecond})
	req := []byte("POST /api/login HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
	prod := answer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: prodSid})
	})
	created := Read(req, prod)
	const told = int64(5_000_000_000)
	created.Told = told
	tb.Production(Exchange{Conn: 1}, created)
	named := []byte("GET /api/cart HTTP/1.1\r\nCookie: sid=" + prodSid + "\r\n\r\n")
	if _, res := tb.TranslateCaptured(context.Background(), named, told-1); res.Waited || res.Missed {
		t.Errorf("captured before production told of it: %+v", res)
	}
	if _, res := tb.TranslateCaptured(context.Background(), named, told+1); !res.Waited {
		t.Errorf("captured after production told of it: %+v, want a wait", res)
	}
}

// Production's client carrying a created value back is known when its
// request is captured, before that request is replayed: the comparison
// of the answer that created it, which may run first (the replay of the
// next request waits for it), already sees one order, not a difference.
func TestOriginOnceProductionCarriedItBack(t *testing.T) {
	tb := afterLogin(t)
	at := Field{Key: "body.order.id"}
	carry(tb, []byte("GET /api/orders/"+prodOrder+" HTTP/1.1\r\n\r\n"))
	if k, ok := tb.Origin(candOrder, at); !ok || k != tb.KeyAt(prodOrder, at) {
		t.Errorf("origin of the candidate's order, production's request captured: %v %v", k, ok)
	}
	other := afterLogin(t)
	carry(other, []byte("GET /api/orders/77 HTTP/1.1\r\n\r\n"))
	if _, ok := other.Origin(candOrder, at); ok {
		t.Error("an origin from a request naming another order")
	}
}

// An exchange whose answers paired values no request has carried back yet
// is unsettled: the comparison waits before it takes their difference
// for one. Once a request carries one back it is settled, and an exchange
// that paired nothing never is unsettled.
func TestUnsettledUntilCarriedBack(t *testing.T) {
	tb := New(Options{})
	req := []byte("POST /api/orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n")
	x := Exchange{Conn: 1, Index: 0}
	tb.Production(x, Read(req, login(t, prodSid, prodToken, prodOrder, 1042)))
	tb.Answered(x, req, login(t, candSid, candToken, candOrder, 6042))
	if !tb.Unsettled(x) {
		t.Error("settled before anything was carried back")
	}
	carry(tb, []byte("GET /api/cart HTTP/1.1\r\nCookie: sid="+prodSid+"\r\nAuthorization: Bearer "+prodToken+"\r\n\r\n"))
	if !tb.Unsettled(x) {
		t.Error("settled with the order not carried back")
	}
	carry(tb, []byte("GET /api/orders/"+prodOrder+" HTTP/1.1\r\n\r\n"))
	carry(tb, []byte("GET /api/orders/1042 HTTP/1.1\r\n\r\n"))
	if tb.Unsettled(x) {
		t.Error("unsettled once every value was carried back")
	}
	if tb.Unsettled(Exchange{Conn: 2}) {
		t.Error("an exchange never seen is unsettled")
	}
}

// carry is production's request req seen on the mirror by tb.
func carry(tb *Table, req []byte) {
	n := Named(req)
	tb.Carried(&n)
}
