package pipeline

import (
	"github.com/shadowtap/shadowtap/internal/mask"
	"maps"
	"math"
	"os"
	"slices"

	"filippo.io/age"

	"github.com/shadowtap/shadowtap/internal/capture"
	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/engine"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/reassembly"
	"github.com/shadowtap/shadowtap/internal/source"
)

// Use is what a pipeline is built for: each command is one.
type Use int

const (
	// Live replays the mirror to the targets, and compares their answers
	// when a candidate is configured (shadowtap run, demo).
	Live Use = iota
	// Record writes the mirror's, or files', exchanges with production's
	// answers to a recording (shadowtap record).
	Record
	// Replay replays files to the targets, waiting for room rather than
	// dropping (shadowtap replay).
	Replay
	// Inspect reads files to summarise them (shadowtap inspect).
	Inspect
	// Verify replays recordings to the targets and compares the answers
	// with production's recorded ones (shadowtap verify).
	Verify
)

func (u Use) String() string {
	switch u {
	case Live:
		return "live"
	case Record:
		return "record"
	case Replay:
		return "replay"
	case Inspect:
		return "inspect"
	case Verify:
		return "verify"
	}
	return "unknown"
}

// Stages are every stage's options, derived from one configuration for
// one use. Commands may adjust what only a flag decides (inspect's
// AllPorts, verify's bound on open exchanges) before building.
type Stages struct {
	Use Use
	// VXLAN and Geneve are the UDP readers' settings; Geneve.Addr is ""
	// when there is no Geneve reader. Used by Live and by Record's live
	// capture.
	VXLAN, Geneve capture.Options
	// Health and Admin are the TCP health-check and the /healthz,
	// /metrics (and comparison report) addresses: Live only, "" for none.
	Health, Admin string
	// Shards is the number of engines sharing the VXLAN traffic, each
	// with its own kernel-steered socket: the configuration's, or one per
	// CPU (config.ShardCount).
	Shards int
	// Engine is the live engines' configuration: ports, VNIs, reassembly
	// bounds and timeouts, the body limit, dedup, and whether production's
	// answers are paired with their requests.
	Engine engine.Config
	// Files is how capture files are read: the live settings, except that
	// a connection may pause for source.FilePause (a file has long pauses;
	// its end flushes every flow).
	Files engine.Config
	// Targets are the targets replayed to: nil when nothing is replayed
	// (Record, Inspect). Compared targets keep their answers' bodies up to
	// compare.max_body; replaying a file waits for room (Block) rather
	// than dropping: a file can wait, a mirror cannot.
	Targets []config.Resolved
	// Comparing is set when a candidate is compared (Live with a
	// candidate, Verify); Compare is then the comparator's configuration,
	// without its log writer.
	Comparing bool
	Compare   compare.Config
	// Identities decrypt the encrypted recordings read (cfg.Recordings).
	Identities []age.Identity
}

// Sources returns how files are read, as source.Open takes it.
func (s Stages) Sources() source.Options {
	return source.Options{Engine: s.Files, Identities: s.Identities}
}

// Bounds of the comparison. Live: exchanges awaiting their parts, and
// finished ones queued for the comparison worker, and the answers' bytes
// held (compare.DefaultMaxBytes); beyond them exchanges or answers are
// dropped and counted. Offline (Verify) reading waits while MaxOpen
// exchanges are open, so none of the bounds OfflineCompareBounds derives
// is ever reached, and the bytes held are bounded by MaxOpen exchanges of
// at most compare.max_body per answer: every exchange is compared.
const (
	liveMaxPending = 100_000
	liveQueue      = 10_000
	// DefaultMaxOpen is verify's default bound on exchanges open in the
	// comparison.
	DefaultMaxOpen = 4096
)

// OfflineCompareBounds sets the comparator's bounds for a run that keeps
// at most maxOpen exchanges open: none of them is ever reached.
func OfflineCompareBounds(c *compare.Config, maxOpen int) {
	c.MaxPending, c.Queue, c.MaxBytes = 2*maxOpen+64, maxOpen+64, math.MaxInt64
}

