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
	pc, err := pgxpool.ParseConfig(po.DSN)
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
	src, err := OpenPG(ctx, po)
	if err != nil {
		pool.Close()
		return nil, err
	}
	wo.Source = &pooledSource{src, pool}
	wo.Sync = func(ctx context.Context, token string) error {
		_, err := pool.Exec(ctx, syncSQL, token)
		return err
	}
	return Watch(wo), nil
}

// pooledSource closes the barriers' pool with the stream.
type pooledSource struct {
	*PGSource
	pool *pgxpool.Pool
}

func (s *pooledSource) Close() {
	s.PGSource.Close()
	s.pool.Close()
}
