package endpoint

import (
	"fmt"
	"testing"
)

func TestName(t *testing.T) {
	g, err := New([]string{"/api/users/{name}/orders", "/static/{file}"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, target, want string }{
		{"GET", "/api/items/42?x=1", "GET /api/items/{id}"},
		{"GET", "/api/items/42/reviews/7", "GET /api/items/{id}/reviews/{id}"},
		{"PUT", "/api/carts/3fa85f64-5717-4562-b3fc-2c963f66afa6", "PUT /api/carts/{uuid}"},
		{"GET", "/api/commits/9f86d081884c7d65", "GET /api/commits/{hex}"},
		{"GET", "/api/reset/eyJhbGciOiJIUzI1NiJ9xyz12", "GET /api/reset/{token}"},
		{"GET", "/api/users/alice/orders", "GET /api/users/{name}/orders"},
		{"GET", "/static/app.css", "GET /static/{file}"},
		{"GET", "/api/search", "GET /api/search"},
		{"GET", "/api/deadbeef-words", "GET /api/deadbeef-words"},
		{"GET", "/", "GET /"},
	} {
		if got := g.Name(c.method, c.target); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.target, got, c.want)
		}
	}
}

func TestBound(t *testing.T) {
	g, _ := New(nil, 3)
	for i := range 10 {
		g.Name("GET", fmt.Sprintf("/page-%c", 'a'+i))
	}
	if g.Name("GET", "/page-a") != "GET /page-a" || g.Name("GET", "/page-z") != Other || g.Overflow() != 8 {
		t.Errorf("overflow %d", g.Overflow())
	}
}

// TestLearnedParameters: alphanumeric ids become a parameter after enough
// distinct values; a handful of static names under a prefix do not;
// names given before learning are renamed; user patterns still win.
func TestLearnedParameters(t *testing.T) {
	g, _ := New([]string{"/api/coupons/special/{x}"}, 1000)
	var early []string
	for i := range 30 {
		early = append(early, g.Name("GET", fmt.Sprintf("/api/items/SKU-%05d/reviews?p=1", i)))
		g.Name("POST", fmt.Sprintf("/api/coupons/CPN-%c%dQ2X", 'A'+i%26, i))
		g.Name("GET", fmt.Sprintf("/api/%s", []string{"users", "orders", "items", "carts", "health"}[i%5]))
	}
	if got := g.Name("GET", "/api/items/SKU-99999/reviews"); got != "GET /api/items/{id}/reviews" {
		t.Errorf("learned: %q", got)
	}
	if got := g.Name("POST", "/api/coupons/CPN-ZZZZZ9"); got != "POST /api/coupons/{id}" {
		t.Errorf("learned: %q", got)
	}
	if got := g.Name("GET", "/api/orders"); got != "GET /api/orders" {
		t.Errorf("static segment became %q", got)
	}
	if got := g.Name("GET", "/api/coupons/special/CPN-1"); got != "GET /api/coupons/special/{x}" {
		t.Errorf("user pattern lost: %q", got)
	}
	if early[0] != "GET /api/items/SKU-00000/reviews" {
		t.Errorf("first name %q: learned too early", early[0])
	}
	for _, n := range early {
		if got := g.Rename(n); got != "GET /api/items/{id}/reviews" {
			t.Errorf("Rename(%q) = %q", n, got)
		}
	}
	if l := g.Learned(); len(l) != 2 || l[0] != "GET /api/items/{id}" {
		t.Errorf("learned templates %q", l)
	}
}

func TestLearningBounded(t *testing.T) {
	g, _ := New(nil, 100)
	for i := range 3 * maxPrefixes {
		g.Name("GET", fmt.Sprintf("/a%d/b/c", i))
	}
	if len(g.prefixes) > maxPrefixes {
		t.Errorf("%d prefixes", len(g.prefixes))
	}
}
