package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shadowtap/shadowtap/internal/engine"
	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// The response parser's and the pairing's counters reach /metrics, each
// under its own name, and the precise rejection reasons are labels.
func TestResponseAndRejectCountersExported(t *testing.T) {
	var st engine.Stats
	st.Responses.Responses.Add(7)
	st.Responses.OverBudget.Add(2)
	st.Responses.Bad.Add(3)
	st.Paired.Add(5)
	st.NoResponse.Add(1)
	st.Unmatched.Add(4)
	st.HTTP.Rejected[httpstream.RejectBareLF].Add(6)
	reg := prometheus.NewPedanticRegistry()
	Register(reg, Sources{Engine: &st})
	want := map[string]float64{
		"shadowtap_responses_parsed_total":      7,
		"shadowtap_responses_over_budget_total": 2,
		"shadowtap_responses_bad_total":         3,
		"shadowtap_responses_paired_total":      5,
		"shadowtap_responses_missing_total":     1,
		"shadowtap_responses_unmatched_total":   4,
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if f.GetName() == "shadowtap_requests_rejected_total" {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == "bare_lf" {
						got["bare_lf"] = m.GetCounter().GetValue()
					}
				}
				continue
			}
			if m.GetCounter() != nil {
				got[f.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	if got["bare_lf"] != 6 {
		t.Errorf(`shadowtap_requests_rejected_total{reason="bare_lf"} = %v, want 6`, got["bare_lf"])
	}
	if n := testutil.CollectAndCount(reg, "shadowtap_responses_incomplete_total"); n != 1 {
		t.Errorf("responses_incomplete: %d series", n)
	}
}
