// Package recording reads and writes shadowtap recordings: captured
// requests with, where the mirror carried them, production's responses and
// their latency. The format (docs/recording.md) is append-only and
// compressed record by record, so that a crash loses at most the record
// being written: a torn last record is detected and skipped, and every
// record before it reads back.
package recording

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// FileMagic starts every recording file.
var FileMagic = [16]byte{'S', 'H', 'A', 'D', 'O', 'W', 'T', 'A', 'P', '-', 'R', 'E', 'C', 0, 0, 1}

const (
	frameMagic   = 0x5352 // "SR"
	frameHeader  = 12     // magic u16, flags u8, kind u8, length u32, crc32c u32
	flagDeflate  = 1
	kindExchange = 1
	maxPayload   = 256 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Record is one exchange: a request and, when seen, production's response.
type Record struct {
	Start, End     int64 // request's first and last byte, unix ns
	Conn           uint64
	Index          int
	Client, Server netip.AddrPort
	Request        []byte // as captured (credentials redacted unless kept)

	HasResponse   bool
	Status        int
	RespStart     int64 // response's first and last byte, unix ns
	RespEnd       int64
	Response      []byte
	BodyTruncated bool // the response body was over the size kept
	Redacted      bool // credentials were replaced in this record
}

// Latency is production's: the request's last byte to the response's first.
func (r *Record) Latency() int64 { return r.RespStart - r.End }

// FromExchange builds a record from the engine's pair.
func FromExchange(req *httpstream.Request, resp *httpstream.Response) Record {
	r := Record{Start: req.Start, End: req.End, Conn: req.ConnID, Index: req.Index,
		Client: req.Client, Server: req.Server, Request: req.Raw}
	if resp != nil {
		r.HasResponse, r.Status, r.RespStart, r.RespEnd, r.Response, r.BodyTruncated =
			true, resp.Status, resp.Start, resp.End, resp.Raw, resp.BodyTruncated
	}
	return r
}

// ParseRequest parses the recorded request for replay.
func (r *Record) ParseRequest() (*httpstream.Request, error) {
	var req *httpstream.Request
	p := httpstream.NewParser(messageOptions(r.Request), &httpstream.Stats{}, func(q *httpstream.Request) {
		if req == nil {
			req = q
		}
	})
	p.Feed(r.Request, r.Start)
	if req == nil {
		return nil, errors.New("recording: request does not parse")
	}
	req.Client, req.Server, req.ConnID, req.Index, req.Start, req.End = r.Client, r.Server, r.Conn, r.Index, r.Start, r.End
	if r.HasResponse {
		req.Answered = r.RespEnd
	}
	return req, nil
}

// ParseResponse parses the recorded response to req (HEAD's has no
// body), with its capture times; nil when there is none or it does not
// parse.
func (r *Record) ParseResponse(req *httpstream.Request) *httpstream.Response {
	if !r.HasResponse {
		return nil
	}
	opts := httpstream.DefaultOptions
	opts.MaxBodyBytes = max(opts.MaxBodyBytes, int64(len(r.Response)))
	head := string(req.Method()) == "HEAD"
	var out *httpstream.Response
	p := httpstream.NewResponseParser(opts, &httpstream.ResponseStats{}, &httpstream.Stats{},
		func() bool { return head }, func(q *httpstream.Response, _ bool) {
			if out == nil {
				out = q
			}
		})
	p.Feed(r.Response, r.RespStart)
	p.End()
	if out == nil {
		return nil
	}
	out.Start, out.End = r.RespStart, r.RespEnd
	return out
}

// messageOptions are the parser's limits for one recorded message. The
// message was captured whole, perhaps under a max_body above the default,
// so its own length bounds its body: with the default limit a larger body
// would not parse, and so neither replay nor have its credentials redacted.
// Its method was accepted when it was recorded (perhaps as one of the
// configuration's extra methods), so it is accepted again.
func messageOptions(raw []byte) httpstream.Options {
	o := httpstream.DefaultOptions
	o.MaxBodyBytes = max(o.MaxBodyBytes, int64(len(raw)))
	if sp := bytes.IndexByte(raw, ' '); sp > 0 {
		o.ExtraMethods = []string{string(raw[:sp])}
	}
	return o
}

// appendPayload encodes r (see docs/recording.md).
func appendPayload(b []byte, r *Record) []byte {
	var flags uint64
	if r.HasResponse {
		flags |= 1
	}
	if r.BodyTruncated {
		flags |= 2
	}
	if r.Redacted {
		flags |= 4
	}
	b = binary.AppendUvarint(b, 1) // payload version
	b = binary.AppendUvarint(b, flags)
	b = binary.AppendVarint(b, r.Start)
	b = binary.AppendVarint(b, r.End-r.Start)
	b = binary.AppendUvarint(b, r.Conn)
	b = binary.AppendUvarint(b, uint64(r.Index))
	b = appendAddr(b, r.Client)
	b = appendAddr(b, r.Server)
	b = appendBytes(b, r.Request)
	if r.HasResponse {
		b = binary.AppendUvarint(b, uint64(r.Status))
		b = binary.AppendVarint(b, r.RespStart-r.End)
		b = binary.AppendVarint(b, r.RespEnd-r.RespStart)
		b = appendBytes(b, r.Response)
	}
	return b
}

func appendAddr(b []byte, a netip.AddrPort) []byte {
	ip := a.Addr().Unmap().AsSlice()
	b = appendBytes(b, ip)
	return binary.AppendUvarint(b, uint64(a.Port()))
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

var errPayload = errors.New("recording: malformed record")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errPayload
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errPayload
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errPayload
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// addr reads what appendAddr wrote. An empty address with port 0 is the
// unknown one: GoReplay files carry no addresses, and their records
// must read back. A 16-byte IPv4-mapped address reads as the IPv4 address
// appendAddr would have written, so that a record written again is the same.
func (d *decoder) addr() netip.AddrPort {
	b := d.bytes()
	port := d.uvarint()
	if len(b) == 0 && port == 0 {
		return netip.AddrPort{}
	}
	ip, ok := netip.AddrFromSlice(b)
	if !ok || port > 65535 {
		d.err = errPayload
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port))
}

func decodePayload(b []byte) (Record, error) {
	d := &decoder{b: b}
	var r Record
	if v := d.uvarint(); v != 1 {
		return r, fmt.Errorf("recording: payload version %d not supported", v)
	}
	flags := d.uvarint()
	r.Start = d.varint()
	r.End = r.Start + d.varint()
	r.Conn = d.uvarint()
	r.Index = int(d.uvarint())
	r.Client = d.addr()
	r.Server = d.addr()
	r.Request = d.bytes()
	r.HasResponse, r.BodyTruncated, r.Redacted = flags&1 != 0, flags&2 != 0, flags&4 != 0
	if r.HasResponse {
		r.Status = int(d.uvarint())
		r.RespStart = r.End + d.varint()
		r.RespEnd = r.RespStart + d.varint()
		r.Response = d.bytes()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errPayload
	}
	return r, d.err
}

// appendFrame appends r as a frame, compressed when that makes it smaller.
func appendFrame(dst []byte, r *Record, scratch *bytes.Buffer, fw *flate.Writer) []byte {
	payload := appendPayload(nil, r)
	flags := byte(0)
	scratch.Reset()
	fw.Reset(scratch)
	fw.Write(payload)
	fw.Close()
	if scratch.Len() < len(payload) {
		payload, flags = scratch.Bytes(), flagDeflate
	}
	dst = binary.BigEndian.AppendUint16(dst, frameMagic)
	dst = append(dst, flags, kindExchange)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, crcTable))
	return append(dst, payload...)
}

