// Package gate turns a comparison report into a release decision and the
// outputs a CI system reads: which findings are regressions, which are
// accepted (known, intended changes listed in an accept file), the exit
// code, a JUnit XML file, a Markdown summary and a short text summary.
// It reads compare's public Report only, so `shadowtap verify` (offline
// replay) and `shadowtap report` (merged handler logs) decide alike.
package gate

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/shadowtap/shadowtap/internal/glob"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/shadowtap/shadowtap/internal/compare"
)

// Accept is a known, intended difference: findings of Field on Endpoint
// (in every comparison, or only in Comparison) are accepted changes, not
// regressions. "*" in Endpoint and Field matches any run of characters.
type Accept struct {
	Endpoint   string `yaml:"endpoint" json:"endpoint"`
	Field      string `yaml:"field" json:"field"`
	Comparison string `yaml:"comparison,omitempty" json:"comparison,omitempty"`
	Reason     string `yaml:"reason" json:"reason"`

	endpoint, field *regexp.Regexp
}

// acceptFile is the accept file's layout.
type acceptFile struct {
	Accept []Accept `yaml:"accept"`
}

// LoadAccept reads an accept file:
//
//	accept:
//	  - endpoint: "GET /api/items/{id}"
//	    field: body.price
//	    reason: prices are in cents since PR 412
//
// Unknown keys are errors, and so is an entry without endpoint, field or
// reason: an accepted change nobody can explain later is a hole in the gate.
func LoadAccept(path string) ([]Accept, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	return ParseAccept(b, path)
}

// ParseAccept decodes an accept file's bytes; name is used in errors.
func ParseAccept(b []byte, name string) ([]Accept, error) {
	var f acceptFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) { // an empty file accepts nothing
		return nil, fmt.Errorf("accept: %s: %w", name, err)
	}
	var errs []error
	for i := range f.Accept {
		a := &f.Accept[i]
		switch {
		case a.Endpoint == "":
			errs = append(errs, fmt.Errorf("accept: %s: entry %d: endpoint is required", name, i+1))
		case a.Field == "":
			errs = append(errs, fmt.Errorf("accept: %s: entry %d: field is required", name, i+1))
		case strings.TrimSpace(a.Reason) == "":
			errs = append(errs, fmt.Errorf("accept: %s: entry %d (%s %s): reason is required", name, i+1, a.Endpoint, a.Field))
		}
		if a.Comparison != "" && a.Comparison != compare.VsProduction && a.Comparison != compare.VsBaseline {
			errs = append(errs, fmt.Errorf("accept: %s: entry %d: comparison %q: want %s or %s", name, i+1, a.Comparison,
				compare.VsProduction, compare.VsBaseline))
		}
		a.endpoint, a.field = glob.Compile(a.Endpoint), glob.Compile(a.Field)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f.Accept, nil
}

func (a *Accept) matches(endpoint, comparison, field string) bool {
	if a.endpoint == nil {
		a.endpoint, a.field = glob.Compile(a.Endpoint), glob.Compile(a.Field)
	}
	return (a.Comparison == "" || a.Comparison == comparison) && a.endpoint.MatchString(endpoint) && a.field.MatchString(field)
}

// Finding is one field (or latency quantile) of one endpoint in one
// comparison, with its evidence.
type Finding struct {
	Endpoint   string  `json:"endpoint"`
	Comparison string  `json:"comparison"`
	Field      string  `json:"field"` // the key: body.items[*].price, status, latency p99 first_byte
	Kind       string  `json:"kind"`  // answer, write (what the request wrote to its database) or latency
	Diffs      int     `json:"diffs"`
	Compared   int     `json:"compared"`
	Rate       float64 `json:"rate"`
	RateLow    float64 `json:"rate_low"`
	NoiseRate  float64 `json:"noise_rate"`
	Noise      string  `json:"noise,omitempty"` // the learned verdict, for noise findings
	Example    string  `json:"example,omitempty"`
	Accepted   *Accept `json:"accepted,omitempty"`
}

