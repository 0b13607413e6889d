// Package source reads captured exchanges from files of any kind shadowtap
// knows: capture files (pcap or pcapng, optionally gzipped; VXLAN, Geneve
// or plain), shadowtap recordings, and GoReplay files. Each yields
// recording.Records in capture order, so that replay, record and inspect
// treat them alike.
package source

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/shadowtap/shadowtap/internal/engine"
	"github.com/shadowtap/shadowtap/internal/goreplay"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/pcapfile"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/reassembly"
	"github.com/shadowtap/shadowtap/internal/recording"
)

// Kind is a file's format.
type Kind string

const (
	Capture   Kind = "capture"
	Recording Kind = "recording"
	GoReplay  Kind = "goreplay"
)

// Source yields exchanges.
type Source interface {
	Next() (recording.Record, error) // io.EOF after the last
	Close() error
}

// Options configure how capture files are read.
type Options struct {
	// Engine decodes, reassembles and extracts a capture file's exchanges:
	// pipeline.Derive's Stages.Files, the configuration's ports, VNIs,
	// bounds and body limit with FilePause as the idle and handshake
	// timeouts, and PairResponses to pair production's answers (record,
	// inspect, verify). Left zero, DefaultEngine.
	Engine engine.Config
	Log    *slog.Logger
	// Identities decrypt encrypted recordings (age); without one that was
	// a recipient, such a file cannot be read (recording.ErrEncrypted).
	Identities []age.Identity
}

// FilePause is how long a connection in a capture file may pause, idle or
// before its first request, and still be followed: a file may have long
// pauses (a capture started before a quiet connection's next request, a
// slow client), and its end flushes every flow, so no timer is needed to
// bound memory as live capture needs one.
const FilePause = time.Hour

// DefaultEngine reads a capture file with the default bounds and limits,
// requests to port 80, responses not paired.
var DefaultEngine = func() engine.Config {
	r := reassembly.DefaultOptions
	r.IdleTimeout, r.HandshakeTimeout = FilePause, FilePause
	return engine.Config{Ports: []uint16{80}, Reassembly: r, HTTP: httpstream.DefaultOptions}
}()

// Detect returns the kind of the file at path. An encrypted recording is
// a Recording: telling it needs no key.
func Detect(path string) (Kind, error) {
	if recording.IsRecording(path) || recording.IsEncrypted(path) {
		return Recording, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	head := make([]byte, 512)
	n, _ := io.ReadFull(r, head)
	head = head[:n]
	if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		f.Seek(0, io.SeekStart)
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", err
		}
		head = make([]byte, 512)
		n, _ = io.ReadFull(zr, head)
		head = head[:n]
	}
	switch {
	case len(head) >= 4 && (bytes.Equal(head[:4], []byte{0xa1, 0xb2, 0xc3, 0xd4}) || bytes.Equal(head[:4], []byte{0xd4, 0xc3, 0xb2, 0xa1}) ||
		bytes.Equal(head[:4], []byte{0xa1, 0xb2, 0x3c, 0x4d}) || bytes.Equal(head[:4], []byte{0x4d, 0x3c, 0xb2, 0xa1}) ||
		bytes.Equal(head[:4], []byte{0x0a, 0x0d, 0x0d, 0x0a})):
		return Capture, nil
	case goreplay.LooksLike(head):
		return GoReplay, nil
	}
	return "", fmt.Errorf("%s: not a capture file, a shadowtap recording or a GoReplay file", path)
}

// Open opens a file of any known kind.
func Open(path string, opts Options) (Source, Kind, error) {
	return open(path, opts, new(atomic.Int64))
}

// open opens a file of any known kind, adding the bytes read from it to
// read (the reading may happen on another goroutine).
func open(path string, opts Options, read *atomic.Int64) (Source, Kind, error) {
	kind, err := Detect(path)
	if err != nil {
		return nil, "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	in := countedFile{f, read}
	switch kind {
	case Recording:
		rd, err := recording.NewReader(in, path, opts.Identities...)
		return rd, kind, err
	case GoReplay:
		s, err := newGoReplay(in)
		return s, kind, err
	}
	s, err := newCapture(in, opts)
	return s, kind, err
}

// countedFile counts the bytes read from a file, for progress.
type countedFile struct {
	f    *os.File
	read *atomic.Int64
}

func (c countedFile) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	c.read.Add(int64(n))
	return n, err
}

func (c countedFile) Close() error { return c.f.Close() }

