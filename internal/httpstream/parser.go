// Package httpstream cuts a reassembled client-to-server byte stream into
// HTTP/1.x requests, keeping every byte as captured. It never emits a
// request that spans a gap, and it stops parsing a connection whose framing
// it cannot be sure of (ambiguous lengths, TLS, HTTP/2, CONNECT, Upgrade).
package httpstream

import (
	"bytes"
	"sync/atomic"
)

// Options bound what one parser holds.
type Options struct {
	MaxHeaderBytes int   // request line and headers; larger heads stop the connection
	MaxHeaderLines int   // header lines per request
	MaxBodyBytes   int64 // larger bodies are skipped (in sync) and counted
	MaxResyncBytes int   // longest partial line kept while looking for a request line
	// MaxBufferedTotal bounds the bytes held by all parsers sharing a
	// Stats: over it, a body in progress is skipped (in sync) and a head in
	// progress stops its connection, both counted as over budget.
	MaxBufferedTotal int64
	// ExtraMethods are accepted besides the standard ones (KnownMethods):
	// a method nobody listed is refused, as llhttp refuses it.
	ExtraMethods []string
}

// DefaultOptions follow common server limits.
var DefaultOptions = Options{
	MaxHeaderBytes:   64 << 10,
	MaxHeaderLines:   256,
	MaxBodyBytes:     10 << 20,
	MaxResyncBytes:   8 << 10,
	MaxBufferedTotal: 1 << 30,
}

// Reject reasons: the request (and the rest of its connection) is not replayed.
type Reject uint8

const (
	RejectRequestLine        Reject = iota // not a request line
	RejectHeaderLine                       // malformed header line
	RejectObsFold                          // obsolete line folding
	RejectTooManyLines                     // more than MaxHeaderLines
	RejectHeaderTooLarge                   // head over MaxHeaderBytes
	RejectAmbiguousLength                  // Content-Length with Transfer-Encoding
	RejectBadLength                        // Content-Length not a plain decimal number
	RejectBadTransferCoding                // Transfer-Encoding whose final coding is not chunked, or chunked twice
	RejectVersion                          // HTTP/1.x other than 1.0 and 1.1
	RejectOverBudget                       // a head in progress when all parsers together held too much
	RejectMethod                           // a method not in KnownMethods nor configured (lowercase included)
	RejectTarget                           // a control or non-ASCII byte in the request-target
	RejectBareLF                           // a head line ended by LF without CR
	RejectDuplicateLength                  // Content-Length twice, or a list ("3, 3"), even when equal
	RejectTransferEncoding10               // Transfer-Encoding on an HTTP/1.0 request
	RejectChunkSize                        // chunk-size line: not hex, space after the size, bare LF
	RejectChunkExtension                   // chunk extension not a token or quoted string (bare CR, control byte)
	RejectChunkDataEnd                     // chunk data not followed by CRLF
	RejectChunkTrailer                     // trailer line not a header field, or not ended by CRLF
	RejectDataAfterClose                   // bytes after a request that said Connection: close (the server never reads them)
	NumRejects
)

var rejectNames = [NumRejects]string{"request_line", "header_line", "obs_fold", "too_many_header_lines",
	"header_too_large", "ambiguous_length", "bad_content_length", "bad_transfer_encoding", "version", "over_budget",
	"method", "request_target", "bare_lf", "duplicate_content_length", "transfer_encoding_http10",
	"chunk_size", "chunk_extension", "chunk_data_end", "chunk_trailer", "data_after_close"}

func (r Reject) String() string { return rejectNames[r] }

// Stop kinds: protocols that take over a connection; parsing stops there.
type Stop uint8

const (
	StopTLS Stop = iota
	StopHTTP2
	StopConnect
	StopUpgrade
	NumStops
)

var stopNames = [NumStops]string{"tls", "http2", "connect", "upgrade"}

func (s Stop) String() string { return stopNames[s] }

// Stats are shared by all parsers of a handler.
type Stats struct {
	Requests      atomic.Uint64 // complete requests emitted
	Rejected      [NumRejects]atomic.Uint64
	Stopped       [NumStops]atomic.Uint64
	TooLarge      atomic.Uint64 // body over MaxBodyBytes: skipped
	OverBudget    atomic.Uint64 // body skipped because all parsers held MaxBufferedTotal
	Buffered      atomic.Int64  // bytes held by all parsers
	LostToGap     atomic.Uint64 // requests (or parts) dropped because bytes were missing
	Incomplete    atomic.Uint64 // connection ended inside a request
	Resyncs       atomic.Uint64 // request line found again after a gap
	ResyncSkipped atomic.Uint64 // bytes discarded while looking for a request line
}

type state uint8

