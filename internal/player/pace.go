package player

import (
	"context"
	"time"
)

// Pacer keeps a recording's timing at a speed factor, for the player and
// for verify: the first record sets the clock, and each later one is due
// its distance in recording time from the first, divided by the speed.
// Speed 0 sends as fast as the targets allow.
type Pacer struct {
	speed   float64
	t0      int64 // the first record's capture time, unix ns
	w0      time.Time
	started bool
}

// NewPacer returns a pacer at speed (1: the recording's timing).
func NewPacer(speed float64) *Pacer { return &Pacer{speed: speed} }

// Wait returns when the record captured at start (unix ns) is due; false
// if ctx ended first.
func (p *Pacer) Wait(ctx context.Context, start int64) bool {
	if !p.started {
		p.t0, p.w0, p.started = start, time.Now(), true
	}
	if p.speed > 0 {
		due := p.w0.Add(time.Duration(float64(start-p.t0) / p.speed))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return false
			case <-t.C:
			}
		}
	}
	return ctx.Err() == nil
}

// ReportEvery calls report with snapshot() every interval until the
// returned stop is called; stop waits for the reporter to end. With no
// report it starts nothing.
func ReportEvery(interval time.Duration, report func(Progress), snapshot func() Progress) (stop func()) {
	if report == nil {
		return func() {}
	}
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				report(snapshot())
			}
		}
	}()
	return func() {
		close(done)
		<-ended
	}
}
