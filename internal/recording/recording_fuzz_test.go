package recording

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net/http"
	"net/netip"
	"testing"

	"filippo.io/age"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/jsonspan"
)

// sameRecord compares records field by field; byte slices by content, as
// a nil and an empty request are the same request.
func sameRecord(a, b Record) bool {
	return a.Start == b.Start && a.End == b.End && a.Conn == b.Conn && a.Index == b.Index &&
		a.Client == b.Client && a.Server == b.Server && bytes.Equal(a.Request, b.Request) &&
		a.HasResponse == b.HasResponse && a.Status == b.Status && a.RespStart == b.RespStart &&
		a.RespEnd == b.RespEnd && bytes.Equal(a.Response, b.Response) &&
		a.BodyTruncated == b.BodyTruncated && a.Redacted == b.Redacted
}

func cloneRecord(r Record) Record {
	r.Request, r.Response = bytes.Clone(r.Request), bytes.Clone(r.Response)
	return r
}

// encodeFW is the compressor encodeFile reuses, as a Writer does: a new
// one per call would cost more than everything else a fuzz run does. Fuzz
// functions run one at a time in each process, so one is enough.
var encodeFW, _ = flate.NewWriter(nil, flate.BestSpeed)

// encodeFile returns a recording file holding recs, as the writer makes it.
func encodeFile(recs ...Record) []byte {
	var scratch bytes.Buffer
	b := bytes.Clone(FileMagic[:])
	for i := range recs {
		b = appendFrame(b, &recs[i], &scratch, encodeFW)
	}
	return b
}

// FuzzReader feeds arbitrary files to the reader. Whatever the bytes, it
// must not panic, must account for every byte after the magic (in a
// returned frame, skipped or torn), must never return more records than
// the bytes could hold, must hand out records that later reads do not
// overwrite, and every record it returns must survive being written and
// read again unchanged.
//
// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzReader$ -fuzztime 30m
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 980,309 executions, a corpus
// of 48, kept in testdata/fuzz/FuzzReader).
func FuzzReader(f *testing.F) {
	recs := sampleRecords()
	f.Add(encodeFile(recs[:3]...))
	f.Add(encodeFile(recs[5:7]...))
	whole := encodeFile(recs[:2]...)
	f.Add(whole[:len(whole)-5]) // torn last record
	corrupt := bytes.Clone(whole)
	corrupt[len(FileMagic)+frameHeader+2] ^= 0x40 // a payload byte: bad CRC
	f.Add(corrupt)
	bigLen := bytes.Clone(whole)
	binary.BigEndian.PutUint32(bigLen[len(FileMagic)+4:], maxPayload) // a length past the end of the file
	f.Add(bigLen)
	f.Add(FileMagic[:])
	f.Add([]byte("SHADOWTAP-REC"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bytes.NewReader(data)
		rd := &Reader{}
		if err := rd.start(io.NopCloser(br), "fuzz"); err != nil {
			if len(data) >= len(FileMagic) && [16]byte(data) == FileMagic {
				t.Fatalf("a file with the magic refused: %v", err)
			}
			return
		}
		// pos is the offset in data of the first byte not yet consumed.
		pos := func() int { return len(data) - br.Len() - len(rd.buf) }
		var got, copies []Record
		framed := 0
		for {
			before, skipped := pos(), rd.Skipped
			r, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("record %d: %v", len(got), err)
			}
			end := pos()
			start := before + rd.Skipped - skipped
			if end-start < frameHeader+1 {
				t.Fatalf("record %d: a frame of %d bytes", len(got), end-start)
			}
			// The frame read alone is the same record.
			again, n, err := parseFrame(data[start:end])
			if err != nil || n != end-start || !sameRecord(again, r) {
				t.Fatalf("record %d (bytes %d-%d) parsed alone: %d bytes, %v", len(got), start, end, n, err)
			}
			// Written and read again, it is the same record.
			file := encodeFile(r)
			again, n, err = parseFrame(file[len(FileMagic):])
			if err != nil || n != len(file)-len(FileMagic) || !sameRecord(again, r) {
				t.Fatalf("record %d written again reads back as %+v, %v; was %+v", len(got), again, err, r)
			}
			framed += end - start
			got = append(got, r)
			copies = append(copies, cloneRecord(r))
		}
		if limit := (len(data) - len(FileMagic)) / (frameHeader + 1); len(got) > limit {
			t.Fatalf("%d records from %d bytes (at most %d fit)", len(got), len(data), limit)
		}
		if sum := framed + rd.Skipped + rd.Torn; sum != len(data)-len(FileMagic) {
			t.Fatalf("framed %d + skipped %d + torn %d = %d, the file has %d bytes after the magic",
				framed, rd.Skipped, rd.Torn, sum, len(data)-len(FileMagic))
		}
		for i := range got {
			if !sameRecord(got[i], copies[i]) {
				t.Fatalf("record %d changed by later reads", i)
			}
		}
	})
}

