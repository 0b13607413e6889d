package recording

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// chunk and chunkOverhead are age's STREAM: plaintext is sealed 64 KiB at
// a time, each chunk with a 16-byte tag.
const (
	chunk         = 64 << 10
	chunkOverhead = 16
)

func newIdentity(t testing.TB) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// bulkyRecords are n exchanges whose bodies do not compress, so that a
// recording of them spans several of age's chunks.
func bulkyRecords(n int) []Record {
	rng := rand.New(rand.NewPCG(1, 2))
	recs := sampleRecords()[:1]
	for i := range n {
		body := make([]byte, 3000+i*37)
		for j := range body {
			body[j] = 'a' + byte(rng.IntN(26))
		}
		r := recs[0]
		r.Start += int64(i) * 1e6
		r.End = r.Start + 1000
		r.Request = fmt.Appendf(nil, "POST /bulk/%d HTTP/1.1\r\nHost: shop\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
		recs = append(recs, r)
	}
	return recs[1:]
}

func writeWith(t *testing.T, opts WriterOptions, recs []Record) {
	t.Helper()
	w, err := Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// readRest reads rd to its end, or to its first error.
func readRest(rd *Reader) ([]Record, error) {
	var out []Record
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

// drain reads rd to its end; an error fails the test.
func drain(t *testing.T, rd *Reader) []Record {
	t.Helper()
	out, err := readRest(rd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameRecords(a, b []Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameRecord(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestEncryptedRoundTrip: an encrypted recording reads back with its
// identity exactly as the clear one does, holds none of the requests in
// clear, is its owner's alone, and without the identity (or with another)
// fails with ErrEncrypted.
func TestEncryptedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	id, other := newIdentity(t), newIdentity(t)
	recs := sampleRecords()
	enc := filepath.Join(dir, "enc"+Ext)
	writeWith(t, WriterOptions{Path: enc, EncryptTo: []age.Recipient{other.Recipient(), id.Recipient()}}, recs)
	data, _ := os.ReadFile(enc)
	if !strings.HasPrefix(string(data), ageIntro) || !IsEncrypted(enc) || IsRecording(enc) {
		t.Fatalf("not an age file: %q", data[:min(len(data), 40)])
	}
	for _, r := range recs {
		if line := firstLine(r.Request); bytes.Contains(data, line) {
			t.Errorf("%q in clear in the encrypted file", line)
		}
	}
	if fi, _ := os.Stat(enc); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	for _, ids := range [][]age.Identity{{id}, {other}, {newIdentity(t), id}} {
		rd, err := OpenDecrypting(ids, enc)
		if err != nil {
			t.Fatal(err)
		}
		if got := drain(t, rd); !sameRecords(got, recs) || rd.Torn != 0 || rd.Skipped != 0 {
			t.Errorf("read %d records (torn %d, skipped %d), wrote %d", len(got), rd.Torn, rd.Skipped, len(recs))
		}
	}
	for _, ids := range [][]age.Identity{nil, {newIdentity(t)}} {
		rd, err := OpenDecrypting(ids, enc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Next(); !errors.Is(err, ErrEncrypted) || !strings.Contains(err.Error(), enc) {
			t.Errorf("%d identities: %v", len(ids), err)
		}
	}
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

// An age stream is sealed when it is closed: an encrypted recording is
// never appended to, and clear records are never appended to one.
func TestEncryptedNeverAppended(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r"+Ext)
	to := []age.Recipient{newIdentity(t).Recipient()}
	writeWith(t, WriterOptions{Path: path, EncryptTo: to}, sampleRecords()[:2])
	before, _ := os.ReadFile(path)
	if _, err := Create(WriterOptions{Path: path, EncryptTo: to}); err == nil || !strings.Contains(err.Error(), "never appended") {
		t.Errorf("encrypted append: %v", err)
	}
	if _, err := Create(WriterOptions{Path: path}); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("clear append to an encrypted file: %v", err)
	}
	clear := filepath.Join(t.TempDir(), "c"+Ext)
	writeAll(t, clear, sampleRecords()[:1])
	if _, err := Create(WriterOptions{Path: clear, EncryptTo: to}); err == nil {
		t.Error("encrypted records appended to a clear recording")
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the refused writers changed the file")
	}
}

// sealed is one recording written both ways: the clear file is the
// encrypted one's plaintext (the writer is deterministic), and header is
// the length of the age header with the stream's nonce.
type sealed struct {
	plain, enc []byte
	header     int
	id         *age.X25519Identity
}

func sealRecords(t *testing.T, recs []Record) sealed {
	t.Helper()
	dir := t.TempDir()
	s := sealed{id: newIdentity(t)}
	writeWith(t, WriterOptions{Path: filepath.Join(dir, "c"+Ext)}, recs)
	writeWith(t, WriterOptions{Path: filepath.Join(dir, "e"+Ext), EncryptTo: []age.Recipient{s.id.Recipient()}}, recs)
	s.plain, _ = os.ReadFile(filepath.Join(dir, "c"+Ext))
	s.enc, _ = os.ReadFile(filepath.Join(dir, "e"+Ext))
	s.header = headerLen(len(s.enc), len(s.plain))
	return s
}

// headerLen is the length of an age file's header and nonce, from the
// file's length and its plaintext's.
func headerLen(enc, plain int) int {
	chunks := max(1, (plain+chunk-1)/chunk)
	return enc - plain - chunks*chunkOverhead
}

// expect is what reading enc, the encrypted file cut or damaged so that
// its chunks from the k-th on do not decrypt, must give: the records of
// the clear file cut after k chunks of plaintext, and as torn the clear
// reader's torn bytes and the ciphertext from the k-th chunk on.
func expect(t testing.TB, plain []byte, header, k, encLen int) (recs []Record, torn, skipped int) {
	t.Helper()
	whole := k*chunk >= len(plain)
	if !whole {
		plain = plain[:k*chunk]
	}
	if len(plain) > 0 {
		rd := &Reader{}
		if err := rd.start(io.NopCloser(bytes.NewReader(plain)), "clear"); err != nil {
			t.Fatalf("clear prefix: %v", err)
		}
		var err error
		if recs, err = readRest(rd); err != nil {
			t.Fatalf("clear prefix: %v", err)
		}
		torn, skipped = rd.Torn, rd.Skipped
	}
	if !whole {
		torn += encLen - (header + k*(chunk+chunkOverhead))
	}
	return recs, torn, skipped
}

// readSealed reads an encrypted recording's bytes with id.
func readSealed(data []byte, id age.Identity) (recs []Record, rd *Reader, err error) {
	rd, err = NewReader(io.NopCloser(bytes.NewReader(data)), "enc", id)
	if err != nil {
		return nil, nil, err
	}
	recs, err = readRest(rd)
	return recs, rd, err
}

// TestEncryptedTornTail cuts an encrypted recording of several chunks at
// every chunk boundary and around it, as a crash does (the last chunk is
// only written when the writer is closed): every record in the whole
// chunks before the cut reads back, no error, and the rest is counted.
func TestEncryptedTornTail(t *testing.T) {
	s := sealRecords(t, bulkyRecords(100))
	chunks := (len(s.plain) + chunk - 1) / chunk
	if chunks < 4 {
		t.Fatalf("the recording spans %d chunks; want several", chunks)
	}
	var cuts []int
	for k := range chunks {
		at := s.header + k*(chunk+chunkOverhead)
		cuts = append(cuts, at, at+1, at+chunkOverhead, at+chunk/2, at+chunk+chunkOverhead-1)
	}
	for _, cut := range cuts {
		if cut >= len(s.enc) {
			continue
		}
		k := (cut - s.header) / (chunk + chunkOverhead)
		got, rd, err := readSealed(s.enc[:cut], s.id)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		want, torn, skipped := expect(t, s.plain, s.header, k, cut)
		if !sameRecords(got, want) || rd.Torn != torn || rd.Skipped != skipped {
			t.Fatalf("cut at %d (%d whole chunks): %d records, torn %d, skipped %d; want %d, %d, %d",
				cut, k, len(got), rd.Torn, rd.Skipped, len(want), torn, skipped)
		}
		if k > 0 && len(got) == 0 {
			t.Fatalf("cut at %d: nothing read from %d whole chunks", cut, k)
		}
	}
	// Cut inside the header: not a recording that can be read, an error.
	if _, _, err := readSealed(s.enc[:s.header-20], s.id); err == nil {
		t.Error("a file cut in its header read without an error")
	}
}

// TestEncryptedDamagedChunk: a damaged chunk ends the file there, as a
// torn tail does; the chunks before it read back.
func TestEncryptedDamagedChunk(t *testing.T) {
	s := sealRecords(t, bulkyRecords(60))
	for _, k := range []int{0, 1, 2} {
		data := bytes.Clone(s.enc)
		data[s.header+k*(chunk+chunkOverhead)+100] ^= 1
		got, rd, err := readSealed(data, s.id)
		if err != nil {
			t.Fatalf("chunk %d damaged: %v", k, err)
		}
		want, torn, skipped := expect(t, s.plain, s.header, k, len(data))
		if !sameRecords(got, want) || rd.Torn != torn || rd.Skipped != skipped {
			t.Errorf("chunk %d damaged: %d records, torn %d; want %d, %d", k, len(got), rd.Torn, len(want), torn)
		}
	}
}

// failingFile returns its bytes, then a read error: a failing disk is an
// error, not a torn tail.
type failingFile struct{ r io.Reader }

var errDisk = errors.New("input/output error")

func (f failingFile) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if errors.Is(err, io.EOF) {
		return n, errDisk
	}
	return n, err
}

func (failingFile) Close() error { return nil }

func TestEncryptedReadError(t *testing.T) {
	s := sealRecords(t, bulkyRecords(60))
	rd, err := NewReader(failingFile{bytes.NewReader(s.enc[:len(s.enc)/2])}, "enc", s.id)
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := rd.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("a read error taken for the end of the file")
		}
		if err != nil {
			if !errors.Is(err, errDisk) {
				t.Errorf("error %v, want the disk's", err)
			}
			return
		}
	}
}

// TestEncryptedWriterNoClearFile: while an encrypted, rotating recording
// is written, and after it is closed or discarded, the directory holds
// only its recording files, each an age file holding none of the requests
// in clear: no temporary file, no clear copy.
func TestEncryptedWriterNoClearFile(t *testing.T) {
	dir := t.TempDir()
	recs := bulkyRecords(120)
	check := func(when string, want int) {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if want >= 0 && len(ents) != want {
			t.Errorf("%s: %d files, want %d", when, len(ents), want)
		}
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(e.Name(), Ext) || !strings.HasPrefix(string(data), ageIntro) {
				t.Errorf("%s: %s is not an encrypted recording", when, e.Name())
			}
			for _, r := range recs {
				if bytes.Contains(data, firstLine(r.Request)) {
					t.Fatalf("%s: %s holds %q in clear", when, e.Name(), firstLine(r.Request))
				}
			}
		}
	}
	id := newIdentity(t)
	kept := 0 // the first writer's files
	for _, discard := range []bool{false, true} {
		w, err := Create(WriterOptions{Path: filepath.Join(dir, fmt.Sprintf("r%v%s", discard, Ext)), MaxBytes: 150 << 10,
			EncryptTo: []age.Recipient{id.Recipient()}})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range recs {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
			if i%10 == 0 {
				check(fmt.Sprintf("after record %d", i), -1)
			}
		}
		if len(w.created) < 3 {
			t.Fatalf("%d files: want rotation", len(w.created))
		}
		if discard {
			w.Discard()
			check("discarded", kept) // its files are gone, the first writer's stay
		} else {
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			kept = len(w.created)
			check("closed", kept)
			// Each file is sealed: together they read back whole.
			rd, err := OpenDecrypting([]age.Identity{id}, dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := drain(t, rd); !sameRecords(got, recs) || rd.Torn != 0 {
				t.Errorf("rotated files read back %d records (torn %d), wrote %d", len(got), rd.Torn, len(recs))
			}
		}
	}
}
