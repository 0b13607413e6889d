package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/gate"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/player"
)

const verifyUsage = `usage: shadowtap verify -candidate URL [-baseline URL] [-secondary URL] [-config FILE]
                        [-o report.html] [-json report.json] [-junit junit.xml] [-summary summary.md]
                        [-speed max|1x|2x] [-fail-on regressions|any|none] [-accept FILE] [-identity FILE] RECORDING...
exit 0: no regression; 1: regressions (or the candidate failed requests); 2: bad usage or unreadable input`

// gateOutputs are the files a gate writes, and its policy.
type gateOutputs struct {
	html, json, junit, summary, accept, failOn string
	minSamples                                 int
	threshold                                  float64
}

func (g *gateOutputs) register(fs *flag.FlagSet, html string) {
	fs.StringVar(&g.html, "o", html, "write the standalone HTML report here (\"\" for none)")
	fs.StringVar(&g.json, "json", "", "write the report as JSON (the schema of /api/report) here")
	fs.StringVar(&g.junit, "junit", "", "write JUnit XML here: a testsuite per comparison, a testcase per endpoint, a failure per regression")
	fs.StringVar(&g.summary, "summary", "", "write a Markdown summary here (a PR comment, $GITHUB_STEP_SUMMARY)")
	fs.StringVar(&g.accept, "accept", "", "YAML file of accepted changes (endpoint, field, reason): not regressions")
	fs.StringVar(&g.failOn, "fail-on", gate.FailRegressions, "exit 1 on: regressions, any (also differences below the bar) or none")
	fs.IntVar(&g.minSamples, "min-samples", 0, "comparisons before a field can be a regression (0: the configuration's compare.min_samples)")
	fs.Float64Var(&g.threshold, "threshold", 0, "minimum difference rate of a regression (0: the configuration's compare.threshold)")
}

// verifyCmd replays recordings to a candidate and compares every answer
// with the recorded production answer: the release gate.
func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, verifyUsage); fs.PrintDefaults() }
	var out gateOutputs
	out.register(fs, "")
	var urls [3]string // candidate, baseline, secondary
	fs.StringVar(&urls[0], "candidate", "", "the candidate's URL, http(s)://host[:port][/prefix] (or compare.candidate's target in -config)")
	fs.StringVar(&urls[1], "baseline", "", "a baseline's URL: the old version on the same test data (optional)")
	fs.StringVar(&urls[2], "secondary", "", "a second baseline's URL, to learn the baseline's noise (needs -baseline)")
	speed := fs.String("speed", "max", "max: as fast as the targets allow; 1x keeps the recording's timing, 2x twice as fast")
	progress := fs.String("progress", "auto", "auto (a bar on a terminal, plain lines otherwise), bar, plain or off")
	latency := fs.String("latency", "auto", "fail: latency regressions fail the gate; report: shown, not failing; auto: against a baseline fail at any speed, against production fail at the recording's own speed (1x or slower) and report otherwise")
	maxOpen := fs.Int("max-open", 4096, "exchanges open in the comparison at once (memory bound; reading waits)")
	var keys keyFlags
	keys.registerRead(fs)
	cfg, inputs, err := loadConfigAnywhere(fs, args)
	if err == nil {
		err = keys.load(&cfg)
	}
	if err != nil {
		return usageError(stderr, err)
	}
	if err := verifyTargets(&cfg, urls); err != nil {
		return usageError(stderr, err)
	}
	applyRules(&cfg, &out)
	if err := cfg.Validate(); err != nil {
		return usageError(stderr, err)
	}
	sp, err := player.ParseSpeed(*speed)
	if err != nil {
		return usageError(stderr, err)
	}
	if *latency != "auto" && *latency != "fail" && *latency != "report" {
		return usageError(stderr, fmt.Errorf("-latency %q: want auto, fail or report", *latency))
	}
	policy, err := gate.ParsePolicy(out.failOn)
	if err != nil {
		return usageError(stderr, err)
	}
	if len(inputs) == 0 {
		return usageError(stderr, errors.New("no recording given\n"+verifyUsage))
	}
	if err := checkKeys(inputs, cfg.Recordings.Identities); err != nil {
		fmt.Fprintln(stderr, "verify:", err)
		return 2
	}
	var accepts []gate.Accept
	if out.accept != "" {
		if accepts, err = gate.LoadAccept(out.accept); err != nil {
			return usageError(stderr, err)
		}
	}
	log := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	opts := pipeline.VerifyOptions{Speed: sp, MaxOpen: *maxOpen, Log: log}
	r := &player.Renderer{W: stderr, PlainEvery: 5 * time.Second}
	switch *progress {
	case "auto":
		f, ok := stderr.(*os.File)
		r.Terminal = ok && term.IsTerminal(int(f.Fd()))
		opts.Progress = r.Show
	case "bar":
		r.Terminal = true
		opts.Progress = r.Show
	case "plain":
		opts.Progress = r.Show
	case "off":
	default:
		return usageError(stderr, fmt.Errorf("-progress %q: want auto, bar, plain or off", *progress))
	}
	res, err := pipeline.VerifyFiles(ctx, cfg, inputs, opts)
	if opts.Progress != nil && res != nil {
		r.Done(res.Progress)
	}
	if errors.Is(err, pipeline.ErrInput) {
		fmt.Fprintln(stderr, "verify:", err)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		if res == nil {
			return 2
		}
		return 1 // interrupted: the gate did not see everything
	}
	latencyFails := *latency == "fail" || *latency == "auto" && sp > 0 && sp <= 1
	o := gate.Decide(res.Report, accepts, gate.Options{LatencyFails: latencyFails, BaselineLatencyFails: *latency != "report"})
	o.Problems = verifyProblems(res)
	fmt.Fprintf(stdout, "replayed %d of %d recorded exchange(s) from %d file(s) in %s (%.0f/s); %d without production's answer, %d unparsed\n",
		res.Sent, res.Records, len(inputs), res.Elapsed.Round(time.Millisecond), float64(res.Sent)/max(res.Elapsed.Seconds(), 1e-9),
		res.NoProduction, res.Unparsed)
	if r := player.RefusedSummary(res.Refused); r != "" {
		fmt.Fprintf(stdout, "not in the replay: %s\n", r)
	}
	return writeGate(stdout, stderr, "shadowtap verify", &o, &out, policy, res.Elapsed)
}

