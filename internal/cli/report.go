package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/fleet"
	"github.com/shadowtap/shadowtap/internal/gate"
)

const reportUsage = `usage: shadowtap report [-o report.html] [-json report.json] [-junit junit.xml] [-summary summary.md]
                        [-fail-on regressions|any|none] [-accept FILE]
                        [-from http://HANDLER:4790]... [-from-target-group ARN [-admin-port 4790] [-region R]]
                        [-allow-missing] [-timeout 30s] [DIFFLOG.jsonl...]
exit 0: no regression; 1: regressions; 2: bad usage, an unreadable input or an unreachable handler`

// report merges the difference logs of one or more handlers, and the
// live states of running handlers (-from, or every handler behind a
// target group), into one report, and decides like verify: the same
// outputs, accept file and exit codes, so a fleet's live comparison can
// gate a release too.
func report(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, reportUsage); fs.PrintDefaults() }
	var out gateOutputs
	out.register(fs, "report.html")
	def := config.Default().Compare
	confidence := fs.Float64("confidence", def.Confidence, "one-sided confidence that a difference rate is above its noise rate")
	latency := fs.String("latency", "fail", "fail: latency regressions fail the gate (live traffic keeps production's timing); report: shown, not failing")
	var from listFlag
	fs.Var(&from, "from", "a running handler's admin address (http://HOST:4790), whose live state is merged (repeatable)")
	targetGroup := fs.String("from-target-group", "", "merge the live state of every handler registered in this target group (ARN)")
	adminPort := fs.Int("admin-port", 4790, "-from-target-group: the handlers' admin port (0: the port each target is registered with)")
	region := fs.String("region", "", "-from-target-group: AWS region (default: the SDK's)")
	elbEndpoint := fs.String("elb-endpoint", "", "-from-target-group: Elastic Load Balancing endpoint URL (default: the region's)")
	ec2Endpoint := fs.String("ec2-endpoint", "", "-from-target-group: EC2 endpoint URL (default: the region's)")
	authFile := fs.String("from-auth-file", "", "-from: a file holding user:password for the handlers' basic auth (-web-config); never the password on the command line")
	caFile := fs.String("from-ca-file", "", "-from https://: PEM certificates of the authorities the handlers' TLS certificates are checked against (default: the system's)")
	allowMissing := fs.Bool("allow-missing", false, "leave out, with a warning, handlers that cannot be read (default: exit 2)")
	timeout := fs.Duration("timeout", 30*time.Second, "for each handler's state, and for the AWS calls")
	files, err := parseAnywhere(fs, args)
	if err != nil {
		return usageError(stderr, err)
	}
	if len(files) == 0 && len(from) == 0 && *targetGroup == "" {
		return usageError(stderr, errors.New(reportUsage))
	}
	if *adminPort < 0 || *adminPort > 65535 || *timeout <= 0 {
		return usageError(stderr, fmt.Errorf("-admin-port %d or -timeout %s out of range", *adminPort, *timeout))
	}
	for _, f := range from {
		if _, err := fleet.StateURL(f); err != nil {
			return usageError(stderr, err)
		}
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
	ctx, cancel := context.WithTimeout(context.Background(), 2**timeout)
	defer cancel()
	// Live states come after the logs: a handler's live state supersedes
	// the lines of its log (MergeLogs keeps the last state per handler
	// and endpoint), as it is newer.
	live, err := fleet.Gather(ctx, fleet.Options{From: from, TargetGroup: *targetGroup, AdminPort: *adminPort, Region: *region,
		ELBEndpoint: *elbEndpoint, EC2Endpoint: *ec2Endpoint, AuthFile: *authFile, CAFile: *caFile, Timeout: *timeout})
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 2
	}
	for _, m := range live.Renamed {
		fmt.Fprintln(stderr, "report:", m)
	}
	for _, l := range live.Logs {
		readers = append(readers, bytes.NewReader(l))
	}
	missing, merged := live.Missing, live.Read
	for _, m := range missing {
		if !*allowMissing {
			fmt.Fprintf(stderr, "report: handler %s\n", m)
		} else {
			fmt.Fprintf(stderr, "report: warning: left out handler %s\n", m)
		}
	}
	if len(missing) > 0 && !*allowMissing {
		// Its share of the traffic would be missing from the verdict.
		fmt.Fprintln(stderr, "report: -allow-missing leaves unreadable handlers out")
		return 2
	}
	if len(readers) == 0 {
		fmt.Fprintln(stderr, "report: no handler could be read")
		return 2
	}
	r, err := compare.MergeLogs(readers, rules)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 2
	}
	o := gate.Decide(r, accepts, gate.Options{LatencyFails: *latency == "fail"})
	if len(merged)+len(missing) > 0 {
		fmt.Fprintf(stdout, "live state of %d of %d handler(s): %s\n", len(merged), len(merged)+len(missing), strings.Join(merged, ", "))
	}
	name := out.html
	if name == "" {
		name = "report"
	}
	fmt.Fprintf(stdout, "%s: %d endpoints, %d regressions, from %d handler(s)\n", name, len(r.Endpoints), o.Report.Regressions, len(r.Handlers))
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
