package glob

import "testing"

func TestCompile(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"body.items[*].price", "body.items[*].price", true},
		{"body.*.price", "body.items[*].price", true},
		{"POST /api/*", "POST /api/orders/7", true},
		{"body.id", "body.ids", false},
		{"a.b", "axb", false}, // "." is itself
		{"", "anything", true},
		{"x", "", false},
	} {
		if got := Compile(c.pattern).MatchString(c.s); got != c.want {
			t.Errorf("%q matches %q: %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}
