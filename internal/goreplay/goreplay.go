// Package goreplay reads and writes GoReplay's file format, so GoReplay
// users bring their recordings and tools. A file is a sequence of
// payloads, each a header line, the raw HTTP message and a separator:
//
//	<type> <id> <timestamp-ns> <latency-ns>\n<raw HTTP>\n🐵🙈🙉\n
//
// type 1 is a request, 2 the original response, 3 the replayed response;
// the id ties them together; the latency field is absent in older files.
// Files may be gzip-compressed.
package goreplay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// Separator ends every payload.
const Separator = "\n🐵🙈🙉\n"

// Payload kinds.
const (
	Request          = '1'
	Response         = '2'
	ReplayedResponse = '3'
)

// Payload is one message of a GoReplay file.
type Payload struct {
	Kind    byte
	ID      string
	Time    int64 // unix ns: the request's start, or when the response came
	Latency int64 // ns; -1 when the file has no latency field
	Data    []byte
}

// Writer writes payloads.
type Writer struct {
	w   *bufio.Writer
	buf []byte
}

// NewWriter returns a writer to w; call Flush at the end.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 64<<10)} }

// ErrUnrepresentable is returned by Write for a payload the format cannot
// hold: its kind is not 1, 2 or 3, its ID is empty or has white space, or
// its data holds the separator. Written anyway, it would read back as other
// payloads, or stop the reader with ErrMalformed; nothing is written.
var ErrUnrepresentable = errors.New("goreplay: payload cannot be written in GoReplay's format")

// Write writes one payload; a negative Latency writes none, so it reads
// back as -1.
func (w *Writer) Write(p Payload) error {
	if p.Kind < Request || p.Kind > ReplayedResponse || p.ID == "" || strings.IndexFunc(p.ID, unicode.IsSpace) >= 0 {
		return ErrUnrepresentable
	}
	w.buf = append(w.buf[:0], p.Kind, ' ')
	w.buf = append(w.buf, p.ID...)
	w.buf = append(w.buf, ' ')
	w.buf = strconv.AppendInt(w.buf, p.Time, 10)
	if p.Latency >= 0 {
		w.buf = append(w.buf, ' ')
		w.buf = strconv.AppendInt(w.buf, p.Latency, 10)
	}
	w.buf = append(w.buf, '\n')
	w.buf = append(w.buf, p.Data...)
	w.buf = append(w.buf, Separator...)
	// The reader ends the payload at the first separator: it must be the
	// one just appended. Data that ends with the start of a separator, or
	// starts with the rest of one after the header's newline, would make
	// one earlier.
	if bytes.Index(w.buf, []byte(Separator)) != len(w.buf)-len(Separator) {
		return ErrUnrepresentable
	}
	_, err := w.w.Write(w.buf)
	return err
}

// Flush writes what is buffered.
func (w *Writer) Flush() error { return w.w.Flush() }

// Reader reads payloads.
type Reader struct {
	sc *bufio.Scanner
}

// NewReader returns a reader of r, which may be gzip-compressed.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("goreplay: %w", err)
		}
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	sc.Split(splitPayloads)
	return &Reader{sc: sc}, nil
}

func splitPayloads(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.Index(data, []byte(Separator)); i >= 0 {
		return i + len(Separator), data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil // a last payload without its separator
	}
	return 0, nil, nil
}

// ErrMalformed is returned for a payload whose header does not parse.
var ErrMalformed = errors.New("goreplay: malformed payload header")

// Next returns the next payload, or io.EOF after the last.
func (r *Reader) Next() (Payload, error) {
	for r.sc.Scan() {
		b := r.sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return Payload{}, ErrMalformed
		}
		f := bytes.Fields(b[:nl])
		if len(f) < 3 || len(f) > 4 || len(f[0]) != 1 || f[0][0] < Request || f[0][0] > ReplayedResponse {
			return Payload{}, ErrMalformed
		}
		p := Payload{Kind: f[0][0], ID: string(f[1]), Latency: -1, Data: bytes.Clone(b[nl+1:])}
		var err error
		if p.Time, err = strconv.ParseInt(string(f[2]), 10, 64); err != nil {
			return Payload{}, ErrMalformed
		}
		if len(f) == 4 {
			if p.Latency, err = strconv.ParseInt(string(f[3]), 10, 64); err != nil {
				return Payload{}, ErrMalformed
			}
		}
		return p, nil
	}
	if err := r.sc.Err(); err != nil {
		return Payload{}, fmt.Errorf("goreplay: %w", err)
	}
	return Payload{}, io.EOF
}

// ID returns the id shadowtap gives the index-th request of connection
// conn: 24 hex digits, as GoReplay's own.
func ID(conn uint64, index int) string { return fmt.Sprintf("%016x%08x", conn, uint32(index)) }

// LooksLike reports whether b, the start of a file, is a GoReplay file.
func LooksLike(b []byte) bool {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		return false // compressed: the caller decides by name
	}
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return false
	}
	f := bytes.Fields(b[:nl])
	return len(f) >= 3 && len(f) <= 4 && len(f[0]) == 1 && f[0][0] >= Request && f[0][0] <= ReplayedResponse
}
