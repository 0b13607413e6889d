package compare

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
	"github.com/shadowtap/shadowtap/internal/writes"
)

func order(id int, note *string, at time.Time) writes.Change {
	s := func(v string) *string { return &v }
	return writes.Change{Table: "public.orders", Op: "insert",
		New:   map[string]*string{"id": s(fmt.Sprint(id)), "total": s("14.50"), "note": note, "created_at": s(at.UTC().Format("2006-01-02 15:04:05.999999-07"))},
		Types: map[string]uint32{"id": 23, "total": 1700, "note": 25, "created_at": 1184}}
}

// What the candidate writes is compared with what the baseline writes, in
// the same comparison as the answers: a column written otherwise is a
// finding of kind write, while each side's own sequence (ids thousands
// apart) and its own now() are noise. A request whose writes could not
// all be known is compared on its answers alone.
func TestWritesCompared(t *testing.T) {
	c, err := New(Config{Candidate: "cand", Baseline: "base", Writes: []string{"cand", "base"}, Wait: time.Minute,
		MaxPending: 1000, Queue: 1000, MinSamples: 10, Threshold: 0.05}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	paid := "paid"
	for i := range 40 {
		req := request(t, uint64(i+1), "/api/orders")
		c.Expect(req)
		c.Result(replayed("base", req, 201, `{"ok":true}`, time.Millisecond))
		c.Result(replayed("cand", req, 201, `{"ok":true}`, time.Millisecond))
		now := time.Now()
		c.Written("base", req, writes.Document([]writes.Change{order(1000+i, nil, now)}), true)
		c.Written("cand", req, writes.Document([]writes.Change{order(5000+i, &paid, now.Add(time.Millisecond))}), i != 39)
	}
	c.Close()
	r := c.Report()
	if len(r.Endpoints) != 1 || len(r.Endpoints[0].Comparisons) != 1 {
		t.Fatalf("report: %+v", r)
	}
	ep := r.Endpoints[0]
	var keys []string
	for _, f := range ep.Comparisons[0].Fields {
		if f.Diffs > 0 {
			keys = append(keys, fmt.Sprintf("%s %s %d", f.Kind, f.Key, f.Diffs))
		}
	}
	if strings.Join(keys, ",") != "write write.insert.public.orders[*].note 39" {
		t.Errorf("fields that differed: %v", keys)
	}
	if !slices.Contains(ep.Findings, "write.insert.public.orders[*].note") {
		t.Errorf("findings %v", ep.Findings)
	}
}

func TestBitIndexOfNoPart(t *testing.T) {
	if i := bitIndex(0); i != -1 {
		t.Errorf("bitIndex(0) = %d", i)
	}
	if i := bitIndex(partBase | partCand); i != -1 {
		t.Errorf("bitIndex of two parts = %d", i)
	}
	if i := bitIndex(partSecWrites); i != 6 {
		t.Errorf("bitIndex(partSecWrites) = %d", i)
	}
}

// A float counter (Node's process.uptime(), rounded to the millisecond)
// is sometimes whole, and JavaScript writes it as an integer: still the
// counter's value, explained like the others.
func TestFloatCounterWrittenWhole(t *testing.T) {
	l := &Learner{Fields: map[string]*FieldLearn{}}
	at := time.Unix(1_800_000_000, 0)
	for i := range 40 {
		v := fmt.Sprintf(`{"uptime":%.3f}`, 0.25+float64(i)*0.125)
		req := request(t, uint64(i+1), "/api/status")
		l.observe(diff.ParseDocument("body", []byte(v)), diff.Options{}, req, at.Add(time.Duration(i)*125*time.Millisecond))
	}
	d := diff.Difference{Field: "body.uptime", Key: "body.uptime", Kind: diff.Changed, Ref: "3.375", Cand: "1", RefShape: "float", CandShape: "int"}
	if !l.explains(&d) {
		t.Errorf("a whole uptime not explained by the learned counter: %+v", l.Fields["body.uptime"])
	}
}
