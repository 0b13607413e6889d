package compare

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// aggregate is the comparator's state. The worker writes it under
// Comparator.aggMu; reports and the log read it under the same lock.
type aggregate struct {
	// seed is the fleet's learned noise (see FleetNoise), apart from
	// this handler's own.
	seed      map[string]*EndpointState
	endpoints map[string]*EndpointState
	// The last production answer to each safe request, to learn
	// production's own noise from identical requests; bounded.
	prodLast   map[uint64]prodAnswer
	prodBytes  int         // bodies held by prodLast, bounded by maxProdLastBytes
	shownBytes int         // held by the findings' samples (for the page), bounded by maxShownBytes
	logBytes   int         // held by samples waiting for the log, bounded by maxLogBytes
	renamed    [][2]string // endpoints folded into a template since the last statistics lines
}

type prodAnswer struct {
	endpoint string
	msg      diff.Message
}

const (
	maxProdLast      = 4096
	maxProdLastBody  = 256 << 10
	maxProdLastBytes = 32 << 20
	maxShownBytes    = 48 << 20
	maxLogBytes      = 16 << 20
	maxSampleDiffs   = 20
)

// Side is one response in a sample: what the client saw (the body
// de-chunked and decoded).
type Side struct {
	Status    int         `json:"status"`
	Header    http.Header `json:"header"`
	Body      string      `json:"body"`
	LatencyMS float64     `json:"latency_ms"`
	// Writes is what the side wrote to its database for the request
	// (writes.Document), when writes are compared.
	Writes string `json:"writes,omitempty"`
}

// Sample is one exchange in which a finding occurred, both sides shown,
// with its differences that are not noise (Field and CandField locate
// them in the bodies).
type Sample struct {
	Time        time.Time         `json:"time"`
	Comparison  string            `json:"comparison"`
	Findings    []string          `json:"findings"` // keys
	Request     string            `json:"request"`
	Reference   Side              `json:"reference"`
	Candidate   Side              `json:"candidate"`
	Differences []diff.Difference `json:"differences"`

	logged bool // written to the difference log
}

// size is roughly what a sample holds.
func (s *Sample) size() int {
	return len(s.Reference.Body) + len(s.Candidate.Body) + len(s.Reference.Writes) + len(s.Candidate.Writes) + len(s.Request) + 512
}

func newAggregate() *aggregate {
	return &aggregate{endpoints: map[string]*EndpointState{}, prodLast: map[uint64]prodAnswer{}}
}

func (a *aggregate) endpoint(name string) *EndpointState {
	ep := a.endpoints[name]
	if ep == nil {
		ep = newEndpointState(name)
		a.endpoints[name] = ep
	}
	return ep
}

// consolidate folds endpoints named before a template was learned into
// the template's.
func (a *aggregate) consolidate(rename func(string) string) {
	if rename == nil {
		return
	}
	for name, ep := range a.endpoints {
		if to := rename(name); to != name {
			delete(a.endpoints, name)
			if len(a.renamed) < maxFields*16 { // drained by the log's flush, if any
				a.renamed = append(a.renamed, [2]string{name, to})
			}
			ep.Name = to
			if dst := a.endpoints[to]; dst != nil {
				dst.merge(ep)
			} else {
				a.endpoints[to] = ep
			}
		}
	}
}