// CaptureSource extracts exchanges from a capture file with the engine.
type CaptureSource struct {
	ch     chan recording.Record
	done   chan struct{}
	errc   chan error
	file   io.Closer
	once   sync.Once // Close may be called from several goroutines
	Engine engine.Stats
	File   pcapfile.Stats
	// VNIs counts datagrams per VXLAN or Geneve network id; read it (and
	// File) after Next returned io.EOF.
	VNIs map[uint32]int
}

// vniCounter counts tunnel network ids on their way to the engine.
type vniCounter struct {
	*engine.Engine
	vnis map[uint32]int
}

func (v vniCounter) HandleVXLAN(outer netip.Addr, b []byte, ts int64) {
	if len(b) >= 8 {
		v.vnis[uint32(b[4])<<16|uint32(b[5])<<8|uint32(b[6])]++
	}
	v.Engine.HandleVXLAN(outer, b, ts)
}

func (v vniCounter) HandleGeneve(outer netip.Addr, b []byte, ts int64) {
	if len(b) >= 8 {
		v.vnis[uint32(b[4])<<16|uint32(b[5])<<8|uint32(b[6])]++
	}
	v.Engine.HandleGeneve(outer, b, ts)
}

// OpenCapture starts extracting from the capture file at path.
func OpenCapture(path string, opts Options) (*CaptureSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return newCapture(countedFile{f, new(atomic.Int64)}, opts)
}

// newCapture starts extracting from the capture file f.
func newCapture(f countedFile, opts Options) (*CaptureSource, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &CaptureSource{ch: make(chan recording.Record, 1024), done: make(chan struct{}), errc: make(chan error, 1), file: f, VNIs: map[uint32]int{}}
	cfg := opts.Engine
	if cfg.Reassembly == (reassembly.Options{}) {
		cfg = DefaultEngine
	}
	eng := engine.New(cfg, &captureSink{s: s, pairing: cfg.PairResponses}, &s.Engine, ratelog.New(log, 10*time.Second))
	go func() {
		defer f.Close()
		st, err := pcapfile.PlayReader(stopReader{f, s.done}, 4789, vniCounter{eng, s.VNIs})
		if errors.Is(err, errStopped) || errors.Is(err, os.ErrClosed) {
			err = nil // Close asked for it
		}
		s.File = st
		s.errc <- err
		close(s.ch)
	}()
	return s, nil
}

// Next returns the next exchange.
func (s *CaptureSource) Next() (recording.Record, error) {
	r, ok := <-s.ch
	if !ok {
		if err := <-s.errc; err != nil {
			s.errc <- err
			return recording.Record{}, err
		}
		s.errc <- nil
		return recording.Record{}, io.EOF
	}
	return r, nil
}

// Close stops reading the file at once (Ctrl-C on a large capture must
// not wait for it to be decoded to its end) and returns when the decoder
// has stopped.
func (s *CaptureSource) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.file.Close() // unblocks a read in progress (a pipe, a slow disk)
	})
	for range s.ch {
	}
	return nil
}

var errStopped = errors.New("source: closed")

// stopReader ends a file's decoding once done is closed.
type stopReader struct {
	r    io.Reader
	done <-chan struct{}
}

func (r stopReader) Read(b []byte) (int, error) {
	select {
	case <-r.done:
		return 0, errStopped
	default:
	}
	return r.r.Read(b)
}

type captureSink struct {
	s       *CaptureSource
	pairing bool
}

func (c *captureSink) send(r recording.Record) {
	select {
	case c.s.ch <- r:
	case <-c.s.done:
	}
}

func (c *captureSink) Submit(_ uint64, r *httpstream.Request) {
	if !c.pairing {
		c.send(recording.FromExchange(r, nil))
	}
}

func (c *captureSink) EndConn(uint64) {}

func (c *captureSink) Response(_ uint64, req *httpstream.Request, resp *httpstream.Response) {
	c.send(recording.FromExchange(req, resp))
}

// goReplaySource reads a GoReplay file: each request payload becomes an
// exchange of its own connection; an original response (type 2) that
// directly follows its request is attached to it.
type goReplaySource struct {
	f    countedFile
	r    *goreplay.Reader
	next *goreplay.Payload
	n    uint64
}

func newGoReplay(f countedFile) (*goReplaySource, error) {
	r, err := goreplay.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &goReplaySource{f: f, r: r}, nil
}

