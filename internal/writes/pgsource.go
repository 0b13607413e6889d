// Package writes reads what a test target writes to its database, to
// compare what each version of the service writes for the same replayed
// request (not only what it answers).
//
// PGSource reads a PostgreSQL database's logical replication stream
// (pgoutput) with github.com/jackc/pglogrepl on pgx's connection, and
// hands over each committed transaction: its rows (table, operation, old
// and new column values as text) and the marks the service left in it
// (pg_logical_emit_message with the prefix "shadowtap": the request's
// marker, for attribution).
//
// Safety: the slot is shadowtap's, named, and temporary: PostgreSQL drops
// it when the connection ends, on Close or on a crash, so no slot is left
// to hold WAL. The stream's lag is bounded: past MaxLag bytes of WAL not
// yet handed over, the source stops, its slot goes with its connection,
// and Err says so; the test database's disk never fills because of it.
package writes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// A Change is one row a transaction wrote.
type Change struct {
	Table string // schema.table
	Op    string // insert, update, delete
	// Old and New are the row's columns before and after, as text (nil:
	// NULL). Old holds the key columns (all with REPLICA IDENTITY FULL)
	// of an update or a delete, when PostgreSQL sends them.
	Old, New map[string]*string
	// Types are the columns' type OIDs (pg_type), so that numbers and
	// booleans are compared as such.
	Types map[string]uint32
	// Key names the columns that identify the row (its replica identity:
	// the primary key by default).
	Key []string
}

// A Txn is one committed transaction.
type Txn struct {
	Xid     uint32
	Commit  time.Time
	LSN     pglogrepl.LSN
	Marks   []string // contents of the "shadowtap" messages it emitted
	Changes []Change
	// Sync, when set, makes this no transaction but a barrier: the
	// content of a "shadowtap-sync" message (a transaction of its own, or
	// a non-transactional message), which the stream delivers after every
	// transaction committed before it.
	Sync string
	// Lost, when set, makes this no transaction but the mark of one the
	// source could not read whole: every set it may belong to is
	// incomplete.
	Lost bool
}

// MarkPrefix is the prefix of the logical messages a service emits to
// name the request a transaction serves:
// SELECT pg_logical_emit_message(true, 'shadowtap', '<marker>').
const MarkPrefix = "shadowtap"

// SyncPrefix is the prefix of the barriers the watcher emits.
const SyncPrefix = "shadowtap-sync"

// PGOptions configure a source.
type PGOptions struct {
	DSN         string // libpq's; a role with REPLICATION (credentials from the environment or a file, never the command line)
	Slot        string // the slot's name: shadowtap_<target>
	Publication string // a publication of the tables compared (CREATE PUBLICATION ... FOR ALL TABLES)
	// MaxLag bounds the WAL (bytes) read but not yet handed over; past it
	// the source stops. 0: 64 MiB.
	MaxLag int64
	// MaxTxns bounds the transactions waiting to be handed over. 0: 10000.
	MaxTxns int
}

// ErrLag is the source's end when the stream lagged past its bounds: a
// transaction of more than MaxLag bytes of WAL, or MaxTxns waiting.
var ErrLag = errors.New("writes: the replication stream lagged past its bound: stopped, and its slot dropped")

// PGSource streams one database's committed transactions.
type PGSource struct {
	o      PGOptions
	conn   *pgconn.PgConn
	cancel context.CancelFunc
	done   chan struct{}
	out    chan Txn

	mu  sync.Mutex
	err error
}

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// OpenPG creates the slot and starts streaming; Txns delivers the
// transactions committed from then on.
func OpenPG(ctx context.Context, o PGOptions) (*PGSource, error) {
	if !slotName.MatchString(o.Slot) || !slotName.MatchString(o.Publication) {
		return nil, fmt.Errorf("writes: slot %q and publication %q must be lower-case names", o.Slot, o.Publication)
	}
	if o.MaxLag <= 0 {
		o.MaxLag = 64 << 20
	}
	if o.MaxTxns <= 0 {
		o.MaxTxns = 10000
	}
	conn, err := pgconn.Connect(ctx, o.DSN+" replication=database")
	if err != nil {
		return nil, fmt.Errorf("writes: %w", err)
	}
	if _, err := pglogrepl.CreateReplicationSlot(ctx, conn, o.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, Mode: pglogrepl.LogicalReplication}); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("writes: slot %s: %w", o.Slot, err)
	}
	args := []string{"proto_version '1'", "publication_names '" + o.Publication + "'", "messages 'true'"}
	if err := pglogrepl.StartReplication(ctx, conn, o.Slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("writes: start replication: %w", err)
	}
	s := &PGSource{o: o, conn: conn, done: make(chan struct{}), out: make(chan Txn, o.MaxTxns)}
	var rctx context.Context
	rctx, s.cancel = context.WithCancel(context.Background())
	go s.run(rctx)
	return s, nil
}