// record counts one comparison of an exchange: each key once, noise
// explained by the reference's learned variation apart, the other keys of
// an exchange whose status changed as the status finding's collateral.
func (c *Comparator) record(ep *EndpointState, cmp, refName string, x *exchange, ref, cand side, pr, pc *diff.Parsed, ds []diff.Difference) {
	cs := ep.comparison(cmp)
	cs.Compared++
	if len(ds) == 0 {
		cs.Exact++
		cs.Matched++
		return
	}
	learner := ep.Learners[refName]
	statusChanged := ds[0].Key == "status"
	var findings []diff.Difference
	noisyOnly := true
	for i := range ds {
		d := &ds[i]
		if seenBefore(ds, i) {
			continue
		}
		always := len(c.always) > 0 && matchAny(c.always, ep.Name, d)
		if !always && (learner.explains(d) || cs.Noise.explains(d, learner) || eachSidesNow(d, ref.at, cand.at) ||
			c.agg.seeded(ep.Name, cmp, refName, d)) {
			cs.field(d.Key).Volatile++
			continue
		}
		if statusChanged && d.Key != "status" {
			f := cs.field("status")
			if f.Collateral == nil {
				f.Collateral = map[string]int{}
			}
			if _, ok := f.Collateral[d.Key]; ok || len(f.Collateral) < maxCollateral {
				f.Collateral[d.Key]++
			}
			continue
		}
		f := cs.field(d.Key)
		f.Diffs++
		if d.Kind == diff.Changed && d.RefShape != "" && !always { // kept shapes are explained once learned, unless always compared
			if diff.Alike(d.RefShape, d.CandShape) {
				f.ShapeKept++
			} else if isInteger([]byte(d.Ref)) && isInteger([]byte(d.Cand)) {
				f.IntsKept++
			}
			if diff.Coarse(d.RefShape) == diff.Coarse(d.CandShape) {
				f.TypeKept++
			}
		}
		if len(f.Samples) < maxFieldSamples {
			mk := c.cfg.Mask
			f.Samples = append(f.Samples, FieldSample{d.Field, string(d.Kind), mk.Field(d.Key, d.Ref), mk.Field(d.Key, d.Cand)})
		}
		findings = append(findings, *d)
		if cs.Noise.rate(d.Key) == 0 {
			noisyOnly = false
		}
	}
	if noisyOnly {
		cs.Matched++
	}
	if len(findings) == 0 {
		return
	}
	shown := findings
	if statusChanged {
		// The status finding's samples show its collateral too.
		shown = append(slices.Clip(findings), ds[1:]...)
	}
	var s *Sample
	sample := func() *Sample {
		if s == nil {
			s = c.sample(cmp, x, ref, cand, pr, pc, findings, shown)
		}
		return s
	}
	for _, d := range findings {
		f := cs.Fields[d.Key]
		if f == nil {
			continue
		}
		if len(f.exchanges) < maxExchanges && c.agg.shownBytes < maxShownBytes {
			f.exchanges = append(f.exchanges, *sample())
			c.agg.shownBytes += s.size()
		}
		if c.cfg.Log != nil && f.logged+len(f.pending) < c.cfg.LogSamples && c.agg.logBytes < maxLogBytes {
			f.pending = append(f.pending, sample())
			c.agg.logBytes += s.size()
		}
	}
}

// eachSidesNow reports whether d is a time that each side wrote as its
// own "now": production's near when production answered (months ago, in
// a recording), the candidate's near when it answered. Such a time needs
// no learning to be noise.
func eachSidesNow(d *diff.Difference, refAt, candAt time.Time) bool {
	return d.Kind == diff.Changed && !d.RefTime.IsZero() && !d.CandTime.IsZero() && !refAt.IsZero() && !candAt.IsZero() &&
		near(d.RefTime, refAt, d.RefShape) && near(d.CandTime, candAt, d.CandShape)
}

