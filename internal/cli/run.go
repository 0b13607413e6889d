package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/procs"
)

func runHandler(ctx context.Context, args []string, stderr io.Writer) int {
	// SIGHUP re-reads the configuration (file, environment and the same
	// flags, in the same precedence); a bad one is refused and the old
	// stays. It is caught before anything opens: its default action ends
	// the process, and a reload sent while the handler starts or stops
	// must not. After the handler stops it is read by no one.
	hup := hangups()
	select {
	case <-hup: // one left from an earlier run in this process
	default:
	}
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
	h, err := pipeline.New(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	// The reload loop is joined before returning. A reload that comes
	// after the stop began is ignored by the handler, and logged.
	reloadCtx, stopReloads := context.WithCancel(ctx)
	var reloads sync.WaitGroup
	reloads.Add(1)
	go func() {
		defer reloads.Done()
		for {
			select {
			case <-reloadCtx.Done():
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
	// GOMAXPROCS is the process's: sized to the load here, where the
	// process is the handler's, unless the operator set it. /metrics
	// shows it (go_sched_gomaxprocs_threads).
	if procs.Auto() {
		reloads.Add(1)
		go func() {
			defer reloads.Done()
			procs.Run(reloadCtx, time.Second, log)
		}()
	}
	err = h.Run(ctx)
	stopReloads()
	reloads.Wait()
	if err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

// hangups delivers SIGHUP from the first handler's start for the rest of
// the process: it is never unregistered, because changing how SIGHUP is
// handled while one arrives can end the process (in Go's signal.Ignore an
// arriving signal is briefly neither wanted nor ignored, and takes its
// default action; TestReloadAndStopTogether hit it 2 times in 100).
var hangups = sync.OnceValue(func() chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	return c
})
