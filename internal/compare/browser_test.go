package compare

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// bigReport has n endpoints in two comparisons; every tenth has a
// regression on a price (and a noisy time field beside it).
func bigReport(n int) Report {
	r := Report{Title: "shadowtap release report: 2 handler(s)", Handlers: []string{"h1", "h2"}, Generated: time.Now(),
		Comparisons: []string{VsProduction, VsBaseline}, Rules: Rules{MinSamples: 20, Threshold: 0.01, Confidence: 0.99},
		Templates: []string{"GET /api/skus/{id}"}}
	for i := range n {
		name := fmt.Sprintf("GET /api/v1/resource%04d/{id}", i)
		if i%10 == 0 {
			name = fmt.Sprintf("GET /api/items%04d/{id}", i)
		}
		e := EndpointReport{Name: name, Requests: 100 + i, Verdicts: map[string]string{}, Latency: map[string]Quantiles{
			"production first_byte": {N: 100, P50: 4, P95: 9, P99: 12}, "candidate first_byte": {N: 100, P50: 5, P95: 11, P99: 15}}}
		for _, cmp := range []string{VsProduction, VsBaseline} {
			c := ComparisonReport{Comparison: cmp, Verdict: "ok", Compared: 100 + i, Exact: 100, Matched: 100 + i, MatchRate: 1,
				NoiseSource: "production, identical requests", NoiseN: 40}
			c.Fields = []FieldReport{{Key: "body.generatedAt", Diffs: 0, Compared: 100 + i, Volatile: 100 + i,
				Learned: &Learned{Verdict: "times near the exchange (time)", N: 300, Shape: "time"}}}
			if i%10 == 0 {
				c.Regressions, c.MatchRate, c.Matched, c.Verdict = 1, 0.4, 40, "regression"
				c.Fields = append([]FieldReport{{Key: "body.items[*].price", Diffs: 60, Compared: 100 + i, Rate: 0.6, RateLow: 0.48,
					Regression: true, Samples: []FieldSample{{"body.items[0].price", "changed", "4.25", "4.3"}}}}, c.Fields...)
			}
			e.Verdicts[cmp] = c.Verdict
			e.Comparisons = append(e.Comparisons, c)
		}
		if i%10 == 0 {
			e.Findings, e.Regressions = []string{"body.items[*].price"}, 1
			e.Samples = []Sample{{Comparison: VsProduction, Findings: []string{"body.items[*].price"}, Request: "GET /api/items/7\nHost: shop",
				Reference: Side{Status: 200, Header: http.Header{"Content-Type": {"application/json"}},
					Body: `{"generatedAt":"2026-11-26T13:00:00Z","items":[{"sku":"a","price":4.25}]}`, LatencyMS: 4},
				Candidate: Side{Status: 200, Header: http.Header{"Content-Type": {"application/json"}},
					Body: `{"generatedAt":"2026-11-26T13:00:01Z","items":[{"sku":"a","price":4.3}]}`, LatencyMS: 5},
				Differences: []diff.Difference{{Field: "body.items[0].price", Key: "body.items[*].price", Kind: diff.Changed, Ref: "4.25", Cand: "4.3"}}}}
			r.Regressions++
		}
		r.Endpoints = append(r.Endpoints, e)
	}
	return r
}

// TestReportPageInBrowser loads the report page in headless Chromium: it
// shows one row per endpoint (at most 500 of 1,500) with each comparison's
// verdict in its own column, filtering and the regressions-only switch
// narrow them, sorting works, and the detail shows the exchange where the
// selected finding occurs with the field highlighted on both sides.
func TestReportPageInBrowser(t *testing.T) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("needs Debian's chromium")
	}
	rep := bigReport(1500)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		RenderHTML(w, &rep)
	}))
	defer srv.Close()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.WindowSize(1400, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(js string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const countRows = `document.querySelectorAll("#endpoints tbody tr.ep").length`
	do(chromedp.Navigate(srv.URL), chromedp.WaitVisible(`#endpoints tbody tr.ep`))
	rows, shown, first := eval(countRows), text(`#shown`), text(`#endpoints tbody tr.ep td`)
	do(chromedp.Click(`#onlyreg`))
	regRows := eval(countRows)
	do(chromedp.Click(`#onlyreg`), chromedp.SendKeys(`#filter`, "resource0042"))
	filtered := eval(countRows)
	eval(`(f => { f.value = ""; f.dispatchEvent(new Event("input")); return 1 })(document.getElementById("filter"))`)
	do(chromedp.Click(`th[data-key="name"]`))
	firstAsc := text(`#endpoints tbody tr.ep td`)
	do(chromedp.Click(`th[data-key="regressions"]`), chromedp.Click(`#endpoints tbody tr.ep`))
	detail := eval(`document.querySelectorAll("tr.detail pre").length`)
	stray := eval(`document.body.innerText.includes("=>") ? 1 : 0`) // script text shown as page text
	verdictCols := eval(`[...document.querySelectorAll("#head th")].filter(th => th.textContent.startsWith("vs ")).length`)
	regVerdicts := eval(`document.querySelectorAll("#endpoints tbody tr.ep")[0].querySelectorAll(".verdict.regression").length`)
	hl, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("tr.detail span.hl")].map(s => s.textContent.trim()).join("|")`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if rows != 500 || !strings.Contains(shown, "showing 500 of 1500") {
		t.Errorf("rows %d, %q", rows, shown)
	}
	if !strings.HasPrefix(first, "GET /api/items") {
		t.Errorf("first row %q: regressions should sort first", first)
	}
	if regRows != 150 || filtered != 1 {
		t.Errorf("regressions only: %d rows (want 150); filter: %d rows (want 1)", regRows, filtered)
	}
	if firstAsc != "GET /api/items0000/{id}" {
		t.Errorf("sorted by name, first row %q", firstAsc)
	}
	if detail != 3 {
		t.Errorf("detail shows %d panes, want request, reference and candidate", detail)
	}
	if stray != 0 {
		t.Error("script text shows on the page")
	}
	if verdictCols != 2 || regVerdicts != 2 {
		t.Errorf("%d verdict columns, %d regression verdicts in the first row; want 2 and 2", verdictCols, regVerdicts)
	}
	if hl != `"price": 4.25|"price": 4.3` {
		t.Errorf("highlighted %q, want the price line on both sides", hl)
	}
	eval(`(e => { e.scrollIntoView(); return 1 })(document.querySelector("tr.detail .sbs"))`)
	shot2, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("SHADOWTAP_SCREENSHOTS"); dir != "" {
		os.WriteFile(dir+"/report-page.png", shot, 0o644)
		os.WriteFile(dir+"/report-detail.png", shot2, 0o644)
	}
}
