package httpstream

import (
	"bytes"
	"net/netip"
)

// Message is what requests and responses share: every byte as it crossed
// the wire, and views into those bytes.
type Message struct {
	Raw     []byte
	HeadLen int // bytes of the start line and header block, blank line included
	Lines   []Line
}

// Request is one HTTP/1.x request exactly as it crossed the wire. Raw holds
// every byte of it (request line, header lines with their original
// terminators, body with its chunk framing and trailers); the other fields
// are views into Raw.
type Request struct {
	Message
	method span
	target span
	proto  span

	Chunked   bool
	Expect100 bool
	Client    netip.AddrPort // the production client (TCP peer)
	Server    netip.AddrPort // the production server
	Start     int64          // capture time of the first byte, unix ns
	End       int64          // capture time of the last byte
	ConnID    uint64         // the production connection it came on
	Index     int            // its position on that connection, from 0
	// Answered is when production's answer to it ended (capture clock),
	// where that is known before it is replayed (a recording); 0: not
	// known. A replay keeps production's order across connections by it.
	Answered int64
}

type span struct{ start, end int32 }

func (s span) of(b []byte) []byte { return b[s.start:s.end] }

// Line is one header line: Full covers the line without its terminator,
// Term the terminator ("\r\n" or "\n").
type Line struct {
	full, name, value span
	termEnd           int32
}

// Method returns the request method.
func (r *Request) Method() []byte { return r.method.of(r.Raw) }

// Safe reports whether the request's method only reads (RFC 9110 9.2.1):
// sent as it is, it acts on nothing.
func (r *Request) Safe() bool {
	switch string(r.Method()) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// Target returns the request-target as captured, not re-encoded.
func (r *Request) Target() []byte { return r.target.of(r.Raw) }

// Proto returns the version, "HTTP/1.0" or "HTTP/1.1".
func (r *Request) Proto() []byte { return r.proto.of(r.Raw) }

// RequestLineEnd returns the offset just past the request line's terminator.
func (r *Request) RequestLineEnd() int { return r.StartLineEnd() }

// StartLineEnd returns the offset just past the start line's terminator.
func (m *Message) StartLineEnd() int {
	if len(m.Lines) > 0 {
		return int(m.Lines[0].full.start)
	}
	return m.HeadLen - blankLen(m.Raw[:m.HeadLen])
}

// Name returns header line i's field name, as cased on the wire.
func (r *Message) Name(i int) []byte { return r.Lines[i].name.of(r.Raw) }

// Value returns header line i's field value without surrounding space.
func (r *Message) Value(i int) []byte { return r.Lines[i].value.of(r.Raw) }

// LineBytes returns header line i with its original terminator.
func (r *Message) LineBytes(i int) []byte {
	l := r.Lines[i]
	return r.Raw[l.full.start:l.termEnd]
}

// Get returns the value of the first header named name (case-insensitive).
func (r *Message) Get(name string) ([]byte, bool) {
	for i := range r.Lines {
		if asciiEqualFold(r.Name(i), name) {
			return r.Value(i), true
		}
	}
	return nil, false
}

// BlankLine returns the line terminator that ends the head.
func (r *Message) BlankLine() []byte { return r.Raw[r.HeadLen-blankLen(r.Raw[:r.HeadLen]) : r.HeadLen] }

// Body returns the body bytes as they were sent (chunk framing included).
func (r *Message) Body() []byte { return r.Raw[r.HeadLen:] }

func blankLen(head []byte) int {
	if bytes.HasSuffix(head, []byte("\r\n")) {
		return 2
	}
	return 1
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
