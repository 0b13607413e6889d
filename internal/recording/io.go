package recording

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// Ext is the recording files' extension.
const Ext = ".strec"

// Reader reads records from one or more files in order.
type Reader struct {
	files []string
	ids   []age.Identity
	f     io.ReadCloser // the file, or its plaintext (a *sealedFile)
	buf   []byte
	eof   bool
	frame frameParser
	// Torn counts bytes at the end of a file that did not make a whole
	// record (a crash while writing), and in an encrypted file the
	// ciphertext from the chunk that did not decrypt to its end; Skipped
	// counts bytes of corrupt frames passed over to reach the next valid
	// one.
	Torn, Skipped int
}

// Open returns a reader over paths; a directory stands for its recording
// files in name (and so time) order.
func Open(paths ...string) (*Reader, error) { return OpenDecrypting(nil, paths...) }

// OpenDecrypting is Open for recordings that may be encrypted: ids
// decrypt those that are (any one of them that was a recipient does).
func OpenDecrypting(ids []age.Identity, paths ...string) (*Reader, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("recording: %w", err)
		}
		if st.IsDir() {
			m, _ := filepath.Glob(filepath.Join(p, "*"+Ext))
			slices.Sort(m)
			files = append(files, m...)
		} else {
			files = append(files, p)
		}
	}
	if len(files) == 0 {
		return nil, errors.New("recording: no recording files")
	}
	return &Reader{files: files, ids: ids}, nil
}

// NewReader returns a reader over one recording file already open (named
// name, for errors); the reader closes it. ids decrypt it if it is
// encrypted.
func NewReader(f io.ReadCloser, name string, ids ...age.Identity) (*Reader, error) {
	rd := &Reader{ids: ids}
	if err := rd.start(f, name); err != nil {
		return nil, err
	}
	return rd, nil
}

// IsRecording reports whether the file at path starts like a recording.
func IsRecording(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var h [16]byte
	_, err = io.ReadFull(f, h[:])
	return err == nil && h == FileMagic
}

// Next returns the next record, or io.EOF after the last. A record's
// byte slices stay valid after later calls.
func (rd *Reader) Next() (Record, error) {
	for {
		if rd.f == nil {
			if len(rd.files) == 0 {
				return Record{}, io.EOF
			}
			if err := rd.openNext(); err != nil {
				return Record{}, err
			}
		}
		r, n, err := rd.frame.parse(rd.buf)
		switch {
		case err == nil:
			rd.buf = rd.buf[n:]
			return r, nil
		case errors.Is(err, io.ErrUnexpectedEOF) && !rd.eof:
			if err := rd.fill(); err != nil {
				return Record{}, err
			}
		case errors.Is(err, io.ErrUnexpectedEOF):
			// The file ends inside a frame: a torn last record, or a
			// corrupt length field that claims more than the file holds.
			// Only in the second case does a whole frame follow.
			if i := rd.frame.next(rd.buf); i > 0 {
				rd.Skipped += i
				rd.buf = rd.buf[i:]
				continue
			}
			rd.Torn += len(rd.buf)
			rd.closeFile()
		default:
			// A corrupt frame: pass over it to the next frame start.
			i := bytes.Index(rd.buf[1:], []byte{frameMagic >> 8, frameMagic & 0xff})
			if i < 0 {
				keep := min(len(rd.buf), 1)
				rd.Skipped += len(rd.buf) - keep
				rd.buf = rd.buf[len(rd.buf)-keep:]
				if rd.eof {
					rd.Torn += len(rd.buf)
					rd.closeFile()
				} else if err := rd.fill(); err != nil {
					return Record{}, err
				}
				continue
			}
			rd.Skipped += i + 1
			rd.buf = rd.buf[i+1:]
		}
	}
}

// next returns the offset in b, past its first byte, of the first whole
// valid frame, or -1.
func (fp *frameParser) next(b []byte) int {
	magic := []byte{frameMagic >> 8, frameMagic & 0xff}
	for off := 1; off < len(b); {
		i := bytes.Index(b[off:], magic)
		if i < 0 {
			return -1
		}
		off += i
		if _, _, err := fp.parse(b[off:]); err == nil {
			return off
		}
		off++
	}
	return -1
}

