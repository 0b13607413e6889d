package httpstream

import (
	"bytes"
	"strconv"
	"sync/atomic"
)

// Response is one production response as the mirror carried it.
type Response struct {
	Message
	Status        int
	Start, End    int64 // capture times of the first and last byte, unix ns
	BodyTruncated bool  // body over MaxBodyBytes: Raw holds the head only
	// Chunked says the body was framed in chunks (the final transfer
	// coding, over every Transfer-Encoding line, is chunked): Body holds
	// them as sent. The one rule, for whoever decodes the body.
	Chunked bool
}

// ResponseStats count the server-to-client direction.
type ResponseStats struct {
	Responses  atomic.Uint64 // final responses parsed
	Interim    atomic.Uint64 // 1xx responses skipped
	LostToGap  atomic.Uint64
	Bad        atomic.Uint64 // unparseable heads (the stream is resynchronised)
	Resyncs    atomic.Uint64
	Incomplete atomic.Uint64
	// OverBudget counts responses cut because all parsers together held
	// MaxBufferedTotal: a body in progress is truncated to its head, a head
	// in progress is dropped and the stream found again.
	OverBudget atomic.Uint64
}

// ResponseParser cuts the server-to-client stream into responses.
type ResponseParser struct {
	opts   Options
	stats  *ResponseStats
	budget *Stats // shares the requests' global byte budget
	emit   func(r *Response, resynced bool)
	noBody func() bool // whether the next final response answers a HEAD

	buf      []byte
	cur      int
	scanned  int
	state    state
	resp     Response
	skip     bool // body not kept: too large (head kept) or lost to a gap
	lost     bool
	lenLeft  int64
	untilEnd bool // body delimited by the connection's close
	chunked  chunkReader
	chunkOn  bool
	start    int64
	last     int64
	resynced bool
	held     int
}

// NewResponseParser returns a parser passing each final response to emit
// (resynced says it was found again after a gap); noBody tells whether the
// response being framed answers a HEAD request.
func NewResponseParser(opts Options, stats *ResponseStats, budget *Stats, noBody func() bool, emit func(*Response, bool)) *ResponseParser {
	return &ResponseParser{opts: opts, stats: stats, budget: budget, emit: emit, noBody: noBody}
}

// Feed passes the next bytes of the stream, seen at ts.
func (p *ResponseParser) Feed(b []byte, ts int64) {
	if p.state == stateDead {
		return
	}
	if len(p.buf) == 0 && p.state != stateBody {
		p.start = ts
	}
	p.last = ts
	if p.state == stateBody && p.skip {
		// Skipped bodies are counted, not held.
		n := p.bodyBytes(b)
		b = b[n:]
		switch p.state {
		case stateBody:
			return
		case stateResync:
			p.buf, p.cur, p.scanned = p.buf[:0], 0, 0
		}
	}
	p.buf = append(p.buf, b...)
	for p.step() {
	}
	p.account()
	if len(p.buf) > 0 && p.budget.Buffered.Load() > p.opts.MaxBufferedTotal {
		switch {
		case p.state == stateBody && !p.skip:
			p.stats.OverBudget.Add(1)
			p.truncateBody()
		case p.state == stateHead:
			p.stats.OverBudget.Add(1)
			p.state = stateResync
			p.buf, p.cur, p.scanned = p.buf[:0], 0, 0
		case p.state == stateResync:
			p.buf, p.cur, p.scanned = p.buf[:0], 0, 0
		}
		p.account()
	}
}

func (p *ResponseParser) account() {
	if d := len(p.buf) - p.held; d != 0 {
		p.budget.Buffered.Add(int64(d))
		p.held = len(p.buf)
	}
}

