package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/gate"
)

const reportUsage = `usage: shadowtap report [-o report.html] [-json report.json] [-junit junit.xml] [-summary summary.md]
                        [-fail-on regressions|any|none] [-accept FILE] DIFFLOG.jsonl...
exit 0: no regression; 1: regressions; 2: bad usage or unreadable input`

// report merges the difference logs of one or more handlers into one
// report, and decides like verify: the same outputs, accept file and exit
// codes, so a fleet's live comparison can gate a release too.
func report(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, reportUsage); fs.PrintDefaults() }
	var out gateOutputs
	out.register(fs, "report.html")
	def := config.Default().Compare
	confidence := fs.Float64("confidence", def.Confidence, "one-sided confidence that a difference rate is above its noise rate")
	latency := fs.String("latency", "fail", "fail: latency regressions fail the gate (live traffic keeps production's timing); report: shown, not failing")
	files, err := parseAnywhere(fs, args)
	if err != nil {
		return usageError(stderr, err)
	}
	if len(files) == 0 {
		return usageError(stderr, errors.New(reportUsage))
	}
	policy, err := gate.ParsePolicy(out.failOn)
	if err != nil {
		return usageError(stderr, err)
	}
	if *latency != "fail" && *latency != "report" {
		return usageError(stderr, fmt.Errorf("-latency %q: want fail or report", *latency))
	}
	rules := compare.Rules{MinSamples: def.MinSamples, Threshold: def.Threshold, Confidence: *confidence}
	if out.minSamples > 0 {
		rules.MinSamples = out.minSamples
	}
	if out.threshold > 0 {
		rules.Threshold = out.threshold
	}
	var accepts []gate.Accept
	if out.accept != "" {
		if accepts, err = gate.LoadAccept(out.accept); err != nil {
			return usageError(stderr, err)
		}
	}
	var readers []io.Reader
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			fmt.Fprintln(stderr, "report:", err)
			return 2
		}
		defer f.Close()
		readers = append(readers, f)
	}
	r, err := compare.MergeLogs(readers, rules)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 2
	}
	o := gate.Decide(r, accepts, gate.Options{LatencyFails: *latency == "fail"})
	fmt.Fprintf(stdout, "%s: %d endpoints, %d regressions, from %d handler(s)\n", out.html, len(r.Endpoints), o.Report.Regressions, len(r.Handlers))
	return writeGate(stdout, stderr, "shadowtap report", &o, &out, policy, 0)
}

// parseAnywhere parses flags given before or after the files; after "--"
// everything is a file.
func parseAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var files []string
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		files = append(files, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			return nil, err
		}
	}
	return append(files, tail...), nil
}
