package httpstream

import "errors"

var errChunk = errors.New("bad chunked framing")

// chunkReader follows chunked framing (RFC 9112 §7.1) over a stream without
// buffering it: it only reports how many bytes belong to the body.
type chunkReader struct {
	phase   uint8
	left    int64 // data bytes left in the current chunk
	size    int64
	digits  int
	lineLen int // bytes of the current size, extension or trailer line
}

const (
	phaseSize      = iota // hex digits
	phaseExt              // chunk extension up to LF
	phaseData             // chunk data
	phaseDataCR           // CR (or LF) after data
	phaseDataLF           // LF after CR
	phaseTrailer          // start of a trailer line or the final blank line
	phaseTrailerIn        // inside a trailer line
	phaseLastLF           // LF of the final blank line
)

const maxChunkLine = 4096

// read consumes bytes of b that belong to the body. It returns how many,
// and whether the body ended inside b.
func (c *chunkReader) read(b []byte) (n int, done bool, err error) {
	for n < len(b) {
		ch := b[n]
		switch c.phase {
		case phaseSize:
			switch {
			case ch >= '0' && ch <= '9', ch >= 'a' && ch <= 'f', ch >= 'A' && ch <= 'F':
				if c.digits == 15 { // more than 60 bits
					return n, false, errChunk
				}
				c.size = c.size<<4 | int64(unhex(ch))
				c.digits++
			case ch == ';' || ch == ' ' || ch == '\t':
				if c.digits == 0 {
					return n, false, errChunk
				}
				c.phase, c.lineLen = phaseExt, 0
			case ch == '\r' || ch == '\n':
				if c.digits == 0 {
					return n, false, errChunk
				}
				c.phase, c.lineLen = phaseExt, 0
				continue // let phaseExt handle the terminator
			default:
				return n, false, errChunk
			}
		case phaseExt:
			if ch == '\n' {
				c.left, c.size, c.digits = c.size, 0, 0
				if c.left == 0 {
					c.phase = phaseTrailer
				} else {
					c.phase = phaseData
				}
			} else if c.lineLen++; c.lineLen > maxChunkLine {
				return n, false, errChunk
			}
		case phaseData:
			k := int(min(int64(len(b)-n), c.left))
			c.left -= int64(k)
			n += k
			if c.left == 0 {
				c.phase = phaseDataCR
			}
			continue
		case phaseDataCR:
			switch ch {
			case '\r':
				c.phase = phaseDataLF
			case '\n':
				c.phase = phaseSize
			default:
				return n, false, errChunk
			}
		case phaseDataLF:
			if ch != '\n' {
				return n, false, errChunk
			}
			c.phase = phaseSize
		case phaseTrailer:
			switch ch {
			case '\r':
				c.phase = phaseLastLF
			case '\n':
				return n + 1, true, nil
			default:
				c.phase, c.lineLen = phaseTrailerIn, 1
			}
		case phaseTrailerIn:
			if ch == '\n' {
				c.phase = phaseTrailer
			} else if c.lineLen++; c.lineLen > maxChunkLine {
				return n, false, errChunk
			}
		case phaseLastLF:
			if ch != '\n' {
				return n, false, errChunk
			}
			return n + 1, true, nil
		}
		n++
	}
	return n, false, nil
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
