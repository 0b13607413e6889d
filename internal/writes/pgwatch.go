package writes

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// syncSQL writes a barrier as a transaction of its own, ordered among the
// others by its commit. Not a non-transactional message: that is decoded
// only once the WAL writer flushes it (wal_writer_delay, 200 ms by default,
// on every request; PostgreSQL 17's flush argument is not in 15), where a
// commit flushes at once (synchronous_commit is set local for the
// barriers' sessions). A Debezium connector on PostgreSQL orders it by its
// transaction topic the same way.
const syncSQL = "SELECT pg_logical_emit_message(true, '" + SyncPrefix + "', $1)"

// WatchPG streams the database of po.DSN and starts a watcher over it,
// its barriers written through a small pool of ordinary connections. The
// role needs REPLICATION and EXECUTE on pg_logical_emit_message; a role
// without the latter is refused here, with the GRANT it lacks.
func WatchPG(ctx context.Context, po PGOptions, wo WatchOptions) (*Watcher, error) {
	return watchWithBarriers(ctx, po.DSN, wo, func() (Source, error) { return OpenPG(ctx, po) })
}

// WatchDebezium reads a Debezium connector's topics and starts a watcher
// over them, its barriers written through barrierDSN (a PostgreSQL
// database the connector captures, with its messages: the PostgreSQL
// connector's default).
func WatchDebezium(ctx context.Context, do DebeziumOptions, barrierDSN string, wo WatchOptions) (*Watcher, error) {
	return watchWithBarriers(ctx, barrierDSN, wo, func() (Source, error) { return OpenDebezium(do) })
}

// watchWithBarriers opens the pool barriers are written through
// (refusing a role that may not write them), then the source, and starts
// a watcher over both; the pool closes with the source.
func watchWithBarriers(ctx context.Context, dsn string, wo WatchOptions, open func() (Source, error)) (*Watcher, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("writes: %w", err)
	}
	pc.MaxConns = 4
	pc.ConnConfig.RuntimeParams["synchronous_commit"] = "local" // its commit flushes: decoded at once
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
