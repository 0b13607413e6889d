package compare

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/replay"
)

// answer is one response of a simulated deployment.
type answer struct {
	status    int
	header    [][2]string
	body      string
	chunked   bool // production only: sent with chunked framing
	gzip      bool
	firstByte time.Duration
}

// shop is a deployment of a service whose answers carry realistic noise:
// a trace id header per response, times of the exchange, uuids and a
// counter on created orders, a nonce line in a text report, a set-like
// list in random order, random 503s on a flaky endpoint, latency jitter.
// planted makes it the candidate with one regression of each class.
type shop struct {
	rng     *rand.Rand
	planted bool
	orders  int
	role    string
	node    string // the deployment's own name, in /api/node
}

func uuid(r *rand.Rand) string {
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", r.Uint32(), r.IntN(1<<16), r.IntN(1<<12), r.IntN(1<<12), r.Uint64()&(1<<48-1))
}

func (s *shop) answer(method, path, reqBody string, now time.Time) answer {
	r := s.rng
	ts := now.UTC().Format(time.RFC3339Nano)
	ct := "application/json; charset=UTF-8"
	if s.role == "candidate" {
		ct = "application/json;charset=utf-8" // the same media type, written otherwise
	}
	a := answer{status: 200, firstByte: time.Duration(4000+r.IntN(4000)) * time.Microsecond,
		header: [][2]string{{"Content-Type", ct}, {"X-Trace-Id", uuid(r)}, {"Vary", "Accept-Encoding, Origin"}}}
	if s.role == "candidate" {
		a.header[2][1] = "origin,accept-encoding"
		a.firstByte = a.firstByte * 2 // the test environment is slower for all endpoints: not a regression
	}
	id := path[strings.LastIndexByte(path, '/')+1:]
	switch {
	case path == "/api/report.txt": // text: a change below lines that vary on every response
		a.header[0][1] = "text/plain; charset=utf-8"
		total := 42
		if s.planted {
			total = 41
		}
		a.body = fmt.Sprintf("Daily report\ngenerated at %s\nnonce %016x%016x\n\nitems: 17\ntotal: %d\nend\n", ts, r.Uint64(), r.Uint64(), total)
	case path == "/api/catalog": // chunked and gzipped in production
		cur := "EUR"
		if s.planted {
			cur = "USD"
		}
		a.body = fmt.Sprintf(`{"generatedAt":%q,"currency":%q,"items":[{"sku":"a","price":1.5},{"sku":"b","price":2}]}`, ts, cur)
		a.gzip = true
		a.chunked = s.role == "production"
	case path == "/api/orders" && method == "POST": // per-response ids, times and a counter
		s.orders++
		status := "created"
		if s.planted {
			status = "accepted"
		}
		// A confirmation code of its own format per order; the planted
		// candidate writes it in another format.
		code := fmt.Sprintf("%c%c%04d", 'A'+r.IntN(26), 'A'+r.IntN(26), r.IntN(10000))
		if s.planted {
			code = code[:2] + "-" + code[2:]
		}
		a.status = 201
		a.body = fmt.Sprintf(`{"id":%q,"number":%d,"createdAt":%q,"status":%q,"confirmation":%q,"order":%s}`, uuid(r), 1000+s.orders, ts,
			status, code, reqBody)
	case strings.HasPrefix(path, "/api/stock/"): // 3% of requests fail; 0.5% flaky everywhere
		n := 0
		fmt.Sscan(id, &n)
		if s.planted && n%33 == 0 || r.IntN(200) == 0 {
			a.status = 503
			a.body = `{"error":"unavailable","retry":true}`
			break
		}
		a.body = fmt.Sprintf(`{"id":%d,"qty":%d,"checkedAt":%q}`, n, n%7, ts)
	case strings.HasPrefix(path, "/api/items/"): // a reordered list beside a set
		n := 0
		fmt.Sscan(id, &n)
		tags := []string{`"new"`, `"sale"`, `"eco"`, `"gift"`}
		r.Shuffle(len(tags), func(i, j int) { tags[i], tags[j] = tags[j], tags[i] })
		related := []string{fmt.Sprint(n + 1), fmt.Sprint(n + 2), fmt.Sprint(n + 3)}
		if s.planted {
			slices.Reverse(related)
		}
		// Production's instances answer by turns: a field that varies
		// between identical requests, whatever the candidate's value.
		served := s.node
		if s.role == "production" {
			served = fmt.Sprintf("web-%d", r.IntN(3))
		}
		a.body = fmt.Sprintf(`{"id":%d,"tags":[%s],"related":[%s],"price":%d.5,"servedBy":%q}`, n, strings.Join(tags, ","),
			strings.Join(related, ","), n, served)
	case strings.HasPrefix(path, "/api/skus/"): // alphanumeric ids; a type change
		stock := fmt.Sprint(len(id))
		if s.planted {
			stock = `"` + stock + `"`
		}
		a.body = fmt.Sprintf(`{"sku":%q,"stock":%s,"at":%q}`, id, stock, ts)
	case strings.HasPrefix(path, "/api/search"): // a tail-latency regression
		a.body = `{"hits":[]}`
		if s.planted && r.IntN(100) < 4 {
			a.firstByte += 300 * time.Millisecond
		}
	case path == "/api/node": // differs between the two baselines: noise of candidate-vs-baseline only
		node := s.node
		if s.planted {
			node = "eu-2"
		}
		a.body = fmt.Sprintf(`{"node":%q}`, node)
	case path == "/api/export.csv": // CSV by row and column; a header by meaning
		a.header[0][1] = "text/csv"
		a.header = append(a.header, [2]string{"Cache-Control", "max-age=60, public"})
		if s.role == "candidate" {
			a.header[len(a.header)-1][1] = "public,max-age=60"
			if s.planted {
				a.header[len(a.header)-1][1] = "no-store"
			}
		}
		price := "9.99"
		if s.planted {
			price = "10.99"
		}
		a.body = fmt.Sprintf("sku,price,exported_at\nA,1.00,%s\nB,2.50,%s\nC,%s,%s\n", ts, ts, price, ts)
	default:
		a.status, a.body = 404, `{}`
	}
	return a
}

