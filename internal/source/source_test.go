package source

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
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
