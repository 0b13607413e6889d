package compare

import (
	"math/rand/v2"
	"slices"
	"time"
)

// reservoir keeps a uniform sample of latencies, bounded.
type reservoir struct {
	n    int
	vals []time.Duration
}

const reservoirSize = 512

func (r *reservoir) add(d time.Duration) {
	r.n++
	if len(r.vals) < reservoirSize {
		r.vals = append(r.vals, d)
	} else if i := rand.IntN(r.n); i < reservoirSize {
		r.vals[i] = d
	}
}

// Quantiles are latency percentiles in milliseconds.
type Quantiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
}

func quantiles(vals []time.Duration, n int) Quantiles {
	if len(vals) == 0 {
		return Quantiles{}
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	at := func(p float64) float64 {
		return float64(s[int(p*float64(len(s)-1))]) / float64(time.Millisecond)
	}
	return Quantiles{N: n, P50: at(.5), P95: at(.95), P99: at(.99)}
}
