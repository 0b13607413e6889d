// Package compare compares production's responses, seen on the mirror,
// with the test environments' answers to the replays: the candidate
// against production (passive: no extra deployment) and, where a baseline
// target runs the old version on the same test data, the candidate
// against the baseline (Diffy-style). It learns which fields are noise
// (they differ between production's answers to identical idempotent
// requests, or between two baselines running the same version) and calls
// a field a regression only when it differs clearly more often than its
// noise. The work is bounded: under load, exchanges are dropped and
// counted, never queued without bound, and capture is never slowed.
package compare

import (
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/endpoint"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/replay"
)

// The comparisons.
const (
	VsProduction = "candidate-vs-production"
	VsBaseline   = "candidate-vs-baseline"
)

// IgnoreRule drops a field from the comparison: Endpoint and Field are
// patterns ("*" matches within a segment; Field may use [*] for indices).
type IgnoreRule struct {
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	Field    string `yaml:"field" json:"field"`
}

// Config says what to compare.
type Config struct {
	Candidate         string // target names
	Baseline          string
	Secondary         string // a second baseline on the same version, for noise
	AgainstProduction bool
	Diff              diff.Options
	Ignore            []IgnoreRule
	Patterns          []string // endpoint path templates
	MaxEndpoints      int
	Wait              time.Duration // for the parts of an exchange
	MaxPending        int
	Queue             int
	MinSamples        int     // comparisons before a field can be a regression
	Threshold         float64 // difference rate above the noise rate that makes a regression
	Log               io.Writer
	LogMaxBody        int
	Redact            []string
	Handler           string // this handler's name in reports
	Now               func() time.Time
}

// Stats count the comparator's own work.
type Stats struct {
	Exchanges  atomic.Uint64 // expected
	Compared   atomic.Uint64
	Incomplete atomic.Uint64 // a needed part never came
	Dropped    atomic.Uint64 // over MaxPending or the queue
}

// parts of an exchange, as bits.
const (
	partProd = 1 << iota
	partCand
	partBase
	partSec
)

type side struct {
	msg     diff.Message
	latency time.Duration
}

type exchange struct {
	req      *httpstream.Request
	endpoint string
	expect   int
	got      int
	sides    [4]side // by part index
	deadline time.Time
}

type key struct {
	conn  uint64
	index int
}

// Comparator joins and compares exchanges.
type Comparator struct {
	cfg     Config
	log     *slog.Logger
	grouper *endpoint.Grouper
	ignore  []ignoreRule
	Stats   Stats

	mu      sync.Mutex
	pending map[key]*exchange
	work    chan *exchange

	agg   *aggregate // owned by the worker; guarded by aggMu for readers
	aggMu sync.Mutex

	stop chan struct{}
	done sync.WaitGroup
}

// New starts a comparator; Close stops it.
func New(cfg Config, log *slog.Logger) (*Comparator, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxEndpoints == 0 {
		cfg.MaxEndpoints = 500
	}
	g, err := endpoint.New(cfg.Patterns, cfg.MaxEndpoints)
	if err != nil {
		return nil, err
	}
	c := &Comparator{cfg: cfg, log: log, grouper: g, pending: map[key]*exchange{}, work: make(chan *exchange, cfg.Queue),
		agg: newAggregate(cfg), stop: make(chan struct{})}
	for _, r := range cfg.Ignore {
		c.ignore = append(c.ignore, ignoreRule{glob(r.Endpoint), glob(r.Field)})
	}
	c.done.Add(2)
	go c.worker()
	go c.sweeper()
	return c, nil
}

// Compares reports whether a target takes part in the comparison.
func (c *Comparator) Compares(target string) bool {
	return target != "" && (target == c.cfg.Candidate || target == c.cfg.Baseline || target == c.cfg.Secondary)
}

// Expect registers a request before it is sent to the targets: every
// configured answer is expected until Skip says a target will not answer.
func (c *Comparator) Expect(req *httpstream.Request) {
	x := &exchange{req: req, expect: partCand, deadline: c.cfg.Now().Add(c.cfg.Wait),
		endpoint: c.grouper.Name(string(req.Method()), string(req.Target()))}
	if c.cfg.AgainstProduction {
		x.expect |= partProd
	}
	if c.cfg.Baseline != "" {
		x.expect |= partBase
		if c.cfg.Secondary != "" {
			x.expect |= partSec
		}
	}
	c.Stats.Exchanges.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) >= c.cfg.MaxPending {
		c.Stats.Dropped.Add(1)
		return
	}
	c.pending[key{req.ConnID, req.Index}] = x
}

// Skip says target will not answer req (filtered, sampled out, dropped).
func (c *Comparator) Skip(req *httpstream.Request, target string) {
	if part := c.part(target); part != 0 {
		c.arrive(req, part, side{}, false)
	}
}

func (c *Comparator) part(target string) int {
	switch target {
	case c.cfg.Candidate:
		return partCand
	case c.cfg.Baseline:
		return partBase
	case c.cfg.Secondary:
		return partSec
	}
	return 0
}

// Production records production's response (nil: not seen).
func (c *Comparator) Production(req *httpstream.Request, resp *httpstream.Response) {
	var s side
	if resp != nil {
		s = side{msg: diff.Message{Status: resp.Status, Header: header(&resp.Message), Body: resp.Body(), Truncated: resp.BodyTruncated},
			latency: time.Duration(resp.Start - req.End)}
	}
	c.arrive(req, partProd, s, resp != nil)
	c.agg.observeProduction(c, req, resp, s)
}

