package compare

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// aggregate is the comparator's state: per endpoint and comparison,
// counts, differing fields, noise and latency. The worker writes it under
// Comparator.aggMu; reports read it under the same lock.
type aggregate struct {
	endpoints map[string]*endpointStats
	// The last production answer to each idempotent request, to learn
	// production's own noise from identical requests; bounded.
	prodLast map[uint64]diff.Message
	noise    map[string]*noiseStats // over all endpoints, by comparison
}

const maxProdLast = 4096

type endpointStats struct {
	name     string
	requests int
	latency  map[string]*reservoir // production, candidate, baseline
	cmp      map[string]*comparisonStats
	noiseBy  map[string]*noiseStats
	samples  []Sample
}

type comparisonStats struct {
	compared, exact, matched int
	fields                   map[string]*fieldStats
}

type fieldStats struct {
	diffs   int
	samples []FieldSample
}

type noiseStats struct {
	n      int
	fields map[string]int
	global *noiseStats
}

func (n *noiseStats) add(ds []diff.Difference) {
	n.n++
	seen := map[string]bool{}
	for _, d := range ds {
		if !seen[d.Key] {
			seen[d.Key] = true
			n.fields[d.Key]++
		}
	}
	if n.global != nil {
		n.global.add(ds)
	}
}

// minNoiseSamples is how many noise observations make a noise rate.
const minNoiseSamples = 3

// rate is the share of noise observations in which key differed: the
// endpoint's own when it has enough, else all endpoints'.
func (n *noiseStats) rate(key string) float64 {
	switch {
	case n.n >= minNoiseSamples:
		return float64(n.fields[key]) / float64(n.n)
	case n.global != nil && n.global.n >= minNoiseSamples:
		return float64(n.global.fields[key]) / float64(n.global.n)
	}
	return 0
}

// FieldSample is one observed difference.
type FieldSample struct {
	Field string `json:"field"`
	Kind  string `json:"kind"`
	Ref   string `json:"ref"`
	Cand  string `json:"cand"`
}

// Side is one response in a sample.
type Side struct {
	Status    int         `json:"status"`
	Header    http.Header `json:"header"`
	Body      string      `json:"body"`
	LatencyMS float64     `json:"latency_ms"`
}

// Sample is one exchange with differences, both sides shown.
type Sample struct {
	Time        time.Time         `json:"time"`
	Comparison  string            `json:"comparison"`
	Request     string            `json:"request"`
	Reference   Side              `json:"reference"`
	Candidate   Side              `json:"candidate"`
	Differences []diff.Difference `json:"differences"`
}

const (
	maxSamples      = 5
	maxFieldSamples = 3
	maxSampleDiffs  = 20
)

func newAggregate(Config) *aggregate {
	return &aggregate{endpoints: map[string]*endpointStats{}, prodLast: map[uint64]diff.Message{}, noise: map[string]*noiseStats{}}
}

func (a *aggregate) globalNoise(cmp string) *noiseStats {
	n := a.noise[cmp]
	if n == nil {
		n = &noiseStats{fields: map[string]int{}}
		a.noise[cmp] = n
	}
	return n
}

func (a *aggregate) endpoint(name string) *endpointStats {
	ep := a.endpoints[name]
	if ep == nil {
		ep = &endpointStats{name: name, latency: map[string]*reservoir{}, cmp: map[string]*comparisonStats{}, noiseBy: map[string]*noiseStats{}}
		for _, c := range []string{VsProduction, VsBaseline} {
			ep.noiseBy[c] = &noiseStats{fields: map[string]int{}, global: a.globalNoise(c)}
		}
		a.endpoints[name] = ep
	}
	return ep
}

func (ep *endpointStats) noise(cmp string) *noiseStats { return ep.noiseBy[cmp] }

func (ep *endpointStats) lat(name string, d time.Duration) {
	r := ep.latency[name]
	if r == nil {
		r = &reservoir{}
		ep.latency[name] = r
	}
	r.add(d)
}

// observeProduction learns production's noise: identical idempotent
// requests answered differently by production itself.
func (a *aggregate) observeProduction(c *Comparator, req *httpstream.Request, resp *httpstream.Response, s side) {
	if resp == nil {
		return
	}
	m := string(req.Method())
	if m != "GET" && m != "HEAD" {
		return
	}
	k := requestKey(req)
	c.aggMu.Lock()
	defer c.aggMu.Unlock()
	if prev, ok := a.prodLast[k]; ok {
		// The endpoint is named only for a repeat: most answers are not.
		name := c.grouper.Name(m, string(req.Target()))
		a.endpoint(name).noise(VsProduction).add(c.filter(name, diff.Compare(prev, s.msg, c.cfg.Diff)))
	} else if len(a.prodLast) >= maxProdLast {
		for old := range a.prodLast { // evict one, arbitrarily: bounded memory
			delete(a.prodLast, old)
			break
		}
	}
	a.prodLast[k] = s.msg
}

