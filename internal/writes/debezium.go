package writes

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DebeziumSource reads a database's committed transactions from the Kafka
// topics a Debezium connector writes (MySQL, SQL Server, MongoDB,
// PostgreSQL: one envelope for all), with github.com/twmb/franz-go.
//
// The connector must provide transaction metadata
// (provide.transaction.metadata=true): its transaction topic
// (<prefix>.transaction) lists each transaction's END, in commit order,
// with its number of events, and every change event names its
// transaction. A transaction is handed over once all its events came, in
// that order, whatever topic and partition each came through. Marks are
// the connector's logical-message events (op "m", prefix "shadowtap"), and
// a transaction holding a "shadowtap-sync" message is a barrier: written
// transactionally, it is ordered among the others by the same topic.
type DebeziumSource struct {
	o      DebeziumOptions
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	out    chan Txn

	mu  sync.Mutex
	err error
}

// DebeziumOptions configure a source.
type DebeziumOptions struct {
	Brokers []string
	Prefix  string // the connector's topic.prefix: its topics are <prefix>.<schema>.<table>, <prefix>.transaction, ...
	// MaxTxns bounds the transactions read but not yet complete or handed
	// over; past it the source stops with ErrLag. 0: 10000.
	MaxTxns int
	// Stale bounds how long a transaction whose END came waits for its
	// events (some were written before the source started reading, or
	// are lost): past it, it is handed over as Lost, and those after it go
	// on. A transaction whose END never comes is forgotten after it too.
	// 0: 10s.
	Stale time.Duration
	// Client adds options to the Kafka client (TLS, SASL).
	Client []kgo.Opt
}