// sample renders an exchange: findings name its keys, shown are the
// differences listed (the findings and, for a status change, its
// collateral).
func (c *Comparator) sample(cmp string, x *exchange, ref, cand side, pr, pc *diff.Parsed, findings, shown []diff.Difference) *Sample {
	n := c.cfg.LogMaxBody
	if n == 0 {
		n = 16 << 10
	}
	mk := c.cfg.Mask // what is shown is masked; what was compared was not
	side := func(s side, p *diff.Parsed) Side {
		lat := s.firstByte
		if lat <= 0 {
			lat = s.total
		}
		return Side{Status: s.msg.Status, Header: mk.Headers(redactHeaders(s.msg.Header, c.cfg.Redact)), Body: mk.Document("body", capBody(p.Body, n)),
			LatencyMS: float64(lat) / float64(time.Millisecond)}
	}
	req := x.req
	head := diff.Header(&req.Message)
	var b strings.Builder
	b.Write(req.Method())
	b.WriteByte(' ')
	b.WriteString(mk.Text(string(req.Target())))
	for _, k := range slices.Sorted(mapsKeys(head)) {
		v := mk.Header(k, head.Get(k))
		if slices.ContainsFunc(c.cfg.Redact, func(r string) bool { return strings.EqualFold(r, k) }) {
			v = "REDACTED"
		}
		b.WriteString("\n" + k + ": " + v)
	}
	if body := req.Body(); len(body) > 0 {
		b.WriteString("\n\n" + mk.Document("body", capBody(body, n)))
	}
	var keys []string
	for i, d := range findings {
		if !seenBefore(findings, i) {
			keys = append(keys, d.Key)
		}
	}
	rs, cs := side(ref, pr), side(cand, pc)
	if cmp == VsBaseline && x.expect&partCandWrites != 0 {
		rs.Writes = mk.Document(WriteRoot, capBody(x.sides[bitIndex(partBaseWrites)].writes, n))
		cs.Writes = mk.Document(WriteRoot, capBody(x.sides[bitIndex(partCandWrites)].writes, n))
	}
	diffs := slices.Clone(shown[:min(len(shown), maxSampleDiffs)])
	for i := range diffs {
		d := &diffs[i]
		d.Ref, d.Cand = mk.Field(d.Key, d.Ref), mk.Field(d.Key, d.Cand)
	}
	return &Sample{Time: c.cfg.Now(), Comparison: cmp, Findings: keys, Request: b.String(), Reference: rs,
		Candidate: cs, Differences: diffs}
}

func mapsKeys(h http.Header) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}
}

// logLine is a line of the JSON Lines difference log: "diff" lines are
// sampled exchanges with a finding, "stats" lines each endpoint's
// cumulative state (the last one per handler and endpoint counts).
type logLine struct {
	Type       string         `json:"type"`
	Handler    string         `json:"handler"`
	Endpoint   string         `json:"endpoint"`
	Comparison string         `json:"comparison,omitempty"`
	Sample     *Sample        `json:"sample,omitempty"`
	Time       time.Time      `json:"time,omitzero"`
	State      *EndpointState `json:"state,omitempty"`
	Templates  []string       `json:"templates,omitempty"`
	RenamedTo  string         `json:"renamed_to,omitempty"` // the endpoint's counts went there
}

// logLatencySamples bounds the latency sample in a statistics line: the
// line repeats every LogEvery, and 128 values keep p99 within a few ranks.
const logLatencySamples = 128

// forLog is ep with its latency samples thinned for a statistics line.
func (ep *EndpointState) forLog() *EndpointState {
	out := *ep
	out.Latency = map[string]*Reservoir{}
	for k, r := range ep.Latency {
		t := &Reservoir{N: r.N, Vals: r.Vals}
		if len(r.Vals) > logLatencySamples {
			t.Vals = make([]float64, 0, logLatencySamples)
			for i := range logLatencySamples {
				t.Vals = append(t.Vals, r.Vals[i*len(r.Vals)/logLatencySamples])
			}
		}
		out.Latency[k] = t
	}
	return &out
}

// flushLog hands the log writer the exchanges held for the log whose
// finding is now known not to be noise (its rate significantly above its
// noise rate: the first answers of an endpoint cannot tell, so they
// wait), and a statistics line per endpoint changed since the last. It
// never waits for the disk: the lines are made under aggMu and written by
// logWriter; when that is behind by logQueue flushes, these are dropped
// and counted.
func (c *Comparator) flushLog() { c.sendLog(false) }

