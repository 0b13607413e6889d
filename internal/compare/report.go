package compare

import (
	"bufio"
	"bytes"
	"cmp"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Report is what the page and the JSON API show (docs/compare-api.md).
type Report struct {
	Title      string    `json:"title"`
	Handlers   []string  `json:"handlers"`
	Live       bool      `json:"live"` // one handler's view
	Generated  time.Time `json:"generated"`
	Compared   uint64    `json:"compared"` // exchanges
	Incomplete uint64    `json:"incomplete"`
	Dropped    uint64    `json:"dropped"`
	// WritesCompared: exchanges whose database writes were compared too.
	WritesCompared uint64 `json:"writes_compared,omitempty"`
	Regressions    int    `json:"regressions"` // distinct findings: endpoint and key, over the comparisons
	Rules          Rules  `json:"rules"`
	// Comparisons run, in the order of the page's columns.
	Comparisons []string         `json:"comparisons"`
	Templates   []string         `json:"templates"` // endpoint templates learned from the traffic
	Endpoints   []EndpointReport `json:"endpoints"`
}

// EndpointReport is one endpoint: every comparison's verdict side by side.
type EndpointReport struct {
	Name        string               `json:"name"`
	Requests    int                  `json:"requests"`    // exchanges compared
	Regressions int                  `json:"regressions"` // distinct findings over its comparisons
	Findings    []string             `json:"findings"`    // their keys ("latency p99 first_byte" for latency)
	Verdicts    map[string]string    `json:"verdicts"`    // by comparison: regression, ok, too few
	Comparisons []ComparisonReport   `json:"comparisons"`
	Latency     map[string]Quantiles `json:"latency"` // by "side measure": "production first_byte", "candidate total"
	Samples     []Sample             `json:"samples"` // exchanges where a finding occurs, regressions' first
}

// ComparisonReport is one comparison of an endpoint.
type ComparisonReport struct {
	Comparison        string          `json:"comparison"`
	Verdict           string          `json:"verdict"`
	Compared          int             `json:"compared"`
	Exact             int             `json:"exact"`
	Matched           int             `json:"matched"` // no difference outside noise
	MatchRate         float64         `json:"match_rate"`
	Regressions       int             `json:"regressions"`
	LatencyRegression bool            `json:"latency_regression"`
	Latency           []LatencyReport `json:"latency"`
	NoiseSource       string          `json:"noise_source"` // where its noise pairs come from
	NoiseN            int             `json:"noise_n"`      // how many
	Fields            []FieldReport   `json:"fields"`
}

// FieldReport is one key that differed, with the decision and its evidence.
type FieldReport struct {
	Key        string  `json:"key"`
	Kind       string  `json:"kind"`  // answer, write (the rows the request wrote) or latency
	Diffs      int     `json:"diffs"` // exchanges where it differed, noise explained apart
	Compared   int     `json:"compared"`
	Rate       float64 `json:"rate"`
	RateLow    float64 `json:"rate_low"` // one-sided lower bound at Rules.Confidence
	NoiseRate  float64 `json:"noise_rate"`
	NoiseDiffs int     `json:"noise_diffs"` // of NoiseN pairs
	NoiseN     int     `json:"noise_n"`
	// Learned: the reference's own values vary by themselves; Volatile
	// differences were explained by it (same shape on both sides).
	Learned    *Learned       `json:"learned,omitempty"`
	Volatile   int            `json:"volatile"`
	Regression bool           `json:"regression"`
	Collateral map[string]int `json:"collateral,omitempty"` // status: keys that differed with it
	Samples    []FieldSample  `json:"samples"`
}

// Learned is a noise verdict learned from a reference's own answers.
type Learned struct {
	Verdict string `json:"verdict"` // "unique per response (uuid)", "times near the exchange", "a counter"
	N       int    `json:"n"`       // values it rests on
	Shape   string `json:"shape"`
}

// LatencyReport compares one quantile of one measure, like with like.
type LatencyReport struct {
	Measure   string  `json:"measure"` // first_byte or total
	Quantile  string  `json:"quantile"`
	RefMS     float64 `json:"ref_ms"`
	RefHighMS float64 `json:"ref_high_ms"` // upper confidence bound
	CandMS    float64 `json:"cand_ms"`
	CandLowMS float64 `json:"cand_low_ms"` // lower confidence bound
	RefN      int     `json:"ref_n"`
	CandN     int     `json:"cand_n"`
	// What the environments alone make of the reference's latency:
	// × Scale + OverheadMS, learned from the other endpoints.
	Scale      float64 `json:"scale"`
	OverheadMS float64 `json:"overhead_ms"`
	Regression bool    `json:"regression"`
}

// Rules decide what counts as a regression.
type Rules struct {
	MinSamples int     `json:"min_samples"`
	Threshold  float64 `json:"min_rate"`   // minimum difference rate
	Confidence float64 `json:"confidence"` // of "significantly above noise"; 0: DefaultConfidence
}

// A candidate's latency quantile is a regression when its lower bound is
// above the reference's upper bound by this factor and margin: the test
// environment is rarely as fast as production, and a tail that doubles
// matters where 10% does not.
const (
	latencyFactor   = 1.25
	latencyMarginMS = 5
	maxFieldsShown  = 25
	maxEpSamples    = 12
)

var quantileLevels = []struct {
	name string
	q    float64
}{{"p50", .5}, {"p95", .95}, {"p99", .99}}

// refOf names a comparison's reference.
func refOf(cmp string) string {
	if cmp == VsBaseline {
		return "baseline"
	}
	return "production"
}

// fieldReport states a key's counts, noise and learned variation, and its
// rate's lower bound at z.
func fieldReport(cs *ComparisonState, learner *Learner, k string, f *FieldState, zz float64) FieldReport {
	fr := FieldReport{Key: k, Kind: KindOf(k), Diffs: f.Diffs, Compared: cs.Compared, Volatile: f.Volatile, Collateral: f.Collateral,
		Samples: f.Samples, NoiseN: cs.Noise.N, NoiseDiffs: cs.Noise.Fields[k], NoiseRate: cs.Noise.rate(k)}
	kept := f.ShapeKept
	if learner != nil {
		if fl := learner.Fields[k]; fl != nil {
			if v, ok := fl.verdict(); ok {
				fr.Learned = &Learned{Verdict: v, N: fl.N, Shape: fl.Shape}
				if fl.Shape == "int" {
					kept += f.IntsKept
				}
			}
		}
	}
	if v, ok := cs.Noise.verdict(k); ok && fr.Learned == nil {
		fr.Learned = &Learned{Verdict: v, N: cs.Noise.N}
		if !learner.generated(k) {
			kept = f.TypeKept // a label: any value of its type (see NoiseState.explains)
		}
	}
	if set, ok := strings.CutSuffix(k, ":order"); ok && fr.Learned == nil && learner.unordered(set) {
		// Reordered before the reference was seen reordering it: a set.
		o := learner.Orders[set]
		fr.Learned = &Learned{Verdict: fmt.Sprintf("written in varying order (%d of %d answers)", o.Varied, o.N), N: o.N}
		kept = f.Diffs
	}
	if fr.Learned != nil {
		// What differed before the variation was learned but kept the
		// shape is explained by it too; what is left changed the shape,
		// and is weighed against the reference's own shape changes.
		fr.Diffs -= kept
		fr.Volatile += kept
		fr.NoiseDiffs = cs.Noise.Reshaped[k]
		fr.NoiseRate = 0
		if cs.Noise.N >= minNoise {
			fr.NoiseRate = float64(fr.NoiseDiffs) / float64(cs.Noise.N)
		}
	}
	if cs.Compared > 0 {
		fr.Rate = float64(fr.Diffs) / float64(cs.Compared)
		fr.RateLow = wilsonLower(fr.Diffs, cs.Compared, zz)
	}
	return fr
}

// minScaleEndpoints is how many other endpoints make an environment's
// latency estimate; with fewer, latencies are compared as they are.
const minScaleEndpoints = 3

// environment is what the candidate's environment alone makes of one
// endpoint's latency: reference × Scale + OverheadMS.
type environment struct{ Scale, OverheadMS float64 }

// environments estimate, for each endpoint, comparison and measure, how
// much slower the candidate's environment answers than the reference's,
// from the other endpoints: another machine, network, data size or a cold
// start makes every endpoint slower alike, which is not a regression of
// any one of them. Part of that is a constant (a network hop, queueing, a
// cold JIT) and part a factor (a slower CPU): a constant 8 ms is ×9 on an
// endpoint of 1 ms and ×1.3 on one of 25, so one ratio for all would
// excuse a slower 25 ms endpoint with the fast ones' ×9. The constant is
// what the fastest other endpoints gained; the factor, the typical ratio
// of the others slower than the constant, once it is taken off. The estimate only ever excuses:
// an environment found faster accuses no endpoint (a candidate that
// sped every endpoint up but one has not slowed that one down).
func (a *aggregate) environments(minSamples int) map[string]map[string]environment {
	type point struct {
		endpoint  string
		ref, cand float64
	}
	median := func(vals []float64) float64 {
		s := slices.Sorted(slices.Values(vals))
		return s[len(s)/2]
	}
	points := map[string][]point{} // by "comparison measure"
	for _, ep := range a.endpoints {
		for _, cmp := range []string{VsProduction, VsBaseline} {
			for _, m := range []string{"first_byte", "total"} {
				ref, cand := ep.Latency[refOf(cmp)+" "+m], ep.Latency["candidate "+m]
				if ep.Comparisons[cmp] == nil || ref == nil || cand == nil || ref.N < minSamples || cand.N < minSamples {
					continue
				}
				if rm := median(ref.Vals); rm > 0 {
					points[cmp+" "+m] = append(points[cmp+" "+m], point{ep.Name, rm, median(cand.Vals)})
				}
			}
		}
	}
	out := map[string]map[string]environment{}
	for k, pts := range points {
		slices.SortFunc(pts, func(x, y point) int { return cmp.Compare(x.ref, y.ref) })
		for _, e := range pts {
			env := environment{Scale: 1}
			// The others: a regressed endpoint does not excuse itself.
			others := slices.DeleteFunc(slices.Clone(pts), func(o point) bool { return o.endpoint == e.endpoint })
			if len(others) >= minScaleEndpoints {
				var added, ratios []float64
				for _, o := range others[:minScaleEndpoints] {
					added = append(added, o.cand-o.ref)
				}
				env.OverheadMS = max(0, median(added))
				for _, o := range others {
					// Where the reference's own time is below the
					// constant, a ratio is mostly that constant's noise.
					if o.ref >= env.OverheadMS {
						ratios = append(ratios, (o.cand-env.OverheadMS)/o.ref)
					}
				}
				if len(ratios) >= minScaleEndpoints {
					env.Scale = max(1, median(ratios))
				}
			}
			if out[e.endpoint] == nil {
				out[e.endpoint] = map[string]environment{}
			}
			out[e.endpoint][k] = env
		}
	}
	return out
}

// report builds the report of the aggregate.
func (a *aggregate) report(r Rules) Report {
	if r.Confidence == 0 {
		r.Confidence = DefaultConfidence
	}
	zz := z(r.Confidence)
	envs := a.environments(r.MinSamples)
	out := Report{Rules: r}
	cmps := map[string]bool{}
	for _, ep := range a.endpoints {
		er := EndpointReport{Name: ep.Name, Requests: ep.Requests, Latency: map[string]Quantiles{}, Verdicts: map[string]string{}}
		for name, res := range ep.Latency {
			er.Latency[name] = res.quantiles()
		}
		found := map[string]bool{}
		var samples []Sample
		for _, name := range []string{VsProduction, VsBaseline} {
			refName := refOf(name)
			cs, learner := a.withSeed(ep, name, refName)
			if cs == nil {
				continue
			}
			cmps[name] = true
			cr := ComparisonReport{Comparison: name, Compared: cs.Compared, Exact: cs.Exact, Matched: cs.Matched,
				NoiseSource: cs.Noise.Source, NoiseN: cs.Noise.N}
			if cs.Compared > 0 {
				cr.MatchRate = float64(cs.Matched) / float64(cs.Compared)
			}
			for k, f := range cs.Fields {
				fr := fieldReport(cs, learner, k, f, zz)
				fr.Regression = cs.Compared >= r.MinSamples && fr.Diffs > 0 && fr.Rate >= r.Threshold && fr.RateLow > fr.NoiseRate
				if fr.Regression {
					cr.Regressions++
					if !found[k] {
						found[k] = true
						er.Findings = append(er.Findings, k)
					}
				}
				cr.Fields = append(cr.Fields, fr)
			}
			slices.SortFunc(cr.Fields, func(x, y FieldReport) int {
				if x.Regression != y.Regression {
					return map[bool]int{true: -1, false: 1}[x.Regression]
				}
				if x.Diffs != y.Diffs {
					return y.Diffs - x.Diffs
				}
				return strings.Compare(x.Key, y.Key)
			})
			// Samples: the regressions' first, then the other findings'.
			for _, fr := range cr.Fields {
				for _, s := range cs.Fields[fr.Key].exchanges {
					if len(samples) < maxEpSamples && !slices.ContainsFunc(samples, func(o Sample) bool {
						return o.Time.Equal(s.Time) && o.Request == s.Request && o.Comparison == s.Comparison
					}) {
						samples = append(samples, s)
					}
				}
			}
			cr.Fields = cr.Fields[:min(len(cr.Fields), maxFieldsShown)]
			// Like with like: time to the first byte where both sides have
			// it (production's from packets, the replay's measured), else
			// the full duration.
			for _, m := range []string{"first_byte", "total"} {
				ref, cand := ep.Latency[refName+" "+m], ep.Latency["candidate "+m]
				if ref == nil || cand == nil || ref.N < r.MinSamples || cand.N < r.MinSamples {
					continue
				}
				if len(cr.Latency) > 0 {
					break
				}
				rs, csr := slices.Sorted(slices.Values(ref.Vals)), slices.Sorted(slices.Values(cand.Vals))
				for _, ql := range quantileLevels {
					// A quantile is judged only with a few samples expected
					// above it on both sides (p95: 60, p99: 300): a tail
					// estimated from a handful of exchanges is one slow
					// scheduling away from a false regression.
					if need := max(r.MinSamples, int(math.Ceil(3/(1-ql.q)))); ref.N < need || cand.N < need {
						continue
					}
					_, rv, rhi := quantileCI(rs, ql.q, zz)
					clo, cv, _ := quantileCI(csr, ql.q, zz)
					env := envs[ep.Name][name+" "+m]
					if env.Scale == 0 {
						env.Scale = 1
					}
					lr := LatencyReport{Measure: m, Quantile: ql.name, RefMS: rv, RefHighMS: rhi, CandMS: cv, CandLowMS: clo,
						RefN: ref.N, CandN: cand.N, Scale: env.Scale, OverheadMS: env.OverheadMS,
						Regression: clo > latencyFactor*(env.Scale*rhi+env.OverheadMS)+latencyMarginMS}
					if lr.Regression {
						cr.LatencyRegression = true
						cr.Regressions++
						// One finding per endpoint however many quantiles
						// and comparisons are slower: one cause.
						if !found["latency"] {
							found["latency"] = true
							er.Findings = append(er.Findings, "latency "+ql.name+" "+m)
						}
					}
					cr.Latency = append(cr.Latency, lr)
				}
			}
			switch {
			case cr.Regressions > 0:
				cr.Verdict = "regression"
			case cs.Compared < r.MinSamples:
				cr.Verdict = "too few"
			default:
				cr.Verdict = "ok"
			}
			er.Verdicts[name] = cr.Verdict
			er.Comparisons = append(er.Comparisons, cr)
		}
		er.Samples = samples
		er.Regressions = len(er.Findings)
		out.Regressions += er.Regressions
		out.Endpoints = append(out.Endpoints, er)
	}
	for _, name := range []string{VsProduction, VsBaseline} {
		if cmps[name] {
			out.Comparisons = append(out.Comparisons, name)
		}
	}
	slices.SortFunc(out.Endpoints, func(x, y EndpointReport) int {
		if x.Regressions != y.Regressions {
			return y.Regressions - x.Regressions
		}
		if x.Requests != y.Requests {
			return y.Requests - x.Requests
		}
		return strings.Compare(x.Name, y.Name)
	})
	out.Generated = time.Now().UTC()
	return out
}

// Report returns the live report of this handler.
func (c *Comparator) Report() Report {
	c.aggMu.Lock()
	c.agg.consolidate(c.grouper.Rename)
	r := c.agg.report(Rules{MinSamples: c.cfg.MinSamples, Threshold: c.cfg.Threshold, Confidence: c.cfg.Confidence})
	c.aggMu.Unlock()
	r.Title = "shadowtap: candidate vs reference"
	r.Handlers, r.Live = []string{c.cfg.Handler}, true
	r.Templates = c.grouper.Learned()
	r.Compared, r.Incomplete, r.Dropped = c.Stats.Compared.Load(), c.Stats.Incomplete.Load(), c.Stats.Dropped.Load()
	r.WritesCompared = c.Stats.WritesCompared.Load()
	return r
}

//go:embed report.html
var page string

// RenderHTML writes the report page; with r nil it loads /api/report
// (live), else it embeds r (a standalone file).
func RenderHTML(w io.Writer, r *Report) error {
	data := []byte("null")
	if r != nil {
		var err error
		if data, err = json.Marshal(r); err != nil {
			return err
		}
		// Keep the JSON from closing the script element.
		data = bytes.ReplaceAll(data, []byte("</"), []byte(`<\/`))
	}
	_, err := io.WriteString(w, strings.Replace(page, "/*DATA*/null", string(data), 1))
	return err
}

// Handler serves the page at /report, the JSON at /api/report and the
// mergeable state at /api/state.
func (c *Comparator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/report", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		RenderHTML(w, nil)
	})
	mux.HandleFunc("/api/report", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(c.Report())
	})
	mux.HandleFunc("/api/state", func(w http.ResponseWriter, _ *http.Request) {
		// The raw, mergeable state (WriteState): `shadowtap report -from`.
		w.Header().Set("Content-Type", "application/jsonl")
		c.WriteState(w)
	})
	return mux
}