// FuzzPayload reaches the payload decoder behind a valid frame: the
// harness computes the CRC the fuzzer would rarely guess. A payload that
// decodes must encode back to an equal record; one that does not is an
// error, never a panic.
//
// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzPayload$ -fuzztime 30m
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 2,741,777 executions, a corpus
// of 255, kept in testdata/fuzz/FuzzPayload).
func FuzzPayload(f *testing.F) {
	for _, r := range sampleRecords()[:5] {
		f.Add(false, appendPayload(nil, &r))
	}
	r := sampleRecords()[1]
	var z bytes.Buffer
	fw, _ := flate.NewWriter(&z, flate.BestSpeed)
	fw.Write(appendPayload(nil, &r))
	fw.Close()
	f.Add(true, z.Bytes())
	f.Add(false, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})                                                          // unknown addresses
	f.Add(false, []byte{1, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1, 80, 0, 0, 0}) // IPv4-mapped
	f.Fuzz(func(t *testing.T, deflated bool, payload []byte) {
		frame := binary.BigEndian.AppendUint16(nil, frameMagic)
		flags := byte(0)
		if deflated {
			flags = flagDeflate
		}
		frame = append(frame, flags, kindExchange)
		frame = binary.BigEndian.AppendUint32(frame, uint32(len(payload)))
		frame = binary.BigEndian.AppendUint32(frame, crc32.Checksum(payload, crcTable))
		frame = append(frame, payload...)
		r, n, err := parseFrame(frame)
		if err != nil {
			return
		}
		if n != len(frame) {
			t.Fatalf("parsed %d of %d bytes", n, len(frame))
		}
		file := encodeFile(r)
		again, _, err := parseFrame(file[len(FileMagic):])
		if err != nil || !sameRecord(again, r) {
			t.Fatalf("decoded %+v, written and read again: %+v, %v", r, again, err)
		}
	})
}

