package recording

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sampleRecords() []Record {
	var out []Record
	for i := range 20 {
		r := Record{
			Start: 1_700_000_000_000_000_000 + int64(i)*1e6, Conn: uint64(i / 3), Index: i % 3,
			Client:  netip.MustParseAddrPort(fmt.Sprintf("10.0.0.%d:%d", i, 40000+i)),
			Server:  netip.MustParseAddrPort("[2001:db8::1]:80"),
			Request: fmt.Appendf(nil, "GET /items/%d HTTP/1.1\r\nHost: shop\r\nX-Pad: %s\r\n\r\n", i, strings.Repeat("p", i*50)),
		}
		r.End = r.Start + 1000
		if i%4 != 0 {
			r.HasResponse, r.Status, r.RespStart, r.RespEnd = true, 200+i, r.End+5e5, r.End+9e5
			r.Response = fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%02d", i)
			r.BodyTruncated = i%5 == 0
		}
		out = append(out, r)
	}
	return out
}

func writeAll(t *testing.T, path string, recs []Record) {
	t.Helper()
	w, err := Create(WriterOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
}

func readAll(t *testing.T, paths ...string) ([]Record, *Reader) {
	t.Helper()
	rd, err := Open(paths...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	return drain(t, rd), rd
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r"+Ext)
	recs := sampleRecords()
	writeAll(t, path, recs)
	got, rd := readAll(t, path)
	if !reflect.DeepEqual(got, recs) || rd.Torn != 0 || rd.Skipped != 0 {
		t.Fatalf("read %d records (torn %d, skipped %d), wrote %d", len(got), rd.Torn, rd.Skipped, len(recs))
	}
	if got[1].Latency() != 5e5 {
		t.Errorf("latency = %d", got[1].Latency())
	}
	// Appending to an existing recording keeps what was there.
	writeAll(t, path, recs[:2])
	got, _ = readAll(t, path)
	if len(got) != len(recs)+2 {
		t.Errorf("after append: %d records", len(got))
	}
}

// TestTornLastRecord truncates a recording at every byte offset of its
// last record: every earlier record reads back, the torn one is counted.
func TestTornLastRecord(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full"+Ext)
	recs := sampleRecords()
	writeAll(t, full, recs[:len(recs)-1])
	st, _ := os.Stat(full)
	lastStart := st.Size()
	writeAll(t, full, recs[len(recs)-1:])
	data, _ := os.ReadFile(full)
	cut := filepath.Join(dir, "cut"+Ext)
	for off := lastStart; off < int64(len(data)); off++ {
		os.WriteFile(cut, data[:off], 0o644)
		got, rd := readAll(t, cut)
		if !reflect.DeepEqual(got, recs[:len(recs)-1]) {
			t.Fatalf("cut at %d: %d records", off, len(got))
		}
		if want := int(off - lastStart); rd.Torn+rd.Skipped != want {
			t.Fatalf("cut at %d: torn %d skipped %d, want %d", off, rd.Torn, rd.Skipped, want)
		}
	}
}

func TestCorruptRecordIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c"+Ext)
	recs := sampleRecords()
	writeAll(t, path, recs)
	data, _ := os.ReadFile(path)
	// Flip a byte inside the fourth record's payload.
	off := len(FileMagic)
	for range 3 {
		_, n, err := parseFrame(data[off:])
		if err != nil {
			t.Fatal(err)
		}
		off += n
	}
	data[off+frameHeader+3] ^= 0xff
	os.WriteFile(path, data, 0o644)
	got, rd := readAll(t, path)
	want := append(append([]Record(nil), recs[:3]...), recs[4:]...)
	if !reflect.DeepEqual(got, want) || rd.Skipped == 0 {
		t.Errorf("read %d records, skipped %d", len(got), rd.Skipped)
	}
}

func TestRotationBySize(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	w, err := Create(WriterOptions{Path: filepath.Join(dir, "day"+Ext), MaxBytes: 1000, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	recs := sampleRecords()
	for _, r := range recs {
		w.Write(r)
	}
	w.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+Ext))
	if len(files) < 3 || !strings.Contains(files[0], "day-20261122T070000Z-0001") {
		t.Fatalf("files = %v", files)
	}
	got, _ := readAll(t, dir)
	if !reflect.DeepEqual(got, recs) {
		t.Errorf("read %d records across %d files", len(got), len(files))
	}
}

func TestRedaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x"+Ext)
	w, _ := Create(WriterOptions{Path: path, Redact: DefaultRedact})
	login := `{"user":"ada","token":"tok-3f9a8b7c6d5e","expires":3600}`
	w.Write(Record{Client: netip.MustParseAddrPort("10.0.0.1:1"), Server: netip.MustParseAddrPort("10.0.0.2:80"),
		Request:     []byte("POST /login HTTP/1.1\r\nHost: h\r\nauthorization: Bearer secret-old\r\nCookie: theme=dark; sid=abc123\r\nContent-Length: 2\r\n\r\nhi"),
		HasResponse: true, Status: 200, Response: []byte("HTTP/1.1 200 OK\r\nSet-Cookie: sid=new456; Path=/; HttpOnly\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(login)) + "\r\n\r\n" + login)})
	// The next request uses what the answer gave: the same pseudonyms.
	w.Write(Record{Conn: 2, Client: netip.MustParseAddrPort("10.0.0.1:2"), Server: netip.MustParseAddrPort("10.0.0.2:80"),
		Request: []byte("GET /cart HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer tok-3f9a8b7c6d5e\r\nCookie: sid=new456\r\n\r\n")})
	w.Close()
	got, _ := readAll(t, path)
	for _, secret := range []string{"secret-old", "abc123", "new456", "tok-3f9a8b7c6d5e"} {
		for _, r := range got {
			if bytes.Contains(r.Request, []byte(secret)) || bytes.Contains(r.Response, []byte(secret)) {
				t.Errorf("%s written:\n%q\n%q", secret, r.Request, r.Response)
			}
		}
	}
	cookie := regexp.MustCompile(`sid=(~p[A-Za-z0-9_-]+)`)
	set, sent := cookie.FindSubmatch(got[0].Response), cookie.FindSubmatch(got[1].Request)
	bearer := regexp.MustCompile(`"token":"(~p[A-Za-z0-9_-]+)"`).FindSubmatch(got[0].Response)
	if set == nil || sent == nil || bearer == nil || string(set[1]) != string(sent[1]) ||
		!bytes.Contains(got[1].Request, append([]byte("Authorization: Bearer "), bearer[1]...)) || len(bearer[1]) != len("tok-3f9a8b7c6d5e") {
		t.Errorf("pseudonyms not consistent:\n%q\n%q", got[0].Response, got[1].Request)
	}
	if !bytes.Contains(got[0].Request, []byte("Cookie: theme=~p")) || !bytes.Contains(got[0].Response, []byte("; Path=/; HttpOnly\r\n")) ||
		!got[0].Redacted || !got[1].Redacted {
		t.Errorf("request %q\nresponse %q", got[0].Request, got[0].Response)
	}
	req, err := got[0].ParseRequest()
	if err != nil || string(req.Method()) != "POST" || string(req.Body()) != "hi" {
		t.Errorf("parse: %v", err)
	}
}

// TestCorruptLengthIsSkipped corrupts the length field of a record in the
// middle so that it claims more bytes than the file holds: only that
// record is lost, not every record after it.
func TestCorruptLengthIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l"+Ext)
	recs := sampleRecords()
	writeAll(t, path, recs)
	data, _ := os.ReadFile(path)
	off := len(FileMagic)
	for range 3 {
		_, n, err := parseFrame(data[off:])
		if err != nil {
			t.Fatal(err)
		}
		off += n
	}
	binary.BigEndian.PutUint32(data[off+4:], uint32(len(data))) // past the end of the file
	os.WriteFile(path, data, 0o644)
	got, rd := readAll(t, path)
	want := append(append([]Record(nil), recs[:3]...), recs[4:]...)
	if !reflect.DeepEqual(got, want) || rd.Skipped == 0 || rd.Torn != 0 {
		t.Errorf("read %d records, skipped %d, torn %d; want %d records", len(got), rd.Skipped, rd.Torn, len(want))
	}
}

// TestLargeBody records a request and a response whose bodies are over
// the parser's default limit, as `record` does under a larger max_body:
// their credentials are redacted and the request still parses for replay.
func TestLargeBody(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 11<<20)
	path := filepath.Join(t.TempDir(), "big"+Ext)
	w, _ := Create(WriterOptions{Path: path, Redact: DefaultRedact})
	w.Write(Record{Client: netip.MustParseAddrPort("10.0.0.1:1"), Server: netip.MustParseAddrPort("10.0.0.2:80"),
		Request:     append(fmt.Appendf(nil, "POST /upload HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cret\r\nContent-Length: %d\r\n\r\n", len(body)), body...),
		HasResponse: true, Status: 200,
		Response: append(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nSet-Cookie: sid=s3cret\r\nContent-Length: %d\r\n\r\n", len(body)), body...)})
	w.Close()
	got, _ := readAll(t, path)
	if bytes.Contains(got[0].Request, []byte("s3cret")) || bytes.Contains(got[0].Response, []byte("s3cret")) {
		t.Error("a credential was written to the recording")
	}
	req, err := got[0].ParseRequest()
	if err != nil || len(req.Body()) != len(body) || !got[0].Redacted {
		t.Errorf("parse: %v, redacted %v", err, got[0].Redacted)
	}
}

// A request recorded under a max_body above the default (here 12 MiB of
// body) reads back and parses whole: the recording, not the default
// limit, bounds a recorded message.
func TestLargeRecordedRequestReplays(t *testing.T) {
	body := bytes.Repeat([]byte("b"), 12<<20)
	raw := append(fmt.Appendf(nil, "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n", len(body)), body...)
	path := filepath.Join(t.TempDir(), "big"+Ext)
	writeAll(t, path, []Record{{Start: 1, End: 2, Conn: 1, Request: raw,
		Client: netip.MustParseAddrPort("10.0.0.1:1000"), Server: netip.MustParseAddrPort("10.0.0.2:80")}})
	got, _ := readAll(t, path)
	if len(got) != 1 {
		t.Fatalf("read back %d records, want 1", len(got))
	}
	rec := got[0]
	req, err := rec.ParseRequest()
	if err != nil {
		t.Fatalf("a 12 MiB body does not parse: %v", err)
	}
	if !bytes.Equal(req.Raw, raw) || len(req.Body()) != len(body) {
		t.Errorf("parsed %d bytes with a %d-byte body, want %d and %d", len(req.Raw), len(req.Body()), len(raw), len(body))
	}
}

// parseFrame parses one frame with a parser of its own.
func parseFrame(b []byte) (Record, int, error) { return new(frameParser).parse(b) }
