package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
)

// report turns the difference logs of one or more handlers into one
// standalone HTML report (and, with -json, the same data as JSON).
func report(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "report.html", "the HTML file to write")
	asJSON := fs.String("json", "", "also write the report's data as JSON to this file")
	def := config.Default().Compare
	minSamples := fs.Int("min-samples", def.MinSamples, "comparisons before a field can be a regression")
	threshold := fs.Float64("threshold", def.Threshold, "minimum difference rate of a regression")
	confidence := fs.Float64("confidence", def.Confidence, "one-sided confidence that a difference rate is above its noise rate")
	if err := fs.Parse(args); err != nil {
		return usageError(stderr, err)
	}
	if fs.NArg() == 0 {
		return usageError(stderr, errors.New("usage: shadowtap report [-o report.html] DIFFLOG.jsonl..."))
	}
	var readers []io.Reader
	for _, p := range fs.Args() {
		f, err := os.Open(p)
		if err != nil {
			fmt.Fprintln(stderr, "report:", err)
			return 1
		}
		defer f.Close()
		readers = append(readers, f)
	}
	r, err := compare.MergeLogs(readers, compare.Rules{MinSamples: *minSamples, Threshold: *threshold, Confidence: *confidence})
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	if err := compare.RenderHTML(f, &r); err != nil {
		f.Close()
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	if *asJSON != "" {
		if err := writeJSON(*asJSON, r); err != nil {
			fmt.Fprintln(stderr, "report:", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "%s: %d endpoints, %d regressions, from %d handler(s)\n", *out, len(r.Endpoints), r.Regressions, len(r.Handlers))
	return 0
}
