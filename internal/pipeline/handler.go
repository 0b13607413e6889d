// Package pipeline builds shadowtap's one pipeline from the configuration
// and runs it, for every command: sources (the UDP VXLAN and Geneve
// readers, capture files, recordings, GoReplay files) -> engine shards ->
// router (per-target filters, sampling, rewrites, limits) -> replayers ->
// observers (comparison, recording, metrics). Derive gives every stage's
// options for a Use; Handler is the live pipeline (run, demo, and record
// with the recorder in place of the targets); ReplayFiles, RecordExchanges
// and VerifyFiles read files.
package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shadowtap/shadowtap/internal/capture"
	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/engine"
	"github.com/shadowtap/shadowtap/internal/metrics"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/replay"
	"github.com/shadowtap/shadowtap/internal/store"
	"github.com/shadowtap/shadowtap/internal/target"
	"github.com/shadowtap/shadowtap/internal/webauth"
	"github.com/shadowtap/shadowtap/internal/writes"
)

// Handler is a running replay handler.
type Handler struct {
	cfg    config.Config
	stages Stages
	log    *slog.Logger

	Capture capture.Stats
	Engine  engine.Stats
	// OnResult, when set before Run, sees every finished replay.
	OnResult func(replay.Result)

	vxlan   *vxlanInput
	geneve  *capture.Listener // nil unless GeneveListen
	genEng  *engine.Engine
	fanout  *target.Fanout
	health  net.Listener
	admin   *http.Server
	adminLn net.Listener
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	failLog *ratelog.Limiter

	workCtx    context.Context // the replayers'; ends after the final drain
	cancelWork context.CancelFunc
	// reloadMu serialises Reload with the stop; stopping, set by Run under
	// it, makes a later reload a logged no-op; retiring counts the drains
	// of retired targets, which Run waits for.
	reloadMu sync.Mutex
	// restartPending: the settings changed by reloads that wait for a
	// restart (RestartPending).
	restartPending atomic.Pointer[[]string]
	stopping       bool
	retiring       sync.WaitGroup

	compare *compare.Comparator // nil unless comparing
	noise   *store.NoiseLink    // the comparison's share of the fleet's store, or nil
	guard   *webauth.Guard      // the admin server's web configuration, or nil
	diffLog *os.File
	rec     *recorder // nil unless recording
}

// New validates cfg, binds the handler's sockets and starts the targets'
// replayers (which wait for requests).
func New(cfg config.Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return build(Derive(cfg, Live), cfg, log, nil)
}

