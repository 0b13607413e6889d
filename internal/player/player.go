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
	Sent  int64 // exchanges offered to the targets
	Total int64 // exchanges to send in all passes; -1 until the first pass ends, or when looping forever
	// Fraction is how far through all passes the replay is: from the
	// input's bytes while the first pass reads it, then from the
	// exchanges; -1 when unknown (looping forever).
	Fraction float64
	Answered uint64
	Failed   uint64
	Dropped  uint64 // refused by filters, sampling, queues
	Unparsed int64  // recorded requests that did not parse
	// Refused counts, by reason, the requests the input held that were
	// never offered (a capture's refused framings, other protocols,
	// bodies too large, gaps); known once a pass is done.
	Refused   map[string]uint64
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

// Play replays every exchange of the sources opened by open (again for
// each pass) through f. The files are not read ahead to count them:
// sending starts with the first exchange, and the progress comes from the
// input's bytes (when the source is source.Sized) until the first pass
// has counted the exchanges. report, if set, is called every interval
// with the progress, and once at the end.
func Play(ctx context.Context, open func() (source.Source, error), f *target.Fanout,
	opts Options, interval time.Duration, report func(Progress)) (Progress, error) {
	began := time.Now()
	// The passes count; the reporter goroutine reads the counts meanwhile.
	var sent, unparsed, perPass, pass atomic.Int64
	var cur atomic.Pointer[sizedBox]
	var refused atomic.Pointer[map[string]uint64] // of the first pass: the same file refuses the same again
	snapshot := func() Progress {
		sent := sent.Load()
		p := Tally(f, Progress{Sent: sent, Total: -1, Fraction: -1, Unparsed: unparsed.Load(), Elapsed: time.Since(began), Remaining: -1})
		if r := refused.Load(); r != nil {
			p.Refused = *r
		}
		if opts.Loops == 0 {
			return p
		}
		if n := perPass.Load(); n > 0 {
			p.Total = n * int64(opts.Loops)
			p.Fraction = min(float64(sent)/float64(p.Total), 1)
		} else if b := cur.Load(); b != nil {
			if read, total := b.s.Input(); total > 0 {
				p.Fraction = (float64(pass.Load()) + float64(read)/float64(total)) / float64(opts.Loops)
			}
		}
		if p.Fraction > 0 {
			p.Remaining = time.Duration(float64(p.Elapsed) * (1 - p.Fraction) / p.Fraction)
		}
		return p
	}
	stopReport := ReportEvery(interval, report, snapshot)
	var err error
	for i := 0; opts.Loops == 0 || i < opts.Loops; i++ {
		pass.Store(int64(i))
		before := sent.Load()
		if _, err = playPass(ctx, open, uint64(i), f, opts.Speed, &sent, &unparsed, &cur, &refused); err != nil || ctx.Err() != nil {
			break
		}
		n := sent.Load() - before
		if n == 0 {
			break // nothing to loop over
		}
		perPass.CompareAndSwap(0, n)
	}
	stopReport()
	final := snapshot()
	if report != nil {
		report(final) // as documented: a pass shorter than interval reports too
	}
	return final, err
}

// sizedBox holds a pass's source for the reporter, when it is Sized.
type sizedBox struct{ s source.Sized }

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
func playPass(ctx context.Context, open func() (source.Source, error), pass uint64, f *target.Fanout, speed float64, sent, unparsed *atomic.Int64,
	cur *atomic.Pointer[sizedBox], refused *atomic.Pointer[map[string]uint64]) (int64, error) {
	src, err := open()
	if err != nil {
		return 0, err
	}
	defer src.Close()
	defer func() {
		if rf, ok := src.(source.Refusing); ok && pass == 0 {
			r := rf.Refused()
			refused.Store(&r)
		}
	}()
	if s, ok := src.(source.Sized); ok {
		cur.Store(&sizedBox{s})
	}
	// Each connection's last request, in recording time: a recording
	// says nothing of a connection's end, so one idle for connIdle is
	// taken as ended (its queue forgotten; a later request of it starts
	// a new one, in order), and the rest at the pass's end. Otherwise the
	// targets would keep a queue per connection of a long recording.
	conns := map[uint64]int64{}
	defer func() {
		for c := range conns {
			f.EndConn(c)
		}
	}()
	var n int64
	pace := NewPacer(speed)
	for {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		if !pace.Wait(ctx, rec.Start) {
			return n, nil
		}
		req, err := rec.ParseRequest()
		if err != nil {
			unparsed.Add(1)
			continue
		}
		req.ConnID = rec.Conn | pass<<48
		conns[req.ConnID] = rec.Start
		f.Submit(req.ConnID, req)
		if n%sweepEvery == 0 {
			for c, last := range conns {
				if rec.Start-last > int64(connIdle) {
					f.EndConn(c)
					delete(conns, c)
				}
			}
		}
		// Production's recorded answer teaches the targets' correlation.
		if rec.HasResponse && f.Correlating() {
			if resp := rec.ParseResponse(req); resp != nil {
				f.Response(req.ConnID, req, resp)
			}
		}
		sent.Add(1)
	}
}

// A connection without a request for connIdle of recording time is taken
// as ended; the player looks every sweepEvery exchanges.
const (
	connIdle   = time.Minute
	sweepEvery = 1024
)

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
