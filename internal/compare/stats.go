package compare

import (
	"math"
	"math/rand/v2"
	"slices"
)

// z returns the one-sided standard normal quantile of a confidence level
// (0.99: 2.326).
func z(confidence float64) float64 {
	if confidence <= 0.5 || confidence >= 1 {
		confidence = 0.99
	}
	return math.Sqrt2 * math.Erfinv(2*confidence-1)
}

// wilsonLower is the lower end of the one-sided Wilson score interval of
// a rate of k in n at quantile z: the rate the data show it is at least
// (Wilson 1927; Brown, Cai and DasGupta 2001 recommend it over the
// normal approximation for small counts and rates near 0).
func wilsonLower(k, n int, z float64) float64 {
	if n == 0 {
		return 0
	}
	p, nf := float64(k)/float64(n), float64(n)
	z2 := z * z
	centre := p + z2/(2*nf)
	margin := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return math.Max(0, (centre-margin)/(1+z2/nf))
}

// Reservoir keeps a uniform sample of latencies in milliseconds, bounded.
type Reservoir struct {
	N    int       `json:"n"`
	Vals []float64 `json:"ms"`
}

const reservoirSize = 1024

func (r *Reservoir) add(ms float64) {
	r.N++
	if len(r.Vals) < reservoirSize {
		r.Vals = append(r.Vals, ms)
	} else if i := rand.IntN(r.N); i < reservoirSize {
		r.Vals[i] = ms
	}
}

// merge adds o's sample, keeping each side's share of the sample in
// proportion to its count.
func (r *Reservoir) merge(o *Reservoir) {
	if o == nil || o.N == 0 {
		return
	}
	total := r.N + o.N
	keepR := min(len(r.Vals), reservoirSize*r.N/max(total, 1))
	keepO := min(len(o.Vals), reservoirSize-keepR)
	vals := make([]float64, 0, keepR+keepO)
	for _, i := range rand.Perm(len(r.Vals))[:keepR] {
		vals = append(vals, r.Vals[i])
	}
	for _, i := range rand.Perm(len(o.Vals))[:keepO] {
		vals = append(vals, o.Vals[i])
	}
	r.N, r.Vals = total, vals
}

// Quantiles are latency percentiles in milliseconds.
type Quantiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
}

func (r *Reservoir) quantiles() Quantiles {
	if r == nil || len(r.Vals) == 0 {
		return Quantiles{}
	}
	s := slices.Sorted(slices.Values(r.Vals))
	at := func(q float64) float64 { return s[int(q*float64(len(s)-1))] }
	return Quantiles{N: r.N, P50: at(.5), P95: at(.95), P99: at(.99)}
}

// quantileCI returns the q-quantile of sorted and a distribution-free
// confidence interval for it: the order statistics at ranks n·q ∓
// z·√(n·q·(1−q)) (the binomial count of samples below the quantile,
// normally approximated).
func quantileCI(sorted []float64, q, z float64) (lo, est, hi float64) {
	n := float64(len(sorted))
	at := func(r float64) float64 {
		i := int(math.Max(0, math.Min(n-1, r)))
		return sorted[i]
	}
	w := z * math.Sqrt(n*q*(1-q))
	return at(math.Floor(n*q - w - 1)), at(q * (n - 1)), at(math.Ceil(n*q + w))
}
