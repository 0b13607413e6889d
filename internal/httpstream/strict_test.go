package httpstream

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// Each shape here is one where two parsers can cut a stream differently
// (request smuggling), and which llhttp in strict mode refuses. None may
// be replayed, and what follows on the connection is not parsed either.
func TestStrictFramingRefuses(t *testing.T) {
	const te = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	tests := []struct {
		name   string
		in     string
		reject Reject
	}{
		{"identical content-lengths", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", RejectDuplicateLength},
		{"content-length list of equals", "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", RejectDuplicateLength},
		{"content-length with a space inside", "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\nabc", RejectBadLength},
		{"content-length hex", "POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\nabc", RejectBadLength},
		{"chunked twice", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", RejectBadTransferCoding},
		{"chunked twice over two lines", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", RejectBadTransferCoding},
		{"chunked on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", RejectTransferEncoding10},
		{"bare LF chunk-size line", te + "3\nabc\r\n0\r\n\r\n", RejectChunkSize},
		{"bare LF after chunk data", te + "3\r\nabc\n0\r\n\r\n", RejectChunkDataEnd},
		{"chunk size then a space", te + "3 \r\nabc\r\n0\r\n\r\n", RejectChunkSize},
		{"chunk size then a tab", te + "3\t;a=b\r\nabc\r\n0\r\n\r\n", RejectChunkSize},
		{"bare CR in a chunk extension", te + "3;a\rb\r\nabc\r\n0\r\n\r\n", RejectChunkExtension},
		{"control byte in a chunk extension", te + "3;a=\x01\r\nabc\r\n0\r\n\r\n", RejectChunkExtension},
		{"control byte in a quoted extension", te + "3;a=\"\x00\"\r\nabc\r\n0\r\n\r\n", RejectChunkExtension},
		{"comma after chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", RejectBadTransferCoding},
		{"comma and space after chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, \r\n\r\n0\r\n\r\n", RejectBadTransferCoding},
		{"space and comma after chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked ,\r\n\r\n0\r\n\r\n", RejectBadTransferCoding},
		{"tab after chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", RejectBadTransferCoding},
		{"content-length in a trailer", te + "0\r\nContent-Length: 5\r\n\r\n", RejectChunkTrailer},
		{"transfer-encoding in a trailer", te + "0\r\ntransfer-encoding: chunked\r\n\r\n", RejectChunkTrailer},
		{"PRI on HTTP/1.1", "PRI * HTTP/1.1\r\n\r\n", RejectMethod},
		{"chunk size over 16 hex digits", te + "00000000000000003\r\nabc\r\n0\r\n\r\n", RejectChunkSize},
		{"junk trailer line", te + "0\r\nnot a header\r\n\r\n", RejectChunkTrailer},
		{"trailer ended by a bare LF", te + "0\r\nX: y\n\r\n", RejectChunkTrailer},
		{"last chunk ended by a bare LF", te + "0\r\n\n", RejectChunkTrailer},
		{"bare LF among CRLF header lines", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", RejectBareLF},
		{"bare LF throughout", "GET /bar/ HTTP/1.1\nHost: x\n\n", RejectBareLF},
		{"request line ended by a bare LF", "GET / HTTP/1.1\nHost: x\r\n\r\n", RejectBareLF},
		{"lowercase method", "get / HTTP/1.1\r\nHost: x\r\n\r\n", RejectMethod},
		{"unknown method", "FROB / HTTP/1.1\r\nHost: x\r\n\r\n", RejectMethod},
		{"0xFF in the request-target", "GET /a\xffb HTTP/1.1\r\nHost: x\r\n\r\n", RejectTarget},
		{"control byte in the request-target", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", RejectTarget},
		{"DEL in the request-target", "GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", RejectTarget},
		{"content-length and chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", RejectAmbiguousLength},
	}
	for _, tt := range tests {
		got, st := run(t, DefaultOptions, tt.in, get1)
		if len(got) != 0 {
			t.Errorf("%s: replayed %q", tt.name, got)
		}
		for r := range NumRejects {
			want := uint64(0)
			if r == tt.reject {
				want = 1
			}
			if n := st.Rejected[r].Load(); n != want {
				t.Errorf("%s: rejected as %v %d times, want %d", tt.name, r, n, want)
			}
		}
	}
}

// Beside each refused shape, its well-formed neighbour is replayed exactly:
// strictness must not cost exact replays.
func TestStrictFramingAccepts(t *testing.T) {
	many := "GET /many HTTP/1.1\r\n"
	for i := range 100 {
		many += "X-H" + strings.Repeat("a", i%7) + ": " + strings.Repeat("v", i) + "\r\n"
	}
	many += "\r\n"
	tests := []struct{ name, in string }{
		{"pipelined pair", get1 + get2},
		{"100 header lines", many},
		{"chunk extensions, quoted and token", "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b;c;d=\"x y\\\"z\"\r\nabc\r\n0;last\r\n\r\n"},
		{"chunk trailers", "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Empty:\r\n\r\n"},
		{"chunk size in upper-case hex with leading zeros", "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n000A\r\n0123456789\r\n0\r\n\r\n"},
		{"empty header value", "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Space: \r\n\r\n"},
		{"gzip then chunked on two lines", "POST /z HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n"},
		{"gzip, chunked on one line", "POST /z HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n"},
		{"empty list elements", "POST /z HTTP/1.1\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n"},
		{"content-length zero", "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"},
		{"webdav method", "PROPFIND /d HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"},
		{"percent-encoded target", "GET /%E2%82%AC?q=a%20b HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"obs-text in a header value", "GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n"},
		{"HTTP/1.0 with a length", "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nok"},
		{"empty extension names and values", "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;;a\r\nx\r\n1;=v\r\ny\r\n1;a=;b=c\r\nz\r\n0\r\n\r\n"},
		{"spaces after chunked", "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked  \r\n\r\n0\r\n\r\n"},
		{"runs of spaces in the request line", "GET  /a  HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"chunk size of 16 hex digits", "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000003\r\nabc\r\n0\r\n\r\n"},
		{"content-length with leading zeros", "POST / HTTP/1.1\r\nContent-Length: 0000000000000000000002\r\n\r\nok"},
		{"a trailer named like a header prefix", "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Lengthy: 1\r\n\r\n"},
	}
	for _, tt := range tests {
		got, st := run(t, DefaultOptions, tt.in, get2)
		want := []string{}
		if tt.name == "pipelined pair" {
			want = append(want, get1, get2)
		} else {
			want = append(want, tt.in)
		}
		want = append(want, get2)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, want)
		}
		for r := range NumRejects {
			if st.Rejected[r].Load() != 0 {
				t.Errorf("%s: rejected as %v", tt.name, r)
			}
		}
	}
}

// A method the configuration lists is accepted.
func TestExtraMethods(t *testing.T) {
	in := "FROB /x HTTP/1.1\r\nHost: h\r\n\r\n"
	opts := DefaultOptions
	opts.ExtraMethods = []string{"FROB"}
	got, _ := run(t, opts, in)
	if len(got) != 1 || got[0] != in {
		t.Errorf("got %q", got)
	}
}

// Two Transfer-Encoding lines once made the parser write the joined list
// into the captured buffer ("gzip,chunkeder-Encoding: chunked"). Captured
// bytes are read-only: the request comes out as it went in.
func TestTwoTransferEncodingLinesReplayExactly(t *testing.T) {
	in := "POST /z HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	for _, parts := range [][]string{{in}, {in[:60], in[60:]}} {
		var st Stats
		var got []*Request
		p := NewParser(DefaultOptions, &st, func(r *Request) { got = append(got, r) })
		for _, part := range parts {
			p.Feed([]byte(part), 0)
		}
		if len(got) != 1 {
			t.Fatalf("got %d requests", len(got))
		}
		if string(got[0].Raw) != in || !got[0].Chunked {
			t.Errorf("replayed %q (chunked %v), want %q", got[0].Raw, got[0].Chunked, in)
		}
		if v, _ := got[0].Get("Transfer-Encoding"); string(v) != "gzip" {
			t.Errorf("first Transfer-Encoding value %q", v)
		}
	}
}

// Property: whatever the stream and however it is cut into segments, every
// request extracted is exactly a contiguous span of the stream, in order.
func TestRequestsAreSpansOfTheStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{get1, get2, post, chunked,
		"POST /z HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n",
		"GET /x HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n", "\r\n", "3\r\nabc\r\n", "garbage\n"}
	for range 2000 {
		var sb strings.Builder
		for range 1 + rng.IntN(6) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		stream := []byte(sb.String())
		var parts []string
		for i := 0; i < len(stream); {
			n := 1 + rng.IntN(40)
			parts = append(parts, string(stream[i:min(i+n, len(stream))]))
			i += n
		}
		got, _ := run(t, DefaultOptions, parts...)
		checkSpans(t, stream, got)
	}
}

func checkSpans(t *testing.T, stream []byte, got []string) {
	t.Helper()
	rest := stream
	for _, r := range got {
		i := bytes.Index(rest, []byte(r))
		if i < 0 {
			t.Fatalf("request %q is not a span of the stream after the previous one\nstream %q", r, stream)
		}
		rest = rest[i+len(r):]
	}
}

// Two shapes llhttp's suite refuses that this parser took: a chunk size
// followed by ';' and no extension at all (#93), and data after a
// request that said Connection: close (#2): the server closes after its
// answer and never reads it, so it is never replayed. The request that
// said close is.
func TestStrictFramingLLHTTPHoles(t *testing.T) {
	got, st := run(t, DefaultOptions, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n", get1)
	if len(got) != 0 || st.Rejected[RejectChunkExtension].Load() != 1 {
		t.Errorf("empty chunk extension: replayed %q, rejected %d", got, st.Rejected[RejectChunkExtension].Load())
	}
	for _, first := range []string{"GET /a HTTP/1.0\r\nConnection: close\r\n\r\n", "GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n"} {
		got, st := run(t, DefaultOptions, first, get1)
		if len(got) != 1 || got[0] != first || st.Rejected[RejectDataAfterClose].Load() != 1 {
			t.Errorf("after %q: replayed %q, rejected %d", first, got, st.Rejected[RejectDataAfterClose].Load())
		}
	}
	// Nothing after it: nothing refused.
	if got, st := run(t, DefaultOptions, "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", ""); len(got) != 1 || st.Rejected[RejectDataAfterClose].Load() != 0 {
		t.Errorf("close alone: %q", got)
	}
}
