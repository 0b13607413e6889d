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
	"syscall"

	"github.com/shadowtap/shadowtap/internal/app"
	"github.com/shadowtap/shadowtap/internal/demo"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage:
  shadowtap [run] -destination URL [flags]   replay VXLAN mirror traffic (flags: shadowtap run -h)
  shadowtap demo                             run everything on loopback and check exactness
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
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("shadowtap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "shadowtap: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "shadowtap: invalid flags:\n%v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	h, err := app.New(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	if err := h.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg app.Config, w io.Writer) *slog.Logger {
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