// Outcome is the decision over a report.
type Outcome struct {
	// Report is the input with accepted findings no longer regressions:
	// its counts and verdicts are recomputed, so the page and the JSON say
	// the same as the exit code.
	Report      compare.Report
	Regressions []Finding // not accepted
	Accepted    []Finding // regressions an accept entry explains
	Differences []Finding // fields that differed below the regression bar (not noise)
	Noise       []Finding // fields whose differences the learned noise explains
	Latency     []Finding // latency regressions reported but not failing (Options.LatencyFails off)
	Unused      []Accept  // accept entries that matched no finding
	// Problems are whole-run failures outside the comparison (the
	// candidate refused or timed out requests, nothing was compared):
	// they fail the gate unless the policy is none.
	Problems []string
}

// Policies of -fail-on.
const (
	FailRegressions = "regressions" // a regression not accepted fails
	FailAny         = "any"         // also any unexplained difference below the bar
	FailNone        = "none"        // report only
)

// ParsePolicy checks a -fail-on value.
func ParsePolicy(s string) (string, error) {
	switch s {
	case FailRegressions, FailAny, FailNone:
		return s, nil
	}
	return "", fmt.Errorf("-fail-on %q: want regressions, any or none", s)
}

// Options tune the decision.
type Options struct {
	// LatencyFails makes latency regressions fail the gate. Against
	// production's recorded answers, a replay as fast as the targets
	// allow queues requests in the candidate, so its latency says more
	// about the replay than about the build: verify turns this on only
	// when the recording's timing is kept (-speed 1x).
	LatencyFails bool
	// BaselineLatencyFails makes latency regressions against a baseline
	// fail at any speed: the baseline gets the same requests at the same
	// moment as the candidate, so the ratio of their latencies is the
	// build's whatever the pace.
	BaselineLatencyFails bool
}

// latencyFinding is a comparison's latency regression: one finding
// however many quantiles are slower (one cause), named by the first
// (the most robust, p50 before p99) and showing each; keys are every
// slower quantile's name, any of which an accept entry may match.
func latencyFinding(endpoint string, cr *compare.ComparisonReport) (f struct {
	Finding
	keys []string
}, ok bool) {
	var shown []string
	for _, lr := range cr.Latency {
		if !lr.Regression {
			continue
		}
		key := "latency " + lr.Quantile + " " + lr.Measure
		if !ok {
			f.Finding = Finding{Endpoint: endpoint, Comparison: cr.Comparison, Field: key, Kind: "latency", Compared: lr.CandN}
			ok = true
		}
		f.keys = append(f.keys, key)
		shown = append(shown, fmt.Sprintf("%s %s: candidate %.1f ms (lower bound %.1f) vs reference %.1f ms (upper bound %.1f), environment ×%.2f +%.1f ms",
			lr.Quantile, lr.Measure, lr.CandMS, lr.CandLowMS, lr.RefMS, lr.RefHighMS, lr.Scale, lr.OverheadMS))
	}
	f.Example = strings.Join(shown, "; ")
	return f, ok
}

// clearLatency marks a comparison's latency as not regressed (accepted,
// or reported without gating).
func clearLatency(cr *compare.ComparisonReport) {
	for i := range cr.Latency {
		cr.Latency[i].Regression = false
	}
}