func (rd *Reader) openNext() error {
	name := rd.files[0]
	rd.files = rd.files[1:]
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	return rd.start(f, name)
}

// start reads the magic of the file f (named name, for errors) and makes
// it the one records are read from.
func (rd *Reader) start(f io.ReadCloser, name string) error {
	var h [16]byte
	n, err := io.ReadFull(f, h[:])
	if err == nil && h == FileMagic {
		rd.f, rd.buf, rd.eof = f, rd.buf[:0], false
		return nil
	}
	if !looksEncrypted(h[:n]) {
		f.Close()
		return fmt.Errorf("recording: %s is not a shadowtap recording", name)
	}
	s, err := openSealed(h[:n], f, name, rd.ids)
	if err != nil {
		return err
	}
	// The plaintext is a recording file, its magic first.
	n, err = io.ReadFull(s, h[:])
	switch {
	case err == nil && h == FileMagic:
	case err == nil:
		s.Close()
		return fmt.Errorf("recording: %s decrypts, but not to a shadowtap recording", name)
	case s.done:
		// Cut before its first chunk was whole: no record to read.
		rd.Torn += n
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		s.Close()
		return fmt.Errorf("recording: %s decrypts, but not to a shadowtap recording", name)
	default:
		s.Close()
		return fmt.Errorf("recording: %s: %w", name, err)
	}
	rd.f, rd.buf, rd.eof = s, rd.buf[:0], false
	return nil
}

// readSize is how much fill asks the file for at a time.
const readSize = 256 << 10

