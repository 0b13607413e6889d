package compare

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// Values each side created for one production value are no difference,
// but only at the field that carries them: an order's number paired 7 →
// 8 does not excuse a quantity 7 → 8 in the same answer.
func TestPairedValuesExcuseOnlyTheirField(t *testing.T) {
	tb := correlate.New(correlate.Options{})
	created := func(n int) diff.Message {
		b, _ := json.Marshal(map[string]any{"number": n})
		return diff.Message{Status: 201, Header: http.Header{"Content-Type": {"application/json"}}, Body: b}
	}
	tb.Learn([]byte("POST /api/orders HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), created(7), created(8))
	if _, res := tb.Translate(context.Background(), []byte("GET /api/orders/7 HTTP/1.1\r\n\r\n")); res.Translated != 1 {
		t.Fatalf("the order's number not translated: %+v", res)
	}
	c := pairedComparator(t, tb, nil)
	const n = 12
	for i := range n {
		req := request(t, uint64(i+1), "/api/orders/7")
		c.Expect(req)
		c.Production(req, response(t, 200, `{"number":7,"quantity":7}`, req.End+int64(time.Millisecond)))
		c.Result(replayed("cand", req, 200, `{"number":8,"quantity":8}`, time.Millisecond))
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats.Compared.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := regressions(c.Report())
	if !slices.ContainsFunc(got, func(s string) bool { return strings.HasSuffix(s, "body.quantity") }) ||
		slices.ContainsFunc(got, func(s string) bool { return strings.HasSuffix(s, "body.number") }) {
		t.Errorf("regressions %q: want the quantity, not the number", got)
	}
}

// Live, the replay may answer before production's client carries the
// order it was given back: the exchange waits for it (Unsettled) instead
// of reporting each side's own number as a difference.
func TestUnsettledExchangesWaitForTheirValuesToBeCarriedBack(t *testing.T) {
	tb := correlate.New(correlate.Options{})
	c := pairedComparator(t, tb, func(req *httpstream.Request) bool {
		return tb.Unsettled(correlate.Exchange{Conn: req.ConnID, Index: req.Index})
	})
	const n = 12
	for i := range n {
		raw := "POST /api/orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n"
		var req *httpstream.Request
		httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(q *httpstream.Request) { req = q }).Feed([]byte(raw), 0)
		req.ConnID = uint64(i + 1)
		prod := fmt.Sprintf(`{"number":%d}`, 7+i)
		x := correlate.Exchange{Conn: req.ConnID, Index: req.Index}
		tb.Production(x, correlate.Read(req.Raw, diff.Message{Status: 201, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(prod)}))
		cand := fmt.Sprintf(`{"number":%d}`, 5007+i)
		tb.Answered(x, req.Raw, diff.Message{Status: 201, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(cand)})
		c.Expect(req)
		c.Production(req, response(t, 201, prod, req.End+int64(time.Millisecond)))
		c.Result(replayed("cand", req, 201, cand, time.Millisecond))
	}
	time.Sleep(200 * time.Millisecond) // the client reads its order, then shows it
	if c.Stats.Compared.Load() != 0 || c.Stats.Settling.Load() != n {
		t.Errorf("before the orders were carried back: %d compared, %d settling", c.Stats.Compared.Load(), c.Stats.Settling.Load())
	}
	for i := range n {
		names := correlate.Named(fmt.Appendf(nil, "GET /api/orders/%d HTTP/1.1\r\n\r\n", 7+i))
		tb.Carried(&names)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats.Compared.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := regressions(c.Report()); c.Stats.Compared.Load() != n || len(got) != 0 {
		t.Errorf("%d compared, regressions %q: each side's own numbers", c.Stats.Compared.Load(), got)
	}
}

// pairedComparator compares a candidate with production, its pairs (and,
// with unsettled, whether they were carried back) from tb; closed when
// the test ends.
func pairedComparator(t *testing.T, tb *correlate.Table, unsettled func(*httpstream.Request) bool) *Comparator {
	t.Helper()
	cfg := Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Minute,
		MaxPending: 10000, Queue: 10000, MinSamples: 5, Threshold: 0.05, Handler: "test", Settle: 10 * time.Second,
		Paired: func(ref string, at correlate.Field, a, b string) bool {
			k, ok := tb.Origin(b, at)
			return ok && k == tb.KeyAt(a, at)
		},
		Unsettled: unsettled}
	c, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
