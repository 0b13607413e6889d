// Package ratelog logs per-packet problems at a bounded rate: the first
// occurrence of a kind at once, then at most one line per interval per kind
// with the number suppressed in between. A flood of bad packets costs a
// counter increment each, not a log line each.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// Limiter is safe for concurrent use.
type Limiter struct {
	log   *slog.Logger
	every time.Duration
	mu    sync.Mutex
	kinds map[string]*kind
}

type kind struct {
	last       time.Time
	suppressed int
}

// New returns a limiter writing to log at most once per every per kind.
func New(log *slog.Logger, every time.Duration) *Limiter {
	return &Limiter{log: log, every: every, kinds: make(map[string]*kind)}
}

// Warn logs msg under kind unless one was logged less than every ago.
func (l *Limiter) Warn(kindName, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	k := l.kinds[kindName]
	if k == nil {
		k = &kind{}
		l.kinds[kindName] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < l.every {
		k.suppressed++
		l.mu.Unlock()
		return
	}
	n := k.suppressed
	k.last, k.suppressed = now, 0
	l.mu.Unlock()
	l.log.Warn(msg, append(args, "kind", kindName, "suppressed", n)...)
}