// sendLog hands logWriter the lines due now; with wait (the last ones, at
// Close: the run's totals) it waits for room instead of dropping them.
func (c *Comparator) sendLog(wait bool) {
	if c.logQ == nil {
		return
	}
	lines, n := c.logLines()
	if n == 0 {
		return
	}
	if wait {
		c.logQ <- lines
		return
	}
	select {
	case c.logQ <- lines:
	default:
		c.Stats.LogDropped.Add(uint64(n))
		c.logWarn(&c.logWarned[0], "the difference log is behind (a slow disk?): lines dropped", nil)
	}
}

// logQueue is how many flushes the log writer may be behind.
const logQueue = 16

// logWriter writes what flushLog made, until logQ is closed.
func (c *Comparator) logWriter() {
	defer c.logDone.Done()
	for b := range c.logQ {
		if _, err := c.cfg.Log.Write(b); err != nil {
			c.Stats.LogWriteErrors.Add(1)
			c.logWarn(&c.logWarned[1], "the difference log cannot be written", err)
		}
	}
}

// logWarn logs a problem of the difference log at most once a minute per
// kind; last holds when that kind was last logged.
func (c *Comparator) logWarn(last *atomic.Int64, msg string, err error) {
	now := time.Now().UnixNano()
	if prev := last.Load(); now-prev < int64(time.Minute) || !last.CompareAndSwap(prev, now) {
		return
	}
	if err != nil {
		c.log.Warn(msg, "err", err, "write_errors", c.Stats.LogWriteErrors.Load())
	} else {
		c.log.Warn(msg, "lines_dropped", c.Stats.LogDropped.Load())
	}
}

// logLines makes the log's lines due now, and says how many, under aggMu.
func (c *Comparator) logLines() ([]byte, int) {
	c.aggMu.Lock()
	defer c.aggMu.Unlock()
	var out []byte
	n := 0
	write := func(line []byte) {
		out = append(append(out, line...), '\n')
		n++
	}
	c.agg.consolidate(c.grouper.Rename)
	zz := z(c.cfg.Confidence)
	for _, name := range slices.Sorted(maps.Keys(c.agg.endpoints)) {
		ep := c.agg.endpoints[name]
		for _, cmp := range []string{VsProduction, VsBaseline} {
			cs := ep.Comparisons[cmp]
			if cs == nil {
				continue
			}
			learner := ep.Learners[refOf(cmp)]
			for _, k := range slices.Sorted(maps.Keys(cs.Fields)) {
				f := cs.Fields[k]
				if len(f.pending) == 0 {
					continue
				}
				if fr := fieldReport(cs, learner, k, f, zz); fr.Diffs == 0 || fr.RateLow <= fr.NoiseRate {
					continue
				}
				for _, s := range f.pending {
					if s.logged || f.logged >= c.cfg.LogSamples {
						continue
					}
					s.logged = true
					line, _ := json.Marshal(logLine{Type: "diff", Handler: c.cfg.Handler, Endpoint: name, Comparison: cmp, Sample: s})
					write(line)
					// The line shows its other findings too: it counts
					// towards theirs.
					for _, k := range s.Findings {
						if g := cs.Fields[k]; g != nil {
							g.logged++
						}
					}
				}
				for _, s := range f.pending {
					c.agg.logBytes -= s.size()
				}
				f.pending = nil
			}
		}
	}
	templates := c.grouper.Learned()
	for _, r := range c.agg.renamed {
		line, _ := json.Marshal(logLine{Type: "stats", Handler: c.cfg.Handler, Endpoint: r[0], Time: c.cfg.Now(), RenamedTo: r[1]})
		write(line)
	}
	c.agg.renamed = nil
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range c.agg.endpoints {
			if !yield(k) {
				return
			}
		}
	}) {
		ep := c.agg.endpoints[name]
		if !ep.dirty {
			continue
		}
		ep.dirty = false
		line, _ := json.Marshal(logLine{Type: "stats", Handler: c.cfg.Handler, Endpoint: name, Time: c.cfg.Now(), State: ep.forLog(),
			Templates: templates})
		write(line)
	}
	return out, n
}
