package player

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestPacerKeepsTheRecordingsTimingAtItsSpeed(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).UnixNano()
	p := NewPacer(2)
	began := time.Now()
	if !p.Wait(ctx, t0) || time.Since(began) > time.Second {
		t.Fatal("the first record waited")
	}
	if !p.Wait(ctx, t0+int64(200*time.Millisecond)) {
		t.Fatal("Wait refused with a live context")
	}
	if d := time.Since(began); d < 100*time.Millisecond {
		t.Fatalf("a record 200 ms into the recording at 2x went after %v, want at least 100 ms", d)
	}
	fast := NewPacer(0)
	began = time.Now()
	for i := range 1000 {
		fast.Wait(ctx, t0+int64(i)*int64(time.Hour))
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("speed 0 waited: %v for 1,000 records an hour apart", d)
	}
	ctx, cancel := context.WithCancel(ctx)
	slow := NewPacer(1)
	slow.Wait(ctx, t0)
	time.AfterFunc(20*time.Millisecond, cancel)
	if slow.Wait(ctx, t0+int64(time.Hour)) {
		t.Fatal("Wait for a record an hour away returned true after the stop")
	}
}

func TestReportEveryReportsUntilStopped(t *testing.T) {
	var n atomic.Int64
	stop := ReportEvery(time.Millisecond, func(Progress) { n.Add(1) }, func() Progress { return Progress{} })
	for deadline := time.Now().Add(5 * time.Second); n.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	stop()
	at := n.Load()
	if at < 3 {
		t.Fatalf("%d reports in 5 s at 1 ms", at)
	}
	time.Sleep(20 * time.Millisecond)
	if n.Load() != at {
		t.Fatal("reported after stop returned")
	}
	ReportEvery(time.Millisecond, nil, nil)() // no report: nothing started, stop returns
}
