// Package metrics exports the stages' counters to Prometheus. The stages
// keep plain atomic counters (cheap on the hot path, no dependency on a
// metrics library); a collector reads them at scrape time. Replay latency
// is a real histogram, observed as results come.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowtap/shadowtap/internal/capture"
	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/engine"
	"github.com/shadowtap/shadowtap/internal/filter"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/reassembly"
	"github.com/shadowtap/shadowtap/internal/replay"
	"github.com/shadowtap/shadowtap/internal/target"
)

// Sources are the counters exported. Any may be nil.
type Sources struct {
	Capture     *capture.Stats
	KernelDrops func() (uint64, error)
	// Sockets returns the datagrams each VXLAN socket delivered (one per
	// shard when the kernel steers them).
	Sockets func() []uint64
	Engine  *engine.Stats
	Targets func() []*target.Target // read at each scrape: reloads change them
	Compare *compare.Comparator     // nil unless comparing
	// RestartPending names the settings a reload changed that wait for a
	// restart.
	RestartPending func() []string
}

// Metrics holds the observed (not counted) metrics.
type Metrics struct {
	latency   *prometheus.HistogramVec
	responses *prometheus.CounterVec
}

// Register registers the collector and the observed metrics with reg.
func Register(reg prometheus.Registerer, src Sources) *Metrics {
	m := &Metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shadowtap_replay_duration_seconds",
			Help:    "Time from sending a replayed request to the end of its response, by target.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"target"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowtap_replay_responses_total",
			Help: "Responses from the test environments, by target and status class.",
		}, []string{"target", "class"}),
	}
	reg.MustRegister(m.latency, m.responses, &collector{src: src})
	return m
}

// Observe records a finished replay.
func (m *Metrics) Observe(r replay.Result) {
	if r.Resp == nil {
		return
	}
	m.latency.WithLabelValues(r.Target).Observe(r.Duration.Seconds())
	if c := r.Resp.Status / 100; c >= 1 && c <= 5 {
		m.responses.WithLabelValues(r.Target, strconv.Itoa(c)+"xx").Inc()
	}
}

type collector struct{ src Sources }

type metric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

func counter(name, help string, labels ...string) metric {
	return metric{prometheus.NewDesc(name, help, labels, nil), prometheus.CounterValue}
}

func gauge(name, help string, labels ...string) metric {
	return metric{prometheus.NewDesc(name, help, labels, nil), prometheus.GaugeValue}
}