var prefixName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,200}$`)

// OpenDebezium starts reading what the connector writes from now on.
func OpenDebezium(o DebeziumOptions) (*DebeziumSource, error) {
	if !prefixName.MatchString(o.Prefix) || len(o.Brokers) == 0 {
		return nil, fmt.Errorf("writes: debezium: brokers and a topic prefix (letters, digits, . _ -) are needed")
	}
	if o.MaxTxns <= 0 {
		o.MaxTxns = 10000
	}
	if o.Stale <= 0 {
		o.Stale = 10 * time.Second
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...), kgo.ConsumeRegex(),
		kgo.ConsumeTopics("^" + regexp.QuoteMeta(o.Prefix) + `\.`),
		// From now: a topic created later (a table's first write) is read
		// from its start, which is after now too.
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(time.Now().UnixMilli())),
		kgo.MetadataMinAge(250 * time.Millisecond)}, o.Client...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("writes: debezium: %w", err)
	}
	s := &DebeziumSource{o: o, cl: cl, done: make(chan struct{}), out: make(chan Txn, o.MaxTxns)}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go s.run(ctx)
	return s, nil
}

// Txns delivers the transactions, in commit order; closed when the source
// ends (see Err).
func (s *DebeziumSource) Txns() <-chan Txn { return s.out }

// Err is why the source ended, once Txns is closed (nil after Close).
func (s *DebeziumSource) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops reading.
func (s *DebeziumSource) Close() {
	s.cancel()
	<-s.done
}

// envelope is a Debezium change event's value (the JSON converter's, with
// or without its schema).
type envelope struct {
	Payload *envelope `json:"payload"`

	Op     string                     `json:"op"`
	Before map[string]json.RawMessage `json:"before"`
	After  map[string]json.RawMessage `json:"after"`
	Source struct {
		DB     string `json:"db"`
		Schema string `json:"schema"`
		Table  string `json:"table"`
	} `json:"source"`
	Transaction *struct {
		ID         string `json:"id"`
		TotalOrder int64  `json:"total_order"`
	} `json:"transaction"`
	Message *struct {
		Prefix  string `json:"prefix"`
		Content string `json:"content"` // base64, as the JSON converter writes bytes
	} `json:"message"`

	// A transaction topic's event.
	Status     string `json:"status"`
	ID         string `json:"id"`
	EventCount int    `json:"event_count"`
}

type assembling struct {
	events []orderedChange
	marks  []string
	sync   string
	count  int       // events seen
	want   int       // END's event_count; -1 until END
	seen   time.Time // its first record, or its END once that came
}

type orderedChange struct {
	order int64
	c     Change
}

func (s *DebeziumSource) run(ctx context.Context) {
	defer close(s.done)
	defer close(s.out)
	defer s.cl.Close()
	fail := func(err error) {
		s.mu.Lock()
		if ctx.Err() == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	a := newAssembler(s.o.Prefix, s.o.Stale)
	for {
		fs := s.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		if err := fs.Err0(); errors.Is(err, kgo.ErrClientClosed) {
			fail(fmt.Errorf("writes: debezium: %w", err))
			return
		} // other fetch errors are retried by the client
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) { a.take(r.Topic, r.Key, r.Value, now) })
		for _, x := range a.complete(now) {
			select {
			case s.out <- x:
			default:
				fail(ErrLag) // the reader does not keep up
				return
			}
		}
		if len(a.open) > s.o.MaxTxns {
			fail(ErrLag) // transactions never completed
			return
		}
	}
}

// assembler makes transactions of a connector's events, whatever topic
// and partition each came through: complete once its END came and all
// its events, handed over in the order of the ENDs (commit order).
type assembler struct {
	txTopic string
	stale   time.Duration
	open    map[string]*assembling
	ended   []string // transactions whose END came, in commit order
	// handed are the transactions handed over lately, so that a record
	// Kafka delivers again (at least once) does not open them anew.
	handed  map[string]bool
	handedQ []string
	swept   time.Time
}

// rememberHanded bounds the transactions remembered as handed over.
const rememberHanded = 1 << 14

func newAssembler(prefix string, stale time.Duration) *assembler {
	return &assembler{txTopic: prefix + ".transaction", stale: stale, open: map[string]*assembling{}, handed: map[string]bool{}}
}

func (a *assembler) get(id string, now time.Time) *assembling {
	x := a.open[id]
	if x == nil {
		x = &assembling{want: -1, seen: now}
		a.open[id] = x
	}
	return x
}

// take reads one record.
func (a *assembler) take(topic string, key, value []byte, now time.Time) {
	var e envelope
	if len(value) == 0 || json.Unmarshal(value, &e) != nil {
		return // a tombstone, or not an envelope: no change
	}
	if e.Payload != nil {
		e = *e.Payload
	}
	if topic == a.txTopic {
		if e.Status == "END" && e.ID != "" && e.EventCount >= 0 && !a.handed[e.ID] {
			if x := a.get(e.ID, now); x.want < 0 { // a second END (delivered again) is the first
				x.want, x.seen = e.EventCount, now
				a.ended = append(a.ended, e.ID)
			}
		}
		return
	}
	if e.Transaction == nil || e.Transaction.ID == "" || a.handed[e.Transaction.ID] {
		return // outside a transaction (a snapshot's read): nothing a request wrote; or delivered again
	}
	x := a.get(e.Transaction.ID, now)
	x.count++
	if e.Op == "m" && e.Message != nil {
		content, err := base64.StdEncoding.DecodeString(e.Message.Content)
		if err != nil {
			content = []byte(e.Message.Content)
		}
		switch e.Message.Prefix {
		case MarkPrefix:
			x.marks = append(x.marks, string(content))
		case SyncPrefix:
			x.sync = string(content)
		}
		return
	}
	if c, ok := debeziumChange(&e, key); ok {
		x.events = append(x.events, orderedChange{e.Transaction.TotalOrder, c})
	}
}

// complete returns, in commit order, the transactions now complete, and
// as Lost those at the head that waited for their events past stale.
func (a *assembler) complete(now time.Time) []Txn {
	var out []Txn
	for len(a.ended) > 0 {
		id := a.ended[0]
		x := a.open[id]
		lost := x.count < x.want
		if lost && now.Sub(x.seen) < a.stale {
			break
		}
		delete(a.open, id)
		a.ended = a.ended[1:]
		a.handedOver(id)
		if lost {
			out = append(out, Txn{Lost: true})
			continue
		}
		slices.SortStableFunc(x.events, func(p, q orderedChange) int { return cmp.Compare(p.order, q.order) })
		t := Txn{Marks: x.marks, Sync: x.sync}
		for _, ev := range x.events {
			t.Changes = append(t.Changes, ev.c)
		}
		if t.Sync != "" {
			t.Changes, t.Marks = nil, nil
		}
		out = append(out, t)
	}
	if now.Sub(a.swept) >= a.stale {
		// Events of transactions whose END never came (it was written
		// before the source started reading): not one of the requests'.
		a.swept = now
		for id, x := range a.open {
			if x.want < 0 && now.Sub(x.seen) >= a.stale {
				delete(a.open, id)
			}
		}
	}
	return out
}

// handedOver remembers id as handed over, forgetting the oldest past the
// bound.
func (a *assembler) handedOver(id string) {
	a.handed[id] = true
	a.handedQ = append(a.handedQ, id)
	if len(a.handedQ) > rememberHanded {
		delete(a.handed, a.handedQ[0])
		a.handedQ = a.handedQ[1:]
	}
}

// debeziumChange is the row of a change event; its values are kept as
// JSON (typed by the converter), its key's columns from the record's key.
func debeziumChange(e *envelope, key []byte) (Change, bool) {
	c := Change{Table: or(e.Source.Schema, e.Source.DB) + "." + e.Source.Table}
	switch e.Op {
	case "c":
		c.Op = "insert"
	case "u":
		c.Op = "update"
	case "d":
		c.Op = "delete"
	default:
		return c, false // r: a snapshot's read
	}
	c.Types = map[string]uint32{}
	conv := func(m map[string]json.RawMessage) map[string]*string {
		if m == nil {
			return nil
		}
		out := make(map[string]*string, len(m))
		for k, v := range m {
			c.Types[k] = oidJSON // the converter's JSON: compared as such
			if string(v) == "null" {
				out[k] = nil
				continue
			}
			s := string(v)
			out[k] = &s
		}
		return out
	}
	c.Old, c.New = conv(e.Before), conv(e.After)
	var cols map[string]json.RawMessage
	if json.Unmarshal(key, &cols) == nil {
		if p, ok := cols["payload"]; ok { // the key with its schema
			cols = nil
			_ = json.Unmarshal(p, &cols)
		}
	}
	for name := range cols {
		c.Key = append(c.Key, name)
	}
	slices.Sort(c.Key)
	return c, true
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