// fill reads more of the file after the buffered bytes. It reads into the
// buffer's spare capacity, after every byte already handed out in a record,
// so records returned earlier are never overwritten.
func (rd *Reader) fill() error {
	if cap(rd.buf)-len(rd.buf) < readSize {
		rd.buf = slices.Grow(rd.buf, readSize)
	}
	n, err := rd.f.Read(rd.buf[len(rd.buf):cap(rd.buf)])
	rd.buf = rd.buf[:len(rd.buf)+n]
	if errors.Is(err, io.EOF) {
		rd.eof = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	return nil
}

func (rd *Reader) closeFile() {
	if s, ok := rd.f.(*sealedFile); ok {
		rd.Torn += int(s.torn)
	}
	rd.f.Close()
	rd.f, rd.buf = nil, rd.buf[:0]
}

// Close releases the open file.
func (rd *Reader) Close() error {
	if rd.f != nil {
		rd.closeFile()
	}
	return nil
}

// WriterOptions configure a writer.
type WriterOptions struct {
	Path     string        // the file; with rotation, the name the files are derived from
	MaxBytes int64         // start a new file past this size; 0: never
	MaxAge   time.Duration // start a new file after this long; 0: never
	// Redact names the headers whose values are replaced by pseudonyms
	// (Authorization, Cookie, ... in requests, Set-Cookie in responses),
	// consistent throughout the recording (see Redactor).
	Redact []string
	// EncryptTo, when set, encrypts every file to all of these age
	// recipients, any one of whose identities reads it. Such a file is
	// always a new one (an age stream cannot be appended to), and a crash
	// loses at most its last 64 KiB chunk; MaxBytes counts the bytes
	// before encryption.
	EncryptTo []age.Recipient
	Now       func() time.Time
}

// DefaultRedact are the credential headers redacted unless asked to keep them.
var DefaultRedact = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"}

// Writer appends records; each is written whole with one write, so a
// crash tears at most the last one.
type Writer struct {
	opts    WriterOptions
	f       *os.File
	out     io.WriteCloser // f, or the age stream sealing what is written to f
	name    string
	size    int64
	opened  time.Time
	seq     int
	buf     []byte
	scratch bytes.Buffer
	fw      *flate.Writer
	redact  *Redactor
	created []string // files this writer made (not appended to)
}

// Create opens the (first) file.
func Create(opts WriterOptions) (*Writer, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	fw, _ := flate.NewWriter(nil, flate.DefaultCompression)
	w := &Writer{opts: opts, fw: fw}
	if len(opts.Redact) > 0 {
		w.redact = NewRedactor(opts.Redact)
	}
	return w, w.rotate()
}

func (w *Writer) rotating() bool { return w.opts.MaxBytes > 0 || w.opts.MaxAge > 0 }

// Name returns the file being written.
func (w *Writer) Name() string { return w.name }

func (w *Writer) rotate() error {
	if w.out != nil {
		if err := w.out.Close(); err != nil {
			return fmt.Errorf("recording: %w", err)
		}
	}
	w.name = w.opts.Path
	if w.rotating() {
		w.seq++
		base := strings.TrimSuffix(w.opts.Path, Ext)
		w.name = fmt.Sprintf("%s-%s-%04d%s", base, w.opts.Now().UTC().Format("20060102T150405Z"), w.seq, Ext)
	}
	if len(w.opts.EncryptTo) > 0 {
		return w.createSealed()
	}
	// Production's requests: the owner's alone.
	f, err := os.OpenFile(w.name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("recording: %w", err)
	}
	if st.Size() == 0 {
		w.created = append(w.created, w.name)
		if _, err := f.Write(FileMagic[:]); err != nil {
			f.Close()
			return fmt.Errorf("recording: %w", err)
		}
	} else if IsEncrypted(w.name) {
		f.Close()
		return fmt.Errorf("recording: %s exists and is encrypted: clear records are not appended to it", w.name)
	} else if !IsRecording(w.name) {
		f.Close()
		return fmt.Errorf("recording: %s exists and is not a shadowtap recording", w.name)
	}
	w.f, w.out, w.size, w.opened = f, f, st.Size()+int64(len(FileMagic)), w.opts.Now()
	return nil
}

// createSealed creates the file w.name, new, and starts an age stream on
// it: the header goes to the file at once, and from the magic on every
// byte is encrypted before it is written, so that nothing is ever in
// clear on the disk.
func (w *Writer) createSealed() error {
	f, err := os.OpenFile(w.name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("recording: %s exists: an encrypted recording is never appended to (its stream is sealed when it is closed)", w.name)
	}
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	s, err := seal(f, w.opts.EncryptTo)
	if err == nil {
		_, err = s.Write(FileMagic[:])
	}
	if err != nil {
		f.Close()
		os.Remove(w.name)
		return fmt.Errorf("recording: %s: %w", w.name, err)
	}
	w.created = append(w.created, w.name)
	w.f, w.out, w.size, w.opened = f, s, int64(len(FileMagic)), w.opts.Now()
	return nil
}

// Write appends r, redacting the configured headers first.
func (w *Writer) Write(r Record) error {
	if w.redact != nil {
		r = w.redact.Record(r)
	}
	if w.rotating() && (w.opts.MaxBytes > 0 && w.size >= w.opts.MaxBytes || w.opts.MaxAge > 0 && w.opts.Now().Sub(w.opened) >= w.opts.MaxAge) {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	w.buf = appendFrame(w.buf[:0], &r, &w.scratch, w.fw)
	n, err := w.out.Write(w.buf)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	return nil
}

// Close closes the file; an encrypted one is sealed first.
func (w *Writer) Close() error { return w.out.Close() }

// Discard closes the writer and removes the files it created, so that a
// failed run leaves no partial recording behind (a file it appended to
// keeps what was appended; an encrypted one is always created).
func (w *Writer) Discard() error {
	w.f.Close()
	var errs []error
	for _, name := range w.created {
		if err := os.Remove(name); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parseMessage parses one recorded request or answer with the capture's
// own parser.
func parseMessage(raw []byte, isRequest bool) (*httpstream.Message, bool) {
	m, _, ok := parseFramed(raw, isRequest)
	return m, ok
}

// parseFramed is parseMessage that also says whether the message's body
// is chunked, as the parser that framed it read it.
func parseFramed(raw []byte, isRequest bool) (m *httpstream.Message, chunked, ok bool) {
	if isRequest {
		httpstream.NewParser(messageOptions(raw), &httpstream.Stats{}, func(r *httpstream.Request) {
			if m == nil {
				m, chunked = &r.Message, r.Chunked
			}
		}).Feed(raw, 0)
	} else {
		p := httpstream.NewResponseParser(messageOptions(raw), &httpstream.ResponseStats{}, &httpstream.Stats{},
			func() bool { return false }, func(r *httpstream.Response, _ bool) {
				if m == nil {
					m, chunked = &r.Message, r.Chunked
				}
			})
		p.Feed(raw, 0)
		p.End()
	}
	return m, chunked, m != nil
}