// build binds the sockets of st and starts its stages, sink first: the
// targets' replayers (or the recorder) and the comparator, then the
// engines. Run starts the readers.
func build(st Stages, cfg config.Config, log *slog.Logger, rec *recorder) (*Handler, error) {
	h := &Handler{cfg: cfg, stages: st, log: log, reg: prometheus.NewRegistry(), failLog: ratelog.New(log, 10*time.Second), rec: rec}
	if rec != nil {
		rec.start() // sink first; Close ends it
	}
	var err error
	if h.vxlan, err = openVXLAN(st.VXLAN, st.Shards, cfg.Shards > 0, &h.Capture, log); err != nil {
		h.Close()
		return nil, err
	}
	if got := h.Capture.ReadBuffer.Load(); got < int64(cfg.ReadBuffer) {
		log.Warn("socket receive buffer is smaller than asked; raise net.core.rmem_max or grant CAP_NET_ADMIN",
			"asked", cfg.ReadBuffer, "got", got)
	}
	if st.Geneve.Addr != "" {
		if h.geneve, err = capture.Listen(st.Geneve, &h.Capture); err != nil {
			h.Close()
			return nil, err
		}
	}
	if st.Health != "" {
		if h.health, err = net.Listen("tcp", st.Health); err != nil {
			h.Close()
			return nil, fmt.Errorf("health listener: %w", err)
		}
	}
	if st.Admin != "" {
		if cfg.WebConfig != "" {
			if h.guard, err = webauth.Load(cfg.WebConfig); err != nil {
				h.Close()
				return nil, err
			}
		}
		if h.adminLn, err = net.Listen("tcp", st.Admin); err != nil {
			h.Close()
			return nil, fmt.Errorf("admin listener: %w", err)
		}
		if h.guard == nil && !loopback(h.adminLn.Addr()) {
			log.Warn("the admin server serves production's data (/report, /api/report, /api/state) without authentication on a non-loopback address; give it -web-config",
				"admin_listen", h.adminLn.Addr().String())
		}
	}

	h.workCtx, h.cancelWork = context.WithCancel(context.Background())
	var sink engine.Sink
	if rec != nil {
		sink = rec
	} else {
		if h.fanout, err = route(h.workCtx, st, log, h.observers()); err != nil {
			h.Close()
			return nil, err
		}
		sink = h.fanout
		for _, w := range cfg.Warnings() {
			log.Warn(w)
		}
	}
	if st.Comparing {
		if err := h.startCompare(); err != nil {
			h.Close()
			return nil, err
		}
	}

	h.metrics = metrics.Register(h.reg, metrics.Sources{
		Capture: &h.Capture, KernelDrops: h.vxlan.kernelDrops, Sockets: h.vxlan.received, Engine: &h.Engine,
		Targets: h.Targets, Compare: h.compare, RestartPending: h.RestartPending,
	})
	h.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))

	ecfg := st.Engine
	elog := ratelog.New(log, 10*time.Second)
	h.vxlan.build(ecfg, sink, &h.Engine, elog)
	if h.geneve != nil {
		// A second engine, owned by the Geneve reader; it shares the
		// counters and the targets, and numbers its connections apart.
		ecfg.FirstConnID = 1 << 62
		h.genEng = engine.New(ecfg, sink, &h.Engine, elog)
	}
	return h, nil
}

// startCompare opens the comparison's log and starts the comparator.
func (h *Handler) startCompare() error {
	cc := h.stages.Compare
	if cm := h.cfg.Compare; cm.Log != "" {
		f, err := os.OpenFile(cm.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("compare log: %w", err)
		}
		h.diffLog, cc.Log = f, f
	}
	var fan atomic.Pointer[target.Fanout]
	fan.Store(h.fanout)
	correlatedBy(&cc, &fan, h.cfg.Compare.Candidate, h.cfg.Compare.Baseline)
	if f := h.cfg.Correlate; f.Shared() {
		// The fleet shares what the comparison learned as noise too.
		n, err := store.OpenNoise(store.Options{URL: f.Store, Namespace: f.Namespace, Log: h.log})
		if err != nil {
			return err
		}
		h.noise, cc.Fleet = n, n
	}
	c, err := compare.New(cc, h.log)
	if err != nil {
		return err
	}
	h.compare = c
	h.fanout.SetComparer(c)
	return nil
}

// Comparator returns the comparison, or nil.
func (h *Handler) Comparator() *compare.Comparator { return h.compare }

// observers are what sees the targets' work: the metrics, the logs and the
// comparison.
func (h *Handler) observers() target.Observers {
	return target.Observers{Result: h.result, Written: h.written}
}

// written hands what a request wrote to the comparison (set up after the
// targets, before traffic).
func (h *Handler) written(s writes.Set) {
	if h.compare != nil {
		h.compare.Written(s.Target, s.Req, s.Doc(), s.Complete)
	}
}

func (h *Handler) result(r replay.Result) {
	h.metrics.Observe(r)
	if h.compare != nil {
		h.compare.Result(r)
	}
	if r.Err != nil {
		kind := "replay_failed_" + r.Target
		var re *replay.Error
		if errors.As(r.Err, &re) {
			kind += "_" + re.Reason.String()
		}
		h.failLog.Warn(kind, "replay failed", "target", r.Target, "method", string(r.Req.Method()), "err", r.Err.Error())
	}
	if h.OnResult != nil {
		h.OnResult(r)
	}
}

// Targets returns the targets in force (none when recording).
func (h *Handler) Targets() []*target.Target {
	if h.fanout == nil {
		return nil
	}
	return h.fanout.Current().Targets
}

