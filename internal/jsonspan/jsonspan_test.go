package jsonspan

import (
	"encoding/json"
	"reflect"
	"testing"
)

var all = Limits{Leaves: 1 << 20, Depth: 64}

func TestLeavesWithTheirPlaces(t *testing.T) {
	doc, err := json.Marshal(map[string]any{"id": 42, "order": map[string]any{"id": "o-1", "items": []any{map[string]any{"id": 7}, "x\u2028/y"}}, "price": 1.5, "ok": true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	whole := Scan(doc, all, func(l Leaf) {
		got = append(got, l.Path()+" "+l.Key+" "+l.Parent+" "+l.Text)
		if l.Quoted {
			var s string
			if err := json.Unmarshal(doc[l.Start:l.End], &s); err != nil || s != l.Text {
				t.Errorf("span of %s: %q", l.Path(), doc[l.Start:l.End])
			}
		} else if string(doc[l.Start:l.End]) != l.Text {
			t.Errorf("span of %s: %q", l.Path(), doc[l.Start:l.End])
		}
	})
	want := []string{".id id  42", ".order.id id order o-1", ".order.items.0.id id items 7", ".order.items.1 items order x\u2028/y"}
	if !whole || !reflect.DeepEqual(got, want) {
		t.Errorf("%v %q\nwant %q", whole, got, want)
	}
}

// An escaped string (PHP writes "\/") is decoded; its span is the raw
// text.
func TestEscapedString(t *testing.T) {
	doc := []byte(`{"token":"ab\/cd\u0041"}`)
	var l Leaf
	Scan(doc, all, func(x Leaf) { l = x })
	if l.Text != "ab/cdA" || string(doc[l.Start:l.End]) != `"ab\/cd\u0041"` {
		t.Errorf("%+v", l)
	}
}

func TestLimitsAndBrokenDocuments(t *testing.T) {
	n := 0
	if Scan([]byte(`[1,2,3,4]`), Limits{Leaves: 2, Depth: 4}, func(Leaf) { n++ }) || n != 2 {
		t.Errorf("leaf limit: %d", n)
	}
	if Scan([]byte(`[[[[1]]]]`), Limits{Leaves: 10, Depth: 2}, func(Leaf) { t.Error("a leaf beyond the depth") }) {
		t.Error("too deep read whole")
	}
	for _, bad := range []string{`{"a":1`, `{"a" 1}`, `[1 2]`, `"open`, `{"a":1} x`, ``} {
		if Scan([]byte(bad), all, func(Leaf) {}) {
			t.Errorf("%q read as whole", bad)
		}
	}
}
