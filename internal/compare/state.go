package compare

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// The comparator's state, per endpoint. It is plain data so that the
// difference log's statistics lines carry it and `shadowtap report` merges
// several handlers' states with the same code (merge) that folds an
// endpoint renamed by template learning into its template's.

// EndpointState is one endpoint's counts and what was learned.
type EndpointState struct {
	Name        string                      `json:"name"`
	Requests    int                         `json:"requests"` // exchanges compared
	Latency     map[string]*Reservoir       `json:"latency"`  // "production first_byte", "candidate total", ...
	Comparisons map[string]*ComparisonState `json:"comparisons"`
	// How each reference's own answers vary, by reference (production,
	// baseline): the noise that needs no second deployment.
	Learners map[string]*Learner `json:"learners"`

	dirty bool // changed since the last statistics line
}

// ComparisonState counts one comparison (candidate vs a reference).
type ComparisonState struct {
	Compared int                    `json:"compared"`
	Exact    int                    `json:"exact"`   // no difference at all
	Matched  int                    `json:"matched"` // no difference but noise
	Fields   map[string]*FieldState `json:"fields"`
	// Noise: the same reference against itself, by key (identical
	// requests to production; baseline against secondary).
	Noise NoiseState `json:"noise"`
}

// FieldState counts one key's differences.
type FieldState struct {
	Diffs    int `json:"diffs"`              // exchanges with a difference not explained as noise
	Volatile int `json:"volatile,omitempty"` // differences explained by the learned variation
	// Differences that kept the value's shape (TypeKept: its coarse
	// shape) before the variation was learned (the first answers):
	// explained once it is.
	ShapeKept int `json:"shape_kept,omitempty"`
	TypeKept  int `json:"type_kept,omitempty"`
	// Integers on both sides of other shapes (an id in the range of epoch
	// milliseconds against one that is not): kept where the key is
	// learned as integers.
	IntsKept   int            `json:"ints_kept,omitempty"`
	Collateral map[string]int `json:"collateral,omitempty"` // status: other keys that differed with it
	Samples    []FieldSample  `json:"samples,omitempty"`

	exchanges []Sample  // where it occurs, for the detail view
	pending   []*Sample // for the difference log, until the finding is known not to be noise
	logged    int       // written to the log
}

// NoiseState counts the differences of a reference with itself.
type NoiseState struct {
	N      int            `json:"n"` // pairs compared
	Fields map[string]int `json:"fields"`
	// Differences that changed the value's shape (or type, or presence):
	// the noise rate of a key that varies by itself, against which its
	// unexplained differences are weighed.
	Reshaped map[string]int `json:"reshaped,omitempty"`
	Source   string         `json:"source"`
}

// Learner follows, per key, how one reference's values vary from answer
// to answer.
type Learner struct {
	Seq    int                    `json:"responses"`
	Fields map[string]*FieldLearn `json:"fields"`
	// Arrays the reference writes with the same elements in another
	// order (sets in map order), by key: their order is noise.
	Orders map[string]*OrderLearn `json:"orders,omitempty"`
}

// OrderLearn is what one array key's orders did: how many times the
// same elements came in another order than before.
type OrderLearn struct {
	N      int `json:"n"`
	Varied int `json:"varied"`

	seen [recentValues][2]uint64 // recent (elements, order) hashes
	pos  int
}

// maxOrderKeys bounds the arrays followed per learner.
const maxOrderKeys = 64

func (o *OrderLearn) observe(set, order uint64) {
	o.N++
	for _, s := range o.seen {
		if s[0] == set && s[1] != order {
			o.Varied++
			break
		}
	}
	o.seen[o.pos] = [2]uint64{set, order}
	o.pos = (o.pos + 1) % recentValues
}

// unordered reports whether the reference was seen writing the array at
// key with the same elements in two orders: a set.
func (l *Learner) unordered(key string) bool {
	if l == nil {
		return false
	}
	o := l.Orders[key]
	return o != nil && o.Varied > 0
}

