package pipeline

// The release gate (`shadowtap verify`): VerifyFiles replays recordings to
// the test environments and compares every answer with the recorded
// production answer (and with a baseline target where one is configured),
// offline. It runs the live pipeline's own stages: the router and
// replayers (filters, sampling, rewrites, credentials, per-connection
// order) and the comparator, fed with production's responses from the
// recording instead of the mirror. Memory is bounded: exchanges are read
// one at a time, the number open in the comparison is capped (reading
// waits for it), and recorded connections idle in the recording are ended.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/player"
	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/replay"
	"github.com/shadowtap/shadowtap/internal/source"
	"github.com/shadowtap/shadowtap/internal/target"
	"github.com/shadowtap/shadowtap/internal/writes"
)

// VerifyOptions tune a run.
type VerifyOptions struct {
	// Speed 1 keeps the recording's timing, 2 plays twice as fast; 0 sends
	// as fast as the targets and the comparison allow.
	Speed float64
	// MaxOpen caps the exchanges open in the comparison (sent, not yet
	// compared): reading the recording waits below it. 0: 4096.
	MaxOpen int
	// Progress, if set, is called every ProgressEvery and once at the end.
	Progress      func(player.Progress)
	ProgressEvery time.Duration
	Log           *slog.Logger
}

// VerifyResult is what a run did, and the comparison's report.
type VerifyResult struct {
	Report       compare.Report
	Records      int64 // read from the inputs
	Sent         int64 // offered to the targets
	Unparsed     int64 // recorded requests that did not parse
	NoProduction int64 // records without production's answer (compared with the baseline only, if any)
	// Refused counts, by reason, the requests the inputs held that were
	// never offered (a capture's refused framings, other protocols, ...).
	Refused map[string]uint64
	// CandidateFailed counts requests the candidate did not answer
	// (refused, reset, timed out), by reason: the comparison leaves them
	// out, the gate must not.
	CandidateFailed map[string]uint64
	Progress        player.Progress
	Elapsed         time.Duration
}

// tracker sits between the fanout and the comparator and counts the
// exchanges open in the comparison: expected, less those compared (or
// given up as incomplete or dropped), less those the candidate will never
// answer (filtered, sampled out, failed), which the comparator forgets
// without counting.
type tracker struct {
	*compare.Comparator
	candidate string
	expected  atomic.Int64
	gone      atomic.Int64
}

func (t *tracker) Expect(req *httpstream.Request) {
	t.expected.Add(1)
	t.Comparator.Expect(req)
}

func (t *tracker) Skip(req *httpstream.Request, name string) {
	if name == t.candidate {
		t.gone.Add(1)
	}
	t.Comparator.Skip(req, name)
}

func (t *tracker) result(r replay.Result) {
	if r.Target == t.candidate && r.Resp == nil {
		t.gone.Add(1)
	}
	t.Comparator.Result(r)
}

func (t *tracker) written(s writes.Set) {
	t.Comparator.Written(s.Target, s.Req, s.Doc(), s.Complete)
}

// open leaves out the exchanges held until what they created is carried
// back: the requests that carry it are still to be read.
func (t *tracker) open() int64 {
	s := &t.Comparator.Stats
	return t.expected.Load() - int64(s.Compared.Load()+s.Incomplete.Load()+s.Dropped.Load()) - t.gone.Load() - s.SettlingNow.Load()
}