// record counts one comparison and keeps samples; it logs differences.
func (a *aggregate) record(c *Comparator, ep *endpointStats, cmp string, x *exchange, ref, cand side, ds []diff.Difference) {
	ep.requests++
	refName := "production"
	if cmp == VsBaseline {
		refName = "baseline"
	}
	if ref.latency > 0 {
		ep.lat(refName, ref.latency)
	}
	ep.lat("candidate", cand.latency)
	cs := ep.cmp[cmp]
	if cs == nil {
		cs = &comparisonStats{fields: map[string]*fieldStats{}}
		ep.cmp[cmp] = cs
	}
	cs.compared++
	if len(ds) == 0 {
		cs.exact++
		cs.matched++
		return
	}
	noisy := true
	seen := map[string]bool{}
	for _, d := range ds {
		if ep.noise(cmp).rate(d.Key) == 0 {
			noisy = false
		}
		if seen[d.Key] {
			continue
		}
		seen[d.Key] = true
		f := cs.fields[d.Key]
		if f == nil {
			f = &fieldStats{}
			cs.fields[d.Key] = f
		}
		f.diffs++
		if len(f.samples) < maxFieldSamples {
			f.samples = append(f.samples, FieldSample{d.Field, string(d.Kind), d.Ref, d.Cand})
		}
	}
	if noisy {
		cs.matched++
	}
	s := a.sample(c, cmp, x, ref, cand, ds)
	if len(ep.samples) < maxSamples {
		ep.samples = append(ep.samples, s)
	}
	if c.cfg.Log != nil {
		line, _ := json.Marshal(logLine{Type: "diff", Handler: c.cfg.Handler, Endpoint: ep.name, Comparison: cmp, Sample: &s})
		c.cfg.Log.Write(append(line, '\n'))
	}
}

func (a *aggregate) sample(c *Comparator, cmp string, x *exchange, ref, cand side, ds []diff.Difference) Sample {
	n := c.cfg.LogMaxBody
	if n == 0 {
		n = 16 << 10
	}
	side := func(s side) Side {
		return Side{Status: s.msg.Status, Header: redactHeaders(s.msg.Header, c.cfg.Redact), Body: capBody(s.msg.Body, n),
			LatencyMS: float64(s.latency) / float64(time.Millisecond)}
	}
	req := x.req
	head := header(&req.Message)
	var b strings.Builder
	b.Write(req.Method())
	b.WriteByte(' ')
	b.Write(req.Target())
	for _, k := range slices.Sorted(mapsKeys(head)) {
		v := head.Get(k)
		if slices.ContainsFunc(c.cfg.Redact, func(r string) bool { return strings.EqualFold(r, k) }) {
			v = "REDACTED"
		}
		b.WriteString("\n" + k + ": " + v)
	}
	if body := req.Body(); len(body) > 0 {
		b.WriteString("\n\n" + capBody(body, n))
	}
	return Sample{Time: c.cfg.Now(), Comparison: cmp, Request: b.String(), Reference: side(ref), Candidate: side(cand),
		Differences: ds[:min(len(ds), maxSampleDiffs)]}
}

func mapsKeys(h http.Header) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}
}

// logLine is a line of the JSON Lines difference log.
type logLine struct {
	Type       string  `json:"type"` // "diff" or "stats"
	Handler    string  `json:"handler"`
	Endpoint   string  `json:"endpoint"`
	Comparison string  `json:"comparison,omitempty"`
	Sample     *Sample `json:"sample,omitempty"`
	// stats lines: cumulative counts of this handler
	Time       time.Time                           `json:"time,omitzero"`
	Requests   int                                 `json:"requests,omitempty"`
	Counts     map[string]comparisonCount          `json:"counts,omitempty"`
	NoiseN     map[string]int                      `json:"noise_n,omitempty"`
	Noise      map[string]map[string]int           `json:"noise,omitempty"`
	LatencyMS  map[string][]float64                `json:"latency_ms,omitempty"`
	LatencyN   map[string]int                      `json:"latency_n,omitempty"`
	FieldSamps map[string]map[string][]FieldSample `json:"field_samples,omitempty"`
}

type comparisonCount struct {
	Compared int            `json:"compared"`
	Exact    int            `json:"exact"`
	Matched  int            `json:"matched"`
	Fields   map[string]int `json:"fields"`
}

const logLatencySamples = 64

// flushLog writes one cumulative stats line per endpoint.
func (a *aggregate) flushLog(c *Comparator) {
	if c.cfg.Log == nil {
		return
	}
	c.aggMu.Lock()
	defer c.aggMu.Unlock()
	for _, ep := range a.endpoints {
		l := logLine{Type: "stats", Handler: c.cfg.Handler, Endpoint: ep.name, Time: c.cfg.Now(), Requests: ep.requests,
			Counts: map[string]comparisonCount{}, NoiseN: map[string]int{}, Noise: map[string]map[string]int{},
			LatencyMS: map[string][]float64{}, LatencyN: map[string]int{}, FieldSamps: map[string]map[string][]FieldSample{}}
		for name, cs := range ep.cmp {
			cc := comparisonCount{Compared: cs.compared, Exact: cs.exact, Matched: cs.matched, Fields: map[string]int{}}
			l.FieldSamps[name] = map[string][]FieldSample{}
			for k, f := range cs.fields {
				cc.Fields[k] = f.diffs
				l.FieldSamps[name][k] = f.samples
			}
			l.Counts[name] = cc
		}
		for name, n := range ep.noiseBy {
			if n.n > 0 {
				l.NoiseN[name], l.Noise[name] = n.n, n.fields
			}
		}
		for name, r := range ep.latency {
			vals := r.vals[:min(len(r.vals), logLatencySamples)]
			for _, v := range vals {
				l.LatencyMS[name] = append(l.LatencyMS[name], float64(v)/float64(time.Millisecond))
			}
			l.LatencyN[name] = r.n
		}
		line, _ := json.Marshal(l)
		c.cfg.Log.Write(append(line, '\n'))
	}
}
