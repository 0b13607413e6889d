package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/goreplay"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/source"
)

// RecordOptions say where a recording goes and what it reads.
type RecordOptions struct {
	// Inputs are capture files, recordings or GoReplay files; none: the
	// live VXLAN listener, until ctx ends.
	Inputs []string
	Output string
	Format string // "strec" (a shadowtap recording) or "goreplay"
	// MaxBytes and MaxAge rotate a strec recording.
	MaxBytes int64
	MaxAge   time.Duration
	// Redact are the headers whose values are redacted.
	Redact []string
}

// Recorded is what a recording holds.
type Recorded struct {
	Exchanges    int
	WithResponse int // with production's response
	// Dropped counts exchanges the recorder's queue had no room for (live
	// only: the disk fell behind the mirror).
	Dropped uint64
	// Unrepresentable counts exchanges a GoReplay file cannot hold (a
	// body holding its payload separator): skipped, or written without
	// production's response when only the response cannot be held.
	Unrepresentable int
}

// RecordExchanges writes exchanges, with production's answers, to a recording:
// from the live VXLAN listener (through the live pipeline's capture and
// engines, the recorder in place of the targets) or from files.
func RecordExchanges(ctx context.Context, cfg config.Config, log *slog.Logger, opts RecordOptions) (Recorded, error) {
	if err := cfg.ValidateCapture(); err != nil {
		return Recorded{}, err
	}
	var w recordWriter
	var err error
	if opts.Format == "goreplay" {
		if len(cfg.Recordings.EncryptTo) > 0 {
			return Recorded{}, errors.New("a GoReplay file is not encrypted: record a .strec recording")
		}
		w, err = createGoReplay(opts.Output, opts.Redact)
	} else {
		w, err = recording.Create(recording.WriterOptions{Path: opts.Output, MaxBytes: opts.MaxBytes, MaxAge: opts.MaxAge, Redact: opts.Redact,
			EncryptTo: cfg.Recordings.EncryptTo})
	}
	if err != nil {
		return Recorded{}, err
	}
	var out Recorded
	skipLog := ratelog.New(log, 10*time.Second)
	write := func(r recording.Record) error {
		err := w.Write(r)
		switch {
		case errors.Is(err, errRequestUnrepresentable):
			out.Unrepresentable++
			skipLog.Warn("goreplay_request", "exchange skipped: GoReplay's format cannot hold its request", "err", err.Error())
			return nil
		case errors.Is(err, errResponseUnrepresentable):
			out.Unrepresentable++
			skipLog.Warn("goreplay_response", "production's response left out: GoReplay's format cannot hold it", "err", err.Error())
			r.HasResponse, err = false, nil
		}
		if err == nil {
			out.Exchanges++
			if r.HasResponse {
				out.WithResponse++
			}
		}
		return err
	}
	st := Derive(cfg, Record)
	if len(opts.Inputs) > 0 {
		err = copyAll(ctx, source.OpenAll(opts.Inputs, st.Sources()), write)
	} else {
		rec := newRecorder(write)
		var h *Handler
		if h, err = build(st, cfg, log, rec); err == nil {
			err = h.Run(ctx)
		}
		out.Dropped = rec.dropped.Load()
	}
	if err != nil {
		w.Discard() // no partial recording left behind
		return out, err
	}
	return out, w.Close()
}

