package diff

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

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

func chunk(s string, size int) string {
	var b strings.Builder
	for len(s) > 0 {
		n := min(size, len(s))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, s[:n])
		s = s[n:]
	}
	return b.String() + "0\r\nX-Trailer: 1\r\n\r\n"
}

// line renders a difference compactly: field[>cand_field] key kind ref -> cand.
func line(d Difference) string {
	f := d.Field
	if d.CandField != "" {
		f += ">" + d.CandField
	}
	return fmt.Sprintf("%s %s %s %s -> %s", f, d.Key, d.Kind, d.Ref, d.Cand)
}

func TestCompare(t *testing.T) {
	const js = "application/json"
	chunked := msg(200, js, chunk(`{"a":1,"b":[1,2,3]}`, 5))
	chunked.Chunked = true
	chunkedGz := msg(200, js, chunk(gz(`{"a":1}`), 7), "Content-Encoding", "gzip")
	chunkedGz.Chunked = true
	tests := []struct {
		name      string
		ref, cand Message
		want      []string
	}{
		{"identical", msg(200, js, `{"a":1}`), msg(200, js, `{"a":1}`), nil},
		{"status", msg(200, js, `{}`), msg(500, js, `{}`), []string{"status status changed 200 -> 500"}},
		{"ignored headers", msg(200, js, `{}`, "Date", "Mon", "Server", "a", "X-Request-Id", "1"),
			msg(200, js, `{}`, "Date", "Tue", "Server", "b", "X-Request-Id", "2"), nil},
		{"header changed, missing, extra", msg(200, js, `{}`, "Cache-Control", "max-age=60", "X-Old", "1"),
			msg(200, js, `{}`, "Cache-Control", "no-store", "X-New", "2"), []string{
				"header.Cache-Control header.Cache-Control changed max-age=60 -> no-store",
				"header.X-New header.X-New extra  -> 2",
				"header.X-Old header.X-Old missing 1 -> "}},
		{"media type by meaning", msg(200, "application/json; charset=UTF-8", `{}`),
			msg(200, "Application/JSON;Charset=utf-8", `{}`), nil},
		{"media type parameter order and whitespace", msg(200, `text/plain; charset=utf-8; format=flowed`, ``),
			msg(200, `text/plain;format=flowed ;charset="utf-8"`, ``), nil},
		{"media type changed", msg(200, "application/json; charset=utf-8", `{}`), msg(200, "text/plain; charset=utf-8", `{}`),
			[]string{"header.Content-Type header.Content-Type changed application/json; charset=utf-8 -> text/plain; charset=utf-8"}},
		{"charset changed", msg(200, "text/plain; charset=utf-8", ``), msg(200, "text/plain; charset=iso-8859-1", ``),
			[]string{"header.Content-Type header.Content-Type changed text/plain; charset=utf-8 -> text/plain; charset=iso-8859-1"}},
		{"comma lists by element", msg(200, js, `{}`, "Vary", "Accept-Encoding, Origin", "Cache-Control", "no-cache,  max-age=0"),
			msg(200, js, `{}`, "Vary", "origin,accept-encoding", "Cache-Control", "max-age=0", "Cache-Control", "no-cache"), nil},
		{"comma list element lost", msg(200, js, `{}`, "Allow", "GET, POST"), msg(200, js, `{}`, "Allow", "GET"),
			[]string{"header.Allow header.Allow changed GET, POST -> GET"}},
		{"set-cookie values are not compared, names are", msg(200, js, `{}`, "Set-Cookie", "sid=abc; Path=/"),
			msg(200, js, `{}`, "Set-Cookie", "sid=xyz; Path=/"), nil},
		{"set-cookie name", msg(200, js, `{}`, "Set-Cookie", "sid=abc"), msg(200, js, `{}`, "Set-Cookie", "session=abc"),
			[]string{"header.Set-Cookie header.Set-Cookie changed sid -> session"}},
		{"a redacted side is not comparable", msg(200, js, `{}`, "Set-Cookie", "REDACTED", "Set-Cookie", "REDACTED", "X-Api-Key", "REDACTED"),
			msg(200, js, `{}`, "Set-Cookie", "sid=xyz; Path=/; HttpOnly", "Set-Cookie", "theme=dark", "X-Api-Key", "k-123"), nil},
		{"a redacted header still had to be there", msg(200, js, `{}`, "Set-Cookie", "REDACTED"), msg(200, js, `{}`),
			[]string{"header.Set-Cookie header.Set-Cookie missing REDACTED -> "}},
		{"deep list value", msg(200, js, `{"items":[{"sku":"a","price":1.5},{"sku":"b","price":2},{"sku":"c","price":3},{"sku":"d","price":4.25}]}`),
			msg(200, js, `{"items":[{"sku":"a","price":1.5},{"sku":"b","price":2},{"sku":"c","price":3},{"sku":"d","price":4.3}]}`),
			[]string{"body.items[3].price body.items[*].price changed 4.25 -> 4.3"}},
		{"missing, extra and type", msg(200, js, `{"a":1,"b":"x","c":true}`), msg(200, js, `{"a":"1","c":true,"d":null}`),
			[]string{`body.a body.a type 1 -> "1"`, `body.b body.b missing "x" -> `, "body.d body.d extra  -> null"}},
		{"members in another order are equal", msg(200, js, `{"a":1,"b":{"x":[1,2],"y":null}}`),
			msg(200, js, `{"b":{"y":null,"x":[1,2]},"a":1}`), nil},
		{"numbers by value", msg(200, js, `{"a":1.0,"b":1e2,"c":[0.10]}`), msg(200, js, `{"a":1,"b":100,"c":[0.1]}`), nil},
		{"escaped strings by value", msg(200, js, `{"a":"\u0041"}`), msg(200, js, `{"a":"A"}`), nil},
		{"list shorter", msg(200, js, `[1,2,3]`), msg(200, js, `[1,2]`), []string{"body[2] body[*] missing 3 -> "}},
		{"reordered list is one difference", msg(200, js, `{"ids":[{"id":1},{"id":2},{"id":3}]}`),
			msg(200, js, `{"ids":[{"id":3},{"id":1},{"id":2}]}`),
			[]string{`body.ids body.ids:order order [{"id":1},{"id":2},{"id":3}] -> [{"id":3},{"id":1},{"id":2}]`}},
		{"element missing in the middle", msg(200, js, `{"ids":[{"id":1},{"id":2},{"id":3},{"id":4}]}`),
			msg(200, js, `{"ids":[{"id":1},{"id":3},{"id":4}]}`), []string{`body.ids[1] body.ids[*] missing {"id":2} -> `}},
		{"element extra at the start", msg(200, js, `["b","c"]`), msg(200, js, `["a","b","c"]`), []string{`body[0] body[*] extra  -> "a"`}},
		{"element changed between equal ones", msg(200, js, `[{"n":1},{"n":2},{"n":3}]`), msg(200, js, `[{"n":1},{"n":5},{"n":3}]`),
			[]string{"body[1].n body[*].n changed 2 -> 5"}},
		{"elements with their own noise, one missing", msg(200, js, `[{"n":1,"at":"2026-11-26T13:00:00Z"},{"n":2,"at":"2026-11-26T13:00:00Z"},{"n":3,"at":"2026-11-26T13:00:00Z"}]`),
			msg(200, js, `[{"n":1,"at":"2026-11-26T13:00:09Z"},{"n":3,"at":"2026-11-26T13:00:09Z"}]`), []string{
				`body[0].at body[*].at changed "2026-11-26T13:00:00Z" -> "2026-11-26T13:00:09Z"`,
				`body[1] body[*] missing {"n":2,"at":"2026-11-26T13:00:00Z"} -> `,
				`body[2].at body[*].at changed "2026-11-26T13:00:00Z" -> "2026-11-26T13:00:09Z"`}},
		{"elements with their own noise, reordered", msg(200, js, `[{"n":1,"id":"9f86d081884c7d659a2feaa0c55ad015"},{"n":2,"id":"9f86d081884c7d659a2feaa0c55ad016"}]`),
			msg(200, js, `[{"n":2,"id":"0f86d081884c7d659a2feaa0c55ad016"},{"n":1,"id":"9f86d081884c7d659a2feaa0c55ad015"}]`), []string{
				`body body:order order [{"n":1,"id":"9f86d081884c7d659a2feaa0c55ad015"},{"n":2,"id":"9f86d081884c7d659a2feaa0c55ad016"}] -> [{"n":2,"id":"0f86d081884c7d659a2feaa0c55ad016"},{"n":1,"id":"9f86d081884c7d659a2feaa0c55ad015"}]`,
				`body[1].id body[*].id changed "9f86d081884c7d659a2feaa0c55ad016" -> "0f86d081884c7d659a2feaa0c55ad016"`}},
		{"odd keys quoted", msg(200, js, `{"a.b":1}`), msg(200, js, `{"a.b":2}`), []string{`body["a.b"] body["a.b"] changed 1 -> 2`}},
		{"gzip decoded first", msg(200, js, gz(`{"a":1}`), "Content-Encoding", "gzip"), msg(200, js, `{"a":1}`), nil},
		{"brotli decoded first", msg(200, js, br(`{"a":[1,2]}`), "Content-Encoding", "br"), msg(200, js, `{"a":[1,3]}`),
			[]string{"body.a[1] body.a[*] changed 2 -> 3"}},
		{"chunked production body", chunked, msg(200, js, `{"a":1,"b":[1,2,3]}`), nil},
		{"chunked and gzipped", chunkedGz, msg(200, js, `{"a":2}`), []string{"body.a body.a changed 1 -> 2"}},
		{"text by lines", msg(200, "text/html", "<p>\nhello\n</p>\n"), msg(200, "text/html", "<p>\nhullo\n</p>\n"),
			[]string{`line:2>line:2 line "hello" changed hello -> hullo`}},
		{"text: a change below an inserted line", msg(200, "text/plain", "a\nb\nc 1\nd\n"), msg(200, "text/plain", "a\nnew\nb\nc 2\nd\n"),
			[]string{`line:2>line:2 line "new" extra  -> new`, `line:3>line:4 line "c {n}" changed c 1 -> c 2`}},
		{"csv by row and column", msg(200, "text/csv", "sku,price,name\nA,1,x\nB,2,y\nC,3,z\n"),
			msg(200, "text/csv", "sku,name,price\nA,x,1\nB,y,2.5\nC,z,3\n"), []string{"row:2 col:price>row:2 col:price col:price changed 2 -> 2.5"}},
		{"csv missing row", msg(200, "text/csv", "sku,price\nA,1\nB,2\nC,3\n"), msg(200, "text/csv", "sku,price\nA,1\nC,3\n"),
			[]string{"row:2 row missing B,2 -> "}},
		{"binary by digest", msg(200, "image/png", "\x89PNGa"), msg(200, "image/png", "\x89PNGb"),
			[]string{"body(digest) body(digest) changed " + digest([]byte("\x89PNGa")) + " -> " + digest([]byte("\x89PNGb"))}},
	}
	for _, tt := range tests {
		var got []string
		for _, d := range Compare(tt.ref, tt.cand, DefaultOptions) {
			got = append(got, line(d))
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestUnorderedArrays(t *testing.T) {
	opts := DefaultOptions
	opts.Unordered = func(key string) bool { return key == "body.tags" }
	ref := msg(200, "application/json", `{"tags":["a","b","c"],"ids":[1,2]}`)
	for _, tt := range []struct {
		cand string
		want []string
	}{
		{`{"tags":["c","a","b"],"ids":[1,2]}`, nil},
		{`{"tags":["c","a"],"ids":[2,1]}`, []string{`body.tags[1] body.tags[*] missing "b" -> `, "body.ids body.ids:order order [1,2] -> [2,1]"}},
		{`{"tags":["c","x","a"],"ids":[1,2]}`, []string{`body.tags[1] body.tags[*] changed "b" -> "x"`}},
	} {
		var got []string
		for _, d := range Compare(ref, msg(200, "application/json", tt.cand), opts) {
			got = append(got, line(d))
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", tt.cand, got, tt.want)
		}
	}
}

func TestShapes(t *testing.T) {
	for in, want := range map[string]string{
		"0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c": "uuid",
		"01HZY3K5W6Q8R9T0V1X2Y3Z4AB":           "ulid",
		"2026-11-26T13:28:29.123Z":             "time",
		"2026-11-26T13:28:29.12Z":              "time",
		"2026-11-26T13:28:29Z":                 "time",
		"2026-11-26T13:28:29.123456+02:00":     "time",
		"2026-11-26 13:28:29":                  "time",
		"2026-11-26":                           "date",
		"2026-13-26":                           "fmt:9999-99-99",
		"Thu, 26 Nov 2026 13:28:29 GMT":        "time",
		"Thu, 26 Nov 2026 13:28:29 -0000":      "time",
		"9f86d081884c7d659a2feaa0c55ad015":     "hex32",
		"eyJhbGciOiJIUzI1NiJ9x":                "token",
		"SKU-00012":                            "fmt:AAA-99999",
		"Item 12":                              "fmt:Aaaa 99",
		"hello world":                          "str",
		"ann":                                  "str",
	} {
		if got := Shape(in); got != want {
			t.Errorf("Shape(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"17": "int", "1.5": "float", "1764163709": "time", "1764163709123": "time",
		"1764163709.25": "time", "1764163709123456": "time", "1764163709123456789": "time", "123456789012": "int"} {
		if got := NumberShape([]byte(in)); got != want {
			t.Errorf("NumberShape(%s) = %q, want %q", in, got, want)
		}
	}
	k, sh, vol := LineTemplate([]byte("generated 2026-11-26T13:28:29Z by node 7 req 9f86d081884c7d659a2feaa0c55ad015"))
	if k != "generated {ts} by node {n} req {hex}" || sh != "generated {time} by node 7 req {hex32}" || !vol {
		t.Errorf("LineTemplate: %q %q %v", k, sh, vol)
	}
}

// A line's time is one token whatever its form: the line keeps one key
// and one shape from answer to answer, so its variation is learned.
func TestLineTimesOfEveryForm(t *testing.T) {
	for _, pair := range [][2]string{
		{"generated 2026-11-26T13:28:29.1Z ok", "generated 2026-11-26T13:28:31Z ok"},
		{"Generated: Thu, 26 Nov 2026 13:28:29 GMT", "Generated: Thu, 26 Nov 2026 14:02:05 GMT"},
		{"# generated_at=1795696109", "# generated_at=1795699999"},
		{"at 1795696109123 ms", "at 1795696109999 ms"},
		{"built 2026-11-26 13:28:29 +0000", "built 2026-11-26 13:28:30 +0000"}, // Ruby's Time#to_s
		{"built 2026-11-26 13:28:29 UTC", "built 2026-11-26 13:28:30 UTC"},
	} {
		ka, sa, va := LineTemplate([]byte(pair[0]))
		kb, sb, vb := LineTemplate([]byte(pair[1]))
		if ka != kb || sa != sb || !va || !vb {
			t.Errorf("%q / %q: keys %q %q, shapes %q %q, volatile %v %v", pair[0], pair[1], ka, kb, sa, sb, va, vb)
		}
		if _, ok := LineTime([]byte(pair[0])); !ok {
			t.Errorf("LineTime(%q): no time", pair[0])
		}
	}
	// A plain number is not a time.
	if _, sh, vol := LineTemplate([]byte("total 1250 items")); vol || sh != "total 1250 items" {
		t.Errorf("plain number: %q %v", sh, vol)
	}
}

func TestTimeOf(t *testing.T) {
	want := time.Date(2026, 11, 26, 12, 28, 29, 0, time.UTC)
	for _, v := range []string{"2026-11-26T13:28:29+01:00", "2026-11-26T13:28:29+0100", "2026-11-26T12:28:29Z",
		"2026-11-26T12:28:29.000Z", "2026-11-26 12:28:29", "2026-11-26t12:28:29z", "Thu, 26 Nov 2026 12:28:29 GMT",
		"Thu, 26 Nov 2026 13:28:29 +0100", "1795696109", "1795696109000", "1795696109000000", "1795696109000000000",
		"1795696109.0", "2026-11-26 12:28:29 +0000", "2026-11-26 12:28:29 UTC"} {
		if got, ok := TimeOf(v); !ok || !got.Equal(want) {
			t.Errorf("TimeOf(%q) = %v, %v", v, got, ok)
		}
	}
}

// Go's time.RFC3339Nano drops trailing zeros, so one field is written
// with 0 to 9 fraction digits: all one shape, and one instant in two
// zones is no difference at all.
func TestTimesAsInstants(t *testing.T) {
	js := func(body string) Message {
		return Message{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)}
	}
	ds := Compare(js(`{"at":"2026-11-26T13:28:29.12Z","b":"2026-11-26T14:28:29+01:00"}`),
		js(`{"at":"2026-11-26T13:28:30Z","b":"2026-11-26T13:28:29.000Z"}`), DefaultOptions)
	if len(ds) != 1 || ds[0].Key != "body.at" || ds[0].RefShape != ds[0].CandShape || ds[0].RefShape != "time" {
		t.Fatalf("differences %+v: want one change of body.at, shape time on both sides", ds)
	}
	// A zone dropped is a change, though the clock reads the same.
	if ds := Compare(js(`{"b":"2026-11-26T13:28:29Z"}`), js(`{"b":"2026-11-26T13:28:29"}`), DefaultOptions); len(ds) != 1 {
		t.Errorf("zone dropped: %+v, want one difference", ds)
	}
	text := func(body string) Message {
		return Message{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte(body)}
	}
	ds = Compare(text("# generated_at=2026-11-26T13:28:29.1Z\nok\n"), text("# generated_at=2026-11-26T13:28:31Z\nok\n"), DefaultOptions)
	if len(ds) != 1 || ds[0].RefShape != ds[0].CandShape {
		t.Errorf("text line: %+v, want one change keeping its shape", ds)
	}
}

func TestDechunk(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
		ok   bool
	}{
		{chunk("hello, world", 5), "hello, world", true},
		{"5;ext=1\r\nhello\r\n0\r\n\r\n", "hello", true},
		{"5\nhello\n0\n\n", "hello", true},
		{"5\r\nhel", "hel", false},
		{"zz\r\nhello\r\n", "", false},
	} {
		got, ok := Dechunk([]byte(tt.in))
		if string(got) != tt.want || ok != tt.ok {
			t.Errorf("Dechunk(%q) = %q, %v", tt.in, got, ok)
		}
	}
}

func TestLCS(t *testing.T) {
	// The matched pairs form a longest common subsequence: checked
	// against the quadratic dynamic programme on random sequences.
	rnd := uint64(1)
	next := func() uint64 { rnd = rnd*6364136223846793005 + 1442695040888963407; return rnd >> 60 }
	for trial := range 300 {
		a, b := make([]uint64, int(next())+trial%7), make([]uint64, int(next())+trial%5)
		for i := range a {
			a[i] = next() % 4
		}
		for i := range b {
			b[i] = next() % 4
		}
		ps := lcs(a, b)
		for i, p := range ps {
			if a[p.a] != b[p.b] || i > 0 && (p.a <= ps[i-1].a || p.b <= ps[i-1].b) {
				t.Fatalf("%v %v: bad pairs %v", a, b, ps)
			}
		}
		dp := make([][]int, len(a)+1)
		for i := range dp {
			dp[i] = make([]int, len(b)+1)
		}
		for i := len(a) - 1; i >= 0; i-- {
			for j := len(b) - 1; j >= 0; j-- {
				if a[i] == b[j] {
					dp[i][j] = dp[i+1][j+1] + 1
				} else {
					dp[i][j] = max(dp[i+1][j], dp[i][j+1])
				}
			}
		}
		if len(ps) != dp[0][0] {
			t.Fatalf("%v %v: %d pairs, LCS is %d", a, b, len(ps), dp[0][0])
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

// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzCompareJSON$ -fuzztime 30m
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 311,506 executions, a corpus
// of 372, kept in testdata/fuzz/FuzzCompareJSON).
func FuzzCompareJSON(f *testing.F) {
	f.Add(`{"a":[1,{"b":2}]}`, `{"a":[1,{"b":3}],"c":null}`)
	f.Add(`[3,1,2]`, `[1,2,3]`)
	f.Fuzz(func(t *testing.T, a, b string) {
		d := Compare(msg(200, "application/json", a), msg(200, "application/json", b), DefaultOptions)
		if a == b && len(d) != 0 {
			t.Fatalf("identical bodies differ: %+v", d)
		}
		// The parser accepts all that encoding/json accepts (it is more
		// lenient with numbers: harmless for a comparison).
		if _, err := parseJSON([]byte(a)); json.Valid([]byte(a)) && err != nil {
			t.Fatalf("parseJSON(%q): %v, encoding/json valid %v", a, err, json.Valid([]byte(a)))
		}
		for _, x := range d {
			if x.Kind != Order && !strings.HasPrefix(x.Key, "line") && x.Key != keyOf(x.Field) {
				t.Fatal(fmt.Sprint("key ", x.Key, " of ", x.Field))
			}
		}
	})
}

// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzDechunk$ -fuzztime 30m
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 2,763,051 executions, a corpus
// of 90, kept in testdata/fuzz/FuzzDechunk).
func FuzzDechunk(f *testing.F) {
	f.Add([]byte(chunk("hello, world", 5)))
	f.Add([]byte("5;x=1\r\nhello\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, ok := Dechunk(b)
		if len(out) > len(b) {
			t.Fatalf("%d bytes out of %d", len(out), len(b))
		}
		if ok {
			// What de-chunks completely re-chunks to the same data.
			again, ok2 := Dechunk([]byte(chunk(string(out), 7)))
			if !ok2 || !bytes.Equal(again, out) {
				t.Fatalf("round trip of %q: %q %v", out, again, ok2)
			}
		}
	})
}

// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzCompareText$ -fuzztime 30m
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 301,783 executions, a corpus
// of 290, kept in testdata/fuzz/FuzzCompareText).
func FuzzCompareText(f *testing.F) {
	f.Add("a\nb\nc\n", "a\nx\nc\nd\n")
	f.Fuzz(func(t *testing.T, a, b string) {
		ds := Compare(msg(200, "text/plain", a), msg(200, "text/plain", b), DefaultOptions)
		if a == b && len(ds) != 0 {
			t.Fatalf("identical texts differ: %v", ds)
		}
		al, bl := splitLines([]byte(a)), splitLines([]byte(b))
		// Every line the diff names exists where it says.
		for _, d := range ds {
			var n int
			if _, err := fmt.Sscanf(d.Field, "line:%d", &n); err == nil && d.Kind != Extra && (n < 1 || n > len(al)) {
				t.Fatalf("%+v outside the reference's %d lines", d, len(al))
			}
			if _, err := fmt.Sscanf(d.CandField, "line:%d", &n); err == nil && (n < 1 || n > len(bl)) {
				t.Fatalf("%+v outside the candidate's %d lines", d, len(bl))
			}
		}
	})
}

// BenchmarkCompareTextUnrelated: two 5,000-line texts with nothing in
// common stay cheap (Myers is bounded, only 50 lines are described).
func BenchmarkCompareTextUnrelated(b *testing.B) {
	var x, y strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&x, "line %d of a\n", i)
		fmt.Fprintf(&y, "row %d of b\n", i)
	}
	ref, cand := msg(200, "text/plain", x.String()), msg(200, "text/plain", y.String())
	for b.Loop() {
		if ds := Compare(ref, cand, DefaultOptions); len(ds) != maxLineDiffs+1 {
			b.Fatalf("%d differences", len(ds))
		}
	}
}

// BenchmarkCompareJSON2K: two 2 KB JSON answers differing in a few fields.
func BenchmarkCompareJSON2K(b *testing.B) {
	var x strings.Builder
	x.WriteString(`{"id":"0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c","at":"2026-11-26T13:00:00Z","items":[`)
	for i := range 16 {
		if i > 0 {
			x.WriteByte(',')
		}
		fmt.Fprintf(&x, `{"sku":"SKU-%05d","name":"Item number %d","price":%d.25,"tags":["a","b"],"stock":{"n":%d,"ok":true}}`, i, i, i, i%5)
	}
	x.WriteString(`]}`)
	a := x.String()
	c := strings.Replace(strings.Replace(a, "13:00:00Z", "13:00:01Z", 1), `"price":7.25`, `"price":7.5`, 1)
	ref, cand := msg(200, "application/json", a), msg(200, "application/json", c)
	b.SetBytes(int64(len(a) + len(c)))
	b.ReportAllocs()
	for b.Loop() {
		if ds := Compare(ref, cand, DefaultOptions); len(ds) != 2 {
			b.Fatalf("%v", ds)
		}
	}
}

// keyOf generalises a field path as the walk does: list indices become [*].
func keyOf(field string) string {
	if !strings.Contains(field, "[") {
		return field
	}
	var b strings.Builder
	for i := 0; i < len(field); i++ {
		if field[i] == '[' {
			j := i + 1
			for j < len(field) && field[j] >= '0' && field[j] <= '9' {
				j++
			}
			if j > i+1 && j < len(field) && field[j] == ']' {
				b.WriteString("[*]")
				i = j
				continue
			}
		}
		b.WriteByte(field[i])
	}
	return b.String()
}

// TestOwnHostIsTheSameOnBothSides: an answer that repeats the Host it was
// asked as (a Location, a link in the body, PHP's server echoing Host) names
// production on one side and the test environment on the other; that is
// not a difference, but the rest of the value still is.
func TestOwnHostIsTheSameOnBothSides(t *testing.T) {
	msg := func(host, order string) Message {
		h := http.Header{}
		h.Set("Content-Type", "application/json")
		h.Set("Location", "http://"+host+"/api/orders/"+order)
		h.Set("Host", host)
		return Message{Status: 201, Header: h, Host: host,
			Body: []byte(`{"self":"http:\/\/` + host + `\/api\/orders\/` + order + `","id":` + order + `}`)}
	}
	prod := msg("198.18.0.2", "7")
	if ds := Compare(prod, msg("127.0.0.1:41234", "7"), Options{}); len(ds) != 0 {
		t.Errorf("the same answer from another host: %v", ds)
	}
	ds := Compare(prod, msg("127.0.0.1:41234", "8"), Options{})
	var keys []string
	for _, d := range ds {
		keys = append(keys, d.Key)
	}
	if want := []string{"header.Location", "body.self", "body.id"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("another order from another host: %v, want %v", keys, want)
	}
	noHost := msg("127.0.0.1:41234", "7")
	noHost.Host = ""
	if ds := Compare(prod, noHost, Options{}); len(ds) != 3 {
		t.Errorf("without the host asked for, the host is compared: %v", ds)
	}
}
