package source

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/shadowtap/shadowtap/internal/recording"
)

// Close stops a capture file's decoding at once, even mid-read: here the
// "file" is a pipe whose writer never finishes, as a huge capture or a slow
// disk would look to an impatient Ctrl-C.
func TestCloseStopsDecodingPromptly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endless.pcap")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("no FIFO: %v", err)
	}
	writer := make(chan *os.File, 1)
	go func() {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			writer <- nil
			return
		}
		// A pcap header (Ethernet, microseconds), then silence.
		hdr := make([]byte, 24)
		binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
		binary.LittleEndian.PutUint16(hdr[4:], 2)
		binary.LittleEndian.PutUint16(hdr[6:], 4)
		binary.LittleEndian.PutUint32(hdr[16:], 65535)
		binary.LittleEndian.PutUint32(hdr[20:], 1)
		w.Write(hdr)
		writer <- w
	}()
	src, err := OpenCapture(path, Options{Engine: DefaultEngine})
	if err != nil {
		t.Fatal(err)
	}
	w := <-writer
	if w == nil {
		t.Fatal("could not open the pipe for writing")
	}
	defer w.Close()
	time.Sleep(50 * time.Millisecond) // the decoder is now waiting for packets
	closed := make(chan struct{})
	go func() { src.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close waited for the file to end")
	}
	if _, err := src.Next(); err != io.EOF {
		t.Errorf("Next after Close: %v, want io.EOF", err)
	}
}

// An encrypted recording is a recording to Detect, with or without its
// key; it reads with its identity, through OpenAll as through Open, and
// without it fails with recording.ErrEncrypted.
func TestEncryptedRecording(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r"+recording.Ext)
	w, err := recording.Create(recording.WriterOptions{Path: path, EncryptTo: []age.Recipient{id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		w.Write(recording.Record{Start: int64(i), End: int64(i), Conn: 1, Index: i, Request: fmt.Appendf(nil, "GET /%d HTTP/1.1\r\n\r\n", i)})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if kind, err := Detect(path); kind != Recording || err != nil {
		t.Fatalf("Detect: %q, %v", kind, err)
	}
	src, err := OpenAll([]string{path, path}, Options{Identities: []age.Identity{id}})()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	n := 0
	for {
		r, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("GET /%d ", n%3); !bytes.HasPrefix(r.Request, []byte(want)) {
			t.Errorf("record %d: %q", n, r.Request)
		}
		n++
	}
	if n != 6 {
		t.Errorf("%d records, want 6", n)
	}
	if _, _, err := Open(path, Options{}); !errors.Is(err, recording.ErrEncrypted) {
		t.Errorf("without the identity: %v", err)
	}
}
