package diff

import (
	"testing"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// TestFromResponseFramedAsParsed: production's answer is taken as chunked
// exactly when the parser that framed it read chunks, whatever way the
// list spells it (an empty element after chunked, two header lines).
func TestFromResponseFramedAsParsed(t *testing.T) {
	for _, c := range []struct {
		te      []string
		chunked bool
	}{
		{[]string{"chunked"}, true},
		{[]string{"chunked, "}, true},
		{[]string{"gzip, chunked,"}, true},
		{[]string{"gzip", "chunked"}, true},
		{[]string{"chunked, gzip"}, false},
	} {
		head := "HTTP/1.1 200 OK\r\n"
		for _, v := range c.te {
			head += "Transfer-Encoding: " + v + "\r\n"
		}
		raw := head + "\r\n"
		if c.chunked {
			raw += "2\r\n{}\r\n0\r\n\r\n"
		} else {
			raw += "{}"
		}
		var got *httpstream.Response
		p := httpstream.NewResponseParser(httpstream.DefaultOptions, &httpstream.ResponseStats{}, &httpstream.Stats{},
			func() bool { return false }, func(r *httpstream.Response, _ bool) { got = r })
		p.Feed([]byte(raw), 1)
		p.End()
		if got == nil {
			t.Fatalf("%q: no response", c.te)
		}
		m := FromResponse(got)
		if m.Chunked != c.chunked {
			t.Errorf("%q: chunked %v, want %v", c.te, m.Chunked, c.chunked)
		}
		if body, err := Decode(m, 1<<20); c.chunked && (err != nil || string(body) != "{}") {
			t.Errorf("%q: body %q, %v", c.te, body, err)
		}
	}
}
