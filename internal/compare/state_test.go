package compare

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
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

// TestCreatedNumbersLearnedInAnswerOrder: a replay's comparisons finish
// out of order (many requests at once), so production's order numbers
// reach the learner shuffled; they still increase with the time of the
// answer that made them, and are a counter. A number in a path (the
// Location of the order created) is one whatever its digits: /api/orders/9
// and /api/orders/10 are the same form, of a value unique per response
// (express, Go, Flask: A/A reported body.number and header.Location).
func TestCreatedNumbersLearnedInAnswerOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	t0 := time.Now()
	l := &Learner{Fields: map[string]*FieldLearn{}}
	req := parseRequest(t, "POST", "/api/orders", `{"item":1,"qty":2}`)
	for _, i := range r.Perm(40) {
		h := http.Header{"Content-Type": {"application/json"}, "Location": {fmt.Sprintf("/api/orders/%d", i+1)}}
		body := fmt.Sprintf(`{"number":%d,"total":14.5}`, i+1)
		l.observe(diff.Parse(diff.Message{Status: 201, Header: h, Body: []byte(body)}, diff.DefaultOptions), diff.DefaultOptions, req,
			t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	for key, want := range map[string]string{
		"body.number":     "a counter (increasing integers)",
		"header.Location": "unique per response (fmt:/aaa/aaaaaa/9+)",
	} {
		if got, _ := l.Fields[key].verdict(); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	created := func(n int) diff.Message {
		return diff.Message{Status: 201, Header: http.Header{"Content-Type": {"application/json"}, "Location": {fmt.Sprintf("/api/orders/%d", n)}},
			Body: []byte(fmt.Sprintf(`{"number":%d,"total":14.5}`, n))}
	}
	for _, d := range diff.Compare(created(12), created(9), diff.DefaultOptions) {
		if !l.explains(&d) {
			t.Errorf("%+v not explained", d)
		}
	}
	// Another form is not the same: a query in place of the path.
	other := created(12)
	other.Header.Set("Location", "/api/orders?n=12")
	for _, d := range diff.Compare(created(12), other, diff.DefaultOptions) {
		if l.explains(&d) {
			t.Errorf("%+v explained", d)
		}
	}
}

// TestRandomNumbersLearnedAsGenerated: PHP's order number is random_int,
// not a counter: the same request gets a new number every time, a few of
// which fall in the range of epoch milliseconds. It is made per answer. A
// total that never repeats only because no two requests are alike is not:
// nothing shows that the same request would get another.
func TestRandomNumbersLearnedAsGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	t0 := time.Now()
	same, distinct := &Learner{Fields: map[string]*FieldLearn{}}, &Learner{Fields: map[string]*FieldLearn{}}
	for i := range 60 {
		n := r.Int64N(1 << 47)
		if i%10 == 0 {
			n = 1415791267703 + int64(i) // in the range of epoch ms, as random ids are now and then
		}
		at := t0.Add(time.Duration(i) * time.Millisecond)
		req := parseRequest(t, "POST", "/api/orders", `{"item":1,"qty":2}`)
		same.observe(diff.Parse(msg(fmt.Sprintf(`{"number":%d}`, n)), diff.DefaultOptions), diff.DefaultOptions, req, at)
		req = parseRequest(t, "POST", "/api/orders", fmt.Sprintf(`{"item":1,"qty":%d}`, 100+i))
		distinct.observe(diff.Parse(msg(fmt.Sprintf(`{"total":%d}`, 7*(100+i)+r.IntN(2)*1000000)), diff.DefaultOptions), diff.DefaultOptions, req, at)
	}
	if got, _ := same.Fields["body.number"].verdict(); got != "unique per response (int)" {
		t.Errorf("body.number: %q, want unique per response (int)", got)
	}
	if got, _ := distinct.Fields["body.total"].verdict(); got != "" {
		t.Errorf("body.total: %q, want none", got)
	}
	for _, pair := range [][2]string{{"50587034040014", "129517541773086"}, {"1415791267703", "108228911749318"}} {
		ds := diff.Compare(msg(`{"number":`+pair[0]+`}`), msg(`{"number":`+pair[1]+`}`), diff.DefaultOptions)
		if len(ds) != 1 || !same.explains(&ds[0]) {
			t.Errorf("%s vs %s: %+v not explained", pair[0], pair[1], ds)
		}
	}
	// Not a number at all is not explained.
	ds := diff.Compare(msg(`{"number":50587034040014}`), msg(`{"number":"50587034040014x"}`), diff.DefaultOptions)
	if len(ds) != 1 || same.explains(&ds[0]) {
		t.Errorf("%+v explained", ds)
	}
	// What differed before it was learned, an id that looked like a time
	// against one that did not, is explained by it too.
	cs := &ComparisonState{Compared: 40, Noise: NoiseState{Fields: map[string]int{}}}
	if fr := fieldReport(cs, same, "body.number", &FieldState{Diffs: 2, IntsKept: 2}, 2.58); fr.Diffs != 0 || fr.Learned == nil {
		t.Errorf("before learning: %+v", fr)
	}
	if fr := fieldReport(cs, distinct, "body.total", &FieldState{Diffs: 2, IntsKept: 2}, 2.58); fr.Diffs != 2 {
		t.Errorf("not learned: %+v", fr)
	}
}

// TestPerResourceCountIsNoCounter: a cart's item count rises with time
// too, but it is the cart's: from one cart's answer to another's it does
// not rise. A change in it is a finding (a candidate counting twice), not
// a counter's noise. An order number rises from any request's answer to
// any other's, whatever was ordered.
func TestPerResourceCountIsNoCounter(t *testing.T) {
	t0 := time.Now()
	l := &Learner{Fields: map[string]*FieldLearn{}}
	orders := &Learner{Fields: map[string]*FieldLearn{}}
	count := map[string]int{}
	for i := range 60 {
		cart := fmt.Sprintf("c%d", i%2)
		count[cart] += 1 + (i/2)%3
		at := t0.Add(time.Duration(i) * time.Millisecond)
		l.observe(diff.Parse(msg(fmt.Sprintf(`{"count":%d}`, count[cart])), diff.DefaultOptions), diff.DefaultOptions,
			parseRequest(t, "GET", "/api/carts/"+cart, ""), at)
		orders.observe(diff.Parse(msg(fmt.Sprintf(`{"number":%d}`, 1000+i)), diff.DefaultOptions), diff.DefaultOptions,
			parseRequest(t, "POST", "/api/orders", fmt.Sprintf(`{"item":%d}`, i%7)), at)
	}
	if got, _ := l.Fields["body.count"].verdict(); got != "" {
		t.Errorf("a cart's count: %q, want none", got)
	}
	if got, _ := orders.Fields["body.number"].verdict(); got != "a counter (increasing integers)" {
		t.Errorf("an order number: %q, want a counter", got)
	}
}

// An uptime read by concurrent replays: the server wrote the values in
// order, but answers a few milliseconds apart reach the handler in
// another order now and then. It is still a counter: answers that close
// say nothing of the order, and are left out of the count.
func TestCounterReadConcurrently(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	t0 := time.Now()
	l := &Learner{Fields: map[string]*FieldLearn{}}
	req := parseRequest(t, "GET", "/api/status", "")
	for i := range 40 {
		served := t0.Add(time.Duration(i) * 30 * time.Millisecond)
		if i%4 == 0 {
			served = served.Add(time.Duration(r.IntN(3)) * time.Millisecond)
		}
		answered := served.Add(time.Duration(r.IntN(8)) * time.Millisecond) // the replay's own latency
		if i%5 == 2 {
			answered = served.Add(-32 * time.Millisecond) // reached the handler just before the one before it
		}
		body := fmt.Sprintf(`{"uptime":%s}`, strconv.FormatFloat(served.Sub(t0).Seconds()+3, 'f', -1, 64))
		l.observe(diff.Parse(diff.Message{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)},
			diff.DefaultOptions), diff.DefaultOptions, req, answered)
	}
	if got, _ := l.Fields["body.uptime"].verdict(); got != "a counter (increasing numbers)" {
		t.Errorf("uptime: %q (%+v)", got, *l.Fields["body.uptime"])
	}
}
