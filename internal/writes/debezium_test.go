package writes

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// connector writes what a Debezium connector with transaction metadata
// writes for one transaction: its change events on the tables' topics
// and its BEGIN and END on the transaction topic (the JSON converter,
// schemas enabled for the keys, as the connector's defaults are).
type connector struct {
	t      *testing.T
	cl     *kgo.Client
	mu     sync.Mutex
	txid   int
	lastID int
}

func (c *connector) produce(topic, key, value string) {
	c.t.Helper()
	r := &kgo.Record{Topic: topic, Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	if err := c.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		c.t.Fatal(err)
	}
}

// event is a change event's value; row and before are JSON objects or null.
func event(op, table, before, after, txid string, order int) string {
	return fmt.Sprintf(`{"schema":{"type":"struct"},"payload":{"before":%s,"after":%s,"source":{"version":"2.7.0.Final","connector":"postgresql","name":"shop","db":"shop","schema":"public","table":%q,"txId":%s,"lsn":1},"op":%q,"ts_ms":1,"transaction":{"id":"%s:1","total_order":%d,"data_collection_order":1}}}`,
		before, after, table, txid, op, txid, order)
}

func message(prefix, content, txid string) string {
	return fmt.Sprintf(`{"op":"m","ts_ms":1,"source":{"connector":"postgresql","db":"shop","txId":%s},"message":{"prefix":%q,"content":%q},"transaction":{"id":"%s:1","total_order":1,"data_collection_order":1}}`,
		txid, prefix, base64.StdEncoding.EncodeToString([]byte(content)), txid)
}

// commit writes one transaction: a mark (or none), an order and its
// event, the event's topic first, and END after them.
func (c *connector) commit(mark string, total string) (orderID int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.txid++
	c.lastID++
	tx := fmt.Sprint(700 + c.txid)
	n := 0
	if mark != "" {
		c.produce("shop.message", "", message(MarkPrefix, mark, tx))
		n++
	}
	key := fmt.Sprintf(`{"schema":{"type":"struct"},"payload":{"id":%d}}`, c.lastID)
	c.produce("shop.public.order_events", fmt.Sprintf(`{"id":%d}`, c.lastID), event("c", "order_events", "null", fmt.Sprintf(`{"id":%d,"order_id":%d,"kind":"created"}`, c.lastID, c.lastID), tx, 3))
	c.produce("shop.public.orders", key, event("c", "orders", "null", fmt.Sprintf(`{"id":%d,"total":%s,"note":null}`, c.lastID, total), tx, 2))
	n += 2
	c.produce("shop.transaction", "", fmt.Sprintf(`{"status":"END","id":"%s:1","ts_ms":1,"event_count":%d,"data_collections":[]}`, tx, n))
	return c.lastID
}

// barrier is a transactional "shadowtap-sync" message, as the connector
// writes pg_logical_emit_message(true, 'shadowtap-sync', token).
func (c *connector) barrier(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.txid++
	tx := fmt.Sprint(700 + c.txid)
	c.produce("shop.message", "", message(SyncPrefix, token, tx))
	c.produce("shop.transaction", "", fmt.Sprintf(`{"status":"END","id":"%s:1","event_count":1}`, tx))
}

// What a service writes reaches the comparison through a Debezium
// connector's Kafka topics too (kfake as the cluster): a transaction's
// events from two tables' topics and its marker become one transaction,
// ordered as the rows were written; a barrier completes a request's set;
// a transaction without a marker in a request's window is its.
func TestDebeziumWritesOnKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(),
		kfake.SeedTopics(1, "shop.transaction", "shop.message", "shop.public.orders", "shop.public.order_events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	conn := &connector{t: t, cl: prod}

	src, err := OpenDebezium(DebeziumOptions{Brokers: cluster.ListenAddrs(), Prefix: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	sets := make(chan Set, 4)
	w := Watch(WatchOptions{Target: "copy", Source: src, Deliver: func(s Set) { sets <- s },
		Sync: func(_ context.Context, token string) error { conn.barrier(token); return nil }})
	defer w.Close()
	time.Sleep(500 * time.Millisecond) // the consumer has its partitions

	ctx := context.Background()
	post := request(t, "POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	m := w.Begin(ctx, post, false)
	conn.commit(m, "14.50")
	w.End(ctx, m, true)
	s := waitSet(t, sets)
	want := `{"insert":{"public":{"order_events":[{"id":1,"kind":"created","order_id":1}],"orders":[{"id":1,"note":null,"total":14.50}]}}}`
	if !s.Complete || string(s.Doc()) != want || len(s.Changes) != 2 || s.Changes[0].Table != "public.orders" || s.Changes[0].Key[0] != "id" {
		t.Errorf("marked set: complete %v\n%s\nwant\n%s\n%+v", s.Complete, s.Doc(), want, s.Changes)
	}

	alone := request(t, "POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	m = w.Begin(ctx, alone, true)
	conn.commit("", "3")
	w.End(ctx, m, true)
	if s := waitSet(t, sets); !s.Complete || len(s.Changes) != 2 {
		t.Errorf("window set: %+v", s)
	}
	if w.Stats.Marked.Load() != 1 || w.Stats.Windowed.Load() != 1 || w.Stats.Unattributed.Load() != 0 {
		t.Errorf("marked %d windowed %d unattributed %d", w.Stats.Marked.Load(), w.Stats.Windowed.Load(), w.Stats.Unattributed.Load())
	}
}

// end is a transaction topic's END record.
func end(txid string, events int) []byte {
	return fmt.Appendf(nil, `{"status":"END","id":"%s:1","event_count":%d}`, txid, events)
}

func orderEvent(txid string, id int) []byte {
	return []byte(event("c", "orders", "null", fmt.Sprintf(`{"id":%d}`, id), txid, 1))
}

// Kafka delivers at least once, and the source starts in the middle of
// the connector's stream: an END with a count below zero, an END or an
// event delivered again, or a transaction whose events were written
// before the source started, never stop the transactions after them,
// never crash, and what could not be read whole is handed over as lost.
func TestDebeziumAssemblerOddRecords(t *testing.T) {
	a := newAssembler("shop", time.Second)
	now := time.Unix(1000, 0)
	a.take("shop.transaction", nil, end("800", -1), now) // malformed: not a transaction
	a.take("shop.transaction", nil, end("800", -1), now)
	a.take("shop.public.orders", []byte(`{"id":1}`), orderEvent("801", 1), now)
	a.take("shop.transaction", nil, end("801", 1), now)
	if got := a.complete(now); len(got) != 1 || len(got[0].Changes) != 1 || got[0].Lost {
		t.Fatalf("after an END with a negative count: %+v", got)
	}
	a.take("shop.transaction", nil, end("801", 1), now) // delivered again
	a.take("shop.public.orders", []byte(`{"id":1}`), orderEvent("801", 1), now)
	a.take("shop.transaction", nil, end("799", 2), now) // its events were before the start
	a.take("shop.public.orders", []byte(`{"id":2}`), orderEvent("802", 2), now)
	a.take("shop.transaction", nil, end("802", 1), now)
	if got := a.complete(now); len(got) != 0 {
		t.Fatalf("handed over past a transaction still waiting for its events: %+v", got)
	}
	got := a.complete(now.Add(2 * time.Second))
	if len(got) != 2 || !got[0].Lost || got[1].Lost || len(got[1].Changes) != 1 {
		t.Fatalf("past the wait: %+v, want 799 lost then 802", got)
	}
	if len(a.open) != 0 || len(a.ended) != 0 {
		t.Errorf("%d transactions open, %d ended, after all were handed over", len(a.open), len(a.ended))
	}
}