// FuzzRoundTrip writes any record the writer can be given and reads it
// back: it must be the same record. Addresses are built from 0, 4 or 16
// bytes; any other length stands for an unknown address (GoReplay files
// carry none), which has no port.
//
// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzRoundTrip$ -fuzztime 30m
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 1,127,780 executions, a corpus
// of 196, kept in testdata/fuzz/FuzzRoundTrip).
func FuzzRoundTrip(f *testing.F) {
	f.Add(int64(1_700_000_000_000_000_000), int64(1000), uint64(3), 2, []byte{10, 0, 0, 1}, uint16(40000),
		[]byte{10, 0, 0, 2}, uint16(80), []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
		true, 200, int64(5e5), int64(4e5), []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), byte(3))
	f.Add(int64(5), int64(0), uint64(1), 0, []byte(nil), uint16(0), []byte(nil), uint16(0),
		[]byte("GET /from-goreplay HTTP/1.1\r\n\r\n"), false, 0, int64(0), int64(0), []byte(nil), byte(0))
	f.Add(int64(-1), int64(-1<<62), uint64(1<<63), -7, bytes.Repeat([]byte{0x20}, 16), uint16(65535),
		[]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4}, uint16(1), bytes.Repeat([]byte("a"), 600),
		true, -1, int64(-5), int64(1<<62), bytes.Repeat([]byte("b"), 600), byte(7))
	f.Fuzz(func(t *testing.T, start, dur int64, conn uint64, index int, client []byte, cport uint16,
		server []byte, sport uint16, req []byte, hasResp bool, status int, latency, respDur int64, resp []byte, flags byte) {
		addr := func(b []byte, port uint16) netip.AddrPort {
			ip, ok := netip.AddrFromSlice(b)
			if !ok {
				return netip.AddrPort{}
			}
			return netip.AddrPortFrom(ip, port)
		}
		r := Record{Start: start, End: start + dur, Conn: conn, Index: index, Client: addr(client, cport),
			Server: addr(server, sport), Request: req, Redacted: flags&1 != 0}
		if hasResp {
			r.HasResponse, r.Status, r.BodyTruncated = true, status, flags&2 != 0
			r.RespStart, r.Response = r.End+latency, resp
			r.RespEnd = r.RespStart + respDur
		}
		file := encodeFile(r)
		got, n, err := parseFrame(file[len(FileMagic):])
		if err != nil || n != len(file)-len(FileMagic) {
			t.Fatalf("written record does not read back: %v (%d of %d bytes)", err, n, len(file)-len(FileMagic))
		}
		// The format keeps IPv4 as 4 bytes: an IPv4-mapped IPv6 address
		// reads back as the IPv4 address it maps.
		want := r
		want.Client = netip.AddrPortFrom(r.Client.Addr().Unmap(), r.Client.Port())
		want.Server = netip.AddrPortFrom(r.Server.Addr().Unmap(), r.Server.Port())
		if !sameRecord(got, want) {
			t.Fatalf("wrote %+v\nread  %+v", want, got)
		}
	})
}

// FuzzRedact: whatever the message, redaction never panics, a message
// that parsed still parses, and a JSON body's credential values are
// never written as they were.
//
// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzRedact$ -fuzztime 30m
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 3,296,847 executions, a corpus
// of 293, kept in testdata/fuzz/FuzzRedact).
func FuzzRedact(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"token\":\r\n12\r\n\"tok-1234567890\"}\r\n0\r\n\r\n"), false)
	f.Add([]byte("POST /r HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 31\r\n\r\nrefresh_token=abc%2Fdef&x=1&y=2"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nSet-Cookie: sid=x1; Path=/\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{\"sid\":\"ab\\/cd\\u00e9xyz\"}"), false)
	rd := NewRedactor(DefaultRedact)
	f.Fuzz(func(t *testing.T, raw []byte, isRequest bool) {
		_, parsed := parseMessage(raw, isRequest)
		out, _ := rd.message(raw, isRequest)
		m, ok := parseMessage(out, isRequest)
		if parsed && !ok {
			t.Fatalf("no longer parses:\n%q\n%q", raw, out)
		}
		if !ok {
			return
		}
		h := http.Header{}
		for i := range m.Lines {
			h.Add(string(m.Name(i)), string(m.Value(i)))
		}
		if kindOf(h.Get("Content-Type")) != jsonBody {
			return
		}
		doc, err := diff.Decode(diff.Message{Header: h, Body: m.Body(), Chunked: h.Get("Transfer-Encoding") != ""}, 1<<20)
		if err != nil {
			return
		}
		jsonspan.Scan(doc, jsonspan.Limits{Leaves: 1 << 16, Depth: 64}, func(l jsonspan.Leaf) {
			if l.Quoted && secretKey(l.Key, isRequest) && len(l.Text) >= 3 && !diff.IsPseudonym(l.Text) {
				t.Fatalf("credential %q of %q written:\n%q", l.Text, l.Key, out)
			}
		})
	})
}