// verifyProblems are the run's failures outside the comparison.
func verifyProblems(res *pipeline.VerifyResult) []string {
	var out []string
	var total uint64
	var parts []string
	for _, reason := range slices.Sorted(maps.Keys(res.CandidateFailed)) {
		total += res.CandidateFailed[reason]
		parts = append(parts, fmt.Sprintf("%d %s", res.CandidateFailed[reason], reason))
	}
	if total > 0 {
		out = append(out, fmt.Sprintf("the candidate did not answer %d request(s) (%s)", total, strings.Join(parts, ", ")))
	}
	if res.Sent > 0 && res.Report.Compared == 0 {
		out = append(out, "no exchange was compared: the recording holds no production answers, or the candidate answered none")
	}
	if res.Records == 0 {
		out = append(out, "the recordings hold no exchange")
	}
	return out
}

// gateJSON is /api/report's schema with the gate's decision added: the
// accepted changes (no longer regressions in the report) and the
// problems outside the comparison.
type gateJSON struct {
	compare.Report
	Accepted []gate.Finding `json:"accepted"`
	Problems []string       `json:"problems"`
}

func encodeJSON(w io.Writer, o *gate.Outcome) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(gateJSON{Report: o.Report, Accepted: o.Accepted, Problems: o.Problems})
}

// writeGate writes the gate's outputs and the summary, and returns the
// exit code.
func writeGate(stdout, stderr io.Writer, name string, o *gate.Outcome, out *gateOutputs, policy string, elapsed time.Duration) int {
	write := func(path string, f func(io.Writer) error) bool {
		if path == "" {
			return true
		}
		file, err := os.Create(path)
		if err == nil {
			err = f(file)
			if cerr := file.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return false
		}
		return true
	}
	ok := write(out.html, func(w io.Writer) error { return compare.RenderHTML(w, &o.Report) }) &&
		write(out.json, func(w io.Writer) error { return encodeJSON(w, o) }) &&
		write(out.junit, func(w io.Writer) error { return gate.WriteJUnit(w, o, elapsed) }) &&
		write(out.summary, func(w io.Writer) error { return gate.WriteMarkdown(w, name, o, policy) })
	if !ok {
		return 2
	}
	gate.WriteSummary(stdout, name, o, policy)
	if o.Fails(policy) {
		return 1
	}
	return 0
}

// verifyTargets names the compared targets: a URL flag sets the
// destination of the target the configuration names for the role, or
// adds a target named for the role.
func verifyTargets(cfg *config.Config, urls [3]string) error {
	roles := []struct {
		role string
		name *string
	}{{"candidate", &cfg.Compare.Candidate}, {"baseline", &cfg.Compare.Baseline}, {"secondary", &cfg.Compare.Secondary}}
	for i, r := range roles {
		if urls[i] == "" {
			continue
		}
		if err := config.ValidateDestination(urls[i]); err != nil {
			return fmt.Errorf("-%s: %w", r.role, err)
		}
		if *r.name == "" {
			*r.name = r.role
		}
		j := slices.IndexFunc(cfg.Targets, func(t config.Target) bool { return t.Name == *r.name })
		if j >= 0 {
			cfg.Targets[j].Destination = urls[i]
		} else {
			cfg.Targets = append(cfg.Targets, config.Target{Name: *r.name, Destination: urls[i]})
		}
	}
	if cfg.Compare.Candidate == "" {
		return errors.New("-candidate URL is required (or compare.candidate in -config)\n" + verifyUsage)
	}
	return nil
}

func applyRules(cfg *config.Config, out *gateOutputs) {
	if out.minSamples > 0 {
		cfg.Compare.MinSamples = out.minSamples
	}
	if out.threshold > 0 {
		cfg.Compare.Threshold = out.threshold
	}
}

// loadConfigAnywhere is loadConfig for commands whose flags may come
// before or after their files: parsing resumes after each file; after
// "--" everything is a file.
func loadConfigAnywhere(fs *flag.FlagSet, args []string) (config.Config, []string, error) {
	var tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return cfg, nil, err
	}
	files, err := parseAnywhere(fs, fs.Args())
	if err != nil {
		return cfg, nil, err
	}
	return cfg, append(files, tail...), nil
}