const (
	stateHead state = iota
	stateBody
	stateResync
	stateDead
)

// Parser parses one direction of one connection. Feed it the stream's bytes
// in order; Gap tells it bytes were lost.
type Parser struct {
	opts  Options
	stats *Stats
	emit  func(*Request)
	// Report, when set, is told why a connection stopped being parsed
	// (a Reject or Stop name), for a rate-limited log line.
	Report func(reason string)

	buf     []byte // the message in progress starts at buf[0]
	cur     int    // parse position in buf
	scanned int    // head bytes already searched for the blank line
	state   state
	req     Request // head of the message in progress
	skip    bool    // the body is discarded: too large, or a gap hit it
	lenLeft int64   // Content-Length body bytes still to come
	chunked chunkReader
	bodyLen int64
	start   int64
	last    int64
	index   int
	held    int  // bytes of buf counted in stats.Buffered
	lineOK  bool // the request line of the message in progress was checked
	closes  bool // the message in progress (or the last) said Connection: close
}

// NewParser returns a parser that passes each complete request to emit,
// which takes ownership of it.
func NewParser(opts Options, stats *Stats, emit func(*Request)) *Parser {
	return &Parser{opts: opts, stats: stats, emit: emit}
}

// Feed passes the next bytes of the stream, seen at ts.
func (p *Parser) Feed(b []byte, ts int64) {
	if p.state == stateDead {
		return
	}
	if len(p.buf) == 0 {
		p.start = ts
	}
	p.last = ts
	p.buf = append(p.buf, b...)
	for p.step() {
	}
	p.account()
	if len(p.buf) > 0 && p.stats.Buffered.Load() > p.opts.MaxBufferedTotal {
		switch {
		case p.state == stateBody && !p.skip:
			p.stats.OverBudget.Add(1)
			p.skip = true
			p.buf = p.buf[:copy(p.buf, p.buf[p.cur:])]
			p.cur = 0
			p.req.Raw = nil
		case p.state == stateHead:
			p.reject(RejectOverBudget)
		}
		p.account()
	}
}

// account keeps the shared count of buffered bytes up to date.
func (p *Parser) account() {
	if d := len(p.buf) - p.held; d != 0 {
		p.stats.Buffered.Add(int64(d))
		p.held = len(p.buf)
	}
}

// step makes one unit of progress; it returns false when it needs more bytes.
func (p *Parser) step() bool {
	switch p.state {
	case stateHead:
		return p.head()
	case stateBody:
		return p.body()
	case stateResync:
		return p.resync()
	}
	p.buf = p.buf[:0]
	return false
}

func (p *Parser) head() bool {
	// Empty lines before a request line are allowed (RFC 9112 §2.2).
	n := 0
	for n < len(p.buf) && (p.buf[n] == '\r' || p.buf[n] == '\n') {
		n++
	}
	if n > 0 {
		p.consume(n)
	}
	if len(p.buf) == 0 {
		return false
	}
	if p.closes {
		// The server closes after answering a Connection: close: what
		// the client sent after it was never read (llhttp refuses it).
		return p.reject(RejectDataAfterClose)
	}
	if p.buf[0] == 0x16 { // TLS handshake record
		return p.stop(StopTLS)
	}
	// Judge the request line as soon as it is whole: another protocol
	// (SSH, a binary one) is recognised at once rather than held until a
	// head's worth of bytes has arrived.
	if !p.lineOK {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 && len(p.buf) > p.opts.MaxHeaderBytes {
			return p.reject(RejectHeaderTooLarge)
		}
		if i < 0 {
			return false
		}
		line, _ := nextLine(p.buf, 0)
		if _, _, _, bad := parseRequestLine(line.of(p.buf), p.opts.ExtraMethods); bad != NumRejects {
			return p.reject(bad)
		}
		p.lineOK = true
	}
	end := findHeadEnd(p.buf, p.scanned)
	if end < 0 {
		p.scanned = len(p.buf)
		if len(p.buf) > p.opts.MaxHeaderBytes {
			return p.reject(RejectHeaderTooLarge)
		}
		return false
	}
	if end > p.opts.MaxHeaderBytes {
		return p.reject(RejectHeaderTooLarge)
	}
	if bareLF(p.buf[:end]) {
		return p.reject(RejectBareLF)
	}
	p.req = Request{Message: Message{Raw: p.buf, Lines: p.req.Lines[:0]}}
	switch err := parseHead(&p.req, end, p.opts.MaxHeaderLines, p.opts.ExtraMethods); err {
	case nil:
	case errObsFold:
		return p.reject(RejectObsFold)
	case errTooMany:
		return p.reject(RejectTooManyLines)
	case errRequestLine:
		return p.reject(RejectRequestLine)
	default:
		return p.reject(RejectHeaderLine)
	}
	switch proto := p.req.Proto(); {
	case string(proto) == "HTTP/2.0":
		return p.stop(StopHTTP2)
	case proto[7] != '0' && proto[7] != '1':
		return p.reject(RejectVersion)
	}
	if string(p.req.Method()) == "CONNECT" {
		return p.stop(StopConnect)
	}
	if _, ok := p.req.Get("Upgrade"); ok {
		return p.stop(StopUpgrade)
	}
	p.cur, p.scanned, p.lineOK = end, 0, false
	p.skip, p.bodyLen, p.lenLeft, p.chunked = false, 0, 0, chunkReader{}
	p.req.Chunked = false
	if r, ok := p.framing(); !ok {
		return p.reject(r)
	}
	p.closes = p.saysClose()
	if p.lenLeft > p.opts.MaxBodyBytes {
		p.tooLarge()
	}
	p.state = stateBody
	return true
}

