package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/internal/capture"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/engine"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/source"
)

// record writes exchanges, live from the VXLAN listener or from files, to
// a recording (or a GoReplay file).
func record(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("output", "", "the recording to write (required); with rotation, the name the files are derived from")
	format := fs.String("format", "", "strec (shadowtap recording) or goreplay; default: goreplay for a .gor name, else strec")
	rotateSize := fs.Int64("rotate-size", 0, "start a new file past this many bytes (strec)")
	rotateEvery := fs.Duration("rotate-every", 0, "start a new file after this long (strec)")
	keep := fs.Bool("keep-credentials", false, "keep Authorization, Cookie, Set-Cookie and X-Api-Key values (redacted by default)")
	redact := fs.String("redact", "", "more headers to redact, comma-separated")
	duration := fs.Duration("duration", 0, "live: stop after this long (default: until SIGTERM or Ctrl-C)")
	var inputs listFlag
	fs.Var(&inputs, "input", "record from this capture file, recording or GoReplay file instead of the live listener (repeatable)")
	cfg, err := loadConfig(fs, args)
	if err == nil {
		err = cfg.ValidateCapture()
	}
	inputs = append(inputs, fs.Args()...)
	fmtName, ferr := outputFormat(*format, *output)
	switch {
	case err != nil:
		return usageError(stderr, err)
	case *output == "":
		return usageError(stderr, errors.New("-output is required"))
	case ferr != nil:
		return usageError(stderr, ferr)
	}
	var names []string
	if !*keep {
		names = append(names, recording.DefaultRedact...)
	}
	for _, h := range strings.Split(*redact, ",") {
		if h = strings.TrimSpace(h); h != "" {
			names = append(names, h)
		}
	}
	var w recordWriter
	if fmtName == "goreplay" {
		w, err = createGoReplay(*output, names)
	} else {
		w, err = recording.Create(recording.WriterOptions{Path: *output, MaxBytes: *rotateSize, MaxAge: *rotateEvery, Redact: names})
	}
	if err != nil {
		fmt.Fprintln(stderr, "record:", err)
		return 1
	}
	log := newLogger(cfg, stderr)
	var n, withResp int
	write := func(r recording.Record) error {
		n++
		if r.HasResponse {
			withResp++
		}
		return w.Write(r)
	}
	if len(inputs) > 0 {
		src, _ := source.OpenAll(inputs, pipeline.Derive(cfg, pipeline.Record).Sources())()
		for {
			r, err := src.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err == nil {
				err = write(r)
			}
			if err != nil {
				w.Close()
				fmt.Fprintln(stderr, "record:", err)
				return 1
			}
		}
		src.Close()
	} else {
		if *duration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, *duration)
			defer cancel()
		}
		if err := recordLive(ctx, cfg, write, log); err != nil {
			w.Close()
			fmt.Fprintln(stderr, "record:", err)
			return 1
		}
	}
	if err := w.Close(); err != nil {
		fmt.Fprintln(stderr, "record:", err)
		return 1
	}
	fmt.Fprintf(stdout, "recorded %d exchanges (%d with production's response) to %s\n", n, withResp, *output)
	return 0
}

// liveRecorder is the engine's sink when recording live: it writes each
// request once its response is known (or known to be lost).
type liveRecorder struct {
	write func(recording.Record) error
	err   error
}

func (l *liveRecorder) Submit(uint64, *httpstream.Request) {}
func (l *liveRecorder) EndConn(uint64)                     {}
func (l *liveRecorder) Response(_ uint64, req *httpstream.Request, resp *httpstream.Response) {
	if l.err == nil {
		l.err = l.write(recording.FromExchange(req, resp))
	}
}

func recordLive(ctx context.Context, cfg config.Config, write func(recording.Record) error, log *slog.Logger) error {
	stages := pipeline.Derive(cfg, pipeline.Record)
	var cst capture.Stats
	l, err := capture.Listen(stages.VXLAN, &cst)
	if err != nil {
		return err
	}
	defer l.Close()
	sink := &liveRecorder{write: write}
	var st engine.Stats
	eng := engine.New(stages.Engine, sink, &st, ratelog.New(log, 10*time.Second))
	log.Info("recording", "listen", l.Addr().String(), "ports", cfg.Ports)
	err = l.Run(ctx, eng.HandleVXLAN, eng.Tick)
	eng.Flush()
	if err == nil {
		err = sink.err
	}
	return err
}