// FieldLearn is what one key's values did.
type FieldLearn struct {
	N         int    `json:"n"`     // values seen
	Shape     string `json:"shape"` // the first value's shape
	SameShape int    `json:"same_shape"`
	Repeats   int    `json:"repeats"`    // values seen before in another response
	InRequest int    `json:"in_request"` // values found in the request
	Near      int    `json:"near"`       // times within nearWindow of the exchange
	Inc       int    `json:"inc"`        // numbers that rose with the answers' time
	// Close counts numbers out of order with the one before but answered
	// within orderWindow of it: concurrent answers reach here in another
	// order than they were written, so they say nothing against a
	// counter, as long as they are few (a random number is out of order
	// half the time).
	Close int `json:"close,omitempty"`
	// Answers to a request like one answered shortly before (same target
	// and body), and how many of them had another value: what varies for
	// the same request is made by the answer, not derived from the request.
	SameRequest  int `json:"same_request"`
	OtherForSame int `json:"other_for_same"`

	recent    [recentValues]uint64
	recentReq [recentValues]uint64 // the request of each recent value
	recentSeq [recentValues]int
	pos       int
	last      float64
	lastAt    time.Time
	lastSeq   int
}

// FieldSample is one observed difference, short.
type FieldSample struct {
	Field string `json:"field"`
	Kind  string `json:"kind"`
	Ref   string `json:"ref"`
	Cand  string `json:"cand"`
}

const (
	maxFields       = 256 // per comparison; more keys count under otherFields
	maxLearnKeys    = 256 // per learner
	maxCollateral   = 32
	maxFieldSamples = 3
	maxExchanges    = 2 // full samples per finding
	recentValues    = 64
	minLearn        = 8 // values before a variation is believed
	nearWindow      = 10 * time.Minute
	orderWindow     = 50 * time.Millisecond // answers this close may reach the handler in either order
	otherFields     = "(other fields)"
)

func newEndpointState(name string) *EndpointState {
	return &EndpointState{Name: name, Latency: map[string]*Reservoir{}, Comparisons: map[string]*ComparisonState{},
		Learners: map[string]*Learner{}}
}

func (ep *EndpointState) comparison(name string) *ComparisonState {
	cs := ep.Comparisons[name]
	if cs == nil {
		cs = &ComparisonState{Fields: map[string]*FieldState{}, Noise: NoiseState{Fields: map[string]int{}}}
		ep.Comparisons[name] = cs
	}
	return cs
}

func (ep *EndpointState) learner(ref string) *Learner {
	l := ep.Learners[ref]
	if l == nil {
		l = &Learner{Fields: map[string]*FieldLearn{}}
		ep.Learners[ref] = l
	}
	return l
}

func (ep *EndpointState) lat(name string, d time.Duration) {
	if d <= 0 {
		return
	}
	r := ep.Latency[name]
	if r == nil {
		r = &Reservoir{}
		ep.Latency[name] = r
	}
	r.add(float64(d) / float64(time.Millisecond))
}

func (cs *ComparisonState) field(key string) *FieldState {
	f := cs.Fields[key]
	if f == nil {
		if len(cs.Fields) >= maxFields-1 { // one left for otherFields
			key = otherFields
			if f = cs.Fields[key]; f != nil {
				return f
			}
		}
		f = &FieldState{}
		cs.Fields[key] = f
	}
	return f
}

func (n *NoiseState) add(ds []diff.Difference) {
	n.N++
	if n.Fields == nil {
		n.Fields = map[string]int{}
	}
	for i, d := range ds {
		if seenBefore(ds, i) {
			continue
		}
		n.Fields[d.Key]++
		if d.Kind != diff.Changed || !diff.Alike(d.RefShape, d.CandShape) {
			if n.Reshaped == nil {
				n.Reshaped = map[string]int{}
			}
			n.Reshaped[d.Key]++
		}
	}
}

// seenBefore reports whether ds[i]'s key came earlier in ds.
func seenBefore(ds []diff.Difference, i int) bool {
	for j := range i {
		if ds[j].Key == ds[i].Key {
			return true
		}
	}
	return false
}

// minNoise is how many noise pairs make a noise rate.
const minNoise = 3

func (n *NoiseState) rate(key string) float64 {
	if n.N < minNoise {
		return 0
	}
	return float64(n.Fields[key]) / float64(n.N)
}

