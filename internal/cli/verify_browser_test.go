package cli

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// openInBrowser loads a standalone report file in headless Chromium and
// returns its endpoint rows' names and how many of them show a
// regression verdict. It skips where Chromium is missing.
func openInBrowser(t *testing.T, file string) (names []string, regressions int) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("needs Debian's chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// The file is self-contained: no server, no network.
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+file), chromedp.WaitVisible(`#endpoints tbody tr.ep`)); err != nil {
		t.Fatal(err)
	}
	joined, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`[...document.querySelectorAll("#endpoints tbody tr.ep")].map(r => r.querySelector("td").textContent.trim()).join("\n")`))
	if err != nil {
		t.Fatal(err)
	}
	regressions, err = chromedp.Run(ctx, chromedp.Evaluate[int](
		`[...document.querySelectorAll("#endpoints tbody tr.ep")].filter(r => r.querySelector(".verdict.regression")).length`))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(joined, "\n"), regressions
}
