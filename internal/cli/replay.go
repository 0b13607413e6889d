package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/player"
)

// replayFiles replays capture files, recordings or GoReplay files to the
// targets, with the same filters, sampling and limits as live replay.
func replayFiles(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	speed := fs.String("speed", "1x", "1x keeps the original timing, 2x twice as fast, 0.5x half; max: as fast as the targets allow")
	loops := fs.Int("loop", 1, "passes over the files; 0 loops until interrupted")
	progress := fs.String("progress", "auto", "auto (a bar on a terminal, plain lines otherwise), bar, plain or off")
	var inputs listFlag
	fs.Var(&inputs, "input", "a capture file, recording or GoReplay file (repeatable; also as arguments)")
	var keys keyFlags
	keys.registerRead(fs)
	cfg, err := loadConfig(fs, args)
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil {
		err = keys.load(&cfg)
	}
	inputs = append(inputs, fs.Args()...)
	sp, serr := player.ParseSpeed(*speed)
	switch {
	case err != nil:
		return usageError(stderr, err)
	case serr != nil:
		return usageError(stderr, serr)
	case len(inputs) == 0:
		return usageError(stderr, errors.New("no input files"))
	case *loops < 0:
		return usageError(stderr, errors.New("-loop must not be negative"))
	}
	if err := checkKeys(inputs, cfg.Recordings.Identities); err != nil {
		fmt.Fprintln(stderr, "replay:", err)
		return 2
	}
	r := &player.Renderer{W: stderr, PlainEvery: 5 * time.Second}
	switch *progress {
	case "auto":
		f, ok := stderr.(*os.File)
		r.Terminal = ok && term.IsTerminal(int(f.Fd()))
	case "bar":
		r.Terminal = true
	case "plain", "off":
	default:
		return usageError(stderr, fmt.Errorf("-progress %q: want auto, bar, plain or off", *progress))
	}
	started := false
	opts := pipeline.ReplayOptions{Options: player.Options{Speed: sp, Loops: *loops},
		Started: func(size int64) {
			started = true
			fmt.Fprintf(stdout, "replaying %d file(s) (%s) at %s, %s\n", len(inputs), byteSize(size), *speed, passes(*loops))
		}}
	if *progress != "off" {
		opts.Progress = r.Show
	}
	log := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	p, err := pipeline.ReplayFiles(ctx, cfg, log, inputs, opts)
	if opts.Progress != nil && started {
		r.Done(p)
	}
	if err != nil {
		fmt.Fprintln(stderr, "replay:", err)
		return 1
	}
	if p.Unparsed > 0 {
		fmt.Fprintf(stderr, "replay: %d recorded requests did not parse and were skipped\n", p.Unparsed)
	}
	if r := player.RefusedSummary(p.Refused); r != "" && opts.Progress == nil {
		fmt.Fprintln(stderr, "replay:", r) // the progress's last line says it otherwise
	}
	return 0
}

func passes(n int) string {
	if n == 0 {
		return "looping until interrupted"
	}
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// byteSize writes n bytes for people: 812 B, 3.4 MiB, 1.2 GiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