func gzipped(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func parseRequest(t testing.TB, method, path, body string) *httpstream.Request {
	var r *httpstream.Request
	raw := method + " " + path + " HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer secret\r\n"
	if body != "" {
		raw += fmt.Sprintf("Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(q *httpstream.Request) { r = q }).
		Feed([]byte(raw+"\r\n"+body), 0)
	if r == nil {
		t.Fatalf("request %s %s not parsed", method, path)
	}
	return r
}

// mirrored is production's answer as the mirror carries it.
func mirrored(t testing.TB, a answer, start, end int64) *httpstream.Response {
	body := a.body
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d X\r\n", a.status)
	for _, h := range a.header {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if a.gzip {
		body = gzipped(body)
		b.WriteString("Content-Encoding: gzip\r\n")
	}
	if a.chunked {
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for len(body) > 0 {
			n := min(len(body), 17)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		b.WriteString("0\r\n\r\n")
	} else {
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	}
	var r *httpstream.Response
	p := httpstream.NewResponseParser(httpstream.DefaultOptions, &httpstream.ResponseStats{}, &httpstream.Stats{},
		func() bool { return false }, func(q *httpstream.Response, _ bool) { r = q })
	p.Feed([]byte(b.String()), start)
	if r == nil {
		t.Fatalf("response not parsed: %q", b.String())
	}
	r.Start, r.End = start, end
	return r
}

func result(target string, req *httpstream.Request, a answer, started time.Time) replay.Result {
	h := http.Header{}
	for _, kv := range a.header {
		h.Add(kv[0], kv[1])
	}
	body := a.body
	if a.gzip {
		body = gzipped(body)
		h.Set("Content-Encoding", "gzip")
	}
	d := a.firstByte + time.Millisecond
	return replay.Result{Target: target, Req: req, Started: started, Duration: d,
		Resp: &replay.Response{Status: a.status, Header: h, Body: []byte(body), FirstByte: a.firstByte, Duration: d}}
}

type traffic struct {
	method, path, body string
}

// workload: a few thousand requests over the endpoints, ids repeating
// (identical requests show production's own noise) or not (skus).
func workload(rng *rand.Rand) []traffic {
	var out []traffic
	for i := range 3300 {
		out = append(out, traffic{"GET", fmt.Sprintf("/api/stock/%d", i%600), ""})
		if i%10 == 0 {
			out = append(out, traffic{"GET", "/api/report.txt", ""}, traffic{"GET", "/api/catalog", ""},
				traffic{"POST", "/api/orders", fmt.Sprintf(`{"sku":"SKU-%05d","qty":%d}`, rng.IntN(99999), 1+rng.IntN(3))},
				traffic{"GET", fmt.Sprintf("/api/items/%d", rng.IntN(20)), ""},
				traffic{"GET", fmt.Sprintf("/api/skus/SKU-%05d", rng.IntN(100000)), ""},
				traffic{"GET", fmt.Sprintf("/api/search?q=%d", rng.IntN(50)), ""},
				traffic{"GET", "/api/export.csv", ""}, traffic{"GET", "/api/node", ""})
		}
	}
	return out
}

// simulate replays the workload through a comparator: production
// mirrored, the candidate (planted or not) and, with baselines, two
// deployments of production's code.
func simulate(t testing.TB, planted, withBaselines bool, log io.Writer) (*Comparator, Report) {
	return simulateWith(t, planted, withBaselines, func(cfg *Config) { cfg.Log = log })
}

// simulateWith is simulate with the configuration changed by edit first.
func simulateWith(t testing.TB, planted, withBaselines bool, edit func(*Config)) (*Comparator, Report) {
	cfg := Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 200, Wait: time.Minute,
		MaxPending: 100000, Queue: 100000, MinSamples: 20, Threshold: 0.01, Redact: []string{"Authorization"}, Handler: "sim"}
	if withBaselines {
		cfg.Baseline, cfg.Secondary = "base", "base2"
	}
	edit(&cfg)
	c, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	prod := &shop{rng: rand.New(rand.NewPCG(1, 1)), role: "production", node: "eu-1"}
	cand := &shop{rng: rand.New(rand.NewPCG(2, 2)), role: "candidate", planted: planted, node: "eu-1"}
	base := &shop{rng: rand.New(rand.NewPCG(3, 3)), role: "baseline", node: "test-a"}
	base2 := &shop{rng: rand.New(rand.NewPCG(4, 4)), role: "baseline", node: "test-b"}
	t0 := time.Now().Add(-time.Hour)
	work := workload(rand.New(rand.NewPCG(5, 5)))
	for i, w := range work {
		now := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		req := parseRequest(t, w.method, w.path, w.body)
		req.ConnID, req.Client = uint64(i), netip.MustParseAddrPort("10.0.0.1:1")
		req.Start, req.End = now.UnixNano(), now.UnixNano()
		c.Expect(req)
		a := prod.answer(w.method, w.path, w.body, now)
		c.Production(req, mirrored(t, a, now.Add(a.firstByte).UnixNano(), now.Add(a.firstByte+time.Millisecond).UnixNano()))
		c.Result(result("cand", req, cand.answer(w.method, w.path, w.body, now), now))
		if withBaselines {
			c.Result(result("base", req, base.answer(w.method, w.path, w.body, now), now))
			c.Result(result("base2", req, base2.answer(w.method, w.path, w.body, now), now))
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for c.Stats.Compared.Load() < uint64(len(work)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.Stats.Compared.Load() != uint64(len(work)) {
		t.Fatalf("compared %d of %d (dropped %d)", c.Stats.Compared.Load(), len(work), c.Stats.Dropped.Load())
	}
	return c, c.Report()
}

// findings lists "endpoint comparison key" for every regression.
func findings(r Report) []string {
	var out []string
	for _, e := range r.Endpoints {
		for _, c := range e.Comparisons {
			for _, l := range c.Latency {
				if l.Regression {
					out = append(out, e.Name+" "+c.Comparison+" latency "+l.Quantile+" "+l.Measure)
				}
			}
			for _, f := range c.Fields {
				if f.Regression {
					out = append(out, e.Name+" "+c.Comparison+" "+f.Key)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

var planted = []string{
	`GET /api/catalog body.currency`,
	`GET /api/export.csv col:price`,
	`GET /api/export.csv header.Cache-Control`,
	`GET /api/items/{id} body.related:order`,
	`GET /api/report.txt line "total: {n}"`,
	`GET /api/search latency p99 first_byte`,
	`GET /api/skus/{id} body.stock`,
	`GET /api/stock/{id} status`,
	`POST /api/orders body.status`,
	`POST /api/orders body.confirmation`,
	`GET /api/node body.node`,
}

func TestPlantedRegressionsBesideNoise(t *testing.T) {
	for _, withBaselines := range []bool{false, true} {
		_, r := simulate(t, true, withBaselines, nil)
		var want []string
		for _, p := range planted {
			method, rest, _ := strings.Cut(p, " ")
			ep, key, _ := strings.Cut(rest, " ")
			want = append(want, method+" "+ep+" "+VsProduction+" "+key)
			if withBaselines && ep != "/api/node" {
				// The two baselines' node names differ: noise of this
				// comparison, which must not hide the change from
				// production's name in the other.
				want = append(want, method+" "+ep+" "+VsBaseline+" "+key)
			}
		}
		slices.Sort(want)
		if got := findings(r); !slices.Equal(got, want) {
			t.Errorf("baselines %v: findings\n%s\nwant\n%s", withBaselines, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if r.Regressions != len(planted) {
			t.Errorf("baselines %v: %d distinct findings, want %d", withBaselines, r.Regressions, len(planted))
		}
		for _, e := range r.Endpoints {
			if strings.Contains(e.Name, "SKU-") {
				t.Errorf("endpoint %q not folded into its template (templates %v)", e.Name, r.Templates)
			}
			for _, c := range e.Comparisons {
				for _, f := range c.Fields {
					// The status finding carries the 503 bodies' differences.
					if e.Name == "GET /api/stock/{id}" && f.Key == "status" && (f.Collateral["body.error"] == 0 || f.Collateral["body.qty"] == 0) {
						t.Errorf("%s: status collateral %v", c.Comparison, f.Collateral)
					}
					// Production's own variation explains the ids, times and counter.
					if e.Name == "POST /api/orders" && c.Comparison == VsProduction && (f.Key == "body.id" || f.Key == "body.createdAt" || f.Key == "body.number") {
						if f.Learned == nil || f.Volatile < 300 || f.Regression {
							t.Errorf("orders %s: learned %+v, %d explained", f.Key, f.Learned, f.Volatile)
						}
					}
				}
			}
		}
		if !slices.Contains(r.Templates, "GET /api/skus/{id}") {
			t.Errorf("templates %v", r.Templates)
		}
	}
}

// TestAANoiseOfEveryKind: the candidate runs production's code; nothing is reported,
// with or without baselines.
func TestAANoiseOfEveryKind(t *testing.T) {
	for _, withBaselines := range []bool{false, true} {
		if _, r := simulate(t, false, withBaselines, nil); r.Regressions != 0 {
			t.Errorf("A/A with baselines %v: %s", withBaselines, strings.Join(findings(r), "\n"))
		}
	}
}
