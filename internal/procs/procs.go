// Package procs sizes the Go scheduler to the handler's load.
//
// A handler at a few thousand requests a second is idle between packets,
// and each wake-up of an idle process costs more than the work it wakes
// for: with two Ps, a goroutine made ready (a request for a replay
// worker, an answer for the comparison) wakes a second thread to look for
// work, which finds none and sleeps again. perf at 5,000 req/s on two
// cores counted 7 context switches per request with GOMAXPROCS=2 and 4
// with GOMAXPROCS=1, and the handler's CPU per request fell by a fifth.
// Under load the second P is needed. So the tuner runs as few Ps as the
// load needs: it reads the process's CPU time once an interval and gives
// the scheduler more Ps when the ones it has are three quarters busy,
// fewer when one fewer would still be only half busy.
package procs

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime"
	"syscall"
	"time"
)

// Step returns how many Ps to run next, with p running now, at most limit,
// when the process used used cores (CPU seconds per second) over the last
// interval. It raises at once to what the load needs, and lowers one at
// a time, so that a lull does not leave a burst too few.
func Step(p, limit int, used float64) int {
	const raiseAt, lowerAt, aim = 0.75, 0.5, 0.6
	switch {
	case used > raiseAt*float64(p) && p < limit:
		return min(limit, max(p+1, int(math.Ceil(used/aim))))
	case p > 1 && used < lowerAt*float64(p-1):
		return p - 1
	}
	return p
}

// Auto reports whether the tuner may change GOMAXPROCS: the operator did
// not set it.
func Auto() bool { return os.Getenv("GOMAXPROCS") == "" }

// Run tunes GOMAXPROCS every interval until ctx ends, between 1 and the
// value it had when Run began (the runtime's choice: the CPUs the process
// may use), which it restores on return.
func Run(ctx context.Context, interval time.Duration, log *slog.Logger) {
	limit := runtime.GOMAXPROCS(0)
	if limit <= 1 {
		return
	}
	defer runtime.GOMAXPROCS(limit)
	t := time.NewTicker(interval)
	defer t.Stop()
	p, lastCPU, lastAt := limit, cpuTime(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := cpuTime()
			used := (cpu - lastCPU).Seconds() / now.Sub(lastAt).Seconds()
			lastCPU, lastAt = cpu, now
			if next := Step(p, limit, used); next != p {
				log.Debug("scheduler resized to the load", "procs", next, "was", p, "cores_used", math.Round(used*100)/100)
				runtime.GOMAXPROCS(next)
				p = next
			}
		}
	}
}

// cpuTime is the process's user and system time, all threads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
