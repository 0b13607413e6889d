package httpstream

import "errors"

// Chunked framing errors, each a distinct reason a request is refused.
var (
	errChunkSize      = errors.New("bad chunk-size line")
	errChunkExtension = errors.New("bad chunk extension")
	errChunkDataEnd   = errors.New("chunk data not followed by CRLF")
	errChunkTrailer   = errors.New("bad trailer line")
)

// chunkReader follows chunked framing (RFC 9112 §7.1) over a stream without
// buffering it: it only reports how many bytes belong to the body.
//
// For requests it is strict, as llhttp is with no leniency flag set: every
// line ends in CRLF, nothing but ';' or CRLF follows the size, extensions
// are tokens or quoted strings, and trailer lines are header fields. A
// request another parser could frame differently is never replayed.
// Production's responses, which are only compared and never sent, are read
// leniently (bare LF, anything in an extension or trailer line), as
// clients do.
type chunkReader struct {
	lenient bool
	phase   uint8
	left    int64 // data bytes left in the current chunk
	size    int64
	digits  int
	lineLen int  // bytes of the current extension or trailer line
	ext     bool // the size line has an extension
	// name holds the start of a trailer field's name, to refuse framing
	// headers there (llhttp reads trailers with its header rules).
	name    [17]byte
	nameLen int
}

const (
	phaseSize           = iota // hex digits
	phaseExtName               // strict: chunk-ext-name after ';'
	phaseExtValue              // strict: first byte of a chunk-ext-val after '='
	phaseExtToken              // strict: inside a token value
	phaseExtQuoted             // strict: inside a quoted-string value
	phaseExtQuotedPair         // strict: the byte after a backslash
	phaseExtQuotedEnd          // strict: after the closing quote
	phaseLenientExt            // lenient: anything up to LF
	phaseSizeLF                // LF ending the size line
	phaseData                  // chunk data
	phaseDataCR                // CR after data
	phaseDataLF                // LF after CR
	phaseTrailer               // start of a trailer line or the final blank line
	phaseTrailerName           // strict: field name
	phaseTrailerValue          // strict: field value up to CR
	phaseTrailerLF             // strict: LF ending a trailer line
	phaseLenientTrailer        // lenient: inside a trailer line
	phaseLastLF                // LF of the final blank line
)

const maxChunkLine = 4096

// fieldValueByte reports whether c may appear in a field value or a quoted
// string: HTAB, SP, visible ASCII and obs-text.
func fieldValueByte(c byte) bool { return c == '\t' || c >= ' ' && c != 0x7f }

