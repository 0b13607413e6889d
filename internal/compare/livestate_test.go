package compare

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestWriteStateMergesExactly: a handler's /api/state, merged alone, gives
// back its live report: the same endpoints, counts, findings, field
// rates and latency quantiles (the reservoirs are served whole, not
// thinned as in the log), and samples for the findings. Served twice
// under two names it doubles every count and keeps every finding.
func TestWriteStateMergesExactly(t *testing.T) {
	c, _ := simulate(t, true, true, nil)
	live := c.Report()
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	state, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	start := time.Now()
	c.WriteState(io.Discard) // the time the comparison waits for it
	t.Logf("state: %d bytes, %d endpoints, rendered in %s", len(state), len(live.Endpoints), time.Since(start))
	if ct := resp.Header.Get("Content-Type"); ct != "application/jsonl" {
		t.Errorf("content type %q", ct)
	}
	if first, _, _ := strings.Cut(string(state), "\n"); !strings.HasPrefix(first, `{"type":"handler","handler":"sim"`) {
		t.Errorf("first line %q", first)
	}
	merged, err := MergeLogs([]io.Reader{bytes.NewReader(state)}, live.Rules)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := findings(merged), findings(live); len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("merged findings\n%s\nlive\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !reflect.DeepEqual(merged.Templates, live.Templates) || len(merged.Handlers) != 1 || merged.Compared != live.Compared {
		t.Errorf("templates %v/%v, handlers %v, compared %d/%d", merged.Templates, live.Templates, merged.Handlers, merged.Compared, live.Compared)
	}
	if got, want := counts(merged), counts(live); got != want {
		t.Errorf("merged counts\n%s\nlive\n%s", got, want)
	}
	for _, e := range merged.Endpoints {
		if e.Regressions > 0 && !strings.HasPrefix(e.Findings[0], "latency") && len(e.Samples) == 0 {
			t.Errorf("%s: no samples in the merged report", e.Name)
		}
	}

	twice, err := MergeLogs([]io.Reader{bytes.NewReader(state),
		strings.NewReader(strings.ReplaceAll(string(state), `"handler":"sim"`, `"handler":"sim2"`))}, live.Rules)
	if err != nil {
		t.Fatal(err)
	}
	if len(twice.Handlers) != 2 || twice.Compared != 2*live.Compared || !slices.Equal(findings(twice), findings(live)) {
		t.Errorf("twice: handlers %v, compared %d (live %d), findings %v", twice.Handlers, twice.Compared, live.Compared, findings(twice))
	}

	// A handler that compared nothing yet still counts as merged.
	idle, _ := New(Config{Candidate: "cand", AgainstProduction: true, Handler: "idle"}, nil)
	defer idle.Close()
	var b bytes.Buffer
	if err := idle.WriteState(&b); err != nil {
		t.Fatal(err)
	}
	if r, err := MergeLogs([]io.Reader{&b}, live.Rules); err != nil || !slices.Equal(r.Handlers, []string{"idle"}) || len(r.Endpoints) != 0 {
		t.Errorf("idle handler: %v %v %d endpoints", err, r.Handlers, len(r.Endpoints))
	}
}

// counts renders a report's per-endpoint numbers: requests, and per
// comparison the verdict, compared, exact and matched, each field's
// differences, volatile count and regression, and each latency
// quantile.
func counts(r Report) string {
	var b strings.Builder
	for _, e := range r.Endpoints {
		line, _ := json.Marshal(struct {
			N   string
			Req int
			V   map[string]string
		}{e.Name, e.Requests, e.Verdicts})
		b.Write(line)
		b.WriteByte('\n')
		for _, c := range e.Comparisons {
			line, _ = json.Marshal(struct {
				C, V                   string
				Compared, Exact, Match int
				F                      []FieldReport
				L                      []LatencyReport
			}{c.Comparison, c.Verdict, c.Compared, c.Exact, c.Matched, c.Fields, c.Latency})
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
