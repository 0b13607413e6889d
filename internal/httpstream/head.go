package httpstream

import (
	"bytes"
	"errors"
)

// Head parsing is strict where leniency lets two parsers disagree about
// where a request ends (request smuggling): a request we cannot frame with
// certainty is never replayed, and the connection is no longer parsed.
var (
	errRequestLine = errors.New("bad request line")
	errHeaderLine  = errors.New("bad header line")
	errObsFold     = errors.New("obsolete line folding")
	errTooMany     = errors.New("too many header lines")
)

// tokenChars marks the bytes allowed in a token (RFC 9110 §5.6.2).
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// KnownMethods are the methods llhttp (Node's parser) accepts in an HTTP
// request, in upper case as they must be sent. Any other method is
// refused unless configured (Options.ExtraMethods): a parser in front of
// the test environment would refuse it, or read it differently. The same
// list keeps body bytes from passing for a request line after a gap.
var KnownMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT", "MKACTIVITY",
	"CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PURGE", "MKCALENDAR", "LINK",
	"UNLINK", "BIND", "REBIND", "UNBIND", "ACL", "SOURCE", "QUERY", "PRI"}

func knownMethod(m []byte, extra []string) bool {
	for _, k := range KnownMethods {
		if string(m) == k {
			return true
		}
	}
	for _, k := range extra {
		if string(m) == k {
			return true
		}
	}
	return false
}

// parseRequestLine splits line (terminator removed) into its three parts.
// bad is NumRejects when the line is good, else the reason it is not.
func parseRequestLine(line []byte, extra []string) (m, t, v span, bad Reject) {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return m, t, v, RejectRequestLine
	}
	sp2 := bytes.LastIndexByte(line, ' ')
	// llhttp takes runs of spaces between the parts: so do we (the bytes
	// are replayed as captured).
	ts, te := sp1+1, sp2
	for ts < te && line[ts] == ' ' {
		ts++
	}
	for te > ts && line[te-1] == ' ' {
		te--
	}
	if te <= ts {
		return m, t, v, RejectRequestLine
	}
	method, target, version := line[:sp1], line[ts:te], line[sp2+1:]
	if !isToken(method) {
		return m, t, v, RejectRequestLine
	}
	if len(version) != 8 || string(version[:7]) != "HTTP/1." && string(version) != "HTTP/2.0" {
		return m, t, v, RejectRequestLine
	}
	if !knownMethod(method, extra) || string(method) == "PRI" && string(version) != "HTTP/2.0" {
		return m, t, v, RejectMethod // PRI is only the HTTP/2 preface
	}
	// Visible ASCII only: servers disagree about what a control byte or
	// a raw non-ASCII byte in a URL means.
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return m, t, v, RejectTarget
		}
	}
	return span{0, int32(sp1)}, span{int32(ts), int32(te)}, span{int32(sp2 + 1), int32(len(line))}, NumRejects
}

// findHeadEnd returns the length of the head in b (through the blank line
// that ends it), or -1. from is where the previous search stopped.
func findHeadEnd(b []byte, from int) int {
	i := max(from-3, 0)
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		// A blank line is "\n" or "\r\n" right after a previous "\n".
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// nextLine returns the line starting at i in b without its terminator, and
// the offset just past the terminator.
func nextLine(b []byte, i int) (line span, next int) {
	j := bytes.IndexByte(b[i:], '\n')
	end := i + j
	next = end + 1
	if end > i && b[end-1] == '\r' {
		end--
	}
	return span{int32(i), int32(end)}, next
}

// parseHead parses a complete request head into r (whose Raw starts
// with it).
func parseHead(r *Request, headLen int, maxLines int, extra []string) error {
	b := r.Raw[:headLen]
	rl, i := nextLine(b, 0)
	m, t, v, bad := parseRequestLine(rl.of(b), extra)
	if bad != NumRejects {
		return errRequestLine
	}
	r.method, r.target, r.proto = m, t, v
	return parseFields(&r.Message, i, headLen, maxLines)
}

// parseFields parses the header lines of m from offset i to the end of
// its head.
func parseFields(m *Message, i, headLen, maxLines int) error {
	b := m.Raw[:headLen]
	m.HeadLen = headLen
	m.Lines = m.Lines[:0]
	for i < headLen {
		l, next := nextLine(b, i)
		if l.start == l.end { // the blank line
			break
		}
		line := l.of(b)
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		colon := bytes.IndexByte(line, ':')
		// No space is allowed between the field name and the colon.
		if colon <= 0 || !isToken(line[:colon]) {
			return errHeaderLine
		}
		vs, ve := colon+1, len(line)
		for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
			vs++
		}
		for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
			ve--
		}
		for _, c := range line[vs:ve] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return errHeaderLine
			}
		}
		if len(m.Lines) == maxLines {
			return errTooMany
		}
		m.Lines = append(m.Lines, Line{
			full:    l,
			name:    span{l.start, l.start + int32(colon)},
			value:   span{l.start + int32(vs), l.start + int32(ve)},
			termEnd: int32(next),
		})
		i = next
	}
	return nil
}