// unordered says whether production's own answers reorder an array: a set.
func (n *NoiseState) unordered(key string) bool { return n.rate(key+":order") > 0 }

// A key that differs in at least this share of the reference's pairs with
// itself (and at least minNoise times) varies independently of the
// request: whatever its values, a difference that keeps the value's shape
// and type is noise (a host name among production's instances, a cache
// flag). Rarer differences are left to the rates' comparison.
const varyingShare = 0.25

// verdict says whether key varies between the reference's answers to the
// same request, and how that was seen.
func (n *NoiseState) verdict(key string) (string, bool) {
	k := n.Fields[key]
	if n.N < minNoise || k < minNoise || float64(k) < varyingShare*float64(n.N) {
		return "", false
	}
	return fmt.Sprintf("differs in %d of %d pairs (%s)", k, n.N, n.Source), true
}

// explains reports whether d is a change of a key that varies by itself
// in the reference's pairs, to a value of the same shape. Values the
// reference generates anew for each answer (codes, ids: few repeats) keep
// their exact format; labels that merely vary among a few values (a host
// name among production's instances) need only keep their type.
func (n *NoiseState) explains(d *diff.Difference, l *Learner) bool {
	if d.Kind != diff.Changed || d.RefShape == "" {
		return false
	}
	if _, ok := n.verdict(d.Key); !ok {
		return false
	}
	var f *FieldLearn
	if l != nil {
		f = l.Fields[d.Key]
	}
	if f != nil && f.fits(d.RefShape, []byte(d.Ref)) && f.fits(d.CandShape, []byte(d.Cand)) {
		return true // the learned form, whatever each value looks like alone
	}
	if l.generated(d.Key) {
		return diff.Alike(d.RefShape, d.CandShape)
	}
	return diff.Coarse(d.RefShape) == diff.Coarse(d.CandShape)
}

// generated reports whether the reference's values of key are made anew
// for each answer: one shape, few repeats.
func (l *Learner) generated(key string) bool {
	if l == nil {
		return false
	}
	f := l.Fields[key]
	return f != nil && f.N >= minLearn && f.Repeats*5 < f.N && f.SameShape*20 >= f.N*19 &&
		(volatileShape(f.Shape) || strings.HasPrefix(f.Shape, "fmt:")) // the shapes whose repeats are followed
}

// observe learns from one answer of the reference.
func (l *Learner) observe(p *diff.Parsed, opts diff.Options, req *httpstream.Request, at time.Time) {
	l.Seq++
	target, body := req.Target(), req.Body()
	reqHash := maphash.Bytes(requestSeed, target) ^ maphash.Bytes(requestSeed, body)*31
	p.Leaves(opts, func(v diff.Leaf) {
		f := l.Fields[v.Key]
		if f == nil {
			if len(l.Fields) >= maxLearnKeys {
				return
			}
			f = &FieldLearn{Shape: diff.Family(v.Shape), lastSeq: -1}
			l.Fields[v.Key] = f
		}
		f.observe(l.Seq, v, target, body, reqHash, at)
	})
	p.Arrays(func(key string, set, order uint64) {
		o := l.Orders[key]
		if o == nil {
			if len(l.Orders) >= maxOrderKeys {
				return
			}
			if l.Orders == nil {
				l.Orders = map[string]*OrderLearn{}
			}
			o = &OrderLearn{}
			l.Orders[key] = o
		}
		o.observe(set, order)
	})
}

