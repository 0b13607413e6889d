package compare

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
)

func TestWilson(t *testing.T) {
	// Wilson's interval for 8 of 10 at 95% (two-sided) is 0.490 to 0.943.
	if lo, hi := wilsonLower(8, 10, z(0.975)), wilsonUpper(8, 10, z(0.975)); math.Abs(lo-0.4902) > 0.001 || math.Abs(hi-0.9433) > 0.001 {
		t.Errorf("8/10: %.4f to %.4f", lo, hi)
	}
	if math.Abs(z(0.99)-2.3263) > 0.001 {
		t.Errorf("z(0.99) = %v", z(0.99))
	}
	// 3% of 3,000 is significantly above 2%; 3% of 100 is not above 0.
	if lo := wilsonLower(90, 3000, z(0.99)); lo < 0.022 || lo > 0.03 {
		t.Errorf("90/3000: lower bound %v", lo)
	}
	if lo := wilsonLower(3, 100, z(0.99)); lo > 0.01 {
		t.Errorf("3/100: lower bound %v", lo)
	}
	if wilsonLower(0, 50, 2.33) != 0 {
		t.Error("0/50 has a positive lower bound")
	}
}

func TestQuantileCI(t *testing.T) {
	s := make([]float64, 1000)
	for i := range s {
		s[i] = float64(i + 1)
	}
	lo, est, hi := quantileCI(s, 0.99, z(0.99))
	if est != 990 || lo > 985 || lo < 975 || hi < 993 || hi > 1000 {
		t.Errorf("p99 of 1..1000: %v %v %v", lo, est, hi)
	}
	lo, est, hi = quantileCI(s[:10], 0.99, z(0.99))
	if hi != 10 || est != 9 {
		t.Errorf("p99 of 10 samples: %v %v %v (the bound is the largest)", lo, est, hi)
	}
}

// TestLearnedVariation: production's own answers to POST requests teach
// which fields vary by themselves, and only a difference that keeps the
// value's shape is explained by it.
func TestLearnedVariation(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	now := time.Now()
	l := &Learner{Fields: map[string]*FieldLearn{}}
	h := http.Header{"Content-Type": {"application/json"}}
	for i := range 40 {
		// Fractions of 10 ms steps: Go's RFC3339Nano writes .01, .1, none.
		at := now.Truncate(time.Second).Add(time.Duration(i) * 1010 * time.Millisecond)
		cart := uuid(r)
		req := parseRequest(t, "POST", "/api/carts/"+cart+"/orders", `{"sku":"SKU-1"}`)
		body := fmt.Sprintf(`{"id":%q,"cart":%q,"owner":"0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c","number":%d,"createdAt":%q,"price":%d.5,"token":"%016x%016x","uptime":%.3f}`,
			uuid(r), cart, 500+i, at.UTC().Format(time.RFC3339Nano), r.IntN(9), r.Uint64(), r.Uint64(), 3600.5+at.Sub(now).Seconds())
		l.observe(diff.Parse(diff.Message{Status: 201, Header: h, Body: []byte(body)}, diff.DefaultOptions), diff.DefaultOptions, req, at)
	}
	for key, want := range map[string]string{
		"body.id":             "unique per response (uuid)",
		"body.number":         "a counter (increasing integers)",
		"body.uptime":         "a counter (increasing numbers)", // seconds since the process started
		"body.createdAt":      "times near the exchange (time)",
		"body.token":          "unique per response (hex32)",
		"body.cart":           "", // echoes the request: depends on it
		"body.owner":          "", // the same in every answer
		"body.price":          "", // varies, but has no shape of its own
		"header.Content-Type": "",
	} {
		got, _ := l.Fields[key].verdict()
		if got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	ref := msg(`{"id":"0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c","createdAt":"2026-11-26T13:00:00Z","number":7}`)
	for cand, explained := range map[string]bool{
		`{"id":"1c8d7b2f-4a8f-4d2c-8b66-3a9a1a2e3f4d","createdAt":"2026-11-26T13:00:05Z","number":9}`:   true,
		`{"id":"1c8d7b2f4a8f4d2c8b663a9a1a2e3f4d","createdAt":"2026-11-26T13:00:00Z","number":7}`:       false, // another id format
		`{"id":"0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c","createdAt":"2026-11-26 13:00:05.5","number":7}`:  true,  // a time written otherwise is a time
		`{"id":"0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c","createdAt":"soon","number":7}`:                   false, // not a time
		`{"id":"0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c","createdAt":"2026-11-26T13:00:00Z","number":"7"}`: false, // another type
		`{"id":"0b7c6a1e-3f7e-4c1b-9a55-2f8f0f1d2e3c","number":7}`:                                      false, // missing
	} {
		ds := diff.Compare(ref, msg(cand), diff.DefaultOptions)
		if len(ds) == 0 || !explained && len(ds) != 1 {
			t.Fatalf("%s: %v", cand, ds)
		}
		for _, d := range ds {
			if got := l.explains(&d); got != explained {
				t.Errorf("%s: %+v explained %v, want %v", cand, d, got, explained)
			}
		}
	}
}

func msg(body string) diff.Message {
	return diff.Message{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)}
}

// TestBoundedState: answers with ever new keys and endpoints with ever new
// paths do not grow the state without bound.
func TestBoundedState(t *testing.T) {
	_, r := func() (*Comparator, Report) {
		c, err := New(Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 50, Wait: time.Minute,
			MaxPending: 100000, Queue: 100000, MinSamples: 5, Threshold: 0.01, Handler: "b"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := range 3000 {
			req := parseRequest(t, "GET", fmt.Sprintf("/p%d/x", i), "")
			req.ConnID = uint64(i)
			c.Expect(req)
			body := fmt.Sprintf(`{"k%d":1,"v":"%016x%016x"}`, i, i, i)
			c.Production(req, mirrored(t, answer{status: 200, header: [][2]string{{"Content-Type", "application/json"}}, body: body}, 1, 2))
			c.Result(result("cand", req, answer{status: 200, header: [][2]string{{"Content-Type", "application/json"}}, body: `{"other":2}`}, time.Now()))
		}
		for c.Stats.Compared.Load() < 3000 {
			time.Sleep(time.Millisecond)
		}
		c.aggMu.Lock()
		defer c.aggMu.Unlock()
		for _, ep := range c.agg.endpoints {
			for _, cs := range ep.Comparisons {
				if len(cs.Fields) > maxFields {
					t.Errorf("%s: %d fields", ep.Name, len(cs.Fields))
				}
			}
			for _, l := range ep.Learners {
				if len(l.Fields) > maxLearnKeys {
					t.Errorf("%s: %d learned keys", ep.Name, len(l.Fields))
				}
			}
		}
		return c, c.agg.report(Rules{MinSamples: 5})
	}()
	if len(r.Endpoints) > 50+1 {
		t.Errorf("%d endpoints", len(r.Endpoints))
	}
}

// wilsonUpper is the upper end of the interval, to check against
// published intervals.
func wilsonUpper(k, n int, z float64) float64 {
	if n == 0 {
		return 1
	}
	p, nf := float64(k)/float64(n), float64(n)
	z2 := z * z
	centre := p + z2/(2*nf)
	margin := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return math.Min(1, (centre+margin)/(1+z2/nf))
}