func (p *ResponseParser) step() bool {
	switch p.state {
	case stateHead:
		return p.head()
	case stateBody:
		n := p.bodyBytes(p.buf[p.cur:])
		if p.state == stateResync {
			p.consume(p.cur + n)
			p.cur, p.scanned = 0, 0
			return true
		}
		if p.skip {
			p.buf = append(p.buf[:p.cur], p.buf[p.cur+n:]...)
		} else {
			p.cur += n
		}
		return p.state != stateBody
	case stateResync:
		return p.resync()
	}
	p.buf = p.buf[:0]
	return false
}

func (p *ResponseParser) head() bool {
	n := 0
	for n < len(p.buf) && (p.buf[n] == '\r' || p.buf[n] == '\n') {
		n++
	}
	p.consume(n)
	if len(p.buf) == 0 {
		return false
	}
	end := findHeadEnd(p.buf, p.scanned)
	if end < 0 {
		p.scanned = len(p.buf)
		if len(p.buf) > p.opts.MaxHeaderBytes {
			return p.bad(len(p.buf))
		}
		return false
	}
	p.resp = Response{Message: Message{Raw: p.buf, Lines: p.resp.Lines[:0]}}
	line, i := nextLine(p.buf, 0)
	status, ok := parseStatusLine(line.of(p.buf))
	if !ok || parseFields(&p.resp.Message, i, end, p.opts.MaxHeaderLines) != nil {
		return p.bad(end)
	}
	p.resp.Status = status
	p.cur, p.scanned = end, 0
	p.skip, p.lost, p.lenLeft, p.untilEnd, p.chunkOn, p.chunked = false, false, 0, false, false, chunkReader{lenient: true}
	switch {
	case status == 101:
		p.state = stateDead // the connection is another protocol now
		p.buf = nil
		return false
	case status < 200:
		p.stats.Interim.Add(1)
		p.consume(end)
		return true
	case status == 204 || status == 304 || p.noBody():
		p.finish()
		return true
	}
	haveTE, chunked := finalCoding(&p.resp.Message)
	cl, haveCL := p.resp.Get("Content-Length")
	switch {
	case haveTE && chunked:
		p.chunkOn, p.resp.Chunked = true, true
	case haveTE:
		p.untilEnd = true
	case haveCL:
		n, err := strconv.ParseInt(string(bytes.TrimSpace(cl)), 10, 64)
		if err != nil || n < 0 {
			return p.bad(end)
		}
		p.lenLeft = n
		if n > p.opts.MaxBodyBytes {
			p.truncateBody()
		}
	default:
		p.untilEnd = true
	}
	p.state = stateBody
	return true
}

// bodyBytes consumes the body bytes at the start of b and returns how
// many; it finishes the response when the body ends.
func (p *ResponseParser) bodyBytes(b []byte) int {
	var n int
	done := false
	switch {
	case p.chunkOn:
		var err error
		n, done, err = p.chunked.read(b)
		if err != nil {
			// Framing lost: the caller drops the message up to the bad
			// byte and scans what follows for the next status line.
			p.stats.Bad.Add(1)
			p.state = stateResync
			return n
		}
	case p.untilEnd:
		n = len(b)
	default:
		n = int(min(int64(len(b)), p.lenLeft))
		p.lenLeft -= int64(n)
		done = p.lenLeft == 0
	}
	if !p.skip && p.cur+n-p.resp.HeadLen > int(p.opts.MaxBodyBytes) {
		p.truncateBody() // the n bytes now lie at p.cur and are skipped
	}
	if done {
		if !p.skip {
			p.cur += n
			n = 0
		}
		p.done()
	}
	return n
}

func (p *ResponseParser) truncateBody() {
	p.resp.BodyTruncated = true
	p.skip = true
	p.buf = append(p.buf[:p.resp.HeadLen], p.buf[p.cur:]...)
	p.cur = p.resp.HeadLen
}

func (p *ResponseParser) done() {
	if p.lost {
		p.consume(p.cur)
		p.state = stateHead
		return
	}
	p.finish()
}