// MergeLogs builds one report from the difference logs of several
// handlers: the last statistics line of each handler and endpoint holds
// its cumulative state, merged over handlers; difference lines give the
// samples.
func MergeLogs(readers []io.Reader, rules Rules) (Report, error) {
	type hk struct{ handler, endpoint string }
	last := map[hk]logLine{}
	var diffs []logLine
	handlers := map[string]bool{}
	templates := map[string]bool{}
	for _, rd := range readers {
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for n := 1; sc.Scan(); n++ {
			var l logLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				return Report{}, fmt.Errorf("compare: log line %d: %w", n, err)
			}
			handlers[l.Handler] = true
			for _, t := range l.Templates {
				templates[t] = true
			}
			switch l.Type {
			case "stats":
				last[hk{l.Handler, l.Endpoint}] = l
			case "diff":
				if l.Sample != nil {
					diffs = append(diffs, l)
				}
			}
		}
		if err := sc.Err(); err != nil {
			return Report{}, fmt.Errorf("compare: log: %w", err)
		}
	}
	a := newAggregate()
	for _, l := range last {
		if l.State != nil && l.RenamedTo == "" {
			a.endpoint(l.Endpoint).merge(l.State)
		}
	}
	rename := renameWith(slices.Sorted(maps.Keys(templates)))
	a.consolidate(rename)
	for _, l := range diffs {
		ep := a.endpoints[rename(l.Endpoint)]
		if ep == nil || ep.Comparisons[l.Comparison] == nil {
			continue
		}
		for _, k := range l.Sample.Findings {
			if f := ep.Comparisons[l.Comparison].Fields[k]; f != nil && len(f.exchanges) < maxExchanges {
				f.exchanges = append(f.exchanges, *l.Sample)
			}
		}
	}
	r := a.report(rules)
	r.Handlers = slices.Sorted(maps.Keys(handlers))
	r.Templates = slices.Sorted(maps.Keys(templates))
	r.Title = fmt.Sprintf("shadowtap release report: %d handler(s)", len(r.Handlers))
	for _, e := range r.Endpoints {
		r.Compared += uint64(e.Requests)
	}
	return r, nil
}

// renameWith maps endpoint names onto learned templates ("GET
// /api/items/{id}": the segment after "GET /api/items" is a parameter),
// for logs of handlers that learned different templates.
func renameWith(templates []string) func(string) string {
	params := map[string]string{}
	for _, t := range templates {
		if i := strings.LastIndexByte(t, '/'); i > 0 {
			params[t[:i]] = t[i+1:]
		}
	}
	return func(name string) string {
		if len(params) == 0 {
			return name
		}
		method, path, ok := strings.Cut(name, " ")
		if !ok {
			return name
		}
		segs := strings.Split(path, "/")
		key := method + " "
		for i, s := range segs {
			if i > 0 {
				if p, ok := params[key]; ok {
					segs[i], s = p, p
				}
				key += "/"
			}
			key += s
		}
		return method + " " + strings.Join(segs, "/")
	}
}