// saysClose reports whether the head has a Connection: close (RFC 9112
// §9.6), among other connection options or not.
func (p *Parser) saysClose() bool {
	for i := range p.req.Lines {
		if !asciiEqualFold(p.req.Name(i), "Connection") {
			continue
		}
		for opt := range bytes.SplitSeq(p.req.Value(i), []byte(",")) {
			if asciiEqualFold(bytes.Trim(opt, " \t"), "close") {
				return true
			}
		}
	}
	return false
}

// framing reads the body length from the head (RFC 9112 §6.3), as strictly
// as llhttp does: one Content-Length line holding one decimal number;
// Transfer-Encoding (over any number of lines) ending in chunked, which
// appears once; never both; never Transfer-Encoding on HTTP/1.0. The
// captured bytes are only read: the head is replayed as it came.
func (p *Parser) framing() (Reject, bool) {
	// A bad coding list is reported after the loop, so that one with a
	// Content-Length beside it is named ambiguous whatever the order.
	haveTE, chunked, badTE := false, false, false
	cl := int64(-1)
	for i := range p.req.Lines {
		name := p.req.Name(i)
		switch {
		case asciiEqualFold(name, "Transfer-Encoding"):
			haveTE = true
			// The value up to the line's end, trailing whitespace kept:
			// llhttp lets only spaces follow a final chunked, and refuses
			// any comma after it, even before an empty element.
			l := p.req.Lines[i]
			raw := p.req.Raw[l.value.start:l.full.end]
			for part := range bytes.SplitSeq(raw, []byte(",")) {
				if chunked { // something after chunked, or chunked twice
					badTE = true
					break
				}
				coding := bytes.Trim(part, " \t")
				if len(coding) == 0 {
					continue // empty list elements are allowed (RFC 9110 §5.6.1)
				}
				chunked = asciiEqualFold(coding, "chunked")
				if chunked && bytes.IndexByte(part[bytes.Index(part, coding)+len(coding):], '\t') >= 0 {
					badTE = true
				}
			}
		case asciiEqualFold(name, "Content-Length"):
			v := p.req.Value(i)
			if cl >= 0 || bytes.IndexByte(v, ',') >= 0 {
				return RejectDuplicateLength, false
			}
			n, ok := decimal(v)
			if !ok {
				return RejectBadLength, false
			}
			cl = n
		case asciiEqualFold(name, "Expect"):
			p.req.Expect100 = asciiEqualFold(bytes.TrimSpace(p.req.Value(i)), "100-continue")
		}
	}
	if haveTE {
		switch {
		case cl >= 0:
			return RejectAmbiguousLength, false
		case p.req.Proto()[7] == '0':
			return RejectTransferEncoding10, false
		case badTE || !chunked:
			return RejectBadTransferCoding, false
		}
		p.req.Chunked = true
		return 0, true
	}
	p.lenLeft = max(cl, 0)
	return 0, true
}

// decimal parses a Content-Length value: digits only, at most 18 of them
// after leading zeros.
func decimal(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	if t := bytes.TrimLeft(v, "0"); len(t) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// bareLF reports whether a line of head ends in LF without CR before it.
func bareLF(head []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(head[i:], '\n')
		if j < 0 {
			return false
		}
		if i+j == 0 || head[i+j-1] != '\r' {
			return true
		}
		i += j + 1
	}
}

// chunkReject names a chunked framing error.
func chunkReject(err error) Reject {
	switch err {
	case errChunkExtension:
		return RejectChunkExtension
	case errChunkDataEnd:
		return RejectChunkDataEnd
	case errChunkTrailer:
		return RejectChunkTrailer
	}
	return RejectChunkSize
}