// copyAll writes every exchange of the sources open opens, until ctx
// ends: then it stops reading (closing a capture file stops its decoding)
// and what was written stays a whole recording.
func copyAll(ctx context.Context, open func() (source.Source, error), write func(recording.Record) error) error {
	src, err := open()
	if err != nil {
		return err
	}
	defer src.Close()
	for ctx.Err() == nil {
		r, err := src.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err == nil {
			err = write(r)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// The recorder's queue: beyond either bound an exchange is dropped and
// counted rather than holding up the engines.
const (
	recordQueue      = 10_000
	recordQueueBytes = 256 << 20
)

// recorder is the live pipeline's recording observer: the engines' sink
// when recording. It takes each request once production's response is
// known (or known to be lost) and queues it; its own goroutine writes the
// queue to the recording, so the engines never wait on the disk.
type recorder struct {
	q        chan recording.Record
	maxBytes int64
	queued   atomic.Int64 // bytes in q
	dropped  atomic.Uint64
	write    func(recording.Record) error
	err      error // the first write error; read after done
	done     chan struct{}
	closing  sync.Once
}

func newRecorder(write func(recording.Record) error) *recorder {
	return newRecorderBounded(write, recordQueue, recordQueueBytes)
}

func newRecorderBounded(write func(recording.Record) error, count int, bytes int64) *recorder {
	return &recorder{q: make(chan recording.Record, count), maxBytes: bytes, write: write, done: make(chan struct{})}
}

func size(r *recording.Record) int64 { return int64(len(r.Request) + len(r.Response)) }

func (r *recorder) Submit(uint64, *httpstream.Request) {}
func (r *recorder) EndConn(uint64)                     {}

// Response queues an exchange; it never blocks. The first exchange is
// taken whatever its size, so that one larger than the byte bound is
// still recorded when the queue is empty.
func (r *recorder) Response(_ uint64, req *httpstream.Request, resp *httpstream.Response) {
	rec := recording.FromExchange(req, resp)
	n := size(&rec)
	if q := r.queued.Add(n); q > r.maxBytes && q != n {
		r.queued.Add(-n)
		r.dropped.Add(1)
		return
	}
	select {
	case r.q <- rec:
	default:
		r.queued.Add(-n)
		r.dropped.Add(1)
	}
}

// start starts the writer goroutine; close ends it.
func (r *recorder) start() {
	go func() {
		defer close(r.done)
		for rec := range r.q {
			r.queued.Add(-size(&rec))
			if r.err == nil {
				r.err = r.write(rec)
			}
		}
	}()
}

// close is called once the engines have flushed: it writes what is
// queued and returns the first write error. A second call returns it
// again.
func (r *recorder) close() error {
	r.closing.Do(func() { close(r.q) })
	<-r.done
	return r.err
}

// recordWriter is where RecordExchanges writes exchanges.
type recordWriter interface {
	Write(recording.Record) error
	Close() error
	Discard() error // close, and remove the files it created: the run failed
}

// goReplayWriter writes exchanges as GoReplay payloads: the request, and
// production's response when known.
type goReplayWriter struct {
	f      *os.File
	w      *goreplay.Writer
	redact *recording.Redactor // nil: credentials kept
	made   bool                // the file did not exist before
}

func createGoReplay(path string, redact []string) (*goReplayWriter, error) {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	g := &goReplayWriter{f: f, w: goreplay.NewWriter(f), made: os.IsNotExist(statErr)}
	if len(redact) > 0 {
		g.redact = recording.NewRedactor(redact)
	}
	return g, nil
}

// Discard closes the file and removes it if this writer made it.
func (g *goReplayWriter) Discard() error {
	g.f.Close()
	if g.made {
		return os.Remove(g.f.Name())
	}
	return nil
}

func (g *goReplayWriter) Write(r recording.Record) error {
	if g.redact != nil {
		r = g.redact.Record(r)
	}
	id := goreplay.ID(r.Conn, r.Index)
	if err := g.w.Write(goreplay.Payload{Kind: goreplay.Request, ID: id, Time: r.Start, Latency: 0, Data: r.Request}); err != nil {
		if errors.Is(err, goreplay.ErrUnrepresentable) {
			return fmt.Errorf("%w: %w", errRequestUnrepresentable, err)
		}
		return err
	}
	if r.HasResponse {
		err := g.w.Write(goreplay.Payload{Kind: goreplay.Response, ID: id, Time: r.RespStart, Latency: r.Latency(), Data: r.Response})
		if errors.Is(err, goreplay.ErrUnrepresentable) {
			return fmt.Errorf("%w: %w", errResponseUnrepresentable, err)
		}
		return err
	}
	return nil
}

// A GoReplay file cannot hold every exchange: these are skipped (or
// their response left out) and counted, not the end of the recording.
var (
	errRequestUnrepresentable  = errors.New("request skipped")
	errResponseUnrepresentable = errors.New("response left out")
)

func (g *goReplayWriter) Close() error {
	if err := g.w.Flush(); err != nil {
		g.f.Close()
		return err
	}
	return g.f.Close()
}