var (
	mDatagrams    = counter("shadowtap_datagrams_total", "UDP datagrams received.")
	mSocketDgrams = counter("shadowtap_socket_datagrams_total", "VXLAN datagrams received, by socket: one per shard, steered by connection (their balance is the steering's).", "socket")
	mBytes        = counter("shadowtap_received_bytes_total", "UDP payload bytes received.")
	mReadErrors   = counter("shadowtap_socket_read_errors_total", "Errors reading the UDP socket.")
	mKernelDrops  = counter("shadowtap_socket_kernel_drops_total", "Datagrams the kernel dropped for the socket (receive buffer full).")
	mReadBuffer   = gauge("shadowtap_socket_receive_buffer_bytes", "Effective socket receive buffer.")
	mPackets      = counter("shadowtap_packets_total", "Packets handed to the decoder.")
	mDecode       = counter("shadowtap_packets_dropped_total", "Packets not decoded to TCP, by reason.", "reason")
	mVNI          = counter("shadowtap_packets_vni_filtered_total", "Packets with a VNI not in the allow-list.")
	mTruncated    = counter("shadowtap_truncated_segments_total", "TCP segments that arrived shorter than their IP length (mirror truncation).")
	mFlowsOpen    = gauge("shadowtap_flows_open", "TCP connections tracked.")
	mFlowsOpened  = counter("shadowtap_flows_opened_total", "TCP connections started to be tracked.")
	mFlowsEnded   = counter("shadowtap_flows_ended_total", "TCP connections no longer tracked, by reason.", "reason")
	mFlowsRefused = counter("shadowtap_flows_refused_total", "Connections not tracked because the flow table was full and their packet had nothing to deliver (a bare FIN), each once.")
	mFlowsEvicted = counter("shadowtap_flows_evicted_total", "Connections ended to make room in a full flow table, by reason: no_data (never carried data), lru (least recently active).", "reason")
	mGaps         = counter("shadowtap_tcp_gaps_total", "Holes in TCP streams declared lost.")
	mGapBytes     = counter("shadowtap_tcp_gap_bytes_total", "Bytes in holes declared lost.")
	mOOO          = counter("shadowtap_tcp_out_of_order_segments_total", "Segments held because an earlier one had not arrived.")
	mDup          = counter("shadowtap_tcp_duplicate_segments_total", "Segments whose bytes had all been seen.")
	mForced       = counter("shadowtap_tcp_forced_gaps_total", "Gaps declared early because a buffer cap was reached.")
	mBuffered     = gauge("shadowtap_tcp_buffered_bytes", "Out-of-order bytes held.")
	mPickups      = counter("shadowtap_tcp_midstream_pickups_total", "Streams picked up without their start.")
	mCaptured     = counter("shadowtap_requests_captured_total", "Complete HTTP requests extracted.")
	mRejected     = counter("shadowtap_requests_rejected_total", "Requests not replayed because their framing is malformed or ambiguous, by reason.", "reason")
	mStopped      = counter("shadowtap_connections_not_http_total", "Connections whose parsing stopped because another protocol took over, by kind.", "kind")
	mTooLarge     = counter("shadowtap_requests_too_large_total", "Requests skipped because the body exceeds the maximum.")
	mOverBudget   = counter("shadowtap_requests_over_budget_total", "Requests skipped because all connections together held too many bytes.")
	mHTTPBuffered = gauge("shadowtap_http_buffered_bytes", "Bytes of requests in progress held by all connections.")
	mLost         = counter("shadowtap_requests_lost_to_gaps_total", "Requests not replayed because bytes of them were lost.")
	mIncomplete   = counter("shadowtap_requests_incomplete_total", "Requests cut short by the end of their connection.")
	mResyncs      = counter("shadowtap_http_resyncs_total", "Times a request line was found again after a gap.")

	// Production's responses (parsed only when comparing or recording).
	mRespParsed     = counter("shadowtap_responses_parsed_total", "Production's final responses parsed.")
	mRespInterim    = counter("shadowtap_responses_interim_total", "Production's 1xx responses skipped.")
	mRespLost       = counter("shadowtap_responses_lost_to_gaps_total", "Production's responses lost because bytes of them were missing.")
	mRespBad        = counter("shadowtap_responses_bad_total", "Production's responses whose head or framing did not parse (the stream is found again).")
	mRespResyncs    = counter("shadowtap_responses_resyncs_total", "Times a status line was found again after a gap or a bad response.")
	mRespIncomplete = counter("shadowtap_responses_incomplete_total", "Production's responses cut short by the end of their connection.")
	mRespOverBudget = counter("shadowtap_responses_over_budget_total", "Production's responses truncated or dropped because all connections together held too many bytes.")
	mRespPaired     = counter("shadowtap_responses_paired_total", "Requests paired with production's response.")
	mRespMissing    = counter("shadowtap_responses_missing_total", "Requests whose production response was not seen.")
	mRespUnmatched  = counter("shadowtap_responses_unmatched_total", "Production's responses with no request waiting for them.")
	mFiltered       = counter("shadowtap_requests_filtered_total", "Requests a target's filters refused, by target and rule.", "target", "rule")
	mSampledOut     = counter("shadowtap_requests_sampled_out_total", "Requests not replayed because of sampling, by target.", "target")
	mKeyless        = counter("shadowtap_requests_keyless_total", "Requests without their sampling key, decided by client address, by target.", "target")
	mSubmitted      = counter("shadowtap_requests_submitted_total", "Requests offered to a target's replayer (past filters and sampling).", "target")
	mReplayed       = counter("shadowtap_requests_replayed_total", "Requests replayed and answered, by target.", "target")
	mFailed         = counter("shadowtap_requests_failed_total", "Replays that failed, by target and reason.", "target", "reason")
	mQueueDrops     = counter("shadowtap_replay_queue_drops_total", "Requests dropped by a target's queue (full, its connection refused, or left at stop).", "target")
	mRateLimited    = counter("shadowtap_replay_rate_limited_total", "Requests dropped by a target's rate limit.", "target")
	mHandover       = counter("shadowtap_replay_handover_drops_total", "Requests dropped after a reload rebuilt their target, while the retired replayer still held their connection's earlier ones, by target.", "target")
	mResumed        = counter("shadowtap_replay_connections_resumed_total", "Production connections dropped under overload (queue or rate limit) and taken back at their next request boundary, by target.", "target")
	mConnsRefused   = counter("shadowtap_replay_connections_refused_total", "Production connections a target did not replay, to keep the others whole.", "target")
	mQueued         = gauge("shadowtap_replay_queue_length", "Requests waiting to be replayed, by target.", "target")
	mInFlight       = gauge("shadowtap_replay_in_flight", "Requests being replayed, by target.", "target")
	mCorrelated     = counter("shadowtap_correlate_events_total", "Correlation, by target and event: learned (pairs), translated (values), requests (translated), waited, gave_up (a pair not learned in time), settled (a request just captured waited for the engines to hand over production's answers), expired, shared (values both sides answered alike: never translated).", "target", "event")
	mCorrPairs      = gauge("shadowtap_correlate_pairs", "Pairs held (a value the target created for production's), by target.", "target")
	mCorrPending    = gauge("shadowtap_correlate_pending", "Values production created whose target counterpart is awaited, by target.", "target")
	mStoreUp        = gauge("shadowtap_correlate_store_up", "1 when the fleet's correlation store answered last time it was asked, by target (absent: no store).", "target")
	mStoreWatching  = gauge("shadowtap_correlate_store_subscribed", "1 when subscribed to what the fleet's other handlers publish, by target.", "target")
	mStoreKeys      = gauge("shadowtap_correlate_store_keys", "Keys the fleet's correlation store held when last asked (every 30 s), by target.", "target")
	mStoreEvents    = counter("shadowtap_correlate_store_events_total", "The fleet's correlation store, by target and event: published (items written), delivered (items other handlers published, received), found (looked up and found), dropped (not written: the store slow or down), store_errors (operations that failed).", "target", "event")
	mWrites         = counter("shadowtap_writes_transactions_total", "Transactions a compared target's database committed, by target and attribution: marked (the request's marker), window (the window of a request sent alone), unattributed (neither: counted, never guessed), late (marked for a request whose writes were already compared).", "target", "attribution")
	mWriteSets      = counter("shadowtap_writes_requests_total", "Requests whose writes were handed to the comparison, by target and state: complete, or incomplete (the stream or a barrier failed or was late: compared on its answers alone).", "target", "state")

	mCmpExchanges  = counter("shadowtap_compare_exchanges_total", "Requests registered for comparison.")
	mCmpCompared   = counter("shadowtap_compare_compared_total", "Exchanges compared.")
	mCmpIncomplete = counter("shadowtap_compare_incomplete_total", "Exchanges not compared: an answer never came.")
	mCmpDropped    = counter("shadowtap_compare_dropped_total", "Exchanges not compared because the comparison was over its bounds.")
	mCmpAnswers    = counter("shadowtap_compare_answers_dropped_total", "Answers the comparison had no room for (its queue or its bytes bound); their exchange went on without them.")
	mRestart       = gauge("shadowtap_config_restart_pending", "1 for each setting a reload changed that takes effect only after a restart (the reload logs it too).", "setting")
	mCmpLogErrors  = counter("shadowtap_compare_log_write_errors_total", "Difference-log writes that failed (compare.log: a full or broken disk).")
	mCmpLogDropped = counter("shadowtap_compare_log_dropped_total", "Difference-log lines dropped because the log's writes were behind (a slow disk); the comparison never waits for them.")
	mCmpEndpoint   = gauge("shadowtap_compare_endpoint_compared", "Exchanges compared, by endpoint group and comparison (bounded: compare.max_endpoints).", "endpoint", "comparison")
	mCmpMatched    = gauge("shadowtap_compare_endpoint_matched", "Exchanges without a difference outside noisy fields, by endpoint group and comparison.", "endpoint", "comparison")
	mCmpRegress    = gauge("shadowtap_compare_endpoint_regressions", "Fields (and latency) differing clearly above noise, by endpoint group and comparison.", "endpoint", "comparison")
)