// Reload puts a new configuration in force without dropping flows: targets
// are rebuilt (a target whose destination and pool settings are unchanged
// keeps its replayer, queue and connections), then swapped in atomically;
// removed or changed targets drain in the background. Settings of the
// capture itself need a restart: a change to them is logged and ignored.
// A configuration that does not validate is refused; the old one stays.
func (h *Handler) Reload(cfg config.Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("reload refused, configuration unchanged: %w", err)
	}
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	if h.stopping {
		h.log.Warn("reload ignored: the handler is stopping")
		return nil
	}
	if h.fanout == nil {
		return errors.New("reload: this pipeline replays to no target")
	}
	if h.guard != nil {
		if err := h.guard.Reload(); err != nil {
			h.log.Warn("web config not reloaded: the previous one stays in force", "err", err)
		}
	}
	pending := needsRestart(h.stages, h.cfg, cfg)
	for _, f := range pending {
		h.log.Warn("setting changed: takes effect after a restart", "setting", f)
	}
	// The comparison stays as started (its settings wait for a restart),
	// and so do the databases read: it compares the writes of those alone.
	built := cfg
	built.Compare = h.cfg.Compare
	set, retired, err := target.Build(h.workCtx, Derive(built, Live).Targets, h.fanout.Current(), h.log, h.observers())
	if err != nil {
		return fmt.Errorf("reload refused, configuration unchanged: %w", err)
	}
	h.fanout.Swap(set)
	// The stop reads DrainTimeout once stopping is set under reloadMu,
	// after which no reload writes it.
	h.cfg.Targets, h.cfg.Destination, h.cfg.Defaults, h.cfg.DrainTimeout = cfg.Targets, cfg.Destination, cfg.Defaults, cfg.DrainTimeout
	target.Retire(retired, h.cfg.DrainTimeout, &h.retiring)
	h.restartPending.Store(&pending)
	for _, w := range cfg.Warnings() {
		h.log.Warn(w)
	}
	names := make([]string, len(set.Targets))
	for i, t := range set.Targets {
		names[i] = t.Name
	}
	h.log.Info("configuration reloaded", "targets", names, "retired", len(retired))
	return nil
}

// needsRestart lists the settings of next that only a restart puts in
// force: those of the capture that differ from now's, and a correlation
// turned on where the handler, as started, does not read production's
// answers (it would learn nothing).
func needsRestart(started Stages, now, next config.Config) []string {
	out := restartOnly(now, next)
	if !started.Engine.PairResponses && Derive(next, Live).Engine.PairResponses {
		out = append(out, "correlate")
	}
	return out
}

// liveSettings are those a reload puts in force; every other setting a
// reload changes waits for a restart, and is named.
var liveSettings = []string{"destination", "targets", "defaults", "drain_timeout"}

// restartOnly lists the settings that differ between a and b and that only
// a restart applies: all but liveSettings, read from the configuration's
// type (config.Changed), so that a new setting is never silently ignored.
func restartOnly(a, b config.Config) []string {
	var out []string
	for _, name := range config.Changed(a, b) {
		if !slices.Contains(liveSettings, name) {
			out = append(out, name)
		}
	}
	return out
}

// RestartPending names the settings changed by reloads that wait for a
// restart (in /metrics as shadowtap_config_restart_pending).
func (h *Handler) RestartPending() []string {
	if p := h.restartPending.Load(); p != nil {
		return *p
	}
	return nil
}

// loopback reports whether a listener's address is the machine's own.
func loopback(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().IsLoopback()
}

// ListenAddr returns the UDP address receiving VXLAN.
func (h *Handler) ListenAddr() netip.AddrPort { return h.vxlan.addr() }

// GeneveAddr returns the UDP address receiving Geneve, if enabled.
func (h *Handler) GeneveAddr() netip.AddrPort {
	if h.geneve == nil {
		return netip.AddrPort{}
	}
	return h.geneve.Addr()
}

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

// Close releases the sockets of a handler that was not run.
func (h *Handler) Close() {
	if h.vxlan != nil {
		h.vxlan.close()
	}
	if h.geneve != nil {
		h.geneve.Close()
	}
	if h.health != nil {
		h.health.Close()
	}
	if h.adminLn != nil {
		h.adminLn.Close()
	}
	if h.cancelWork != nil {
		h.cancelWork()
	}
	if h.rec != nil {
		h.rec.close()
	}
}

