package recording

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"filippo.io/age"
)

// An encrypted recording is an age file (age-encryption.org/v1) whose
// plaintext is a recording file: FileMagic, then the frames. age seals its
// payload in 64 KiB chunks, the last one marked as last when the writer is
// closed, so a file cut short by a crash ends without its last chunk, or in
// a chunk cut in two: the reader takes either as the file's end (a torn
// tail), and every record in a whole chunk before it reads back.

// ageIntro starts every age file: its header's first line.
const ageIntro = "age-encryption.org/v1\n"

// ErrEncrypted is wrapped by the error for an encrypted recording that the
// identities given (perhaps none) cannot decrypt: a missing key, not a
// damaged file.
var ErrEncrypted = errors.New("encrypted")

// IsEncrypted reports whether the file at path starts like an age file,
// which is how an encrypted recording starts.
func IsEncrypted(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := make([]byte, len(ageIntro))
	_, err = io.ReadFull(f, h)
	return err == nil && string(h) == ageIntro
}

// looksEncrypted reports whether head, a file's first bytes, can be the
// start of an age file.
func looksEncrypted(head []byte) bool {
	n := min(len(head), len(ageIntro))
	return n > 0 && string(head[:n]) == ageIntro[:n]
}

// countingReader counts the bytes read from a file and keeps its first
// error other than io.EOF, so that a failing disk is told apart from a
// stream that does not authenticate.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && c.err == nil {
		c.err = err
	}
	return n, err
}

// sealedFile reads the plaintext of an encrypted recording. A chunk that
// does not decrypt, or a stream that ends before its last chunk, ends the
// file: the ciphertext from that chunk on is counted in torn.
type sealedFile struct {
	plain io.Reader
	file  *countingReader
	// buf is the reader age parses the header from and reads the chunks
	// through: age reads through a *bufio.Reader it is given rather than
	// wrapping it in its own, so file.n - buf.Buffered() is the offset in
	// the file of the next byte age reads.
	buf   *bufio.Reader
	torn  int64
	done  bool
	close func() error // closes the file
}

func (s *sealedFile) Close() error { return s.close() }

// openSealed decrypts the age file f (named name, for errors), whose first
// bytes, head, were already read from it, with ids. On an error it closes
// f; otherwise the sealed file's Close does.
func openSealed(head []byte, f io.ReadCloser, name string, ids []age.Identity) (s *sealedFile, err error) {
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if len(ids) == 0 {
		return nil, fmt.Errorf("recording: %s is %w (age) and no identity was given to decrypt it", name, ErrEncrypted)
	}
	c := &countingReader{r: io.MultiReader(bytes.NewReader(head), f)}
	s = &sealedFile{file: c, buf: bufio.NewReaderSize(c, 4096), close: f.Close}
	plain, err := age.Decrypt(s.buf, ids...)
	var noMatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &noMatch):
		return nil, fmt.Errorf("recording: %s is %w (age) to other recipients: none of the identities given decrypts it", name, ErrEncrypted)
	case c.err != nil:
		return nil, fmt.Errorf("recording: %s: %w", name, c.err)
	case err != nil:
		return nil, fmt.Errorf("recording: %s is not a readable encrypted recording: %w", name, err)
	}
	s.plain = plain
	return s, nil
}

// Read reads plaintext. Where the stream stops authenticating it returns
// io.EOF, and the bytes of the file from the chunk that failed to its end
// are torn; an error reading the file itself is returned as it is.
func (s *sealedFile) Read(b []byte) (int, error) {
	if s.done {
		return 0, io.EOF
	}
	at := s.file.n - int64(s.buf.Buffered())
	n, err := s.plain.Read(b)
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return n, err
	case s.file.err != nil:
		return n, s.file.err
	}
	// The chunk read from at on is cut short, missing (the last one was
	// never written) or damaged: what the file holds from there on cannot
	// be read, and is counted.
	io.Copy(io.Discard, s.buf)
	if s.file.err != nil {
		return n, s.file.err
	}
	s.torn, s.done = s.file.n-at, true
	return n, io.EOF
}

// sealedWriter is a file written through age: the plaintext never reaches
// the disk, only the header and the sealed chunks.
type sealedWriter struct {
	f   *os.File
	enc io.WriteCloser
}

// seal starts an age stream to recipients on the new, empty file f. The
// header (and the stream's nonce), which age writes a line at a time, goes
// to the file in one write, so that a crash does not leave half a header.
func seal(f *os.File, recipients []age.Recipient) (*sealedWriter, error) {
	var header bytes.Buffer
	to := &redirect{w: &header}
	enc, err := age.Encrypt(to, recipients...)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(header.Bytes()); err != nil {
		return nil, err
	}
	to.w = f
	return &sealedWriter{f: f, enc: enc}, nil
}

// redirect writes to w, which can be changed.
type redirect struct{ w io.Writer }

func (r *redirect) Write(b []byte) (int, error) { return r.w.Write(b) }

func (s *sealedWriter) Write(b []byte) (int, error) { return s.enc.Write(b) }

// Close seals the last chunk, then closes the file: without the last
// chunk the file reads as torn where the previous chunk ended.
func (s *sealedWriter) Close() error {
	err := s.enc.Close()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}
