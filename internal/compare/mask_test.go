package compare

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/mask"
)

// Production's personal data is compared as it is, then masked in every
// output: the report (JSON and page) and the difference log show
// pseudonyms, never an address or a card, and the candidate's changed
// e-mail address is still the finding it is, its two sides still
// different pseudonyms.
func TestMaskedInEveryOutput(t *testing.T) {
	var log bytes.Buffer
	c, err := New(Config{Candidate: "cand", Baseline: "base", Diff: diff.DefaultOptions, Wait: time.Minute, MaxPending: 1000, Queue: 1000,
		MinSamples: 10, Threshold: 0.05, Log: &log, LogSamples: 5, Mask: mask.New(mask.Rules{Fields: []string{"body.customer.street"}}, nil)},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var personal []string
	for i := range 40 {
		email, card, street := fmt.Sprintf("Customer.%d@Example.com", i), "4111 1111 1111 1111", fmt.Sprintf("%d Main St", i)
		personal = append(personal, email, strings.ToLower(email), card, street)
		answer := func(email string) string {
			b, _ := json.Marshal(map[string]any{"email": email, "card": card, "customer": map[string]string{"street": street}})
			return string(b)
		}
		req := request(t, uint64(i+1), "/api/customers?email="+email)
		c.Expect(req)
		c.Result(replayed("base", req, 200, answer(email), time.Millisecond))
		c.Result(replayed("cand", req, 200, answer(strings.ToLower(email)), time.Millisecond))
	}
	c.Close()
	r := c.Report()
	js, _ := json.Marshal(r)
	var page bytes.Buffer
	if err := RenderHTML(&page, &r); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"report JSON": string(js), "report page": page.String(), "difference log": log.String()} {
		for _, p := range personal {
			if strings.Contains(out, p) || strings.Contains(out, strings.ReplaceAll(p, " ", "")) {
				t.Errorf("%s shows %q", name, p)
				break
			}
		}
		if !strings.Contains(out, "[email:") {
			t.Errorf("%s shows no pseudonym", name)
		}
	}
	if len(r.Endpoints) != 1 || !strings.Contains(strings.Join(r.Endpoints[0].Findings, ","), "body.email") {
		t.Fatalf("the changed address is no finding: %+v", r.Endpoints)
	}
	for _, f := range r.Endpoints[0].Comparisons[0].Fields {
		for _, s := range f.Samples {
			if f.Key == "body.email" && s.Ref == s.Cand {
				t.Errorf("a difference masked away: %+v", s)
			}
		}
	}
}
