package pipeline

import (
	"math"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/source"
)

func TestDerive(t *testing.T) {
	cfg := config.Default()
	cfg.Listen, cfg.GeneveListen, cfg.ReadBuffer = ":9999", ":6081", 1<<20
	cfg.Ports, cfg.VNIs = []uint16{80, 8080}, []uint32{7}
	cfg.MaxFlows, cfg.ReorderWait, cfg.IdleTimeout, cfg.HandshakeTimeout = 1234, 70*time.Millisecond, 3*time.Minute, 2*time.Second
	cfg.MaxBody, cfg.ExtraMethods, cfg.Dedup, cfg.Shards = 20<<20, []string{"PURGE"}, true, 3
	cfg.Targets = []config.Target{{Name: "cand", Destination: "http://c"}, {Name: "other", Destination: "http://o"}}
	cfg.Compare.Candidate, cfg.Compare.MaxBody = "cand", 4096
	cfg.Defaults.Correlate.Off = true // TestDeriveCorrelating has it on
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, use := range []Use{Live, Record, Replay, Inspect, Verify} {
		t.Run(use.String(), func(t *testing.T) {
			st := Derive(cfg, use)
			// Every use reads the same ports, VNIs, bounds and body limit.
			for _, e := range []struct {
				name string
				r    int
				w    time.Duration
			}{{"engine", st.Engine.Reassembly.MaxFlows, st.Engine.Reassembly.ReorderWait}, {"files", st.Files.Reassembly.MaxFlows, st.Files.Reassembly.ReorderWait}} {
				if e.r != 1234 || e.w != 70*time.Millisecond {
					t.Errorf("%s: max_flows %d, reorder_wait %s", e.name, e.r, e.w)
				}
			}
			if st.Engine.HTTP.MaxBodyBytes != 20<<20 || st.Files.HTTP.MaxBodyBytes != 20<<20 || len(st.Files.HTTP.ExtraMethods) != 1 ||
				!st.Files.Dedup || len(st.Files.Ports) != 2 || len(st.Files.VNIs) != 1 {
				t.Errorf("files %+v", st.Files)
			}
			if st.Engine.Reassembly.IdleTimeout != 3*time.Minute || st.Engine.Reassembly.HandshakeTimeout != 2*time.Second {
				t.Errorf("live timeouts %+v", st.Engine.Reassembly)
			}
			// A file keeps its own timeouts: it has pauses, and its end flushes.
			if st.Files.Reassembly.IdleTimeout != source.FilePause || st.Files.Reassembly.HandshakeTimeout != source.FilePause {
				t.Errorf("file timeouts %+v", st.Files.Reassembly)
			}
			if st.VXLAN.Addr != ":9999" || st.VXLAN.ReadBuffer != 1<<20 || st.Shards != 3 {
				t.Errorf("capture %+v, shards %d", st.VXLAN, st.Shards)
			}
			if got := st.Geneve.Addr != ""; got != (use == Live) {
				t.Errorf("geneve %q", st.Geneve.Addr)
			}
			if want := use == Live || use == Record; st.Engine.PairResponses != want {
				t.Errorf("engine pairs responses: %v", st.Engine.PairResponses)
			}
			if want := use != Replay; st.Files.PairResponses != want {
				t.Errorf("files pair responses: %v", st.Files.PairResponses)
			}
			replays := use == Live || use == Replay || use == Verify
			if (len(st.Targets) == 2) != replays {
				t.Fatalf("targets %+v", st.Targets)
			}
			for _, r := range st.Targets {
				if r.Block != (use != Live) {
					t.Errorf("%s: block %v", r.Name, r.Block)
				}
				if compared := use != Replay && r.Name == "cand"; (r.KeepBody == 4096) != compared {
					t.Errorf("%s: keep body %d", r.Name, r.KeepBody)
				}
			}
			if want := use == Live || use == Verify; st.Comparing != want || want && st.Compare.Candidate != "cand" {
				t.Errorf("comparing %v %+v", st.Comparing, st.Compare)
			}
			switch use {
			case Live:
				if st.Compare.MaxPending != 100_000 || st.Compare.Queue != 10_000 || st.Compare.MaxBytes != 0 {
					t.Errorf("live comparison bounds %d %d %d", st.Compare.MaxPending, st.Compare.Queue, st.Compare.MaxBytes)
				}
			case Verify:
				// Reading waits at MaxOpen: no bound of the comparator may drop.
				if st.Compare.MaxPending < DefaultMaxOpen || st.Compare.Queue < DefaultMaxOpen || st.Compare.MaxBytes != math.MaxInt64 ||
					st.Compare.Handler != "verify" {
					t.Errorf("verify comparison %+v", st.Compare)
				}
			}
		})
	}
	// Without a candidate, live replay compares nothing and keeps no body.
	cfg.Compare.Candidate = ""
	st := Derive(cfg, Live)
	if st.Comparing || st.Engine.PairResponses || st.Targets[0].KeepBody != 0 {
		t.Errorf("not comparing: %+v", st)
	}
}

// Correlation (on by default) learns from production's answers wherever
// targets are replayed to, and from the targets' answers' bodies.
func TestDeriveCorrelating(t *testing.T) {
	cfg := config.Default()
	cfg.Targets = []config.Target{{Name: "cand", Destination: "http://c"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, use := range []Use{Live, Replay, Verify} {
		st := Derive(cfg, use)
		if use == Live && !st.Engine.PairResponses || !st.Files.PairResponses {
			t.Errorf("%s: production's answers not paired: engine %v, files %v", use, st.Engine.PairResponses, st.Files.PairResponses)
		}
		if st.Targets[0].KeepBody != correlate.MaxBody || st.Targets[0].Correlate.Off {
			t.Errorf("%s: %+v", use, st.Targets[0])
		}
	}
	cfg.Defaults.Correlate.Off = true
	if st := Derive(cfg, Replay); st.Files.PairResponses || st.Targets[0].KeepBody != 0 {
		t.Errorf("off: %+v", st)
	}
}
