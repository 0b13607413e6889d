package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// jwt is a token as RFC 7519 encodes one (HS256).
func jwt(claims map[string]any) string {
	enc := base64.RawURLEncoding
	head, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	body, _ := json.Marshal(claims)
	signing := enc.EncodeToString(head) + "." + enc.EncodeToString(body)
	mac := hmac.New(sha256.New, []byte("secret"))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// The detectors find what they name, checked (Luhn, mod 97), and leave
// what only looks like it: an order number of 16 digits that fails Luhn,
// an IBAN whose check digits are wrong.
func TestDetectors(t *testing.T) {
	m := New(Rules{}, []byte("k"))
	token := jwt(map[string]any{"sub": "u1", "email": "ann@example.com"})
	in := "mail ann.lee+shop@mail.example.co.uk, card 4111 1111 1111 1111, card 5500-0000-0000-0004, order 4111111111111112, " +
		"iban GB82 WEST 1234 5698 7654 32, not GB00 WEST 1234 5698 7654 32, jwt " + token + ", Authorization: Bearer sk_live_abcdef123456, id 1700000000123"
	out := m.Text(in)
	for _, gone := range []string{"ann.lee+shop@mail.example.co.uk", "4111 1111 1111 1111", "5500-0000-0000-0004", "GB82 WEST 1234 5698 7654 32", token, "sk_live_abcdef123456"} {
		if strings.Contains(out, gone) {
			t.Errorf("%q still in %q", gone, out)
		}
	}
	for _, kept := range []string{"order 4111111111111112", "GB00 WEST 1234 5698 7654 32", "id 1700000000123", "Bearer [bearer:"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q not in %q", kept, out)
		}
	}
	for _, kind := range []string{"[email:", "[card:", "[iban:", "[jwt:"} {
		if !strings.Contains(out, kind) {
			t.Errorf("no %s pseudonym in %q", kind, out)
		}
	}
	if New(Rules{Detect: []string{"none"}}, nil).Text(in) != in {
		t.Error("detectors ran with none")
	}
}

// A pseudonym is the same for the same value within a run, and differs
// for different values and between runs: equal stays equal, a difference
// stays one.
func TestPseudonymsConsistent(t *testing.T) {
	m := New(Rules{}, nil)
	a, b := m.Text("ann@example.com"), m.Text("ann@example.com")
	c := m.Text("bob@example.com")
	if a != b || a == c {
		t.Errorf("same value %q %q, other %q", a, b, c)
	}
	if New(Rules{}, nil).Text("ann@example.com") == a {
		t.Error("two runs give one pseudonym: the key is not the run's")
	}
}

// The fields named are masked whole in a JSON body, by key or by name
// anywhere, and the body stays JSON; the other fields stay as they were.
func TestDocumentFields(t *testing.T) {
	doc, _ := json.Marshal(map[string]any{
		"customer": map[string]any{"address": "1 Main St", "name": "Ann"},
		"items":    []map[string]any{{"sku": "k-1", "email": "gift@example.com", "qty": 2}},
		"total":    14.5,
	})
	m := New(Rules{Fields: []string{"body.customer.address", "sku"}}, []byte("k"))
	out := m.Document("body", string(doc))
	if !json.Valid([]byte(out)) {
		t.Fatalf("not JSON: %s", out)
	}
	var got struct {
		Customer struct{ Address, Name string }
		Items    []struct {
			SKU   string `json:"sku"`
			Email string
			Qty   int
		}
		Total float64
	}
	json.Unmarshal([]byte(out), &got)
	if !strings.HasPrefix(got.Customer.Address, "[field:") || got.Customer.Name != "Ann" || !strings.HasPrefix(got.Items[0].SKU, "[field:") ||
		!strings.HasPrefix(got.Items[0].Email, "[email:") || got.Items[0].Qty != 2 || got.Total != 14.5 {
		t.Errorf("masked: %s", out)
	}
	if m.Field("body.items[*].sku", "k-1") != got.Items[0].SKU {
		t.Error("a field's sample and its body's value have different pseudonyms")
	}
}

// Headers named are masked whole, named cookies' values in Cookie and
// Set-Cookie, and the detectors run on the rest.
func TestHeaders(t *testing.T) {
	m := New(Rules{Headers: []string{"x-customer"}, Cookies: []string{"sid"}}, []byte("k"))
	h := http.Header{"X-Customer": {"Ann Lee"}, "Cookie": {"sid=abc123; theme=dark"}, "Set-Cookie": {"sid=xyz; Path=/; HttpOnly"},
		"X-Reply-To": {"ann@example.com"}, "Content-Type": {"application/json"}}
	out := m.Headers(h)
	if !strings.HasPrefix(out.Get("X-Customer"), "[header:") || strings.Contains(out.Get("Cookie"), "abc123") ||
		!strings.Contains(out.Get("Cookie"), "theme=dark") || strings.Contains(out.Get("Set-Cookie"), "xyz") ||
		!strings.Contains(out.Get("Set-Cookie"), "Path=/") || strings.Contains(out.Get("X-Reply-To"), "ann@") ||
		out.Get("Content-Type") != "application/json" {
		t.Errorf("masked headers: %v", out)
	}
	if h.Get("X-Customer") != "Ann Lee" {
		t.Error("the input was changed")
	}
	var none *Masker
	if none.Text("ann@example.com") != "ann@example.com" {
		t.Error("a nil masker masked")
	}
}

// TestNumbersAreNoCards: the digits of a JSON number with a fraction or an
// exponent are not a card number, wherever the run of digits sits; the
// same digits alone are.
func TestNumbersAreNoCards(t *testing.T) {
	m := New(Rules{}, []byte("k"))
	for _, doc := range []string{
		`{"a":0.0000000000000}`, `{"a":0E0000000000000}`, `{"a":1e+4111111111111111}`,
		`{"a":4111111111111111e2}`, `{"a":4111111111111111E-2}`, `[2.5e-4111111111111111]`,
	} {
		if got := m.Document("body", doc); got != doc {
			t.Errorf("%s masked: %s", doc, got)
		}
	}
	for _, s := range []string{"4111111111111111", "card 4111111111111111e", "x-4111111111111111"} {
		if got := m.Text(s); !strings.Contains(got, "[card:") {
			t.Errorf("%q not masked: %q", s, got)
		}
	}
}