// read consumes bytes of b that belong to the body. It returns how many,
// and whether the body ended inside b.
func (c *chunkReader) read(b []byte) (n int, done bool, err error) {
	for n < len(b) {
		ch := b[n]
		if c.phase != phaseData && c.phase != phaseSize {
			if c.lineLen++; c.lineLen > maxChunkLine {
				if c.phase >= phaseTrailer {
					return n, false, errChunkTrailer
				}
				return n, false, errChunkExtension
			}
		}
		switch c.phase {
		case phaseSize:
			switch {
			case ch >= '0' && ch <= '9', ch >= 'a' && ch <= 'f', ch >= 'A' && ch <= 'F':
				// At most 16 hex digits, leading zeros included: net/http
				// and others refuse more, so a longer size is one that
				// parsers read differently (llhttp takes any zeros).
				if c.digits == 16 || c.size >= 1<<59 { // and never past 63 bits
					return n, false, errChunkSize
				}
				c.size = c.size<<4 | int64(unhex(ch))
				c.digits++
			case c.digits == 0:
				return n, false, errChunkSize
			case ch == ';' && !c.lenient:
				c.phase, c.lineLen, c.ext = phaseExtName, 0, true
			case ch == '\r':
				c.phase, c.lineLen = phaseSizeLF, 0
			case c.lenient && (ch == ';' || ch == ' ' || ch == '\t'):
				c.phase, c.lineLen = phaseLenientExt, 0
			case c.lenient && ch == '\n':
				c.endSizeLine()
			default: // a space after the size, a bare LF, anything else
				return n, false, errChunkSize
			}
		case phaseExtName: // empty names are taken, as llhttp takes them, but not an extension of nothing
			switch {
			case tokenChars[ch]:
			case ch == '=':
				c.phase = phaseExtValue
			case ch == ';':
			case ch == '\r' && c.lineLen == 1: // "5;" then the line's end: llhttp refuses it
				return n, false, errChunkExtension
			case ch == '\r':
				c.phase = phaseSizeLF
			default:
				return n, false, errChunkExtension
			}
		case phaseExtValue: // and empty values
			switch {
			case ch == '"':
				c.phase = phaseExtQuoted
			case tokenChars[ch]:
				c.phase = phaseExtToken
			case ch == ';':
				c.phase = phaseExtName
			case ch == '\r':
				c.phase = phaseSizeLF
			default:
				return n, false, errChunkExtension
			}
		case phaseExtToken:
			switch {
			case tokenChars[ch]:
			case ch == ';':
				c.phase = phaseExtName
			case ch == '\r':
				c.phase = phaseSizeLF
			default:
				return n, false, errChunkExtension
			}
		case phaseExtQuoted:
			switch {
			case ch == '"':
				c.phase = phaseExtQuotedEnd
			case ch == '\\':
				c.phase = phaseExtQuotedPair
			case !fieldValueByte(ch):
				return n, false, errChunkExtension
			}
		case phaseExtQuotedPair:
			if !fieldValueByte(ch) {
				return n, false, errChunkExtension
			}
			c.phase = phaseExtQuoted
		case phaseExtQuotedEnd:
			switch ch {
			case ';':
				c.phase = phaseExtName
			case '\r':
				c.phase = phaseSizeLF
			default:
				return n, false, errChunkExtension
			}
		case phaseLenientExt:
			if ch == '\n' {
				c.endSizeLine()
			}
		case phaseSizeLF:
			if ch != '\n' && c.ext { // a bare CR inside the extension
				return n, false, errChunkExtension
			} else if ch != '\n' {
				return n, false, errChunkSize
			}
			c.endSizeLine()
		case phaseData:
			k := int(min(int64(len(b)-n), c.left))
			c.left -= int64(k)
			n += k
			if c.left == 0 {
				c.phase = phaseDataCR
			}
			continue
		case phaseDataCR:
			switch {
			case ch == '\r':
				c.phase = phaseDataLF
			case ch == '\n' && c.lenient:
				c.phase = phaseSize
			default:
				return n, false, errChunkDataEnd
			}
		case phaseDataLF:
			if ch != '\n' {
				return n, false, errChunkDataEnd
			}
			c.phase = phaseSize
		case phaseTrailer:
			c.lineLen = 1
			switch {
			case ch == '\r':
				c.phase = phaseLastLF
			case c.lenient && ch == '\n':
				return n + 1, true, nil
			case c.lenient:
				c.phase = phaseLenientTrailer
			case tokenChars[ch]:
				c.phase = phaseTrailerName
				c.name[0], c.nameLen = ch, 1
			default:
				return n, false, errChunkTrailer
			}
		case phaseTrailerName:
			switch {
			case tokenChars[ch]:
				if c.nameLen < len(c.name) {
					c.name[c.nameLen] = ch
				}
				c.nameLen++
			case ch == ':':
				// Content-Length or Transfer-Encoding in a trailer would
				// reframe the message for some parsers: llhttp refuses it.
				if c.nameLen <= len(c.name) {
					if name := c.name[:c.nameLen]; asciiEqualFold(name, "Content-Length") || asciiEqualFold(name, "Transfer-Encoding") {
						return n, false, errChunkTrailer
					}
				}
				c.phase = phaseTrailerValue
			default: // no space before the colon, as in a head
				return n, false, errChunkTrailer
			}
		case phaseTrailerValue:
			switch {
			case ch == '\r':
				c.phase = phaseTrailerLF
			case !fieldValueByte(ch):
				return n, false, errChunkTrailer
			}
		case phaseTrailerLF:
			if ch != '\n' {
				return n, false, errChunkTrailer
			}
			c.phase = phaseTrailer
		case phaseLenientTrailer:
			if ch == '\n' {
				c.phase = phaseTrailer
			}
		case phaseLastLF:
			if ch != '\n' {
				return n, false, errChunkTrailer
			}
			return n + 1, true, nil
		}
		n++
	}
	return n, false, nil
}

// endSizeLine starts the chunk's data, or the trailer after the last chunk.
func (c *chunkReader) endSizeLine() {
	c.left, c.size, c.digits, c.ext = c.size, 0, 0, false
	if c.left == 0 {
		c.phase = phaseTrailer
	} else {
		c.phase = phaseData
	}
}

// skippable reports whether n missing bytes fall inside the current chunk's
// data, so the reader stays in sync.
func (c *chunkReader) skippable(n int) bool { return c.phase == phaseData && int64(n) <= c.left }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
