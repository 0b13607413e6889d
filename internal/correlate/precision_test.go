package correlate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func learnJSON(t *testing.T, tb *Table, req string, prod, target any) {
	t.Helper()
	p := answer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(prod)
	})
	c := answer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(target)
	})
	tb.Learn([]byte(req), p, c)
}

func jsonRequest(method, path, body string) string {
	return method + " " + path + " HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func translated(t *testing.T, tb *Table, req string) string {
	t.Helper()
	out, _ := tb.Translate(context.Background(), []byte(req))
	return string(out)
}

// An order's generic "id" names an order: it is translated where an
// order is named, never in a product's id that happens to be 42.
func TestGenericIDNamesItsCollection(t *testing.T) {
	tb := New(Options{})
	learnJSON(t, tb, "POST /api/orders HTTP/1.1\r\nContent-Length: 0\r\n\r\n", map[string]any{"id": 42}, map[string]any{"id": 5042})
	product := jsonRequest("PUT", "/api/products/42", `{"id":42,"name":"kettle"}`)
	if got := translated(t, tb, product); got != product {
		t.Errorf("a product 42 translated as the order:\n%q", got)
	}
	if got, want := translated(t, tb, jsonRequest("PATCH", "/api/orders/42", `{"id":42}`)), jsonRequest("PATCH", "/api/orders/5042", `{"id":5042}`); got != want {
		t.Errorf("the order:\n%q\nwant\n%q", got, want)
	}
	// A nested object's id names that object, not the collection.
	learnJSON(t, tb, "POST /api/orders HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
		map[string]any{"id": 43, "items": []any{map[string]any{"id": 7}}}, map[string]any{"id": 5043, "items": []any{map[string]any{"id": 7007}}})
	if got, want := translated(t, tb, "GET /api/items/7 HTTP/1.1\r\n\r\n"), "GET /api/items/7007 HTTP/1.1\r\n\r\n"; got != want {
		t.Errorf("the item: %q", got)
	}
	if got := translated(t, tb, "GET /api/orders/7 HTTP/1.1\r\n\r\n"); got != "GET /api/orders/7 HTTP/1.1\r\n\r\n" {
		t.Errorf("an item's id translated as an order: %q", got)
	}
}

// Order 42 (created, paired) and product 42 (in the snapshot, alike on
// both sides) are two values: the product's being shared does not stop
// the order's translation, nor the reverse.
func TestShortNumbersAreKeyedByWhatTheyName(t *testing.T) {
	tb := New(Options{})
	learnJSON(t, tb, "POST /api/orders HTTP/1.1\r\nContent-Length: 0\r\n\r\n", map[string]any{"orderId": 42}, map[string]any{"orderId": 5042})
	learnJSON(t, tb, "GET /api/products/42 HTTP/1.1\r\n\r\n", map[string]any{"productId": 42}, map[string]any{"productId": 42})
	if got, want := translated(t, tb, "GET /api/orders/42 HTTP/1.1\r\n\r\n"), "GET /api/orders/5042 HTTP/1.1\r\n\r\n"; got != want {
		t.Errorf("order 42: %q", got)
	}
	if got := translated(t, tb, "GET /api/products/42 HTTP/1.1\r\n\r\n"); got != "GET /api/products/42 HTTP/1.1\r\n\r\n" {
		t.Errorf("product 42: %q", got)
	}
}

