package writes

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shadowtap/shadowtap/internal/testkit/pgtest"
)

func postgres(t testing.TB) (*pgtest.Cluster, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pg := pgtest.Start(t, "wal_level=logical", "max_replication_slots=4", "max_wal_senders=4")
	pg.CreateDB(t, "shop", nil,
		"CREATE TABLE orders (id serial PRIMARY KEY, total numeric(10,2) NOT NULL, note text)",
		"CREATE PUBLICATION shadowtap_pub FOR ALL TABLES")
	return pg, pg.DSN("shop")
}

// commit runs the statements in one transaction, as a service does.
func commit(t *testing.T, db *pgx.Conn, sql ...string) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range sql {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// dial connects to the database as the service does, until the test ends.
func dial(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return db
}

// openPG starts a source, closed when the test ends.
func openPG(t testing.TB, o PGOptions) *PGSource {
	t.Helper()
	src, err := OpenPG(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	return src
}

func next(t *testing.T, s *PGSource) Txn {
	t.Helper()
	select {
	case x, ok := <-s.Txns():
		if !ok {
			t.Fatalf("source ended: %v", s.Err())
		}
		return x
	case <-time.After(10 * time.Second):
		t.Fatal("no transaction")
	}
	return Txn{}
}

// What a service writes arrives as PostgreSQL's logical replication
// stream decodes it: rows by table and operation, the request's marker
// the service emitted in the transaction, and the slot is gone once the
// source is closed.
func TestPostgresWritesStream(t *testing.T) {
	pg, dsn := postgres(t)
	ctx := context.Background()
	src, err := OpenPG(ctx, PGOptions{DSN: dsn, Slot: "shadowtap_copy", Publication: "shadowtap_pub"})
	if err != nil {
		t.Fatal(err)
	}
	db := dial(t, dsn)
	exec := func(sql ...string) { commit(t, db, sql...) }
	exec("SELECT pg_logical_emit_message(true, 'shadowtap', 'req-1')", "INSERT INTO orders (total, note) VALUES (14.5, NULL)")
	exec("UPDATE orders SET note = 'paid' WHERE id = 1", "SELECT pg_logical_emit_message(true, 'other', 'x')")
	exec("DELETE FROM orders WHERE id = 1")
	var got []string
	for range 3 {
		x := next(t, src)
		for _, c := range x.Changes {
			got = append(got, c.String())
		}
		got = append(got, "marks="+strings.Join(x.Marks, ","))
		if x.Commit.IsZero() || x.LSN == 0 {
			t.Errorf("txn %+v", x)
		}
	}
	want := []string{"insert public.orders {id=1 note=NULL total=14.50}", "marks=req-1",
		"update public.orders {id=1 note=paid total=14.50}", "marks=",
		"delete public.orders {id=1}", "marks="}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stream:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	src.Close()
	if _, ok := <-src.Txns(); ok || src.Err() != nil {
		t.Errorf("after Close: %v", src.Err())
	}
	var slots int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := db.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&slots); err != nil {
			t.Fatal(err)
		}
		if slots == 0 || time.Now().After(deadline) {
			break
		}
	}
	if slots != 0 {
		t.Errorf("%d slots left after Close", slots)
	}
	_ = pg
}

// A transaction larger than the lag bound is not held: the source stops
// with ErrLag, and its slot is dropped, so WAL is never retained for it.
func TestPostgresWritesLagBound(t *testing.T) {
	_, dsn := postgres(t)
	ctx := context.Background()
	src := openPG(t, PGOptions{DSN: dsn, Slot: "shadowtap_lag", Publication: "shadowtap_pub", MaxLag: 64 << 10})
	db := dial(t, dsn)
	if _, err := db.Exec(ctx, "INSERT INTO orders (total, note) SELECT i, repeat('x', 200) FROM generate_series(1, 5000) i"); err != nil {
		t.Fatal(err)
	}
	for range src.Txns() {
	}
	if src.Err() != ErrLag {
		t.Errorf("end: %v, want ErrLag", src.Err())
	}
	var slots int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		db.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&slots)
		if slots == 0 || time.Now().After(deadline) {
			break
		}
	}
	if slots != 0 {
		t.Errorf("%d slots left after the lag bound", slots)
	}
}

// A table with REPLICA IDENTITY FULL (every column flagged as its
// identity) still has its rows known by the primary key, so an update
// says what it changed, after and before, and not the whole row twice.
func TestPostgresWritesReplicaIdentityFull(t *testing.T) {
	pg, dsn := postgres(t)
	pg.SQL(t, "shop", "ALTER TABLE orders REPLICA IDENTITY FULL")
	src := openPG(t, PGOptions{DSN: dsn, Slot: "shadowtap_full", Publication: "shadowtap_pub"})
	db := dial(t, dsn)
	commit(t, db, "INSERT INTO orders (total, note) VALUES (14.5, 'new')")
	commit(t, db, "UPDATE orders SET note = 'paid' WHERE id = 1")
	ins, upd := next(t, src).Changes, next(t, src).Changes
	if len(ins) != 1 || len(upd) != 1 || strings.Join(upd[0].Key, ",") != "id" {
		t.Fatalf("insert %v, update %v: want one each, keyed by id", ins, upd)
	}
	var r rows
	r.written(&ins[0])
	r.written(&upd[0])
	if doc := string(Document(upd)); doc != `{"update":{"public":{"orders":[{"id":1,"note":"paid"}]}},"before":{"public":{"orders":[{"id":1,"note":"new"}]}}}` {
		t.Errorf("update: %s", doc)
	}
}
