// Package player replays exchanges from files (capture files, recordings,
// GoReplay files) to the targets: with the original timing, a speed
// factor, or as fast as the targets allow, once or in a loop.
package player

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/source"
	"github.com/shadowtap/shadowtap/internal/target"
)

// Options say how to pace and repeat.
type Options struct {
	// Speed 1 keeps the original timing, 2 plays twice as fast, 0.5 half
	// as fast; 0 sends as fast as the targets allow.
	Speed float64
	// Loops is the number of passes over the files; 0 loops until ctx ends.
	Loops int
}

// Progress is where a replay stands.
type Progress struct {
	Sent      int64 // exchanges offered to the targets
	Total     int64 // exchanges in all passes; -1 when looping forever
	Answered  uint64
	Failed    uint64
	Dropped   uint64 // refused by filters, sampling, queues
	Unparsed  int64  // recorded requests that did not parse
	Elapsed   time.Duration
	Remaining time.Duration // -1 when unknown
}

// Rate is the sending rate so far, per second.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Sent) / p.Elapsed.Seconds()
}

// Scan counts the exchanges of one pass and the time they span. It stops
// when ctx ends (Ctrl-C on a large file must not wait for the whole file
// to be decoded) and then returns ctx's error; closing the source stops
// its decoder.
func Scan(ctx context.Context, open func() (source.Source, error)) (n int64, span time.Duration, err error) {
	src, err := open()
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	done := ctx.Done()
	var first, last int64
	for {
		select {
		case <-done:
			return n, 0, fmt.Errorf("player: counting stopped: %w", context.Cause(ctx))
		default:
		}
		r, err := src.Next()
		if errors.Is(err, io.EOF) {
			return n, time.Duration(last - first), nil
		}
		if err != nil {
			return n, 0, err
		}
		if n == 0 {
			first = r.Start
		}
		last = max(last, r.Start)
		n++
	}
}

// Play replays every exchange of the sources opened by open (again for
// each pass) through f. perPass and span come from Scan. report, if set,
// is called every interval with the progress, and once at the end.
func Play(ctx context.Context, open func() (source.Source, error), perPass int64, span time.Duration, f *target.Fanout,
	opts Options, interval time.Duration, report func(Progress)) (Progress, error) {
	began := time.Now()
	// The pass counts; the reporter goroutine reads the counts meanwhile.
	var sent, unparsed atomic.Int64
	total := perPass * int64(opts.Loops)
	if opts.Loops == 0 {
		total = -1
	}
	snapshot := func() Progress {
		sent := sent.Load()
		p := Tally(f, Progress{Sent: sent, Total: total, Unparsed: unparsed.Load(), Elapsed: time.Since(began), Remaining: -1})
		switch {
		case total < 0:
		case opts.Speed > 0 && perPass > 0:
			// Paced by the recording's own clock.
			passes := float64(total) / float64(perPass)
			whole := time.Duration(float64(span) * passes / opts.Speed)
			p.Remaining = max(whole-p.Elapsed, 0)
		case sent > 0:
			p.Remaining = time.Duration(float64(total-sent) / p.Rate() * float64(time.Second))
		}
		return p
	}
	stopReport := make(chan struct{})
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		if report == nil {
			return
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stopReport:
				return
			case <-t.C:
				report(snapshot())
			}
		}
	}()
	var err error
	for pass := 0; opts.Loops == 0 || pass < opts.Loops; pass++ {
		var n int64
		if n, err = playPass(ctx, open, uint64(pass), f, opts.Speed, &sent, &unparsed); err != nil || ctx.Err() != nil {
			break
		}
		if n == 0 {
			break // nothing to loop over
		}
	}
	close(stopReport)
	<-reported
	final := snapshot()
	if report != nil {
		report(final) // as documented: a pass shorter than interval reports too
	}
	return final, err
}

// Tally fills p's counters from the targets' statistics.
func Tally(f *target.Fanout, p Progress) Progress {
	p.Answered, p.Failed, p.Dropped = 0, 0, 0
	for _, t := range f.Current().Targets {
		s := t.Stats
		p.Answered += s.Replay.Replayed.Load()
		for i := range s.Replay.Failed {
			p.Failed += s.Replay.Failed[i].Load()
		}
		p.Dropped += s.Replay.QueueDrops.Load() + s.Replay.RateLimited.Load() + s.SampledOut.Load()
		for i := range s.Filtered {
			p.Dropped += s.Filtered[i].Load()
		}
	}
	return p
}

// playPass plays one pass; connection ids are made distinct per pass so
// a loop never merges two passes' connections.
func playPass(ctx context.Context, open func() (source.Source, error), pass uint64, f *target.Fanout, speed float64, sent, unparsed *atomic.Int64) (int64, error) {
	src, err := open()
	if err != nil {
		return 0, err
	}
	defer src.Close()
	conns := map[uint64]bool{}
	defer func() {
		for c := range conns {
			f.EndConn(c)
		}
	}()
	var n int64
	var t0 int64
	w0 := time.Now()
	for {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if n == 0 {
			t0 = rec.Start
		}
		n++
		if speed > 0 {
			due := w0.Add(time.Duration(float64(rec.Start-t0) / speed))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return n, nil
				case <-time.After(d):
				}
			}
		}
		if ctx.Err() != nil {
			return n, nil
		}
		req, err := rec.ParseRequest()
		if err != nil {
			unparsed.Add(1)
			continue
		}
		req.ConnID = rec.Conn | pass<<48
		conns[req.ConnID] = true
		f.Submit(req.ConnID, req)
		sent.Add(1)
	}
}

// ParseSpeed reads "1x", "2x", "0.5x", "2" or "max" (as fast as possible).
func ParseSpeed(s string) (float64, error) {
	if s == "max" || s == "0" {
		return 0, nil
	}
	var v float64
	if _, err := fmt.Sscanf(s, "%gx", &v); err != nil {
		if _, err := fmt.Sscanf(s, "%g", &v); err != nil {
			return 0, fmt.Errorf("speed %q: want 1x, 2x, 0.5x or max", s)
		}
	}
	if v <= 0 || v > 1000 {
		return 0, fmt.Errorf("speed %q: want a factor above 0 and at most 1000, or max", s)
	}
	return v, nil
}