func (p *Parser) body() bool {
	avail := p.buf[p.cur:]
	var n int
	done := false
	if p.req.Chunked {
		var err error
		n, done, err = p.chunked.read(avail)
		if err != nil {
			return p.reject(chunkReject(err))
		}
	} else {
		n = int(min(int64(len(avail)), p.lenLeft))
		p.lenLeft -= int64(n)
		done = p.lenLeft == 0
	}
	p.bodyLen += int64(n)
	if p.skip {
		// Discard body bytes as they come so a skipped body holds no memory.
		p.buf = append(p.buf[:p.cur], p.buf[p.cur+n:]...)
	} else {
		p.cur += n
		if p.bodyLen > p.opts.MaxBodyBytes {
			p.tooLarge()
		}
	}
	if !done {
		return false
	}
	if !p.skip {
		p.finish()
	}
	p.consume(p.cur)
	p.state = stateHead
	return true
}

func (p *Parser) tooLarge() {
	p.stats.TooLarge.Add(1)
	p.skip = true
	p.buf = p.buf[:copy(p.buf, p.buf[p.cur:])] // forget the head and the body so far
	p.cur = 0
	p.req.Raw = nil
}

// finish emits the request that ends at p.cur.
func (p *Parser) finish() {
	r := &Request{}
	*r = p.req
	r.Raw = bytes.Clone(p.buf[:p.cur])
	r.Lines = append([]Line(nil), p.req.Lines...)
	r.Start, r.End, r.Index = p.start, p.last, p.index
	p.index++
	p.stats.Requests.Add(1)
	p.emit(r)
}

// consume drops the first n bytes of buf.
func (p *Parser) consume(n int) {
	p.buf = p.buf[:copy(p.buf, p.buf[n:])]
	p.cur = max(p.cur-n, 0)
	p.start = p.last
	if len(p.buf) == 0 && cap(p.buf) > 64<<10 {
		p.buf = nil // do not keep a large body's buffer for an idle connection
	}
}

func (p *Parser) reject(r Reject) bool {
	p.stats.Rejected[r].Add(1)
	p.die(r.String())
	return false
}

func (p *Parser) stop(s Stop) bool {
	p.stats.Stopped[s].Add(1)
	p.die(s.String())
	return false
}

func (p *Parser) die(reason string) {
	p.state = stateDead
	p.buf = nil
	if p.Report != nil {
		p.Report(reason)
	}
}

// Gap tells the parser that n bytes of the stream are missing (n < 0: an
// unknown number, as when a connection is picked up in the middle).
func (p *Parser) Gap(n int) {
	defer p.account()
	switch p.state {
	case stateDead:
		return
	case stateBody:
		// A gap inside a body of known length: the request is lost but the
		// stream stays in sync.
		if n >= 0 && (!p.req.Chunked && int64(n) <= p.lenLeft || p.req.Chunked && p.chunked.skippable(n)) {
			if !p.skip {
				p.stats.LostToGap.Add(1)
				p.skip = true
				p.buf = p.buf[:0]
				p.cur = 0
			}
			if p.req.Chunked {
				p.chunked.left -= int64(n)
			} else {
				p.lenLeft -= int64(n)
			}
			p.bodyLen += int64(n)
			return
		}
		if !p.skip {
			p.stats.LostToGap.Add(1)
		}
	case stateHead:
		if len(p.buf) > 0 {
			p.stats.LostToGap.Add(1)
		}
	}
	p.state = stateResync
	p.buf = p.buf[:0]
	p.cur, p.scanned, p.lineOK = 0, 0, false
}

// resync looks for a line that is a request line with a known method.
func (p *Parser) resync() bool {
	i := 0
	for i < len(p.buf) {
		j := bytes.IndexByte(p.buf[i:], '\n')
		if j < 0 {
			break
		}
		line, next := nextLine(p.buf, i)
		if _, _, _, bad := parseRequestLine(line.of(p.buf), p.opts.ExtraMethods); bad == NumRejects {
			p.stats.ResyncSkipped.Add(uint64(i))
			p.stats.Resyncs.Add(1)
			p.consume(i)
			p.state = stateHead
			return true
		}
		i = next
	}
	// Keep the last partial line: it may be the start of a request line.
	if len(p.buf)-i > p.opts.MaxResyncBytes {
		i = len(p.buf)
	}
	p.stats.ResyncSkipped.Add(uint64(i))
	p.consume(i)
	return false
}

// End tells the parser the stream is over; a request in progress is lost.
func (p *Parser) End() {
	if (p.state == stateHead && len(p.buf) > 0) || (p.state == stateBody && !p.skip) {
		p.stats.Incomplete.Add(1)
	}
	p.state = stateDead
	p.buf = nil
	p.account()
}
