package writes

import (
	"context"
	"testing"
)

// BenchmarkPostgresWritesPerRequest measures what comparing writes adds
// to one unsafe request on a real PostgreSQL (loopback): its two barriers
// and the wait until its end barrier came through the stream, after which
// its set is delivered. Safe requests pay Begin and End with no barrier
// but the end one. go test -run X -bench PostgresWrites ./internal/writes
func BenchmarkPostgresWritesPerRequest(b *testing.B) {
	for _, alone := range []bool{true, false} {
		name := "unsafe"
		if !alone {
			name = "safe"
		}
		b.Run(name, func(b *testing.B) { benchWrites(b, alone) })
	}
}

func benchWrites(b *testing.B, alone bool) {
	_, dsn := postgres(b)
	ctx := context.Background()
	sets := make(chan Set, 1)
	w, err := WatchPG(ctx, PGOptions{DSN: dsn, Slot: "shadowtap_bench", Publication: "shadowtap_pub"},
		WatchOptions{Target: "copy", Deliver: func(s Set) { sets <- s }})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	method := "POST"
	if !alone {
		method = "GET"
	}
	req := request(b, method+" /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	b.ResetTimer()
	for b.Loop() {
		m := w.Begin(ctx, req, alone)
		w.End(ctx, m, true)
		if s := <-sets; !s.Complete {
			b.Fatal("incomplete set")
		}
	}
}
