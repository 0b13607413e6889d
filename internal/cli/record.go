package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/recording"
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
	var keys keyFlags
	keys.registerWrite(fs)
	keys.registerRead(fs)
	cfg, err := loadConfig(fs, args)
	if err == nil {
		err = cfg.ValidateCapture()
	}
	if err == nil {
		err = keys.load(&cfg)
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
	case fmtName == "goreplay" && len(cfg.Recordings.EncryptTo) > 0:
		return usageError(stderr, errors.New("-encrypt-to: a GoReplay file is not encrypted; record a .strec recording"))
	}
	if err := checkKeys(inputs, cfg.Recordings.Identities); err != nil {
		fmt.Fprintln(stderr, "record:", err)
		return 2
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
	log := newLogger(cfg, stderr)
	if *duration > 0 && len(inputs) == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	rec, err := pipeline.RecordExchanges(ctx, cfg, log, pipeline.RecordOptions{Inputs: inputs, Output: *output, Format: fmtName,
		MaxBytes: *rotateSize, MaxAge: *rotateEvery, Redact: names})
	if err != nil {
		fmt.Fprintln(stderr, "record:", err)
		return 1
	}
	if rec.Unrepresentable > 0 {
		fmt.Fprintf(stderr, "record: %d exchanges (or their responses) left out: GoReplay's format cannot hold them (use a .strec recording)\n", rec.Unrepresentable)
	}
	if rec.Dropped > 0 {
		fmt.Fprintf(stderr, "record: %d exchanges dropped: the recording fell behind the mirror\n", rec.Dropped)
	}
	fmt.Fprintf(stdout, "recorded %d exchanges (%d with production's response) to %s\n", rec.Exchanges, rec.WithResponse, *output)
	return 0
}