// Derive returns every stage's options for use, from cfg (already
// validated). It is the only place they are derived.
func Derive(cfg config.Config, use Use) Stages {
	st := Stages{Use: use, Shards: cfg.ShardCount(), Identities: cfg.Recordings.Identities}

	st.VXLAN = capture.DefaultOptions
	st.VXLAN.Addr, st.VXLAN.ReadBuffer = cfg.Listen, cfg.ReadBuffer
	if use == Live {
		if cfg.GeneveListen != "" {
			st.Geneve = st.VXLAN
			st.Geneve.Addr = cfg.GeneveListen
		}
		st.Health, st.Admin = cfg.HealthListen, cfg.AdminListen
	}

	ropts := reassembly.DefaultOptions
	ropts.MaxFlows, ropts.ReorderWait, ropts.IdleTimeout = cfg.MaxFlows, cfg.ReorderWait, cfg.IdleTimeout
	ropts.HandshakeTimeout = cfg.HandshakeTimeout
	hopts := httpstream.DefaultOptions
	hopts.MaxBodyBytes, hopts.ExtraMethods = cfg.MaxBody, cfg.ExtraMethods
	st.Engine = engine.Config{Ports: cfg.Ports, VNIs: cfg.VNIs, Reassembly: ropts, HTTP: hopts, Dedup: cfg.Dedup}

	st.Comparing = use == Verify || use == Live && cfg.Comparing()
	// Correlation learns from production's answers: they are paired with
	// their requests wherever targets are replayed to.
	correlating := !cfg.Defaults.Correlate.Off && use != Record
	switch use {
	case Live:
		st.Engine.PairResponses = st.Comparing && cfg.Compare.VsProduction() || correlating
	case Record:
		st.Engine.PairResponses = true
	}

	st.Files = st.Engine
	st.Files.Reassembly.IdleTimeout, st.Files.Reassembly.HandshakeTimeout = source.FilePause, source.FilePause
	st.Files.PairResponses = use != Replay || correlating

	switch use {
	case Live, Replay, Verify:
		cm := cfg.Compare
		st.Targets = cfg.Resolve()
		for i := range st.Targets {
			st.Targets[i].Block = use != Live
			if n := st.Targets[i].Name; st.Comparing && (n == cm.Candidate || n == cm.Baseline || n == cm.Secondary) {
				st.Targets[i].KeepBody = cm.MaxBody
			}
			if correlating {
				// The ids a target created are in its answers' bodies.
				st.Targets[i].KeepBody = max(st.Targets[i].KeepBody, correlate.MaxBody)
			}
		}
	}

	if st.Comparing {
		st.Compare = compareConfig(cfg.Compare)
		if use == Live {
			st.Compare.MaxPending, st.Compare.Queue = liveMaxPending, liveQueue
			st.Compare.Handler, _ = os.Hostname()
		} else {
			OfflineCompareBounds(&st.Compare, DefaultMaxOpen)
			st.Compare.Handler = "verify"
		}
	}
	return st
}

// compareConfig is the comparator's configuration from the compare
// section, without its bounds, name and log.
func compareConfig(cm config.Compare) compare.Config {
	cc := compare.Config{Candidate: cm.Candidate, Baseline: cm.Baseline, Secondary: cm.Secondary, AgainstProduction: cm.VsProduction(),
		Diff: diff.DefaultOptions, Patterns: cm.Endpoints, MaxEndpoints: cm.MaxEndpoints, Wait: cm.Wait,
		MinSamples: cm.MinSamples, Threshold: cm.Threshold, LogMaxBody: cm.LogMaxBody, Redact: cm.Redact,
		Mask:       mask.New(mask.Rules{Headers: cm.Mask.Headers, Cookies: cm.Mask.Cookies, Fields: cm.Mask.Fields, Detect: cm.Mask.Detect}, maskKey()),
		Confidence: cm.Confidence, LogSamples: cm.LogSamples}
	cc.Diff.IgnoreHeaders = append(slices.Clone(diff.DefaultIgnoreHeaders), cm.IgnoreHeaders...)
	for _, r := range cm.Ignore {
		cc.Ignore = append(cc.Ignore, compare.IgnoreRule{Endpoint: r.Endpoint, Field: r.Field})
	}
	for _, r := range cm.Always {
		cc.Always = append(cc.Always, compare.IgnoreRule{Endpoint: r.Endpoint, Field: r.Field})
	}
	cc.Writes = slices.Sorted(maps.Keys(cm.Writes))
	return cc
}

// maskKey is the key of the pseudonyms shown: SHADOWTAP_MASK_KEY's, for a
// fleet whose merged report must show one value as one pseudonym (an
// environment variable, never a flag), else one made for this run.
func maskKey() []byte {
	if k := os.Getenv("SHADOWTAP_MASK_KEY"); k != "" {
		return []byte(k)
	}
	return nil
}