// A JSON number whose target value is a string id is written as a JSON
// string; a string value is written as JSON writes it (no Go escapes, no
// HTML escapes): the body stays JSON, holding the target's value.
func TestTranslatedJSONStaysJSON(t *testing.T) {
	tb := New(Options{})
	target := "ord<&>-é-7f3a9c1d"
	learnJSON(t, tb, "POST /api/orders HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
		map[string]any{"orderId": 10420001, "ref": "prod-ref-0001"}, map[string]any{"orderId": target, "ref": target + "r"})
	got := translated(t, tb, jsonRequest("POST", "/api/pay", `{"orderId":10420001,"ref":"prod-ref-0001"}`))
	_, body, _ := strings.Cut(got, "\r\n\r\n")
	var v struct{ OrderID, Ref string }
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.OrderID != target || v.Ref != target+"r" {
		t.Fatalf("body %q: %v %+v", body, err, v)
	}
	if !strings.Contains(body, "<&>") {
		t.Errorf("HTML-escaped: %q", body)
	}
	if n := lengthOf([]byte(got)); n != len(body) {
		t.Errorf("Content-Length %d, body %d", n, len(body))
	}
	// A value no JSON string holds as it is (a control character) is
	// never learned: nothing could write it back faithfully.
	if idLike("tok\x7f-123456789") || idLike("tok-1234\x01") || idLike("tok-\xff\xfe-123") {
		t.Error("a control character or broken UTF-8 is id-like")
	}
}

// A head with bare LF line ends is not one this package can find the
// end of as the strict parser does: such a request is left as it is.
func TestBareLFHeadIsLeftAlone(t *testing.T) {
	tb := afterLogin(t)
	body := "x\r\nCookie: sid=" + prodSid + "\r\n\r\n"
	req := "POST /api/orders/1042 HTTP/1.1\nContent-Type: text/plain\nContent-Length: " + strconv.Itoa(len(body)) + "\n\n" + body
	if got := translated(t, tb, req); got != req {
		t.Errorf("changed:\n%q", got)
	}
}

// One side's answer waiting for the other keeps only the values that can
// be learned, not every leaf of its body.
func TestOpenHalvesKeepOnlyLearnableValues(t *testing.T) {
	tb := New(Options{})
	leaves := map[string]any{"session": "s3ss10n-test-1b2d4e"}
	for i := range 1000 {
		leaves[fmt.Sprintf("word%d", i)] = "kettle"
		leaves[fmt.Sprintf("qty%d", i)] = i
	}
	c := answer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(leaves)
	})
	tb.Answered(Exchange{Conn: 1}, []byte("POST /api/login HTTP/1.1\r\n\r\n"), c)
	tb.openMu.Lock()
	h := tb.open[Exchange{Conn: 1}]
	tb.openMu.Unlock()
	if len(h.vals) != 1 {
		t.Errorf("an open half holds %d values, want the session only", len(h.vals))
	}
}

// Values awaited or shared do not push learned pairs out: they have a
// budget of their own.
func TestPendingValuesDoNotEvictPairs(t *testing.T) {
	tb := New(Options{MaxPairs: 10})
	req := "POST /api/login HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
	learnJSON(t, tb, req, map[string]any{"session": prodSid}, map[string]any{"session": candSid})
	for i := range 100 {
		v := fmt.Sprintf("shared-account-%04d", i)
		learnJSON(t, tb, "GET /api/accounts HTTP/1.1\r\n\r\n", map[string]any{"account": v}, map[string]any{"account": v})
		p := answer(t, func(w http.ResponseWriter, _ *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "other", Value: fmt.Sprintf("pending-value-%04d", i)})
		})
		tb.Expect([]byte(req), p)
	}
	if got := translated(t, tb, "GET /api/cart HTTP/1.1\r\nCookie: session="+prodSid+"\r\n\r\n"); !strings.Contains(got, candSid) {
		t.Errorf("the learned pair was evicted: %q", got)
	}
	if s := tb.Stats(); s.Pending > 10 {
		t.Errorf("pending %d beyond the bound", s.Pending)
	}
}

