package gate

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/shadowtap/shadowtap/internal/compare"
)

func TestParseAccept(t *testing.T) {
	for _, c := range []struct {
		name, yaml, err string
	}{
		{"empty", "", ""},
		{"ok", "accept:\n  - {endpoint: GET /a, field: body.x, reason: r}\n", ""},
		{"unknown key", "accept:\n  - {endpoint: GET /a, field: body.x, reason: r, why: w}\n", "field why not found"},
		{"no reason", "accept:\n  - {endpoint: GET /a, field: body.x}\n", "entry 1 (GET /a body.x): reason is required"},
		{"no field", "accept:\n  - {endpoint: GET /a, reason: r}\n", "entry 1: field is required"},
		{"no endpoint", "accept:\n  - {field: x, reason: r}\n", "entry 1: endpoint is required"},
		{"bad comparison", "accept:\n  - {endpoint: a, field: x, reason: r, comparison: vs-staging}\n", `comparison "vs-staging"`},
	} {
		_, err := ParseAccept([]byte(c.yaml), "a.yaml")
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.err)
		}
	}
}

// The example accept file parses.
func TestExampleAccept(t *testing.T) {
	as, err := LoadAccept(filepath.Join("..", "..", "examples", "ci", ".shadowtap", "accept.yaml"))
	if err != nil || len(as) == 0 {
		t.Fatalf("%d entries, %v", len(as), err)
	}
	for _, p := range []string{"github-actions.yml", "gitlab-ci.yml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "ci", p))
		var v map[string]any
		if err == nil {
			err = yaml.Unmarshal(b, &v)
		}
		if err != nil || !bytes.Contains(b, []byte("shadowtap verify -candidate")) {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// report builds a report of one endpoint with a regression in a field,
// a difference below the bar, a noise field and a latency regression.
func report() compare.Report {
	return compare.Report{Comparisons: []string{compare.VsProduction}, Regressions: 2, Endpoints: []compare.EndpointReport{{
		Name: "GET /api/items/{id}", Requests: 100, Regressions: 2, Findings: []string{"body.price", "latency p99 first_byte"},
		Verdicts: map[string]string{compare.VsProduction: "regression"},
		Comparisons: []compare.ComparisonReport{{Comparison: compare.VsProduction, Verdict: "regression", Compared: 100, Regressions: 2,
			Fields: []compare.FieldReport{
				{Key: "body.price", Diffs: 40, Compared: 100, Rate: .4, RateLow: .3, Regression: true,
					Samples: []compare.FieldSample{{Field: "body.price", Kind: "changed", Ref: "4.25", Cand: "4.3"}}},
				{Key: "body.note", Diffs: 1, Compared: 100, Rate: .01},
				{Key: "body.id", Volatile: 100, Compared: 100, Learned: &compare.Learned{Verdict: "unique per response (uuid)", N: 100}},
			},
			Latency: []compare.LatencyReport{{Measure: "first_byte", Quantile: "p99", Regression: true}},
		}},
	}}}
}

func TestDecide(t *testing.T) {
	r := report()
	o := Decide(r, nil, Options{LatencyFails: true})
	if len(o.Regressions) != 2 || len(o.Differences) != 1 || len(o.Noise) != 1 || !o.Fails(FailRegressions) || o.Fails(FailNone) {
		t.Fatalf("outcome %+v", o)
	}
	if o.Regressions[0].Example != "body.price (changed): reference 4.25, candidate 4.3" {
		t.Errorf("example %q", o.Regressions[0].Example)
	}
	// Latency reported, not gating.
	o = Decide(r, nil, Options{})
	if len(o.Regressions) != 1 || len(o.Latency) != 1 || o.Report.Regressions != 1 || o.Report.Endpoints[0].Comparisons[0].LatencyRegression {
		t.Errorf("latency not gating: %d regressions, %d latency, report %d", len(o.Regressions), len(o.Latency), o.Report.Regressions)
	}
	// Everything accepted: passes on regressions, fails on any (a
	// difference below the bar is left), and the report agrees.
	accepts, err := ParseAccept([]byte(`accept:
  - {endpoint: "GET /api/items/*", field: body.price, reason: new prices}
  - {endpoint: "GET /api/items/*", field: "latency *", reason: slower by design}
  - {endpoint: "GET /api/users/*", field: body.x, reason: unused}
`), "a")
	if err != nil {
		t.Fatal(err)
	}
	o = Decide(r, accepts, Options{LatencyFails: true})
	ep := o.Report.Endpoints[0]
	switch {
	case len(o.Regressions) != 0 || len(o.Accepted) != 2 || o.Fails(FailRegressions) || !o.Fails(FailAny):
		t.Errorf("accepted: %+v", o)
	case o.Report.Regressions != 0 || ep.Regressions != 0 || ep.Verdicts[compare.VsProduction] != "ok" || ep.Comparisons[0].Fields[0].Regression:
		t.Errorf("the report still shows the accepted regressions: %+v", ep)
	case len(o.Unused) != 1 || o.Unused[0].Field != "body.x":
		t.Errorf("unused %+v", o.Unused)
	}
	// Decide does not change its input.
	if !r.Endpoints[0].Comparisons[0].Fields[0].Regression || r.Endpoints[0].Verdicts[compare.VsProduction] != "regression" {
		t.Error("Decide changed the report it was given")
	}
	// A comparison-specific entry does not accept another comparison's finding.
	accepts, _ = ParseAccept([]byte("accept:\n  - {endpoint: '*', field: body.price, reason: r, comparison: candidate-vs-baseline}\n"), "a")
	if o = Decide(r, accepts, Options{}); len(o.Accepted) != 0 {
		t.Errorf("accepted across comparisons: %+v", o.Accepted)
	}
	// Against a baseline, latency gates whatever the replay speed: both
	// got the same requests at the same moment.
	rb := report()
	rb.Endpoints[0].Comparisons[0].Comparison = compare.VsBaseline
	if o = Decide(rb, nil, Options{BaselineLatencyFails: true}); len(o.Regressions) != 2 || len(o.Latency) != 0 {
		t.Errorf("latency vs baseline: %d regressions, %d latency reported only", len(o.Regressions), len(o.Latency))
	}
	if o = Decide(r, nil, Options{BaselineLatencyFails: true}); len(o.Regressions) != 1 || len(o.Latency) != 1 {
		t.Errorf("latency vs production at max speed: %d regressions, %d latency reported only", len(o.Regressions), len(o.Latency))
	}
	// One slower endpoint is one latency finding, however many of its
	// quantiles are slower.
	rq := report()
	rq.Endpoints[0].Comparisons[0].Latency = []compare.LatencyReport{{Measure: "first_byte", Quantile: "p50", Regression: true},
		{Measure: "first_byte", Quantile: "p95", Regression: true}, {Measure: "first_byte", Quantile: "p99", Regression: true}}
	if o = Decide(rq, nil, Options{LatencyFails: true}); len(o.Regressions) != 2 || o.Report.Regressions != 2 ||
		!strings.Contains(o.Regressions[1].Example, "p99") {
		t.Errorf("three slower quantiles: %d regressions, %d distinct in the report: %+v", len(o.Regressions), o.Report.Regressions, o.Regressions)
	}
	// Problems fail the gate unless the policy is none.
	o = Decide(compare.Report{}, nil, Options{})
	o.Problems = []string{"the candidate did not answer 3 request(s)"}
	if !o.Fails(FailRegressions) || o.Fails(FailNone) {
		t.Error("problems do not fail the gate")
	}
}

func TestOutputsEscape(t *testing.T) {
	r := report()
	r.Endpoints[0].Name = "GET /a|b/<x>"
	o := Decide(r, nil, Options{LatencyFails: true})
	var md, junit bytes.Buffer
	if err := WriteMarkdown(&md, "verify", &o, FailRegressions); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "`GET /a\\|b/<x>`") || !strings.Contains(md.String(), "| `body.price` | candidate-vs-production | 40.0% (40/100) | 0.0% |") {
		t.Errorf("markdown:\n%s", md.String())
	}
	if err := WriteJUnit(&junit, &o, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(junit.String(), `name="GET /a|b/&lt;x&gt;"`) {
		t.Errorf("junit:\n%s", junit.String())
	}
}
