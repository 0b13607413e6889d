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