// A difference in a quantity is a difference, even when a request carried
// an order whose number paired the same two numbers.
func TestOriginIsOfTheField(t *testing.T) {
	tb := New(Options{})
	learnJSON(t, tb, "POST /api/orders HTTP/1.1\r\nContent-Length: 0\r\n\r\n", map[string]any{"number": 7}, map[string]any{"number": 8})
	tb.Translate(context.Background(), []byte("GET /api/orders/7 HTTP/1.1\r\n\r\n"))
	get := []byte("GET /api/orders/8 HTTP/1.1\r\n\r\n")
	if k, ok := tb.Origin("8", Field{Request: get, Key: "body.number"}); !ok || k != tb.KeyAt("7", Field{Request: get, Key: "body.number"}) {
		t.Errorf("the order's number: %v %v", k, ok)
	}
	if _, ok := tb.Origin("8", Field{Request: get, Key: "body.quantity"}); ok {
		t.Error("a quantity 7 → 8 excused by the order's pair")
	}
	if _, ok := tb.Origin("8", Field{Request: get, Key: "header.Location", Segment: "orders"}); !ok {
		t.Error("the order's number in a Location")
	}
}

// Production's answer that created a value may still be in another
// engine's hands when a request naming it, captured just after, is
// replayed: a request just captured is not taken to name unknown values
// until Settle has passed since its capture.
func TestJustCapturedRequestWaitsForOtherEngines(t *testing.T) {
	tb := New(Options{Settle: 200 * time.Millisecond})
	login := []byte("POST /api/login HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
	prod := answer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: prodSid})
	})
	tb.Learn(login, prod, prod) // a table in use: some value known
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(30 * time.Millisecond)
		other := answer(t, func(w http.ResponseWriter, _ *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: prodSid + "x"})
		})
		otherCand := answer(t, func(w http.ResponseWriter, _ *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: candSid + "x"})
		})
		tb.Expect(login, other)
		tb.Learn(login, other, otherCand)
	}()
	req := []byte("GET /api/cart HTTP/1.1\r\nCookie: sid=" + prodSid + "x\r\n\r\n")
	out, res := tb.TranslateCaptured(context.Background(), req, time.Now().UnixNano())
	<-done
	if !strings.Contains(string(out), candSid+"x") || res.Translated != 1 || !res.Settled {
		t.Errorf("%+v %q", res, out)
	}
	// Captured long ago, or naming only values known: no wait.
	if _, res := tb.TranslateCaptured(context.Background(), []byte("GET / HTTP/1.1\r\nCookie: sid=unknown-value-123\r\n\r\n"), time.Now().Add(-time.Hour).UnixNano()); res.Settled {
		t.Errorf("a request captured an hour ago waited: %+v", res)
	}
	traced := []byte("GET /api/cart HTTP/1.1\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
		"X-Request-Id: 0f8e2c1a-7d6b-4e5f-9a8b-1c2d3e4f5a6b\r\nCookie: sid=" + prodSid + "x\r\n\r\n")
	if _, res := tb.TranslateCaptured(context.Background(), traced, time.Now().UnixNano()); res.Settled || res.Translated != 1 {
		t.Errorf("a request naming a known value (and the client's trace ids) waited: %+v", res)
	}
}

// A request naming the thing itself ("cart": 4821937) names its id: a
// name only looks up what was learned at an id's site, so a quantity,
// never learned, is never translated.
func TestBareNameOfAThingNamesItsID(t *testing.T) {
	tb := New(Options{})
	learnJSON(t, tb, "POST /api/carts HTTP/1.1\r\nContent-Length: 0\r\n\r\n", map[string]any{"id": 4821937, "quantity": 7}, map[string]any{"id": 9382711, "quantity": 8})
	got := translated(t, tb, jsonRequest("POST", "/api/checkout", `{"cart":4821937,"quantity":7}`))
	if want := jsonRequest("POST", "/api/checkout", `{"cart":9382711,"quantity":7}`); got != want {
		t.Errorf("%q\nwant %q", got, want)
	}
	get := []byte("GET /api/checkout/1 HTTP/1.1\r\n\r\n")
	if _, ok := tb.Origin("9382711", Field{Request: get, Key: "body.cart"}); !ok {
		t.Error("the cart in an answer is not the cart's pair")
	}
}
