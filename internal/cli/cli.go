// Package cli is shadowtap's command line: each command parses its flags,
// calls internal/pipeline, which wires the stages, and prints.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/demo"
)

const usage = `usage:
  shadowtap [run] -destination URL [flags]   replay VXLAN mirror traffic (flags: shadowtap run -h)
  shadowtap [run] -config FILE [flags]       the same, targets and their settings from a YAML file
  shadowtap record -output FILE [-input CAPTURE] [-encrypt-to age1...] [flags]
                                             record exchanges (live, or from a file) to a recording
  shadowtap replay [-speed 1x|2x|max] [-loop N] -destination URL FILE...
                                             replay capture files, recordings or GoReplay files
  shadowtap verify -candidate URL [-baseline URL] [-junit FILE] [-summary FILE] [-accept FILE] RECORDING...
                                             release gate: replay recordings, compare with production's
                                             recorded answers; exit 1 on a regression (verify -h)
  shadowtap inspect [-identity FILE] FILE... summarise a capture file, recording or GoReplay file
  shadowtap report [-o report.html] LOG...   merge handlers' difference logs into one HTML report
  shadowtap sessions check -target T -filter F -tag K=V [-json]
                                             pre-flight check of AWS mirroring for matching instances
  shadowtap sessions sync -target T -filter F -tag K=V [-dry-run] [-watch 1m] [-force]
                                             create/remove traffic mirror sessions for matching instances
  shadowtap validate-config FILE             check a configuration file and show its warnings
  shadowtap demo                             run everything on loopback and check exactness
  shadowtap version
`

// Main runs the command in args and returns the exit code: 0 success, 1
// failure, 2 bad usage.
func Main(version string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 && !configuredByEnv() {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch cmd {
	case "run":
		return runHandler(ctx, args, stderr)
	case "record":
		return record(ctx, args, stdout, stderr)
	case "replay":
		return replayFiles(ctx, args, stdout, stderr)
	case "inspect":
		return inspect(ctx, args, stdout, stderr)
	case "report":
		return report(args, stdout, stderr)
	case "verify":
		return verifyCmd(ctx, args, stdout, stderr)
	case "sessions":
		return sessionsCmd(ctx, args, stdout, stderr)
	case "demo":
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		fs.SetOutput(stderr)
		opts := demo.DefaultOptions
		fs.IntVar(&opts.Connections, "connections", opts.Connections, "keep-alive client connections")
		fs.IntVar(&opts.RequestsPerConn, "requests", opts.RequestsPerConn, "requests per connection")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		sum, err := demo.Run(ctx, stdout, opts)
		if err != nil {
			fmt.Fprintln(stderr, "demo:", err)
			return 1
		}
		if !sum.OK() {
			return 1
		}
		return 0
	case "validate-config":
		return validateConfig(args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "shadowtap %s %s\n", version, buildInfo())
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "shadowtap: unknown command %q\n%s", cmd, usage)
	return 2
}

// synopses head each command's help (-h), above its own flags.
var synopses = map[string]string{
	"shadowtap": "shadowtap [run] -destination URL [flags]  or  shadowtap [run] -config FILE [flags]",
	"record":    "shadowtap record -output FILE [-input CAPTURE] [-encrypt-to age1...] [flags]",
	"replay":    "shadowtap replay -destination URL [flags] FILE...   (flags before or after the files)",
	"inspect":   "shadowtap inspect [-identity FILE] [flags] FILE...",
}

// configuredByEnv reports whether the environment alone configures the
// handler (a service started without flags), so that no arguments still
// runs it.
func configuredByEnv() bool {
	for _, k := range []string{"SHADOWTAP_CONFIG", "SHADOWTAP_DESTINATION"} {
		if v, ok := os.LookupEnv(k); ok && v != "" {
			return true
		}
	}
	return false
}

// loadConfig builds the configuration from the defaults, the -config
// file, SHADOWTAP_* variables and args (flags registered on fs first are
// the command's own). It returns fs's positional arguments.
func loadConfig(fs *flag.FlagSet, args []string) (config.Config, error) {
	syn, ok := synopses[fs.Name()]
	if !ok {
		syn = "shadowtap " + fs.Name() + " [flags]"
	}
	config.SetUsage(fs, syn)
	cfg, _, err := config.FromArgs(args, os.LookupEnv, fs)
	return cfg, err
}

// usageError reports a configuration or flag problem: exit 2.
func usageError(stderr io.Writer, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "shadowtap: invalid configuration:\n%v\n", err)
	return 2
}

// validateConfig checks a configuration file: exit 0 with its warnings,
// 1 with its errors, 2 on bad usage.
func validateConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, "usage: shadowtap validate-config FILE\n")
		return 2
	}
	c := config.Default()
	err := c.LoadFile(args[0])
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range c.Warnings() {
		fmt.Fprintln(stdout, "warning:", w)
	}
	var names []string
	for _, t := range c.Resolve() {
		names = append(names, t.Name)
	}
	fmt.Fprintf(stdout, "%s: ok, targets %s\n", args[0], strings.Join(names, ", "))
	return 0
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func buildInfo() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	rev := ""
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			rev = s.Value
		}
	}
	return bi.GoVersion + " " + rev
}
