package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shadowtap/shadowtap/internal/capture"
	"github.com/shadowtap/shadowtap/internal/engine"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/metrics"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/reassembly"
	"github.com/shadowtap/shadowtap/internal/replay"
	"github.com/shadowtap/shadowtap/internal/sample"
)

// Handler is a running replay handler.
type Handler struct {
	cfg Config
	log *slog.Logger

	Capture capture.Stats
	Engine  engine.Stats
	Replay  replay.Stats
	// OnResult, when set before Run, sees every finished replay.
	OnResult func(replay.Result)

	listener *capture.Listener
	eng      *engine.Engine
	replayer *replay.Replayer
	sampler  *sample.Sampler
	health   net.Listener
	admin    *http.Server
	adminLn  net.Listener
	reg      *prometheus.Registry
	metrics  *metrics.Metrics
	failLog  *ratelog.Limiter
}

// New validates cfg and binds the handler's sockets.
func New(cfg Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, log: log, reg: prometheus.NewRegistry(), failLog: ratelog.New(log, 10*time.Second)}
	dest, _ := replay.ParseDestination(cfg.Destination)
	h.sampler, _ = sample.New(cfg.Percentage, sample.By(cfg.PercentageBy), cfg.PercentageByHeader)

	copts := capture.DefaultOptions
	copts.Addr, copts.ReadBuffer = cfg.Listen, cfg.ReadBuffer
	var err error
	if h.listener, err = capture.Listen(copts, &h.Capture); err != nil {
		return nil, err
	}
	if got := h.Capture.ReadBuffer.Load(); got < int64(cfg.ReadBuffer) {
		log.Warn("socket receive buffer is smaller than asked; raise net.core.rmem_max or grant CAP_NET_ADMIN",
			"asked", cfg.ReadBuffer, "got", got)
	}
	if cfg.HealthListen != "" {
		if h.health, err = net.Listen("tcp", cfg.HealthListen); err != nil {
			h.listener.Close()
			return nil, fmt.Errorf("health listener: %w", err)
		}
	}
	if cfg.AdminListen != "" {
		if h.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			h.Close()
			return nil, fmt.Errorf("admin listener: %w", err)
		}
	}

	h.metrics = metrics.Register(h.reg, metrics.Sources{
		Capture: &h.Capture, KernelDrops: h.listener.KernelDrops, Engine: &h.Engine, Sampler: h.sampler, Replay: &h.Replay,
	})
	h.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))

	edits := replay.Edits{Host: dest.Host, KeepHost: cfg.KeepHostHeader, PathPrefix: dest.PathPrefix}
	h.replayer = replay.New(replay.NewClient(dest, cfg.ClientOptions()),
		replay.Options{Workers: cfg.Workers, MaxQueue: cfg.Queue, Edits: edits}, &h.Replay, log, h.result)

	ropts := reassembly.DefaultOptions
	ropts.MaxFlows, ropts.ReorderWait, ropts.IdleTimeout = cfg.MaxFlows, cfg.ReorderWait, cfg.IdleTimeout
	hopts := httpstream.DefaultOptions
	hopts.MaxBodyBytes = cfg.MaxBody
	h.eng = engine.New(engine.Config{Ports: cfg.Ports, VNIs: cfg.VNIs, Reassembly: ropts, HTTP: hopts},
		h.sampler, h.replayer, &h.Engine, ratelog.New(log, 10*time.Second))
	return h, nil
}

func (h *Handler) result(r replay.Result) {
	h.metrics.Observe(r)
	if r.Err != nil {
		kind := "replay_failed"
		if re, ok := r.Err.(*replay.Error); ok {
			kind += "_" + re.Reason.String()
		}
		h.failLog.Warn(kind, "replay failed", "destination", h.cfg.Destination, "method", string(r.Req.Method()), "err", r.Err.Error())
	}
	if h.OnResult != nil {
		h.OnResult(r)
	}
}

// ListenAddr returns the UDP address receiving VXLAN.
func (h *Handler) ListenAddr() netip.AddrPort { return h.listener.Addr() }

// AdminAddr returns the admin server's address, if enabled.
func (h *Handler) AdminAddr() string {
	if h.adminLn == nil {
		return ""
	}
	return h.adminLn.Addr().String()
}

// HealthAddr returns the health listener's address, if enabled.
func (h *Handler) HealthAddr() string {
	if h.health == nil {
		return ""
	}
	return h.health.Addr().String()
}

// Registry returns the handler's metrics registry.
func (h *Handler) Registry() *prometheus.Registry { return h.reg }

// Close releases the sockets of a handler that was not run.
func (h *Handler) Close() {
	h.listener.Close()
	if h.health != nil {
		h.health.Close()
	}
	if h.adminLn != nil {
		h.adminLn.Close()
	}
}

// Run captures and replays until ctx ends, then stops gracefully: it stops
// reading, ends every flow (requests cut short are counted, never sent),
// lets queued replays finish for up to DrainTimeout, and closes everything.
func (h *Handler) Run(ctx context.Context) error {
	workCtx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	h.replayer.Start(workCtx)

	var wg sync.WaitGroup
	if h.health != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveHealth(h.health)
		}()
	}
	if h.adminLn != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			// Alive means the handler is capturing; the test environment's
			// health is in the metrics, not here, so that a staging outage
			// never fails the load balancer's checks.
			w.Write([]byte("ok\n"))
		})
		mux.Handle("/metrics", promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{Registry: h.reg}))
		h.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.admin.Serve(h.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.log.Error("admin server", "err", err)
			}
		}()
	}
	h.log.Info("shadowtap started", "listen", h.listener.Addr().String(), "destination", h.cfg.Destination,
		"ports", h.cfg.Ports, "percentage", h.cfg.Percentage, "percentage_by", h.cfg.PercentageBy,
		"health", h.HealthAddr(), "admin", h.AdminAddr(), "receive_buffer", h.Capture.ReadBuffer.Load())

	err := h.listener.Run(ctx, h.eng.HandleVXLAN, h.eng.Tick)
	h.eng.Flush()
	h.log.Info("capture stopped; draining replays", "queued", h.Replay.Queued.Load(), "deadline", h.cfg.DrainTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), h.cfg.DrainTimeout)
	h.replayer.Stop(drainCtx)
	cancel()
	cancelWork()

	if h.admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h.admin.Shutdown(sctx)
		cancel()
	}
	h.Close()
	wg.Wait()
	h.log.Info("shadowtap stopped", "captured", h.Engine.HTTP.Requests.Load(), "replayed", h.Replay.Replayed.Load())
	return err
}

// serveHealth accepts connections and closes them at once, as a TCP health
// check expects.
func serveHealth(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