func (f *FieldLearn) observe(seq int, v diff.Leaf, target, body []byte, reqHash uint64, at time.Time) {
	f.N++
	if !f.fits(v.Shape, v.Value) {
		if f.SameShape*2 > f.N {
			return
		}
		// The first value's shape is no longer the most common: the
		// first was the odd one (a random id that looked like a time).
		*f = FieldLearn{N: f.N, Shape: diff.Family(v.Shape), lastSeq: -1}
	}
	f.SameShape++
	shape := f.Shape
	switch {
	case shape == "int" || shape == "float": // a counter, an uptime in seconds, a random id
		if n, err := strconv.ParseFloat(string(v.Value), 64); err == nil {
			// A counter rises with time, which is not the order answers
			// reach here: a replay of many requests at once finishes its
			// comparisons out of order.
			if f.lastSeq >= 0 && f.lastSeq != seq {
				later := at.After(f.lastAt) || at.Equal(f.lastAt)
				switch {
				case n > f.last && later || n < f.last && at.Before(f.lastAt):
					f.Inc++
				case at.Sub(f.lastAt).Abs() < orderWindow:
					f.Close++
				}
			}
			f.last, f.lastAt, f.lastSeq = n, at, seq
		}
	case !volatileShape(shape) && !strings.HasPrefix(shape, "fmt:"):
		return // no need to follow values that cannot be noise by shape
	}
	repeated, sameReq, other := false, false, false
	for i, h := range f.recent {
		if f.recentSeq[i] == seq || f.recentSeq[i] == 0 {
			continue
		}
		repeated = repeated || h == v.Hash
		if f.recentReq[i] == reqHash {
			sameReq, other = true, other || h != v.Hash
		}
	}
	if repeated {
		f.Repeats++
	}
	if sameReq {
		f.SameRequest++
		if other {
			f.OtherForSame++
		}
	}
	f.recent[f.pos], f.recentReq[f.pos], f.recentSeq[f.pos] = v.Hash, reqHash, seq
	f.pos = (f.pos + 1) % recentValues
	if shape == "int" || shape == "float" {
		return
	}
	if len(v.Value) >= 6 && (bytes.Contains(target, v.Value) || bytes.Contains(body, v.Value)) {
		f.InRequest++
	}
	if !at.IsZero() {
		var t time.Time
		ok := false
		if shape == "time" || shape == "date" {
			t, ok = diff.TimeOf(string(v.Value))
		} else if strings.Contains(shape, "{time}") {
			t, ok = diff.LineTime(v.Value)
		}
		if ok && near(t, at, shape) {
			f.Near++
		}
	}
}

// fits reports whether a value of the shape has the key's learned form:
// its shape's family, or an integer where the key holds integers (a
// random id falls in the range of epoch milliseconds now and then, and is
// no time there).
func (f *FieldLearn) fits(shape string, value []byte) bool {
	// A float that is whole is written as an integer by JavaScript's
	// encoder (and Python's for 1e16 and beyond): process.uptime() 1.
	return diff.Family(shape) == f.Shape || (f.Shape == "int" || f.Shape == "float") && isInteger(value)
}

func isInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	return len(b) > 0 && !slices.ContainsFunc(b, func(c byte) bool { return c < '0' || c > '9' })
}

// requestSeed hashes requests, to know one asked again.
var requestSeed = maphash.MakeSeed()

// near reports whether a time of the shape is "now" at the moment at: a
// date is today (in some zone).
func near(t, at time.Time, shape string) bool {
	if shape == "date" {
		return t.Sub(at.UTC().Truncate(24*time.Hour)).Abs() <= 36*time.Hour
	}
	return t.Sub(at).Abs() <= nearWindow
}

func volatileShape(s string) bool {
	return diff.Volatile(s) || strings.Contains(s, "{time}") || strings.Contains(s, "{uuid}") ||
		strings.Contains(s, "{hex") || strings.Contains(s, "{token}")
}

// A short code (fmt: shape) is believed unique per response only on more
// evidence than an id of a volatile shape: codes of a fixed format also
// name things that merely vary with the request (SKU-00012).
const minUniqueCodes = 20

// verdict says whether the key's values vary from answer to answer by
// themselves, and why.
func (f *FieldLearn) verdict() (string, bool) {
	if f == nil || f.N < minLearn || f.SameShape*20 < f.N*19 || f.InRequest*20 > f.N {
		return "", false
	}
	switch {
	case f.Near*10 >= f.N*9:
		return "times near the exchange (" + f.Shape + ")", true
	case f.Shape == "int" || f.Shape == "float":
		if ordered := f.N - 1 - f.Close; f.Close*4 <= f.N-1 && ordered >= minLearn-1 && f.Inc*10 >= ordered*9 {
			return "a counter (increasing " + map[string]string{"int": "integers", "float": "numbers"}[f.Shape] + ")", true
		}
		// A random id: never repeated, and another for the same request.
		if f.Shape == "int" && f.N >= minUniqueCodes && f.Repeats*50 <= f.N &&
			f.SameRequest >= minLearn && f.OtherForSame*20 >= f.SameRequest*19 {
			return "unique per response (int)", true
		}
	case volatileShape(f.Shape) && f.Repeats*20 <= f.N:
		return "unique per response (" + f.Shape + ")", true
	case strings.HasPrefix(f.Shape, "fmt:") && f.N >= minUniqueCodes && f.Repeats*50 <= f.N:
		return "unique per response (" + f.Shape + ")", true
	}
	return "", false
}