var all = []metric{mDatagrams, mSocketDgrams, mBytes, mReadErrors, mKernelDrops, mReadBuffer, mPackets, mDecode, mVNI, mTruncated,
	mFlowsOpen, mFlowsOpened, mFlowsEnded, mFlowsRefused, mFlowsEvicted, mGaps, mGapBytes, mOOO, mDup, mForced, mBuffered, mPickups,
	mCaptured, mRejected, mStopped, mTooLarge, mOverBudget, mHTTPBuffered, mLost, mIncomplete, mResyncs,
	mRespParsed, mRespInterim, mRespLost, mRespBad, mRespResyncs, mRespIncomplete, mRespOverBudget, mRespPaired, mRespMissing, mRespUnmatched,
	mFiltered, mSampledOut, mKeyless,
	mSubmitted, mReplayed, mFailed, mQueueDrops, mRateLimited, mConnsRefused, mResumed, mHandover, mQueued, mInFlight,
	mCorrelated, mCorrPairs, mCorrPending, mStoreUp, mStoreWatching, mStoreKeys, mStoreEvents, mWrites, mWriteSets,
	mCmpExchanges, mCmpCompared, mCmpIncomplete, mCmpDropped, mCmpAnswers, mCmpLogErrors, mCmpLogDropped, mRestart, mCmpEndpoint, mCmpMatched, mCmpRegress}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range all {
		ch <- m.desc
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	emit := func(m metric, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v, labels...)
	}
	u := func(v uint64) float64 { return float64(v) }
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	if c.src.RestartPending != nil {
		for _, name := range c.src.RestartPending() {
			emit(mRestart, 1, name)
		}
	}
	if s := c.src.Capture; s != nil {
		emit(mDatagrams, u(s.Datagrams.Load()))
		if c.src.Sockets != nil {
			for i, n := range c.src.Sockets() {
				emit(mSocketDgrams, u(n), strconv.Itoa(i))
			}
		}
		emit(mBytes, u(s.Bytes.Load()))
		emit(mReadErrors, u(s.ReadErrors.Load()))
		emit(mReadBuffer, float64(s.ReadBuffer.Load()))
		if c.src.KernelDrops != nil {
			if n, err := c.src.KernelDrops(); err == nil {
				emit(mKernelDrops, u(n))
			}
		}
	}
	if s := c.src.Engine; s != nil {
		emit(mPackets, u(s.Datagrams.Load()))
		for r := decode.Reason(1); r < decode.NumReasons; r++ {
			emit(mDecode, u(s.Decode[r].Load()), r.String())
		}
		emit(mVNI, u(s.VNIFiltered.Load()))
		ra := &s.Reassembly
		emit(mTruncated, u(ra.TruncatedSegs.Load()))
		emit(mFlowsOpen, float64(ra.FlowsOpen.Load()))
		emit(mFlowsOpened, u(ra.FlowsOpened.Load()))
		for r := range reassembly.NumEndReasons {
			emit(mFlowsEnded, u(ra.FlowsEnded[r].Load()), r.String())
		}
		emit(mFlowsRefused, u(ra.FlowsRefused.Load()))
		for r := range reassembly.NumEvictReasons {
			emit(mFlowsEvicted, u(ra.FlowsEvicted[r].Load()), r.String())
		}
		emit(mGaps, u(ra.Gaps.Load()))
		emit(mGapBytes, u(ra.GapBytes.Load()))
		emit(mOOO, u(ra.OutOfOrderSegs.Load()))
		emit(mDup, u(ra.DuplicateSegs.Load()))
		emit(mForced, u(ra.ForcedGaps.Load()))
		emit(mBuffered, float64(ra.BufferedBytes.Load()))
		emit(mPickups, u(ra.MidstreamPickups.Load()))
		h := &s.HTTP
		emit(mCaptured, u(h.Requests.Load()))
		for r := range httpstream.NumRejects {
			emit(mRejected, u(h.Rejected[r].Load()), r.String())
		}
		for k := range httpstream.NumStops {
			emit(mStopped, u(h.Stopped[k].Load()), k.String())
		}
		emit(mTooLarge, u(h.TooLarge.Load()))
		emit(mOverBudget, u(h.OverBudget.Load()))
		emit(mHTTPBuffered, float64(h.Buffered.Load()))
		emit(mLost, u(h.LostToGap.Load()))
		emit(mIncomplete, u(h.Incomplete.Load()))
		emit(mResyncs, u(h.Resyncs.Load()))
		rs := &s.Responses
		emit(mRespParsed, u(rs.Responses.Load()))
		emit(mRespInterim, u(rs.Interim.Load()))
		emit(mRespLost, u(rs.LostToGap.Load()))
		emit(mRespBad, u(rs.Bad.Load()))
		emit(mRespResyncs, u(rs.Resyncs.Load()))
		emit(mRespIncomplete, u(rs.Incomplete.Load()))
		emit(mRespOverBudget, u(rs.OverBudget.Load()))
		emit(mRespPaired, u(s.Paired.Load()))
		emit(mRespMissing, u(s.NoResponse.Load()))
		emit(mRespUnmatched, u(s.Unmatched.Load()))
	}
	if cmp := c.src.Compare; cmp != nil {
		emit(mCmpExchanges, u(cmp.Stats.Exchanges.Load()))
		emit(mCmpCompared, u(cmp.Stats.Compared.Load()))
		emit(mCmpIncomplete, u(cmp.Stats.Incomplete.Load()))
		emit(mCmpDropped, u(cmp.Stats.Dropped.Load()))
		emit(mCmpAnswers, u(cmp.Stats.AnswersDropped.Load()))
		emit(mCmpLogErrors, u(cmp.Stats.LogWriteErrors.Load()))
		emit(mCmpLogDropped, u(cmp.Stats.LogDropped.Load()))
		for _, e := range cmp.Report().Endpoints {
			for _, cr := range e.Comparisons {
				emit(mCmpEndpoint, float64(cr.Compared), e.Name, cr.Comparison)
				emit(mCmpMatched, float64(cr.Matched), e.Name, cr.Comparison)
				emit(mCmpRegress, float64(cr.Regressions), e.Name, cr.Comparison)
			}
		}
	}
	if c.src.Targets == nil {
		return
	}
	for _, t := range c.src.Targets() {
		n := t.Name
		for r := filter.Reason(1); r < filter.NumReasons; r++ {
			emit(mFiltered, u(t.Stats.Filtered[r].Load()), n, r.String())
		}
		emit(mSampledOut, u(t.Stats.SampledOut.Load()), n)
		emit(mKeyless, u(t.Keyless()), n)
		s := &t.Stats.Replay
		emit(mSubmitted, u(s.Submitted.Load()), n)
		emit(mReplayed, u(s.Replayed.Load()), n)
		for r := range replay.NumFailReasons {
			emit(mFailed, u(s.Failed[r].Load()), n, r.String())
		}
		emit(mQueueDrops, u(s.QueueDrops.Load()), n)
		emit(mRateLimited, u(s.RateLimited.Load()), n)
		emit(mConnsRefused, u(s.ConnsRefused.Load()), n)
		emit(mResumed, u(s.Resumed.Load()), n)
		emit(mHandover, u(t.Stats.HandoverDrops.Load()), n)
		emit(mQueued, float64(s.Queued.Load()), n)
		emit(mInFlight, float64(s.InFlight.Load()), n)
		if w := t.Writes; w != nil {
			ws := &w.Stats
			emit(mWrites, u(ws.Marked.Load()), n, "marked")
			emit(mWrites, u(ws.Windowed.Load()), n, "window")
			emit(mWrites, u(ws.Unattributed.Load()), n, "unattributed")
			emit(mWrites, u(ws.Late.Load()), n, "late")
			emit(mWriteSets, u(ws.Requests.Load()), n, "complete")
			emit(mWriteSets, u(ws.Incomplete.Load()), n, "incomplete")
		}
		if t.Pairs != nil {
			cs := t.Pairs.Stats()
			for _, e := range []struct {
				name string
				v    uint64
			}{{"learned", cs.Learned}, {"translated", cs.Translated}, {"requests", cs.Requests}, {"waited", cs.Waited},
				{"gave_up", cs.GaveUp}, {"settled", cs.Settled}, {"expired", cs.Expired}, {"shared", cs.Shared}} {
				emit(mCorrelated, u(e.v), n, e.name)
			}
			emit(mCorrPairs, float64(cs.Pairs), n)
			emit(mCorrPending, float64(cs.Pending), n)
			if t.Conf.Fleet.Shared() {
				fs := cs.Fleet
				emit(mStoreUp, b(fs.Up), n)
				emit(mStoreWatching, b(fs.Watching), n)
				emit(mStoreKeys, float64(fs.Keys), n)
				for _, e := range []struct {
					name string
					v    uint64
				}{{"published", fs.Published}, {"delivered", fs.Delivered}, {"found", fs.Found}, {"dropped", fs.Dropped}, {"store_errors", fs.Errors}} {
					emit(mStoreEvents, u(e.v), n, e.name)
				}
			}
		}
	}
}
