package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/shadowtap/shadowtap/internal/capture"
	"github.com/shadowtap/shadowtap/internal/engine"
	"github.com/shadowtap/shadowtap/internal/ratelog"
)

// vxlanInput is the VXLAN source and the engines behind it. With several
// shards it is a kernel-steered group of sockets (capture.ListenGroup):
// each socket has its own reader goroutine running its own engine inline,
// so no datagram changes goroutine and the shards share nothing but
// counters. Where the kernel refuses the group, one socket's reader hands
// datagrams to engine.Shards instead (or, when the shard count was left
// to the machine, to one engine). One shard is one socket and one engine,
// run inline by the reader.
type vxlanInput struct {
	group   *capture.Group   // steered: engines[i] reads group.Listeners[i]
	engines []*engine.Engine // steered only
	single  *capture.Listener
	shards  *engine.Shards // on single
	n       int            // shards asked for
	handoff bool           // single socket, n engines fed by its reader
}

// openVXLAN binds the VXLAN socket(s) for n shards. explicit says whether
// the operator chose n (then a refused group still runs n engines, fed by
// one reader) or it was one per CPU (then one engine is the better choice:
// a hand-off per read costs more than it gains on few cores).
func openVXLAN(opts capture.Options, n int, explicit bool, stats *capture.Stats, log *slog.Logger) (*vxlanInput, error) {
	v := &vxlanInput{n: n}
	if n > 1 {
		g, err := capture.ListenGroup(opts, n, stats)
		if err == nil {
			if g.Discarded > 0 {
				log.Info("datagrams received while the shards' sockets were bound were dropped", "datagrams", g.Discarded)
			}
			v.group = g
			return v, nil
		}
		if explicit {
			log.Warn("the kernel refused steered sockets; one socket is read, its reader hands datagrams to the shards", "shards", n, "err", err)
		} else {
			log.Warn("the kernel refused steered sockets; one socket and one engine", "err", err)
		}
		v.handoff = explicit
	}
	l, err := capture.Listen(opts, stats)
	if err != nil {
		return nil, err
	}
	v.single = l
	return v, nil
}

// build makes the engines; call it once, before run.
func (v *vxlanInput) build(cfg engine.Config, sink engine.Sink, stats *engine.Stats, log *ratelog.Limiter) {
	switch {
	case v.group != nil:
		v.engines = engine.ShardEngines(v.n, cfg, sink, stats, log)
	case v.handoff:
		v.shards = engine.NewShards(v.n, cfg, sink, stats, log)
	default:
		v.shards = engine.NewShards(1, cfg, sink, stats, log)
	}
}

// run reads until ctx ends, then flushes every engine's flows into the
// sink; it returns when every reader has stopped.
func (v *vxlanInput) run(ctx context.Context) error {
	if v.group == nil {
		err := v.single.RunBatches(ctx, v.shards.HandleVXLAN, v.shards.EndBatch, v.shards.Tick)
		v.shards.Flush()
		return err
	}
	errs := make([]error, len(v.engines))
	var readers sync.WaitGroup
	for i, e := range v.engines {
		readers.Add(1)
		go func() {
			defer readers.Done()
			errs[i] = v.group.Listeners[i].RunBatches(ctx, e.HandleVXLAN, e.EndBatch, e.Tick)
			e.Flush()
		}()
	}
	readers.Wait()
	return errors.Join(errs...)
}

// received returns the datagrams each socket delivered: one per shard
// when steered (their balance shows the steering's), else one.
func (v *vxlanInput) received() []uint64 {
	if v.group == nil {
		return []uint64{v.single.Received()}
	}
	out := make([]uint64, len(v.group.Listeners))
	for i, l := range v.group.Listeners {
		out[i] = l.Received()
	}
	return out
}

// shardCount is the number of engines running.
func (v *vxlanInput) shardCount() int {
	if v.group != nil {
		return len(v.engines)
	}
	return v.shards.Len()
}

func (v *vxlanInput) addr() netip.AddrPort {
	if v.group != nil {
		return v.group.Addr()
	}
	return v.single.Addr()
}

func (v *vxlanInput) kernelDrops() (uint64, error) {
	if v.group != nil {
		return v.group.KernelDrops()
	}
	return v.single.KernelDrops()
}

func (v *vxlanInput) close() {
	if v.group != nil {
		v.group.Close()
	} else {
		v.single.Close()
	}
}
