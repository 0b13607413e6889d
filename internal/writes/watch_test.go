package writes

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

func request(t *testing.T, raw string) *httpstream.Request {
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
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	exec := func(sql ...string) { commit(t, db, sql...) }

	post := request(t, "POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	m := w.Begin(ctx, post, true)
	exec("INSERT INTO orders (total, note) VALUES (14.5, NULL)") // the service, unmarked
	w.End(ctx, m)
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
	w.End(ctx, mo)
	w.End(ctx, mg)
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
	w.End(ctx, m)
	if s := waitSet(t, sets); !s.Complete {
		t.Errorf("set with its barrier: incomplete")
	}
	src.c <- Txn{Marks: []string{m}, Changes: []Change{{Table: "public.a", Op: "insert"}}}
	failing = true
	m2 := w.Begin(ctx, req, false)
	w.End(ctx, m2)
	if s := waitSet(t, sets); s.Complete {
		t.Errorf("set without a barrier: complete")
	}
	if w.Stats.Late.Load() != 1 || w.Stats.Incomplete.Load() != 1 {
		t.Errorf("late %d incomplete %d, want 1 1", w.Stats.Late.Load(), w.Stats.Incomplete.Load())
	}
}
