package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/replay"
	"github.com/shadowtap/shadowtap/internal/target"
)

// route starts the replayers of st's targets, each with its bounded queue
// and workers, and the router in front of them (per-target filters,
// sampling, rewrites, limits). onResult, if set, sees every finished
// replay on the replayer's goroutine. The replayers run until target.Stop
// drains them or ctx ends.
func route(ctx context.Context, st Stages, log *slog.Logger, onResult func(replay.Result)) (*target.Fanout, error) {
	set, _, err := target.Build(ctx, st.Targets, nil, log, onResult)
	if err != nil {
		return nil, err
	}
	return target.NewFanout(set, ratelog.New(log, 10*time.Second)), nil
}