// Result records a replay's answer.
func (c *Comparator) Result(r replay.Result) {
	part := c.part(r.Target)
	if part == 0 {
		return
	}
	var s side
	if r.Resp != nil {
		s = side{msg: diff.Message{Status: r.Resp.Status, Header: r.Resp.Header, Body: r.Resp.Body, Truncated: r.Resp.BodyTruncated},
			latency: r.Duration}
	}
	c.arrive(r.Req, part, s, r.Resp != nil)
}

func (c *Comparator) arrive(req *httpstream.Request, part int, s side, ok bool) {
	c.mu.Lock()
	k := key{req.ConnID, req.Index}
	x := c.pending[k]
	if x == nil || x.expect&part == 0 {
		c.mu.Unlock()
		return
	}
	x.got |= part
	if ok {
		x.sides[bitIndex(part)] = s
	} else {
		x.expect &^= part // it failed or was not sent: compare without it
	}
	if x.expect&partCand == 0 {
		// The candidate will not answer (its filters or sampling): not
		// an exchange to compare, and not a loss.
		delete(c.pending, k)
		c.mu.Unlock()
		return
	}
	complete := x.got&x.expect == x.expect
	if complete {
		delete(c.pending, k)
	}
	c.mu.Unlock()
	if complete {
		c.submit(x)
	}
}

func bitIndex(part int) int {
	for i := 0; ; i++ {
		if part == 1<<i {
			return i
		}
	}
}

func (c *Comparator) submit(x *exchange) {
	if x.expect&partCand == 0 || x.expect&^partCand == 0 {
		c.Stats.Incomplete.Add(1) // no candidate answer, or nothing to compare it with
		return
	}
	select {
	case c.work <- x:
	default:
		c.Stats.Dropped.Add(1)
	}
}

func (c *Comparator) worker() {
	defer c.done.Done()
	for {
		select {
		case x := <-c.work:
			c.process(x)
		case <-c.stop:
			return
		}
	}
}

// sweeper compares, at their deadline, exchanges some part of which never
// came (a target that dropped the request, a response not mirrored).
func (c *Comparator) sweeper() {
	defer c.done.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	flush := time.NewTicker(10 * time.Second)
	defer flush.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-flush.C:
			c.agg.flushLog(c)
		case <-t.C:
			now := c.cfg.Now()
			var due []*exchange
			c.mu.Lock()
			for k, x := range c.pending {
				if now.After(x.deadline) {
					x.expect &= x.got
					due = append(due, x)
					delete(c.pending, k)
				}
			}
			c.mu.Unlock()
			for _, x := range due {
				c.submit(x)
			}
		}
	}
}

// Close stops the comparator and writes the last statistics to the log.
func (c *Comparator) Close() {
	close(c.stop)
	c.done.Wait()
	c.agg.flushLog(c)
}

func (c *Comparator) process(x *exchange) {
	c.Stats.Compared.Add(1)
	prod, cand, base, sec := x.sides[0], x.sides[1], x.sides[2], x.sides[3]
	c.aggMu.Lock()
	defer c.aggMu.Unlock()
	ep := c.agg.endpoint(x.endpoint)
	if x.expect&partProd != 0 {
		c.agg.record(c, ep, VsProduction, x, prod, cand, c.filter(x.endpoint, diff.Compare(prod.msg, cand.msg, c.cfg.Diff)))
	}
	if x.expect&partBase != 0 {
		c.agg.record(c, ep, VsBaseline, x, base, cand, c.filter(x.endpoint, diff.Compare(base.msg, cand.msg, c.cfg.Diff)))
		if x.expect&partSec != 0 {
			// Two deployments of the same version: what differs is noise.
			noise := c.filter(x.endpoint, diff.Compare(base.msg, sec.msg, c.cfg.Diff))
			ep.noise(VsBaseline).add(noise)
			ep.noise(VsProduction).add(noise)
		}
	}
}

// filter drops ignored fields.
func (c *Comparator) filter(ep string, ds []diff.Difference) []diff.Difference {
	if len(c.ignore) == 0 {
		return ds
	}
	return slices.DeleteFunc(ds, func(d diff.Difference) bool {
		for _, r := range c.ignore {
			if r.endpoint.MatchString(ep) && (r.field.MatchString(d.Key) || r.field.MatchString(d.Field)) {
				return true
			}
		}
		return false
	})
}

type ignoreRule struct{ endpoint, field *regexp.Regexp }

// glob compiles a pattern in which "*" matches any run of characters (an
// empty pattern matches everything).
func glob(pattern string) *regexp.Regexp {
	if pattern == "" {
		pattern = "*"
	}
	parts := strings.Split(pattern, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

func header(m *httpstream.Message) http.Header {
	h := http.Header{}
	for i := range m.Lines {
		h.Add(string(m.Name(i)), string(m.Value(i)))
	}
	return h
}

// requestKey identifies identical idempotent requests (for production
// noise): the method, target and body.
func requestKey(req *httpstream.Request) uint64 {
	h := fnv.New64a()
	h.Write(req.Method())
	h.Write([]byte{' '})
	h.Write(req.Target())
	h.Write(req.Body())
	return h.Sum64()
}

func redactHeaders(h http.Header, names []string) http.Header {
	out := h.Clone()
	for _, n := range names {
		if out.Values(n) != nil {
			out.Set(n, "REDACTED")
		}
	}
	return out
}

func capBody(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