// finish emits the response ending at p.cur.
func (p *ResponseParser) finish() {
	r := &Response{}
	*r = p.resp
	r.Raw = bytes.Clone(p.buf[:p.cur])
	r.Lines = append([]Line(nil), p.resp.Lines...)
	r.Start, r.End = p.start, p.last
	p.stats.Responses.Add(1)
	resynced := p.resynced
	p.resynced = false
	p.consume(p.cur)
	p.state = stateHead
	p.emit(r, resynced)
}

func (p *ResponseParser) consume(n int) {
	p.buf = p.buf[:copy(p.buf, p.buf[n:])]
	p.cur = max(p.cur-n, 0)
	p.start = p.last
}

// bad drops the first n bytes (a head that does not parse) and looks for
// the next status line in what follows.
func (p *ResponseParser) bad(n int) bool {
	p.stats.Bad.Add(1)
	p.consume(n)
	p.state = stateResync
	p.cur, p.scanned = 0, 0
	return true
}

// Gap tells the parser that n bytes are missing (n < 0: unknown).
func (p *ResponseParser) Gap(n int) {
	defer p.account()
	if p.state == stateDead {
		return
	}
	if p.state == stateBody && n >= 0 && (!p.chunkOn && !p.untilEnd && int64(n) <= p.lenLeft || p.chunkOn && p.chunked.skippable(n)) {
		if !p.lost {
			p.stats.LostToGap.Add(1)
			p.lost, p.skip = true, true
			p.buf, p.cur = p.buf[:0], 0
		}
		if p.chunkOn {
			p.chunked.left -= int64(n)
		} else {
			p.lenLeft -= int64(n)
		}
		return
	}
	if p.state == stateBody && !p.lost || p.state == stateHead && len(p.buf) > 0 {
		p.stats.LostToGap.Add(1)
	}
	p.state = stateResync
	p.buf = p.buf[:0]
	p.cur, p.scanned = 0, 0
}

// resync looks for a status line.
func (p *ResponseParser) resync() bool {
	i := 0
	for i < len(p.buf) {
		if bytes.IndexByte(p.buf[i:], '\n') < 0 {
			break
		}
		line, next := nextLine(p.buf, i)
		if _, ok := parseStatusLine(line.of(p.buf)); ok {
			p.stats.Resyncs.Add(1)
			p.consume(i)
			p.state, p.resynced = stateHead, true
			return true
		}
		i = next
	}
	if len(p.buf)-i > p.opts.MaxResyncBytes {
		i = len(p.buf)
	}
	p.consume(i)
	return false
}

// End tells the parser the stream is over: a body delimited by the close
// is complete; any other partial response is lost.
func (p *ResponseParser) End() {
	if p.state == stateBody && p.untilEnd && !p.lost {
		p.finish()
	} else if p.state == stateBody && !p.lost || p.state == stateHead && len(p.buf) > 0 {
		p.stats.Incomplete.Add(1)
	}
	p.state = stateDead
	p.buf = nil
	p.account()
}

// parseStatusLine parses "HTTP/1.x SSS[ reason]".
func parseStatusLine(line []byte) (int, bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
		return 0, false
	}
	code := line[9:12]
	for _, c := range code {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	status, _ := strconv.Atoi(string(code))
	return status, status >= 100
}

// finalCoding reports whether m has a Transfer-Encoding, and whether its
// final coding is chunked: the codings of every Transfer-Encoding line in
// order, as one list (RFC 9110 §5.3), empty elements ignored. A response
// is framed leniently: production's client read it.
func finalCoding(m *Message) (have, chunked bool) {
	for i := range m.Lines {
		if !asciiEqualFold(m.Name(i), "Transfer-Encoding") {
			continue
		}
		have = true
		for part := range bytes.SplitSeq(m.Value(i), []byte(",")) {
			if coding := bytes.Trim(part, " \t"); len(coding) > 0 {
				chunked = asciiEqualFold(coding, "chunked")
			}
		}
	}
	return have, chunked
}