// Txns delivers the committed transactions; it is closed when the source
// ends (Close, a failure, the lag bound: see Err).
func (s *PGSource) Txns() <-chan Txn { return s.out }

// Err is why the source ended, once Txns is closed (nil after Close).
func (s *PGSource) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the stream; its temporary slot goes with the connection.
func (s *PGSource) Close() {
	s.cancel()
	<-s.done
}

// standbyEvery is how often the server is told how far the stream was
// handed over (and the server's own end is learned, for the lag).
const standbyEvery = 2 * time.Second

func (s *PGSource) run(ctx context.Context) {
	defer close(s.done)
	defer close(s.out)
	defer s.conn.Close(context.Background())
	fail := func(err error) {
		s.mu.Lock()
		if ctx.Err() == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	relations := map[uint32]*relation{}
	var txn *Txn
	var handed, txnStart pglogrepl.LSN
	next := time.Now().Add(standbyEvery)
	for {
		if time.Now().After(next) {
			if err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: handed}); err != nil {
				fail(fmt.Errorf("writes: status update: %w", err))
				return
			}
			next = time.Now().Add(standbyEvery)
		}
		rctx, cancel := context.WithDeadline(ctx, next)
		raw, err := s.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if pgconn.Timeout(err) {
				continue
			}
			fail(fmt.Errorf("writes: %w", err))
			return
		}
		if e, ok := raw.(*pgproto3.ErrorResponse); ok {
			fail(fmt.Errorf("writes: server: %s", e.Message))
			return
		}
		cd, ok := raw.(*pgproto3.CopyData)
		if !ok || len(cd.Data) == 0 {
			continue
		}
		switch cd.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:])
			if err != nil {
				continue
			}
			if txn == nil {
				// Everything before the server's end is read: the slot may
				// let go of it (WAL of other databases included).
				handed = max(handed, ka.ServerWALEnd)
			}
			if ka.ReplyRequested {
				next = time.Time{}
			}
		case pglogrepl.XLogDataByteID:
			x, err := pglogrepl.ParseXLogData(cd.Data[1:])
			if err != nil {
				fail(fmt.Errorf("writes: %w", err))
				return
			}
			if txn != nil && int64(x.WALStart-txnStart) > s.o.MaxLag {
				fail(ErrLag) // one transaction larger than the bound: not held in memory
				return
			}
			m, err := pglogrepl.Parse(x.WALData)
			if err != nil {
				continue // a message this decoder does not know: not a row
			}
			switch m := m.(type) {
			case *pglogrepl.RelationMessage:
				relations[m.RelationID] = s.relation(ctx, m)
			case *pglogrepl.BeginMessage:
				txn, txnStart = &Txn{Xid: m.Xid}, x.WALStart
			case *pglogrepl.LogicalDecodingMessage:
				switch {
				case txn != nil && m.Prefix == MarkPrefix:
					txn.Marks = append(txn.Marks, string(m.Content))
				case txn != nil && m.Prefix == SyncPrefix:
					txn.Sync = string(m.Content) // a barrier written as a transaction of its own
				case txn == nil && !m.Transactional && m.Prefix == SyncPrefix:
					select {
					case s.out <- Txn{Sync: string(m.Content), LSN: m.LSN}:
						handed = max(handed, m.LSN)
					default:
						fail(ErrLag)
						return
					}
				}
			case *pglogrepl.InsertMessage:
				if txn != nil {
					txn.Changes = append(txn.Changes, change(relations[m.RelationID], "insert", 0, nil, m.Tuple))
				}
			case *pglogrepl.UpdateMessage:
				if txn != nil {
					txn.Changes = append(txn.Changes, change(relations[m.RelationID], "update", m.OldTupleType, m.OldTuple, m.NewTuple))
				}
			case *pglogrepl.DeleteMessage:
				if txn != nil {
					txn.Changes = append(txn.Changes, change(relations[m.RelationID], "delete", m.OldTupleType, m.OldTuple, nil))
				}
			case *pglogrepl.CommitMessage:
				if txn == nil {
					continue
				}
				txn.Commit, txn.LSN = m.CommitTime, m.TransactionEndLSN
				if txn.Sync != "" {
					txn.Changes, txn.Marks = nil, nil
				}
				select {
				case s.out <- *txn:
					handed = m.TransactionEndLSN
				default:
					fail(ErrLag) // the reader does not keep up: stop rather than hold WAL
					return
				}
				txn = nil
			}
		}
	}
}