// frameParser reads frames. It keeps one decompressor for all of them:
// flate.NewReader allocates about 40 KB of tables, which made a new one
// per record the whole cost of reading a recording (BenchmarkReader).
type frameParser struct {
	src     bytes.Reader
	inflate io.ReadCloser // a flate reader, made on first use
}

// parse reads one frame at the start of b: it returns the record, the
// frame's length, and an error if b does not start with a whole, valid
// frame (io.ErrUnexpectedEOF when b is too short: a torn tail).
func (fp *frameParser) parse(b []byte) (Record, int, error) {
	if len(b) < frameHeader {
		return Record{}, 0, io.ErrUnexpectedEOF
	}
	if binary.BigEndian.Uint16(b) != frameMagic || b[3] != kindExchange || b[2]&^flagDeflate != 0 {
		return Record{}, 0, errPayload
	}
	n := int(binary.BigEndian.Uint32(b[4:]))
	if n > maxPayload {
		return Record{}, 0, errPayload
	}
	if len(b) < frameHeader+n {
		return Record{}, 0, io.ErrUnexpectedEOF
	}
	payload := b[frameHeader : frameHeader+n]
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(b[8:]) {
		return Record{}, 0, errPayload
	}
	if b[2]&flagDeflate != 0 {
		fp.src.Reset(payload)
		if fp.inflate == nil {
			fp.inflate = flate.NewReader(&fp.src)
		} else {
			fp.inflate.(flate.Resetter).Reset(&fp.src, nil)
		}
		var err error
		// A fresh slice per record: records' bytes stay valid after later
		// reads.
		payload, err = io.ReadAll(io.LimitReader(fp.inflate, maxPayload))
		if err != nil {
			return Record{}, 0, errPayload
		}
	}
	r, err := decodePayload(payload)
	return r, frameHeader + n, err
}
