package compare

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Report is what the page and the JSON API show.
type Report struct {
	Title       string           `json:"title"`
	Handlers    []string         `json:"handlers"`
	Live        bool             `json:"live"` // one handler's view
	Generated   time.Time        `json:"generated"`
	Compared    uint64           `json:"compared"`
	Incomplete  uint64           `json:"incomplete"`
	Dropped     uint64           `json:"dropped"`
	Regressions int              `json:"regressions"`
	Endpoints   []EndpointReport `json:"endpoints"`
}

// EndpointReport is one endpoint group.
type EndpointReport struct {
	Name        string               `json:"name"`
	Requests    int                  `json:"requests"`
	Regressions int                  `json:"regressions"`
	Comparisons []ComparisonReport   `json:"comparisons"`
	Latency     map[string]Quantiles `json:"latency"`
	Samples     []Sample             `json:"samples"`
}

// ComparisonReport is one comparison of an endpoint.
type ComparisonReport struct {
	Comparison        string        `json:"comparison"`
	Compared          int           `json:"compared"`
	Exact             int           `json:"exact"`
	Matched           int           `json:"matched"` // no difference outside noisy fields
	MatchRate         float64       `json:"match_rate"`
	Regressions       int           `json:"regressions"`
	LatencyRegression bool          `json:"latency_regression"`
	Fields            []FieldReport `json:"fields"`
}

// FieldReport is one field that differed.
type FieldReport struct {
	Key        string        `json:"key"`
	Diffs      int           `json:"diffs"`
	Rate       float64       `json:"rate"`
	NoiseRate  float64       `json:"noise_rate"`
	Regression bool          `json:"regression"`
	Samples    []FieldSample `json:"samples"`
}

// Rules decide what counts as a regression.
type Rules struct {
	MinSamples int
	Threshold  float64
}

const maxFieldsShown = 25

// report builds the report of the aggregate.
func (a *aggregate) report(r Rules) Report {
	var out Report
	for _, ep := range a.endpoints {
		er := EndpointReport{Name: ep.name, Requests: ep.requests, Latency: map[string]Quantiles{}, Samples: ep.samples}
		for name, res := range ep.latency {
			er.Latency[name] = quantiles(res.vals, res.n)
		}
		for _, name := range []string{VsBaseline, VsProduction} {
			cs := ep.cmp[name]
			if cs == nil {
				continue
			}
			cr := ComparisonReport{Comparison: name, Compared: cs.compared, Exact: cs.exact, Matched: cs.matched}
			if cs.compared > 0 {
				cr.MatchRate = float64(cs.matched) / float64(cs.compared)
			}
			for k, f := range cs.fields {
				fr := FieldReport{Key: k, Diffs: f.diffs, Rate: float64(f.diffs) / float64(max(cs.compared, 1)),
					NoiseRate: ep.noise(name).rate(k), Samples: f.samples}
				fr.Regression = cs.compared >= r.MinSamples && fr.Rate >= r.Threshold && fr.Rate > fr.NoiseRate+r.Threshold
				if fr.Regression {
					cr.Regressions++
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
			cr.Fields = cr.Fields[:min(len(cr.Fields), maxFieldsShown)]
			refName := "production"
			if name == VsBaseline {
				refName = "baseline"
			}
			ref, cand := er.Latency[refName], er.Latency["candidate"]
			// Slower: the candidate's median well above the reference's.
			if ref.N >= r.MinSamples && cand.N >= r.MinSamples && cand.P50 > 1.5*ref.P50+10 {
				cr.LatencyRegression = true
				cr.Regressions++
			}
			er.Regressions += cr.Regressions
			er.Comparisons = append(er.Comparisons, cr)
		}
		out.Regressions += er.Regressions
		out.Endpoints = append(out.Endpoints, er)
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
	r := c.agg.report(Rules{MinSamples: c.cfg.MinSamples, Threshold: c.cfg.Threshold})
	c.aggMu.Unlock()
	r.Title = "shadowtap: candidate vs reference"
	r.Handlers, r.Live = []string{c.cfg.Handler}, true
	r.Compared, r.Incomplete, r.Dropped = c.Stats.Compared.Load(), c.Stats.Incomplete.Load(), c.Stats.Dropped.Load()
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

// Handler serves the page at /report and the JSON at /api/report.
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
	return mux
}

// MergeLogs builds one report from the difference logs of several
// handlers: the last statistics line of each handler and endpoint counts,
// summed over handlers; difference lines give the samples.
func MergeLogs(readers []io.Reader, rules Rules) (Report, error) {
	type hk struct{ handler, endpoint string }
	last := map[hk]logLine{}
	samples := map[string][]Sample{}
	handlers := map[string]bool{}
	for _, rd := range readers {
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for n := 1; sc.Scan(); n++ {
			var l logLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				return Report{}, fmt.Errorf("line %d: %w", n, err)
			}
			handlers[l.Handler] = true
			switch l.Type {
			case "stats":
				last[hk{l.Handler, l.Endpoint}] = l
			case "diff":
				if l.Sample != nil && len(samples[l.Endpoint]) < maxSamples {
					samples[l.Endpoint] = append(samples[l.Endpoint], *l.Sample)
				}
			}
		}
		if err := sc.Err(); err != nil {
			return Report{}, err
		}
	}
	a := newAggregate(Config{})
	for _, l := range last {
		ep := a.endpoint(l.Endpoint)
		ep.requests += l.Requests
		for name, cc := range l.Counts {
			cs := ep.cmp[name]
			if cs == nil {
				cs = &comparisonStats{fields: map[string]*fieldStats{}}
				ep.cmp[name] = cs
			}
			cs.compared += cc.Compared
			cs.exact += cc.Exact
			cs.matched += cc.Matched
			for k, d := range cc.Fields {
				f := cs.fields[k]
				if f == nil {
					f = &fieldStats{}
					cs.fields[k] = f
				}
				f.diffs += d
				if len(f.samples) < maxFieldSamples {
					f.samples = append(f.samples, l.FieldSamps[name][k]...)
					f.samples = f.samples[:min(len(f.samples), maxFieldSamples)]
				}
			}
		}
		for name, n := range l.NoiseN {
			ns := ep.noise(name)
			ns.n += n
			ns.global.n += n
			for k, v := range l.Noise[name] {
				ns.fields[k] += v
				ns.global.fields[k] += v
			}
		}
		for name, vals := range l.LatencyMS {
			for _, v := range vals {
				ep.lat(name, time.Duration(v*float64(time.Millisecond)))
			}
			ep.latency[name].n += l.LatencyN[name] - len(vals)
		}
	}
	for name, s := range samples {
		if ep := a.endpoints[name]; ep != nil {
			ep.samples = s
		}
	}
	r := a.report(rules)
	for h := range handlers {
		r.Handlers = append(r.Handlers, h)
	}
	slices.Sort(r.Handlers)
	r.Title = fmt.Sprintf("shadowtap release report: %d handler(s)", len(r.Handlers))
	for _, e := range r.Endpoints {
		for _, c := range e.Comparisons {
			r.Compared += uint64(c.Compared)
		}
	}
	return r, nil
}