// A relation is a table as pgoutput announced it, with the columns that
// identify its rows.
type relation struct {
	*pglogrepl.RelationMessage
	key []string
}

// relation reads m's key: its replica identity's columns, or, where that
// is the whole row (REPLICA IDENTITY FULL flags every column), its primary
// key, asked of the database once per announcement, so that a row is
// still known by its id when its other columns change.
func (s *PGSource) relation(ctx context.Context, m *pglogrepl.RelationMessage) *relation {
	rel := &relation{RelationMessage: m}
	for _, col := range m.Columns {
		if col.Flags&1 != 0 {
			rel.key = append(rel.key, col.Name)
		}
	}
	if m.ReplicaIdentity != 'f' {
		return rel
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(qctx, s.o.DSN)
	if err != nil {
		return rel // the whole row stays its key
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(qctx, `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1 AND i.indisprimary ORDER BY a.attnum`, [][]byte{[]byte(strconv.FormatUint(uint64(m.RelationID), 10))}, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) == 0 {
		return rel
	}
	rel.key = rel.key[:0]
	for _, row := range res.Rows {
		rel.key = append(rel.key, string(row[0]))
	}
	return rel
}

// change is one row of relation rel (nil: not announced, which pgoutput
// always does first); oldType 'K' says old holds the key columns alone.
func change(rel *relation, op string, oldType uint8, old, new *pglogrepl.TupleData) Change {
	c := Change{Op: op}
	if rel == nil {
		c.Table = "?"
		return c
	}
	c.Table = rel.Namespace + "." + rel.RelationName
	c.Old, c.New = columns(rel.RelationMessage, old, oldType == 'K'), columns(rel.RelationMessage, new, false)
	c.Types = make(map[string]uint32, len(rel.Columns))
	for _, col := range rel.Columns {
		c.Types[col.Name] = col.DataType
	}
	c.Key = rel.key
	return c
}

func columns(rel *pglogrepl.RelationMessage, t *pglogrepl.TupleData, keyOnly bool) map[string]*string {
	if t == nil {
		return nil
	}
	out := make(map[string]*string, len(t.Columns))
	for i, col := range t.Columns {
		if i >= len(rel.Columns) {
			break
		}
		name := rel.Columns[i].Name
		if keyOnly && rel.Columns[i].Flags&1 == 0 {
			continue // a key tuple's other columns are placeholders
		}
		switch col.DataType {
		case 'n':
			out[name] = nil
		case 't':
			v := string(col.Data)
			out[name] = &v
		case 'u': // an unchanged TOASTed value: not sent, not compared
		}
	}
	return out
}

// String is a change, short: insert public.orders {id=1 total=14.50}.
func (c Change) String() string {
	var b strings.Builder
	b.WriteString(c.Op + " " + c.Table)
	for _, m := range []map[string]*string{c.Old, c.New} {
		if m == nil {
			continue
		}
		b.WriteString(" {")
		first := true
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !first {
				b.WriteByte(' ')
			}
			first = false
			if v := m[k]; v != nil {
				b.WriteString(k + "=" + *v)
			} else {
				b.WriteString(k + "=NULL")
			}
		}
		b.WriteByte('}')
	}
	return b.String()
}