// Decide sorts the report's findings into regressions, accepted changes,
// differences below the bar and noise.
func Decide(r compare.Report, accepts []Accept, opts Options) Outcome {
	o := Outcome{}
	used := make([]bool, len(accepts))
	r.Endpoints = slices.Clone(r.Endpoints)
	r.Regressions = 0
	for ei := range r.Endpoints {
		ep := &r.Endpoints[ei]
		ep.Comparisons = slices.Clone(ep.Comparisons)
		ep.Verdicts = cloneMap(ep.Verdicts)
		ep.Findings = nil
		for ci := range ep.Comparisons {
			cr := &ep.Comparisons[ci]
			cr.Fields = slices.Clone(cr.Fields)
			cr.Latency = slices.Clone(cr.Latency)
			cr.Regressions = 0
			cr.LatencyRegression = false
			for fi := range cr.Fields {
				fr := &cr.Fields[fi]
				f := Finding{Endpoint: ep.Name, Comparison: cr.Comparison, Field: fr.Key, Kind: compare.KindOf(fr.Key), Diffs: fr.Diffs, Compared: fr.Compared,
					Rate: fr.Rate, RateLow: fr.RateLow, NoiseRate: fr.NoiseRate, Example: example(ep, cr.Comparison, fr)}
				switch {
				case fr.Regression:
					if i := acceptIndex(accepts, ep.Name, cr.Comparison, fr.Key); i >= 0 {
						used[i] = true
						f.Accepted = &accepts[i]
						fr.Regression = false
						o.Accepted = append(o.Accepted, f)
						continue
					}
					o.Regressions = append(o.Regressions, f)
					cr.Regressions++
					addOnce(&ep.Findings, fr.Key)
				case fr.Diffs > 0:
					if i := acceptIndex(accepts, ep.Name, cr.Comparison, fr.Key); i >= 0 {
						used[i] = true
						f.Accepted = &accepts[i]
						o.Accepted = append(o.Accepted, f)
						continue
					}
					o.Differences = append(o.Differences, f)
				case fr.Learned != nil:
					f.Noise = fr.Learned.Verdict
					o.Noise = append(o.Noise, f)
				default:
					// Differences only where the noise rate explains them.
					if fr.NoiseDiffs > 0 {
						f.Noise = fmt.Sprintf("differs in %d of %d noise pairs", fr.NoiseDiffs, fr.NoiseN)
						o.Noise = append(o.Noise, f)
					}
				}
			}
			if f, ok := latencyFinding(ep.Name, cr); ok {
				i := -1
				for _, k := range f.keys {
					if i = acceptIndex(accepts, ep.Name, cr.Comparison, k); i >= 0 {
						break
					}
				}
				switch {
				case i >= 0:
					used[i] = true
					f.Accepted = &accepts[i]
					clearLatency(cr)
					o.Accepted = append(o.Accepted, f.Finding)
				case !opts.LatencyFails && !(opts.BaselineLatencyFails && cr.Comparison == compare.VsBaseline):
					clearLatency(cr)
					o.Latency = append(o.Latency, f.Finding)
				default:
					o.Regressions = append(o.Regressions, f.Finding)
					cr.Regressions++
					cr.LatencyRegression = true
					if !slices.ContainsFunc(ep.Findings, func(k string) bool { return strings.HasPrefix(k, "latency ") }) {
						ep.Findings = append(ep.Findings, f.Field) // one latency finding per endpoint, as in the report
					}
				}
			}
			switch {
			case cr.Regressions > 0:
				cr.Verdict = "regression"
			case cr.Verdict == "regression":
				cr.Verdict = "ok" // its regressions were all accepted
			}
			if ep.Verdicts != nil {
				ep.Verdicts[cr.Comparison] = cr.Verdict
			}
		}
		ep.Regressions = len(ep.Findings)
		r.Regressions += ep.Regressions
	}
	for i, a := range accepts {
		if !used[i] {
			o.Unused = append(o.Unused, a)
		}
	}
	o.Report = r
	return o
}

// Fails reports whether the outcome fails the gate under policy.
func (o *Outcome) Fails(policy string) bool {
	switch policy {
	case FailNone:
		return false
	case FailAny:
		return len(o.Regressions) > 0 || len(o.Differences) > 0 || len(o.Problems) > 0
	}
	return len(o.Regressions) > 0 || len(o.Problems) > 0
}

func acceptIndex(accepts []Accept, endpoint, comparison, field string) int {
	for i := range accepts {
		if accepts[i].matches(endpoint, comparison, field) {
			return i
		}
	}
	return -1
}

// example renders a field's first sample: the request, where it differed
// and both values. Merged logs carry the endpoint's samples only.
func example(ep *compare.EndpointReport, cmp string, fr *compare.FieldReport) string {
	if len(fr.Samples) > 0 {
		s := fr.Samples[0]
		return fmt.Sprintf("%s (%s): reference %s, candidate %s", s.Field, s.Kind, short(s.Ref), short(s.Cand))
	}
	for _, s := range ep.Samples {
		if s.Comparison != cmp {
			continue
		}
		for _, d := range s.Differences {
			if d.Key == fr.Key {
				return fmt.Sprintf("%s: %s (%s): reference %s, candidate %s", short(s.Request), d.Field, d.Kind, short(d.Ref), short(d.Cand))
			}
		}
	}
	return ""
}

func short(s string) string {
	if s == "" {
		return "(none)"
	}
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

func addOnce(list *[]string, s string) {
	if !slices.Contains(*list, s) {
		*list = append(*list, s)
	}
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