// Run replays every exchange of the inputs, in order, to cfg's targets and
// compares the answers. cfg must name a candidate (compare.candidate).
// An unreadable input fails with an error wrapping ErrInput.
func VerifyFiles(ctx context.Context, cfg config.Config, inputs []string, opts VerifyOptions) (*VerifyResult, error) {
	if !cfg.Comparing() {
		return nil, errors.New("verify: no candidate to compare")
	}
	if opts.MaxOpen <= 0 {
		opts.MaxOpen = DefaultMaxOpen
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := checkInputs(inputs); err != nil {
		return nil, err
	}
	st := Derive(cfg, Verify)
	cc := st.Compare
	OfflineCompareBounds(&cc, opts.MaxOpen)
	var fan atomic.Pointer[target.Fanout]
	correlatedBy(&cc, &fan, cfg.Compare.Candidate, cfg.Compare.Baseline)
	comp, err := compare.New(cc, log)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer comp.Close()
	tr := &tracker{Comparator: comp, candidate: cfg.Compare.Candidate}

	workCtx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	fanout, err := route(workCtx, st, log, target.Observers{Result: tr.result, Written: tr.written})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	fanout.SetComparer(tr)
	fan.Store(fanout)
	targets := fanout.Current().Targets

	res := &VerifyResult{}
	began := time.Now()
	var sent atomic.Int64
	snapshot := func() player.Progress {
		return player.Tally(fanout, player.Progress{Sent: sent.Load(), Total: -1, Unparsed: res.Unparsed,
			Elapsed: time.Since(began), Remaining: -1})
	}
	stopProgress := player.ReportEvery(opts.ProgressEvery, opts.Progress, snapshot)

	f := &feeder{ctx: ctx, fanout: fanout, tr: tr, opts: opts, res: res, sent: &sent, idle: cfg.IdleTimeout, pace: player.NewPacer(opts.Speed),
		conns: map[uint64]connSeen{}}
	for i, p := range inputs {
		if err = f.file(uint64(i), p, st.Sources()); err != nil {
			break
		}
	}
	f.endAll()

	// Let the targets finish what is queued (each waits at most its own
	// response timeout per request), then the comparison what is open.
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout+2*maxResponseTimeout(cfg))
	target.Stop(drainCtx, targets)
	cancel()
	deadline := time.Now().Add(cfg.Compare.Wait + 2*time.Second)
	for tr.open() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// Every request was sent: what the exchanges held settling created
	// will not be carried back now. Close compares them, and the rest.
	comp.Close()
	stopProgress()
	res.Progress = snapshot()
	res.Sent = sent.Load()
	res.Elapsed = time.Since(began)
	res.CandidateFailed = map[string]uint64{}
	for _, t := range targets {
		if t.Name == cfg.Compare.Candidate {
			for i := range t.Stats.Replay.Failed {
				if n := t.Stats.Replay.Failed[i].Load(); n > 0 {
					res.CandidateFailed[replay.FailReason(i).String()] += n
				}
			}
		}
	}
	res.Report = comp.Report()
	res.Report.Live = false
	res.Report.Title = "shadowtap verify: candidate vs recorded production"
	if opts.Progress != nil {
		opts.Progress(res.Progress)
	}
	if err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("verify: interrupted: %w", ctx.Err())
	}
	return res, nil
}

func maxResponseTimeout(cfg config.Config) time.Duration {
	var d time.Duration
	for _, r := range cfg.Resolve() {
		d = max(d, r.ResponseTimeout+r.DialTimeout)
	}
	return d
}

// connSeen is when a recorded connection was last seen: its record number
// and time.
type connSeen struct {
	seq   int64
	start int64
}

// feeder reads the inputs and offers their exchanges to the fanout.
type feeder struct {
	ctx    context.Context
	fanout *target.Fanout
	tr     *tracker
	opts   VerifyOptions
	res    *VerifyResult
	sent   *atomic.Int64
	idle   time.Duration
	conns  map[uint64]connSeen
	seq    int64
	pace   *player.Pacer // the recording's timing at opts.Speed
}

// A recorded connection not seen for connGap records, or for the idle
// timeout of the recording's clock, is over: its queue in each replayer
// is released once done. Checked every sweepEvery records.
const (
	connGap    = 1 << 16
	sweepEvery = 1 << 12
)

func (f *feeder) file(n uint64, path string, opts source.Options) error {
	src, _, err := source.Open(path, opts)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInput, err)
	}
	defer src.Close()
	for f.ctx.Err() == nil {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			if rf, ok := src.(source.Refusing); ok {
				for k, n := range rf.Refused() {
					if f.res.Refused == nil {
						f.res.Refused = map[string]uint64{}
					}
					f.res.Refused[k] += n
				}
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInput, path, err)
		}
		f.offer(n, &rec)
	}
	return nil
}

func (f *feeder) offer(file uint64, rec *recording.Record) {
	f.res.Records++
	f.seq++
	if !f.pace.Wait(f.ctx, rec.Start) {
		return
	}
	// Wait for the comparison to catch up: the bound on memory.
	for f.tr.open() >= int64(f.opts.MaxOpen) && f.ctx.Err() == nil {
		time.Sleep(200 * time.Microsecond)
	}
	req, err := rec.ParseRequest()
	if err != nil {
		f.res.Unparsed++
		return
	}
	// Connections of different files never merge.
	req.ConnID = rec.Conn | file<<48
	var resp *httpstream.Response
	if rec.HasResponse {
		resp = rec.ParseResponse(req)
	}
	if resp == nil {
		f.res.NoProduction++
	}
	f.conns[req.ConnID] = connSeen{seq: f.seq, start: rec.Start}
	f.fanout.Submit(req.ConnID, req)
	f.fanout.Response(req.ConnID, req, resp)
	f.sent.Add(1)
	if f.seq%sweepEvery == 0 {
		f.sweep(rec.Start)
	}
}

// sweep ends the recorded connections that are over.
func (f *feeder) sweep(now int64) {
	for c, s := range f.conns {
		if f.seq-s.seq > connGap || now-s.start > int64(f.idle) {
			f.fanout.EndConn(c)
			delete(f.conns, c)
		}
	}
}

func (f *feeder) endAll() {
	for c := range f.conns {
		f.fanout.EndConn(c)
	}
	clear(f.conns)
}
