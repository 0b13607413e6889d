package diff

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"github.com/andybalholm/brotli"
)

func msg(status int, ct string, body string, hdr ...string) Message {
	h := http.Header{}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Add(hdr[i], hdr[i+1])
	}
	return Message{Status: status, Header: h, Body: []byte(body)}
}

func gz(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func br(s string) string {
	var b bytes.Buffer
	w := brotli.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func TestCompare(t *testing.T) {
	const js = "application/json"
	tests := []struct {
		name      string
		ref, cand Message
		want      []Difference
	}{
		{"identical", msg(200, js, `{"a":1}`), msg(200, js, `{"a":1}`), nil},
		{"status", msg(200, js, `{}`), msg(500, js, `{}`), []Difference{{"status", "status", Changed, "200", "500"}}},
		{"ignored headers", msg(200, js, `{}`, "Date", "Mon", "Server", "a", "X-Request-Id", "1"),
			msg(200, js, `{}`, "Date", "Tue", "Server", "b", "X-Request-Id", "2"), nil},
		{"header changed, missing, extra", msg(200, js, `{}`, "Cache-Control", "max-age=60", "X-Old", "1"),
			msg(200, js, `{}`, "Cache-Control", "no-store", "X-New", "2"), []Difference{
				{"header.Cache-Control", "header.Cache-Control", Changed, "max-age=60", "no-store"},
				{"header.X-New", "header.X-New", Extra, "", "2"},
				{"header.X-Old", "header.X-Old", Missing, "1", ""}}},
		{"set-cookie values are not compared, names are", msg(200, js, `{}`, "Set-Cookie", "sid=abc; Path=/"),
			msg(200, js, `{}`, "Set-Cookie", "sid=xyz; Path=/"), nil},
		{"set-cookie name", msg(200, js, `{}`, "Set-Cookie", "sid=abc"), msg(200, js, `{}`, "Set-Cookie", "session=abc"),
			[]Difference{{"header.Set-Cookie", "header.Set-Cookie", Changed, "sid", "session"}}},
		{"deep list value", msg(200, js, `{"items":[{"sku":"a","price":1.5},{"sku":"b","price":2},{"sku":"c","price":3},{"sku":"d","price":4.25}]}`),
			msg(200, js, `{"items":[{"sku":"a","price":1.5},{"sku":"b","price":2},{"sku":"c","price":3},{"sku":"d","price":4.3}]}`),
			[]Difference{{"body.items[3].price", "body.items[*].price", Changed, "4.25", "4.3"}}},
		{"missing, extra and type", msg(200, js, `{"a":1,"b":"x","c":true}`), msg(200, js, `{"a":"1","c":true,"d":null}`),
			[]Difference{{"body.a", "body.a", Type, "1", `"1"`}, {"body.b", "body.b", Missing, `"x"`, ""}, {"body.d", "body.d", Extra, "", "null"}}},
		{"numbers by value", msg(200, js, `{"a":1.0,"b":1e2,"c":[0.10]}`), msg(200, js, `{"a":1,"b":100,"c":[0.1]}`), nil},
		{"list length", msg(200, js, `[1,2,3]`), msg(200, js, `[1,2]`), []Difference{{"body[2]", "body[*]", Missing, "3", ""}}},
		{"odd keys quoted", msg(200, js, `{"a.b":1}`), msg(200, js, `{"a.b":2}`), []Difference{{`body["a.b"]`, `body["a.b"]`, Changed, "1", "2"}}},
		{"gzip decoded first", msg(200, js, gz(`{"a":1}`), "Content-Encoding", "gzip"), msg(200, js, `{"a":1}`), nil},
		{"brotli decoded first", msg(200, js, br(`{"a":[1,2]}`), "Content-Encoding", "br"), msg(200, js, `{"a":[1,3]}`),
			[]Difference{{"body.a[1]", "body.a[*]", Changed, "2", "3"}}},
		{"text by lines", msg(200, "text/html", "<p>\nhello\n</p>\n"), msg(200, "text/html", "<p>\nhullo\n</p>\n"),
			[]Difference{{"body(text)", "body(text)", Changed, "line 2: hello", "line 2: hullo (2 lines differ)"}}},
		{"binary by digest", msg(200, "image/png", "\x89PNGa"), msg(200, "image/png", "\x89PNGb"),
			[]Difference{{"body(digest)", "body(digest)", Changed, digest([]byte("\x89PNGa")), digest([]byte("\x89PNGb"))}}},
	}
	for _, tt := range tests {
		got := Compare(tt.ref, tt.cand, DefaultOptions)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestTruncatedBodiesCompareTheirCommonPrefix(t *testing.T) {
	ref := msg(200, "text/plain", "same start, then production goes on")
	cand := msg(200, "text/plain", "same start")
	cand.Truncated = true
	if d := Compare(ref, cand, DefaultOptions); len(d) != 0 {
		t.Errorf("differences %+v", d)
	}
	cand.Body = []byte("other start")
	if d := Compare(ref, cand, DefaultOptions); len(d) != 1 {
		t.Errorf("differences %+v", d)
	}
}

func FuzzCompareJSON(f *testing.F) {
	f.Add(`{"a":[1,{"b":2}]}`, `{"a":[1,{"b":3}],"c":null}`)
	f.Fuzz(func(t *testing.T, a, b string) {
		d := Compare(msg(200, "application/json", a), msg(200, "application/json", b), DefaultOptions)
		if a == b && len(d) != 0 {
			t.Fatalf("identical bodies differ: %+v", d)
		}
		for _, x := range d {
			if x.Key != Key(x.Field) {
				t.Fatal(fmt.Sprint("key ", x.Key, " of ", x.Field))
			}
		}
	})
}
