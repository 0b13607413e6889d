package writes

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// syncSQL writes a barrier: a non-transactional logical message, decoded
// at once, after every transaction committed before it.
const syncSQL = "SELECT pg_logical_emit_message(false, '" + SyncPrefix + "', $1)"

// WatchPG streams the database of po.DSN and starts a watcher over it,
// its barriers written through a small pool of ordinary connections. The
// role needs REPLICATION and EXECUTE on pg_logical_emit_message; a role
// without the latter is refused here, with the GRANT it lacks.
func WatchPG(ctx context.Context, po PGOptions, wo WatchOptions) (*Watcher, error) {
	return watchWithBarriers(ctx, po.DSN, syncSQL, wo, func() (Source, error) { return OpenPG(ctx, po) })
}

// syncTxSQL writes a barrier as a transaction of its own, for a Debezium
// connector on PostgreSQL: ordered among the other transactions by the
// connector's transaction topic.
const syncTxSQL = "SELECT pg_logical_emit_message(true, '" + SyncPrefix + "', $1)"

// WatchDebezium reads a Debezium connector's topics and starts a watcher
// over them, its barriers written through barrierDSN (a PostgreSQL
// database the connector captures, with its messages: the PostgreSQL
// connector's default).
func WatchDebezium(ctx context.Context, do DebeziumOptions, barrierDSN string, wo WatchOptions) (*Watcher, error) {
	return watchWithBarriers(ctx, barrierDSN, syncTxSQL, wo, func() (Source, error) { return OpenDebezium(do) })
}

// watchWithBarriers opens the pool barriers are written through with
// syncSQL (refusing a role that may not write them), then the source, and
// starts a watcher over both; the pool closes with the source.
func watchWithBarriers(ctx context.Context, dsn, syncSQL string, wo WatchOptions, open func() (Source, error)) (*Watcher, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("writes: %w", err)
	}
	pc.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("writes: %w", err)
	}
	if _, err := pool.Exec(ctx, syncSQL, "check"); err != nil {
		pool.Close()
		return nil, fmt.Errorf("writes: barriers need GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO <role>: %w", err)
	}
	src, err := open()
	if err != nil {
		pool.Close()
		return nil, err
	}
	wo.Source = &closing{src, pool.Close}
	wo.Sync = func(ctx context.Context, token string) error {
		_, err := pool.Exec(ctx, syncSQL, token)
		return err
	}
	return Watch(wo), nil
}

// closing is a source that closes something else with it.
type closing struct {
	Source
	also func()
}

func (s *closing) Close() {
	s.Source.Close()
	s.also()
}
