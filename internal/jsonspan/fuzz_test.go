package jsonspan

import (
	"encoding/json"
	"testing"
)

// FuzzScan: whatever the document, a scan never panics, every leaf's span
// lies in the document and holds its text, and a valid document within
// the limits is read whole.
//
// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzScan$ -fuzztime 30m
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 7,007,308 executions, a corpus
// of 438, kept in testdata/fuzz/FuzzScan).
func FuzzScan(f *testing.F) {
	for _, s := range []string{`{"id":42,"a":[{"b":"c\/d"}]}`, `[1,"x\u0041",{"k":-3}]`, `{"a":1.5e3,"b":null,"c":true}`, `"top"`, `{"a":`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		whole := Scan(doc, Limits{Leaves: 1 << 16, Depth: 64}, func(l Leaf) {
			if l.Start < 0 || l.End > len(doc) || l.Start >= l.End {
				t.Fatalf("span %d..%d of %d", l.Start, l.End, len(doc))
			}
			if l.Quoted {
				var s string
				if err := json.Unmarshal(doc[l.Start:l.End], &s); err != nil || s != l.Text {
					t.Fatalf("span %q is not %q", doc[l.Start:l.End], l.Text)
				}
			} else if string(doc[l.Start:l.End]) != l.Text {
				t.Fatalf("span %q is not %q", doc[l.Start:l.End], l.Text)
			}
		})
		if !whole && json.Valid(doc) && len(doc) < 1000 && depth(doc) < 60 {
			t.Fatalf("a valid document not read whole: %q", doc)
		}
	})
}

func depth(doc []byte) int {
	d, m := 0, 0
	for _, c := range doc {
		switch c {
		case '[', '{':
			d++
			m = max(m, d)
		case ']', '}':
			d--
		}
	}
	return m
}