// explains reports whether the learned variation of d's key explains d:
// a changed value with the reference's shape, the candidate's the same.
func (l *Learner) explains(d *diff.Difference) bool {
	if l == nil || d.Kind != diff.Changed || d.RefShape == "" {
		return false
	}
	f := l.Fields[d.Key]
	if f == nil || !f.fits(d.RefShape, []byte(d.Ref)) || !f.fits(d.CandShape, []byte(d.Cand)) {
		return false
	}
	_, ok := f.verdict()
	return ok
}

// merge folds o into ep (another handler's, or an earlier name's).
func (ep *EndpointState) merge(o *EndpointState) {
	ep.Requests += o.Requests
	ep.dirty = true
	for k, r := range o.Latency {
		if ep.Latency[k] == nil {
			ep.Latency[k] = &Reservoir{}
		}
		ep.Latency[k].merge(r)
	}
	for k, c := range o.Comparisons {
		ep.comparison(k).merge(c)
	}
	for k, l := range o.Learners {
		ep.learner(k).merge(l)
	}
}

func (cs *ComparisonState) merge(o *ComparisonState) {
	cs.Compared += o.Compared
	cs.Exact += o.Exact
	cs.Matched += o.Matched
	for k, f := range o.Fields {
		g := cs.field(k)
		g.Diffs += f.Diffs
		g.Volatile += f.Volatile
		g.ShapeKept += f.ShapeKept
		g.TypeKept += f.TypeKept
		g.IntsKept += f.IntsKept
		for ck, n := range f.Collateral {
			if g.Collateral == nil {
				g.Collateral = map[string]int{}
			}
			g.Collateral[ck] += n
		}
		g.Samples = append(g.Samples, f.Samples...)[:min(len(g.Samples)+len(f.Samples), maxFieldSamples)]
		g.exchanges = append(g.exchanges, f.exchanges...)[:min(len(g.exchanges)+len(f.exchanges), maxExchanges)]
	}
	cs.Noise.N += o.Noise.N
	if cs.Noise.Fields == nil {
		cs.Noise.Fields = map[string]int{}
	}
	for k, n := range o.Noise.Fields {
		cs.Noise.Fields[k] += n
	}
	for k, n := range o.Noise.Reshaped {
		if cs.Noise.Reshaped == nil {
			cs.Noise.Reshaped = map[string]int{}
		}
		cs.Noise.Reshaped[k] += n
	}
	if cs.Noise.Source == "" {
		cs.Noise.Source = o.Noise.Source
	}
}

func (l *Learner) merge(o *Learner) {
	l.Seq += o.Seq
	for k, f := range o.Orders {
		if l.Orders == nil {
			l.Orders = map[string]*OrderLearn{}
		}
		g := l.Orders[k]
		if g == nil {
			if len(l.Orders) >= maxOrderKeys {
				continue
			}
			g = &OrderLearn{}
			l.Orders[k] = g
		}
		g.N += f.N
		g.Varied += f.Varied
	}
	for k, f := range o.Fields {
		g := l.Fields[k]
		if g == nil {
			if len(l.Fields) >= maxLearnKeys {
				continue
			}
			c := *f
			l.Fields[k] = &c
			continue
		}
		if g.Shape != f.Shape {
			// Different shapes on two sides: the values do not keep one
			// shape, so no verdict.
			g.N += f.N
			continue
		}
		g.N += f.N
		g.SameShape += f.SameShape
		g.Repeats += f.Repeats
		g.InRequest += f.InRequest
		g.Near += f.Near
		g.Inc += f.Inc
		g.Close += f.Close
	}
}
