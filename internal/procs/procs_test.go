package procs

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

func TestStep(t *testing.T) {
	for _, c := range []struct {
		p, limit int
		used     float64
		want     int
	}{
		{2, 2, 0.3, 1},   // a light load on two Ps: one does
		{2, 2, 0.6, 2},   // one would be more than half busy: keep two
		{1, 2, 0.5, 1},   // half of one: enough
		{1, 2, 0.9, 2},   // nearly all of one: more
		{1, 8, 0.95, 2},  // saturated at one: at least one more
		{2, 8, 1.9, 4},   // saturated: what the load needs at once
		{4, 8, 3.9, 7},   // 3.9 cores want 7 at 60%
		{2, 8, 7.0, 8},   // never beyond the limit
		{8, 8, 8.0, 8},   // at the limit
		{8, 8, 0.1, 7},   // lowered one at a time
		{1, 1, 5.0, 1},   // one CPU: nothing to tune
		{3, 8, 0.99, 2},  // two would be half busy: lower
		{3, 8, 1.01, 3},  // two would be over half: keep
		{2, 2, 0.0, 1},   // idle
		{1, 2, 0.75, 1},  // at the threshold: not over it
		{1, 2, 0.751, 2}, // over it
	} {
		if got := Step(c.p, c.limit, c.used); got != c.want {
			t.Errorf("Step(%d, %d, %.3f) = %d, want %d", c.p, c.limit, c.used, got, c.want)
		}
	}
}

// An idle process is lowered to one P, and the runtime's count is back
// when the tuner stops.
func TestRunLowersWhenIdleAndRestores(t *testing.T) {
	start := runtime.GOMAXPROCS(0)
	if start < 2 {
		t.Skip("one CPU: nothing to tune")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.GOMAXPROCS(0) == start && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lowered := runtime.GOMAXPROCS(0)
	cancel()
	<-done
	if lowered >= start {
		t.Fatalf("GOMAXPROCS stayed %d while idle", lowered)
	}
	if got := runtime.GOMAXPROCS(0); got != start {
		t.Fatalf("GOMAXPROCS %d after the tuner stopped, want %d back", got, start)
	}
}