// fuzzIdentity encrypts and decrypts FuzzEncrypted's files: one per
// process is enough, the invariants hold for any key.
var fuzzIdentity, _ = age.GenerateX25519Identity()

// FuzzEncrypted reaches the encrypted reader: any plaintext (data after
// the magic, repeated copies+1 times so that a small input spans several
// of age's chunks), encrypted, then cut at cut and one byte at flip
// damaged (values past the end leave the file whole). Reading it must
// never panic, and must give exactly what the clear reader gives from the
// plaintext of the chunks before the first one cut or damaged, with the
// ciphertext from there on counted torn; damage in the header is an
// error.
//
// Fuzzed 30 minutes without a finding on 2026-12-07 (go test -run X -fuzz ^FuzzEncrypted$ -fuzztime 30m -fuzzminimizetime 2s
// -parallel 1, at nice 19 beside 18 other targets on 2 shared cores: 707,774 executions, a corpus
// of 298, kept in testdata/fuzz/FuzzEncrypted).
func FuzzEncrypted(f *testing.F) {
	recs := sampleRecords()
	one := encodeFile(recs[:4]...)[len(FileMagic):]
	f.Add(one, uint8(0), uint32(1<<31), uint32(1<<31))     // whole
	f.Add(one, uint8(100), uint32(1<<31), uint32(1<<31))   // several chunks, whole
	f.Add(one, uint8(100), uint32(140_000), uint32(1<<31)) // cut in the third chunk
	f.Add(one, uint8(100), uint32(1<<31), uint32(70_000))  // the second chunk damaged
	f.Add(one, uint8(100), uint32(1<<31), uint32(10))      // the header damaged
	f.Add([]byte("SR\x00\x01"), uint8(255), uint32(70_000), uint32(1<<31))
	f.Add([]byte{}, uint8(0), uint32(1<<31), uint32(1<<31)) // the magic alone
	f.Fuzz(func(t *testing.T, data []byte, copies uint8, cut, flip uint32) {
		// At most two chunks and a half: enough to cut and damage every
		// kind of chunk, little enough to run often.
		const most = 2*chunk + chunk/2
		plain := bytes.Clone(FileMagic[:])
		for range int(copies) + 1 {
			if len(plain) >= most {
				break
			}
			plain = append(plain, data[:min(len(data), most-len(plain))]...)
		}
		var enc bytes.Buffer
		w, err := age.Encrypt(&enc, fuzzIdentity.Recipient())
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		file := enc.Bytes()
		header := headerLen(len(file), len(plain))
		// k: the chunks that still decrypt.
		k := len(plain)/chunk + 1
		if int(flip) < len(file) {
			file[flip] ^= 0x20
			if int(flip) >= header {
				k = min(k, (int(flip)-header)/(chunk+chunkOverhead))
			}
		}
		if int(cut) < len(file) {
			file = file[:cut]
			if int(cut) >= header {
				k = min(k, (int(cut)-header)/(chunk+chunkOverhead))
			}
		}
		got, rd, err := readSealed(file, fuzzIdentity)
		if int(min(cut, flip)) < header && int(min(cut, flip)) < len(enc.Bytes()) {
			// The header (or its nonce) is cut or damaged.
			if err == nil && len(got) > 0 {
				t.Fatalf("%d records read through a broken header", len(got))
			}
			return
		}
		if err != nil {
			t.Fatalf("%v", err)
		}
		want, torn, skipped := expect(t, plain, header, k, len(file))
		if !sameRecords(got, want) || rd.Torn != torn || rd.Skipped != skipped {
			t.Fatalf("%d chunks decrypt: %d records, torn %d, skipped %d; the clear reader: %d, %d, %d",
				k, len(got), rd.Torn, rd.Skipped, len(want), torn, skipped)
		}
	})
}
