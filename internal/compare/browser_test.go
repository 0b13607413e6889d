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

// bigReport has n endpoints; every tenth has a regression on a price.
func bigReport(n int) Report {
	r := Report{Title: "shadowtap release report: 2 handler(s)", Handlers: []string{"h1", "h2"}, Generated: time.Now()}
	for i := range n {
		name := fmt.Sprintf("GET /api/v1/resource%04d/{id}", i)
		if i%10 == 0 {
			name = fmt.Sprintf("GET /api/items%04d/{id}", i)
		}
		c := ComparisonReport{Comparison: VsProduction, Compared: 100 + i, Exact: 100, Matched: 100 + i, MatchRate: 1}
		e := EndpointReport{Name: name, Requests: 100 + i, Latency: map[string]Quantiles{
			"production": {N: 100, P50: 4, P95: 9, P99: 12}, "candidate": {N: 100, P50: 5, P95: 11, P99: 15}}}
		if i%10 == 0 {
			c.Regressions, c.MatchRate, c.Matched = 1, 0.4, 40
			c.Fields = []FieldReport{{Key: "body.items[*].price", Diffs: 60, Rate: 0.6, Regression: true,
				Samples: []FieldSample{{"body.items[3].price", "changed", "4.25", "4.3"}}},
				{Key: "body.generatedAt", Diffs: 100, Rate: 1, NoiseRate: 1}}
			e.Samples = []Sample{{Comparison: VsProduction, Request: "GET /api/items/7\nHost: shop",
				Reference:   Side{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"items":[{"price":4.25}]}`, LatencyMS: 4},
				Candidate:   Side{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"items":[{"price":4.3}]}`, LatencyMS: 5},
				Differences: []diff.Difference{{Field: "body.items[0].price", Key: "body.items[*].price", Kind: diff.Changed, Ref: "4.25", Cand: "4.3"}}}}
			r.Regressions++
		}
		e.Regressions = c.Regressions
		e.Comparisons = []ComparisonReport{c}
		r.Endpoints = append(r.Endpoints, e)
	}
	return r
}

// TestReportPageInBrowser loads the report page in headless Chromium: it
// shows the endpoints (at most 500 rows of 1,500), filtering and the
// regressions-only switch narrow them, sorting and the detail view work.
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
	if dir := os.Getenv("SHADOWTAP_SCREENSHOTS"); dir != "" {
		os.WriteFile(dir+"/report-page.png", shot, 0o644)
	}
}
