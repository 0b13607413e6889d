// Command shadowtap replays mirrored production HTTP traffic to a test
// environment. See README.md.
package main

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

	"github.com/shadowtap/shadowtap/internal/app"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/demo"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage:
  shadowtap [run] -destination URL [flags]   replay VXLAN mirror traffic (flags: shadowtap run -h)
  shadowtap [run] -config FILE [flags]       the same, targets and their settings from a YAML file
  shadowtap demo                             run everything on loopback and check exactness
  shadowtap validate-config FILE             check a configuration file and show its warnings
  shadowtap version
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch cmd {
	case "run":
		return runHandler(ctx, args, stderr)
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

func runHandler(ctx context.Context, args []string, stderr io.Writer) int {
	load := func(out io.Writer) (config.Config, error) {
		fs := flag.NewFlagSet("shadowtap", flag.ContinueOnError)
		fs.SetOutput(out)
		cfg, _, err := config.FromArgs(args, os.LookupEnv, fs)
		if err == nil && fs.NArg() > 0 {
			err = fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		if err == nil {
			err = cfg.Validate()
		}
		return cfg, err
	}
	cfg, err := load(stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "shadowtap: invalid configuration:\n%v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	h, err := app.New(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	// SIGHUP re-reads the configuration (file, environment and the same
	// flags, in the same precedence); a bad one is refused and the old stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				cfg, err := load(io.Discard)
				if err == nil {
					err = h.Reload(cfg)
				}
				if err != nil {
					log.Error("reload refused; the running configuration stays", "err", err)
				}
			}
		}
	}()
	if err := h.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
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