func (g *goReplaySource) read() (goreplay.Payload, error) {
	if g.next != nil {
		p := *g.next
		g.next = nil
		return p, nil
	}
	return g.r.Next()
}

func (g *goReplaySource) Next() (recording.Record, error) {
	for {
		p, err := g.read()
		if err != nil {
			return recording.Record{}, err
		}
		if p.Kind != goreplay.Request {
			continue
		}
		g.n++
		rec := recording.Record{Start: p.Time, End: p.Time, Conn: g.n, Request: p.Data}
		q, err := g.r.Next()
		switch {
		case errors.Is(err, io.EOF):
		case err != nil:
			return rec, nil
		case q.Kind == goreplay.Response && q.ID == p.ID:
			rec.HasResponse, rec.Response = true, q.Data
			rec.RespStart = p.Time + max(q.Latency, 0)
			rec.RespEnd = rec.RespStart
			rec.Status = statusOf(q.Data)
		default:
			g.next = &q
		}
		return rec, nil
	}
}

func statusOf(resp []byte) int {
	if len(resp) >= 12 && bytes.HasPrefix(resp, []byte("HTTP/1.")) {
		code := 0
		for _, c := range resp[9:12] {
			if c < '0' || c > '9' {
				return 0
			}
			code = code*10 + int(c-'0')
		}
		return code
	}
	return 0
}

func (g *goReplaySource) Close() error { return g.f.Close() }

// OpenAll returns an opener of the files at paths, read one after another
// as one source, each opened when the previous one ends; it is called
// again for each pass of a replay. Its sources are Sized.
func OpenAll(paths []string, opts Options) func() (Source, error) {
	return func() (Source, error) {
		if len(paths) == 0 {
			return nil, errors.New("no input files")
		}
		return &multiSource{paths: paths, opts: opts, total: Size(paths)}, nil
	}
}

// Size is the files' size in bytes together (as stored: compressed for a
// gzipped file); a file that cannot be read counts nothing.
func Size(paths []string) int64 {
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Sized is a source that knows how far through its files it is: bytes
// read of the files' total size (compressed bytes for a gzipped file).
// Input may be called from any goroutine.
type Sized interface {
	Input() (read, total int64)
}

// Refusing is a source that knows which of its requests it did not
// yield, and why: a capture file's refused framings (bare_lf, ...),
// other protocols, bodies too large, requests lost to gaps.
type Refusing interface {
	Refused() map[string]uint64 // read once the source is done
}

// Refused counts, by reason, the requests the capture file held that
// were not yielded.
func (s *CaptureSource) Refused() map[string]uint64 {
	h := &s.Engine.HTTP
	out := map[string]uint64{}
	for r := range httpstream.NumRejects {
		if n := h.Rejected[r].Load(); n > 0 {
			out[r.String()] += n
		}
	}
	for k := range httpstream.NumStops {
		if n := h.Stopped[k].Load(); n > 0 {
			out[k.String()] += n
		}
	}
	for name, n := range map[string]uint64{"too_large": h.TooLarge.Load(), "lost_to_gap": h.LostToGap.Load(), "incomplete": h.Incomplete.Load()} {
		if n > 0 {
			out[name] += n
		}
	}
	return out
}

// multiSource reads several files one after another.
type multiSource struct {
	paths   []string
	opts    Options
	cur     Source
	read    atomic.Int64 // of every file opened so far
	total   int64
	refused map[string]uint64 // of the files done
}

// Refused sums what the files read so far did not yield.
func (m *multiSource) Refused() map[string]uint64 { return m.refused }

func (m *multiSource) Input() (read, total int64) { return min(m.read.Load(), m.total), m.total }

func (m *multiSource) Next() (recording.Record, error) {
	for {
		if m.cur == nil {
			if len(m.paths) == 0 {
				return recording.Record{}, io.EOF
			}
			s, _, err := open(m.paths[0], m.opts, &m.read)
			if err != nil {
				return recording.Record{}, err
			}
			m.cur, m.paths = s, m.paths[1:]
		}
		r, err := m.cur.Next()
		if errors.Is(err, io.EOF) {
			m.cur.Close()
			if rf, ok := m.cur.(Refusing); ok {
				for k, n := range rf.Refused() {
					if m.refused == nil {
						m.refused = map[string]uint64{}
					}
					m.refused[k] += n
				}
			}
			m.cur = nil
			continue
		}
		return r, err
	}
}

func (m *multiSource) Close() error {
	if m.cur != nil {
		return m.cur.Close()
	}
	return nil
}