// Run captures and replays until ctx ends, then stops gracefully: it stops
// reading, ends every flow (requests cut short are counted, never sent),
// lets every target finish its queue for up to DrainTimeout (concurrently:
// a blackholed target does not delay the others), and closes everything.
func (h *Handler) Run(ctx context.Context) error {
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
			// Alive means the handler is capturing; the test environments'
			// health is in the metrics, not here, so that a staging outage
			// never fails the load balancer's checks.
			w.Write([]byte("ok\n"))
		})
		// Production's data needs the web configuration's credentials;
		// /healthz never does (the load balancer asks it).
		guard := func(x http.Handler) http.Handler {
			if h.guard == nil {
				return x
			}
			return h.guard.Protect(x)
		}
		metrics := http.Handler(promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{Registry: h.reg}))
		if h.cfg.ProtectMetrics {
			metrics = guard(metrics)
		}
		mux.Handle("/metrics", metrics)
		if h.compare != nil {
			mux.Handle("/report", guard(h.compare.Handler()))
			mux.Handle("/api/report", guard(h.compare.Handler()))
			mux.Handle("/api/state", guard(h.compare.Handler())) // mergeable: shadowtap report -from
		}
		h.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		var tlsConfig *tls.Config
		if h.guard != nil {
			tlsConfig = h.guard.TLS()
		}
		h.admin.TLSConfig = tlsConfig
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if tlsConfig != nil {
				err = h.admin.ServeTLS(h.adminLn, "", "")
			} else {
				err = h.admin.Serve(h.adminLn)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.log.Error("admin server", "err", err)
			}
		}()
	}
	if h.rec != nil {
		h.log.Info("recording", "listen", h.ListenAddr().String(), "ports", h.cfg.Ports, "shards", h.vxlan.shardCount())
	} else {
		targets := h.Targets()
		names := make([]string, len(targets))
		for i, t := range targets {
			names[i] = t.Name + "=" + t.Conf.Destination
		}
		h.log.Info("shadowtap started", "listen", h.ListenAddr().String(), "targets", names, "ports", h.cfg.Ports, "shards", h.vxlan.shardCount(),
			"health", h.HealthAddr(), "admin", h.AdminAddr(), "receive_buffer", h.Capture.ReadBuffer.Load())
	}

	// The stop runs in order: both sources stop and flush their flows
	// into the targets (or the recorder), then the targets drain, then
	// the observers flush.
	var geneve sync.WaitGroup
	if h.geneve != nil {
		geneve.Add(1)
		go func() {
			defer geneve.Done()
			if err := h.geneve.RunBatches(ctx, h.genEng.HandleGeneve, h.genEng.EndBatch, h.genEng.Tick); err != nil {
				h.log.Error("geneve capture", "err", err)
			}
			h.genEng.Flush()
		}()
	}
	err := h.vxlan.run(ctx)
	geneve.Wait()
	h.reloadMu.Lock()
	h.stopping = true
	h.reloadMu.Unlock()
	if h.fanout != nil {
		h.log.Info("capture stopped; draining replays", "deadline", h.cfg.DrainTimeout)
		drainCtx, cancel := context.WithTimeout(context.Background(), h.cfg.DrainTimeout)
		target.Stop(drainCtx, h.Targets())
		h.retiring.Wait() // each bounded by its own drain deadline
		cancel()
	}
	if h.rec != nil {
		if rerr := h.rec.close(); err == nil {
			err = rerr // writes what is queued; the first write error
		}
	}
	if h.compare != nil {
		h.compare.Close() // writes the last statistics to the log
		if h.noise != nil {
			h.noise.Close()
		}
		if h.diffLog != nil {
			h.diffLog.Close()
		}
	}

	if h.admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h.admin.Shutdown(sctx)
		cancel()
	}
	h.Close()
	wg.Wait()
	if h.rec == nil {
		h.log.Info("shadowtap stopped", "captured", h.Engine.HTTP.Requests.Load())
	}
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
