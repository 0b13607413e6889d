package writes

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

func request(t testing.TB, raw string) *httpstream.Request {
	t.Helper()
	var got *httpstream.Request
	httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(r *httpstream.Request) { got = r }).Feed([]byte(raw), 0)
	if got == nil {
		t.Fatalf("no request in %q", raw)
	}
	return got
}

func waitSet(t *testing.T, sets <-chan Set) Set {
	t.Helper()
	select {
	case s := <-sets:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no set delivered")
	}
	return Set{}
}

// Each request's writes reach its set: a transaction carrying its marker
// (any time, among other requests), or, without one, the transaction in
// the window of a request sent alone; a transaction neither is counted
// and left out. The set comes once the end barrier came through
// PostgreSQL's stream, and reads as the comparison's document, numbers
// and NULL as the column types say.
func TestPostgresWritesAttribution(t *testing.T) {
	_, dsn := postgres(t)
	ctx := context.Background()
	sets := make(chan Set, 8)
	w, err := WatchPG(ctx, PGOptions{DSN: dsn, Slot: "shadowtap_attr", Publication: "shadowtap_pub"},
		WatchOptions{Target: "copy", Deliver: func(s Set) { sets <- s }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	db := dial(t, dsn)
	exec := func(sql ...string) { commit(t, db, sql...) }

	post := request(t, "POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	m := w.Begin(ctx, post, true)
	exec("INSERT INTO orders (total, note) VALUES (14.5, NULL)") // the service, unmarked
	w.End(ctx, m, true)
	s := waitSet(t, sets)
	if !s.Complete || s.Req != post || string(s.Doc()) != `{"insert":{"public":{"orders":[{"id":1,"note":null,"total":14.50}]}}}` {
		t.Errorf("window set: complete %v, doc %s", s.Complete, s.Doc())
	}

	get := request(t, "GET /orders/1 HTTP/1.1\r\nHost: a\r\n\r\n")
	other := request(t, "GET /orders/2 HTTP/1.1\r\nHost: a\r\n\r\n")
	mg := w.Begin(ctx, get, false)
	mo := w.Begin(ctx, other, false)
	exec("UPDATE orders SET note = 'seen' WHERE id = 1", "SELECT pg_logical_emit_message(true, 'shadowtap', '"+mg+"')")
	exec("UPDATE orders SET note = 'stray' WHERE id = 1") // no marker, two requests in flight: whose is it?
	w.End(ctx, mo, true)
	w.End(ctx, mg, true)
	got := map[*httpstream.Request]Set{}
	for range 2 {
		s := waitSet(t, sets)
		got[s.Req] = s
	}
	if s := got[get]; !s.Complete || len(s.Changes) != 1 || string(s.Doc()) != `{"update":{"public":{"orders":[{"id":1,"note":"seen"}]}}}` {
		t.Errorf("marked set: %+v: %s (an update says what it changed, and the row's key)", s, s.Doc())
	}
	if s := got[other]; !s.Complete || len(s.Changes) != 0 {
		t.Errorf("the other request's set: %+v", s)
	}
	if w.Stats.Marked.Load() != 1 || w.Stats.Windowed.Load() != 1 || w.Stats.Unattributed.Load() != 1 {
		t.Errorf("marked %d windowed %d unattributed %d, want 1 1 1", w.Stats.Marked.Load(), w.Stats.Windowed.Load(), w.Stats.Unattributed.Load())
	}
}

// A role that may not write barriers is refused at the start, with the
// grant it needs, rather than comparing sets it cannot complete.
func TestPostgresWritesNeedTheBarrierGrant(t *testing.T) {
	pg, dsn := postgres(t)
	_ = dsn
	pg.SQL(t, "shop", "CREATE ROLE plain LOGIN REPLICATION",
		"REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) FROM PUBLIC")
	_, err := WatchPG(context.Background(), PGOptions{DSN: pg.DSNAs("shop", "plain"), Slot: "shadowtap_plain", Publication: "shadowtap_pub"},
		WatchOptions{Target: "copy", Deliver: func(Set) {}})
	if err == nil || !strings.Contains(err.Error(), "GRANT EXECUTE ON FUNCTION pg_logical_emit_message") {
		t.Errorf("err = %v, want the grant named", err)
	}
}

// fakeSource is a stream the test writes: the rules of attribution apart
// from PostgreSQL (which the tests above run on).
type fakeSource struct{ c chan Txn }

func (f *fakeSource) Txns() <-chan Txn { return f.c }
func (f *fakeSource) Err() error       { return nil }
func (f *fakeSource) Close()           {}

// A set whose barrier never comes is delivered incomplete after Wait, and
// one whose barrier could not be written at once; a marked transaction
// that comes after its set left is counted late, not given to another.
func TestWritesIncompleteAndLate(t *testing.T) {
	src := &fakeSource{c: make(chan Txn, 8)}
	sets := make(chan Set, 8)
	failing := false
	w := Watch(WatchOptions{Target: "copy", Source: src, Wait: 200 * time.Millisecond, Deliver: func(s Set) { sets <- s },
		Sync: func(_ context.Context, token string) error {
			if failing {
				return errors.New("down")
			}
			if strings.HasPrefix(token, "e:") {
				src.c <- Txn{Sync: token}
			}
			return nil
		}})
	defer w.Close()
	ctx := context.Background()
	req := request(t, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	m := w.Begin(ctx, req, false)
	w.End(ctx, m, true)
	if s := waitSet(t, sets); !s.Complete {
		t.Errorf("set with its barrier: incomplete")
	}
	src.c <- Txn{Marks: []string{m}, Changes: []Change{{Table: "public.a", Op: "insert"}}}
	failing = true
	m2 := w.Begin(ctx, req, false)
	w.End(ctx, m2, true)
	if s := waitSet(t, sets); s.Complete {
		t.Errorf("set without a barrier: complete")
	}
	if w.Stats.Late.Load() != 1 || w.Stats.Incomplete.Load() != 1 {
		t.Errorf("late %d incomplete %d, want 1 1", w.Stats.Late.Load(), w.Stats.Incomplete.Load())
	}
}

// inStream is a Sync that puts each barrier into the fake stream, as
// PostgreSQL does.
func inStream(src *fakeSource) func(context.Context, string) error {
	return func(_ context.Context, token string) error {
		src.c <- Txn{Sync: token}
		return nil
	}
}

// A database that hangs while a barrier is written holds neither the
// request nor a stop past Wait: the set is delivered incomplete.
func TestWritesBarrierBoundedInTime(t *testing.T) {
	src := &fakeSource{c: make(chan Txn, 8)}
	sets := make(chan Set, 8)
	w := Watch(WatchOptions{Target: "copy", Source: src, Wait: 100 * time.Millisecond, Deliver: func(s Set) { sets <- s },
		Sync: func(ctx context.Context, _ string) error {
			<-ctx.Done() // a hung database: only the deadline ends it
			return ctx.Err()
		}})
	defer w.Close()
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		ctx := context.Background()
		m := w.Begin(ctx, request(t, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), true)
		w.End(ctx, m, true)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Begin and End hang with the database")
	}
	if s := waitSet(t, sets); s.Complete {
		t.Error("a set whose barriers were never written is complete")
	}
}

// A start barrier that could not be written leaves the request's window
// unknown: its set is incomplete, not complete and empty (which would
// read as "wrote nothing" against the other side's rows).
func TestWritesFailedStartBarrier(t *testing.T) {
	src := &fakeSource{c: make(chan Txn, 8)}
	sets := make(chan Set, 8)
	w := Watch(WatchOptions{Target: "copy", Source: src, Wait: time.Second, Deliver: func(s Set) { sets <- s },
		Sync: func(ctx context.Context, token string) error {
			if strings.HasPrefix(token, "s:") {
				return errors.New("connection refused")
			}
			return inStream(src)(ctx, token)
		}})
	defer w.Close()
	ctx := context.Background()
	m := w.Begin(ctx, request(t, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), true)
	src.c <- Txn{Changes: []Change{{Table: "public.a", Op: "insert", New: map[string]*string{}}}} // its write, in no window
	w.End(ctx, m, true)
	if s := waitSet(t, sets); s.Complete {
		t.Errorf("set without its window: complete, %d changes", len(s.Changes))
	}
}

// Once the source ended, a request's set is delivered incomplete at once
// and nothing is kept for it.
func TestWritesAfterSourceEnded(t *testing.T) {
	src := &fakeSource{c: make(chan Txn, 8)}
	sets := make(chan Set, 8)
	w := Watch(WatchOptions{Target: "copy", Source: src, Wait: time.Second, Deliver: func(s Set) { sets <- s }, Sync: inStream(src)})
	close(src.c)
	<-w.done
	ctx := context.Background()
	for range 3 {
		m := w.Begin(ctx, request(t, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), true)
		w.End(ctx, m, true)
		if s := waitSet(t, sets); s.Complete {
			t.Error("complete after the source ended")
		}
	}
	w.mu.Lock()
	kept := len(w.pending) + len(w.holds)
	w.mu.Unlock()
	if kept != 0 || w.Stats.Incomplete.Load() != 3 {
		t.Errorf("%d kept after the source ended, %d incomplete", kept, w.Stats.Incomplete.Load())
	}
	w.Close()
}

// A request whose answer never came may still be running at the service:
// what it writes later falls in the next window, whose set is then
// incomplete rather than charged with it; past Wait windows are trusted
// again.
func TestWritesFailedRequestQuarantinesTheNextWindow(t *testing.T) {
	src := &fakeSource{c: make(chan Txn, 16)}
	sets := make(chan Set, 8)
	wait := 300 * time.Millisecond
	w := Watch(WatchOptions{Target: "copy", Source: src, Wait: wait, Deliver: func(s Set) { sets <- s }, Sync: inStream(src)})
	defer w.Close()
	ctx := context.Background()
	post := func() *httpstream.Request {
		return request(t, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	}
	write := Txn{Changes: []Change{{Table: "public.a", Op: "insert", New: map[string]*string{}}}}
	m := w.Begin(ctx, post(), true)
	w.End(ctx, m, false) // timed out
	if s := waitSet(t, sets); s.Complete {
		t.Error("the failed request's set is complete")
	}
	m = w.Begin(ctx, post(), true)
	src.c <- write // the failed request's late commit
	w.End(ctx, m, true)
	if s := waitSet(t, sets); s.Complete {
		t.Errorf("the next request's set is complete with %d changes that may be another's", len(s.Changes))
	}
	time.Sleep(wait + 50*time.Millisecond)
	m = w.Begin(ctx, post(), true)
	src.c <- write
	w.End(ctx, m, true)
	if s := waitSet(t, sets); !s.Complete || len(s.Changes) != 1 {
		t.Errorf("after the quarantine: complete %v, %d changes", s.Complete, len(s.Changes))
	}
}

// The watcher, not a replayer, holds a request alone: a request alone
// begun by one replayer waits for another's request in flight to end (a
// reload's new replayer while the old one drains).
func TestWritesAloneHeldByTheWatcher(t *testing.T) {
	src := &fakeSource{c: make(chan Txn, 16)}
	w := Watch(WatchOptions{Target: "copy", Source: src, Deliver: func(Set) {}, Sync: inStream(src)})
	defer w.Close()
	ctx := context.Background()
	get := w.Begin(ctx, request(t, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"), false)
	begun := make(chan string)
	go func() {
		begun <- w.Begin(ctx, request(t, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), true)
	}()
	select {
	case <-begun:
		t.Fatal("a request alone began while another was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	w.End(ctx, get, true)
	select {
	case m := <-begun:
		w.End(ctx, m, true)
	case <-time.After(5 * time.Second):
		t.Fatal("the request alone never began")
	}
}

func text(s string) *string { return &s }

func cols(kv ...string) map[string]*string {
	m := map[string]*string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = text(kv[i+1])
	}
	return m
}

// An update says what it changed, after and before, and its row is known
// by its key as it was: with the whole row before (REPLICA IDENTITY FULL)
// or the old key (an update of the key).
func TestWritesUpdateTrimmed(t *testing.T) {
	key := []string{"id"}
	full := Change{Table: "public.o", Op: "update", Key: key, Old: cols("id", "1", "total", "5", "note", "a"), New: cols("id", "1", "total", "6", "note", "a")}
	var r rows
	r.written(&full)
	if len(full.New) != 2 || *full.New["total"] != "6" || len(full.Old) != 2 || *full.Old["total"] != "5" {
		t.Errorf("full row before: new %v old %v, want the key and total", deref(full.New), deref(full.Old))
	}
	rekey := Change{Table: "public.o", Op: "update", Key: key, Old: cols("id", "1"), New: cols("id", "2", "total", "6", "note", "b")}
	r.written(&rekey)
	if len(rekey.New) != 2 || *rekey.New["id"] != "2" || *rekey.New["note"] != "b" || len(rekey.Old) != 2 || *rekey.Old["note"] != "a" {
		t.Errorf("key updated: new %v old %v", deref(rekey.New), deref(rekey.Old))
	}
	again := Change{Table: "public.o", Op: "update", Key: key, New: cols("id", "2", "total", "7", "note", "b")}
	r.written(&again)
	if len(again.New) != 2 || *again.New["total"] != "7" {
		t.Errorf("the row under its new key is not known: %v", deref(again.New))
	}
}

func deref(m map[string]*string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// The rows remembered are bounded in bytes too, and the one written
// longest ago goes first: a row just updated stays known.
func TestWritesRowsBoundedInBytes(t *testing.T) {
	var r rows
	big := strings.Repeat("x", 1<<20)
	key := []string{"id"}
	for i := range 100 {
		c := Change{Table: "public.blob", Op: "insert", Key: key, New: cols("id", strconv.Itoa(i), "data", big)}
		r.written(&c)
		if i > 0 && i%10 == 0 { // row 0 kept busy
			u := Change{Table: "public.blob", Op: "update", Key: key, New: cols("id", "0", "data", big, "n", strconv.Itoa(i))}
			r.written(&u)
		}
	}
	if r.bytes > maxRowBytes || r.order.Len() != len(r.byKey) {
		t.Fatalf("%d bytes remembered, %d rows in order, %d by key", r.bytes, r.order.Len(), len(r.byKey))
	}
	known := func(id string) bool { return r.byKey[rowKey("public.blob", key, cols("id", id))] != nil }
	if !known("0") || !known("99") || known("1") {
		t.Errorf("known: row 0 %v (just updated), 99 %v (last), 1 %v (oldest)", known("0"), known("99"), known("1"))
	}
}
