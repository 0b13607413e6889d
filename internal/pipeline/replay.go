package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/player"
	"github.com/shadowtap/shadowtap/internal/source"
	"github.com/shadowtap/shadowtap/internal/target"
)

// ReplayOptions say how files are replayed.
type ReplayOptions struct {
	player.Options
	// Started, if set, is called before the first exchange is sent, with
	// the input's size in bytes (its files are not read ahead to count
	// their exchanges).
	Started func(inputBytes int64)
	// Progress, if set, is called every ProgressEvery and once at the end.
	Progress      func(player.Progress)
	ProgressEvery time.Duration
}

// ErrInput marks an input that cannot be read (missing, not a known
// format, corrupt): bad input, not a failed gate or replay.
var ErrInput = errors.New("unreadable input")

// checkInputs says, with an error wrapping ErrInput, which input is not a
// file shadowtap reads: before anything is sent, not after the files
// before it.
func checkInputs(inputs []string) error {
	for _, p := range inputs {
		if _, err := source.Detect(p); err != nil {
			return fmt.Errorf("%w: %w", ErrInput, err)
		}
	}
	return nil
}

// ReplayFiles replays capture files, recordings or GoReplay files to cfg's
// targets with the live pipeline's router (filters, sampling, rewrites,
// limits) and replayers; the file waits for room rather than dropping.
// When the files are done, or ctx ends, the targets drain for up to
// cfg.DrainTimeout. The progress returned counts the targets' answers.
func ReplayFiles(ctx context.Context, cfg config.Config, log *slog.Logger, inputs []string, opts ReplayOptions) (player.Progress, error) {
	if err := cfg.Validate(); err != nil {
		return player.Progress{}, err
	}
	// Every input is checked before anything is sent: the files are
	// no longer read ahead, and a bad last file must not wait for the
	// first ones to be replayed to be found.
	if err := checkInputs(inputs); err != nil {
		return player.Progress{}, err
	}
	st := Derive(cfg, Replay)
	fanout, err := route(ctx, st, log, target.Observers{})
	if err != nil {
		return player.Progress{}, err
	}
	stop := func() {
		drain, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		target.Stop(drain, fanout.Current().Targets)
		cancel()
	}
	open := source.OpenAll(inputs, st.Sources())
	if opts.Started != nil {
		opts.Started(source.Size(inputs))
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 200 * time.Millisecond
	}
	p, err := player.Play(ctx, open, fanout, opts.Options, opts.ProgressEvery, opts.Progress)
	stop()
	return player.Tally(fanout, p), err
}
