package pipeline

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/target"
)

// route starts the replayers of st's targets, each with its bounded queue
// and workers, and the router in front of them (per-target filters,
// sampling, rewrites, limits). obs sees every finished replay, and what
// each request wrote where writes are compared, on the targets'
// goroutines. The replayers run until target.Stop drains them or ctx ends.
func route(ctx context.Context, st Stages, log *slog.Logger, obs target.Observers) (*target.Fanout, error) {
	set, _, err := target.Build(ctx, st.Targets, nil, log, obs)
	if err != nil {
		return nil, err
	}
	return target.NewFanout(set, ratelog.New(log, 10*time.Second)), nil
}

// correlatedBy sets the comparison's view of the targets' correlation
// tables, once fan holds the fanout: which values the targets created for
// one production value (Paired), and whether an exchange's are still to
// be carried back (Unsettled).
func correlatedBy(cc *compare.Config, fan *atomic.Pointer[target.Fanout], candidate, baseline string) {
	table := func(name string) *correlate.Table {
		f := fan.Load()
		if f == nil {
			return nil
		}
		for _, t := range f.Current().Targets {
			if t.Name == name {
				return t.Pairs
			}
		}
		return nil
	}
	cc.Unsettled = func(req *httpstream.Request) bool {
		x := correlate.Exchange{Conn: req.ConnID, Index: req.Index}
		for _, name := range []string{candidate, baseline} {
			if t := table(name); t != nil && t.Unsettled(x) {
				return true
			}
		}
		return false
	}
	cc.Paired = func(ref string, at correlate.Field, a, b string) bool {
		cand := table(candidate)
		if cand == nil {
			return false
		}
		kb, ok := cand.Origin(b, at)
		if !ok {
			return false
		}
		if ref == "production" {
			return kb == cand.KeyAt(a, at)
		}
		base := table(baseline)
		if base == nil {
			return false
		}
		ka, ok := base.Origin(a, at)
		return ok && ka == kb
	}
}
