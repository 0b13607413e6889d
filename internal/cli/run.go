package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/shadowtap/shadowtap/internal/app"
	"github.com/shadowtap/shadowtap/internal/config"
)

func runHandler(ctx context.Context, args []string, stderr io.Writer) int {
	load := func(out io.Writer) (config.Config, error) {
		fs := flag.NewFlagSet("shadowtap", flag.ContinueOnError)
		fs.SetOutput(out)
		cfg, err := loadConfig(fs, args)
		if err == nil && fs.NArg() > 0 {
			err = fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		if err == nil {
			err = cfg.Validate()
		}
		return cfg, err
	}
	cfg, err := load(stderr)
	if err != nil {
		return usageError(stderr, err)
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
