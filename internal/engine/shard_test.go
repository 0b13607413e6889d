package engine

import (
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/capture"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/reassembly"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// lockedSink keeps each connection's requests, from any goroutine.
type lockedSink struct {
	mu    sync.Mutex
	conns map[uint64][]string
	n     atomic.Int64
}

func (s *lockedSink) Submit(conn uint64, r *httpstream.Request) {
	s.mu.Lock()
	s.conns[conn] = append(s.conns[conn], string(r.Raw))
	s.mu.Unlock()
	s.n.Add(1)
}
func (s *lockedSink) EndConn(uint64) {}

// byConnection lists each connection's requests joined, sorted: the same
// for two runs that extracted the same requests in the same order per
// connection, whatever the connection ids.
func (s *lockedSink) byConnection() []string {
	var out []string
	for _, rs := range s.conns {
		out = append(out, strings.Join(rs, "|"))
	}
	slices.Sort(out)
	return out
}

func shardConfig() Config {
	return Config{Ports: []uint16{80}, Reassembly: reassembly.DefaultOptions, HTTP: httpstream.DefaultOptions}
}

// Both directions of a connection land on the same shard (the hash does
// not depend on which side sent the packet), and connections spread over
// the shards.
func TestShardHashIsSymmetric(t *testing.T) {
	var st Stats
	s := NewShards(4, shardConfig(), &lockedSink{conns: map[uint64][]string{}}, &st, ratelog.New(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second))
	defer s.Flush()
	outer := netip.MustParseAddr("172.31.0.238")
	server := netip.MustParseAddrPort("10.0.0.2:80")
	used := map[int]bool{}
	for i := range 200 {
		cl := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(30000+i))
		c := synth.NewConn(cl, server, 1, 1)
		hs := c.Handshake()
		up := s.shardOf(outer, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, hs[0])))
		down := s.shardOf(outer, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, hs[1])))
		if up != down {
			t.Fatalf("connection %d: client to server on shard %d, server to client on %d", i, up, down)
		}
		used[up] = true
	}
	if len(used) != 4 {
		t.Errorf("200 connections used %d of 4 shards", len(used))
	}
}

// Sharded extraction finds exactly what one engine finds: every request,
// each connection's in order.
func TestShardsExtractLikeOneEngine(t *testing.T) {
	trace := keepAliveTrace(64, 20)
	outer := netip.MustParseAddr("172.31.0.238")
	run := func(n int) *lockedSink {
		sink := &lockedSink{conns: map[uint64][]string{}}
		var st Stats
		s := NewShards(n, shardConfig(), sink, &st, ratelog.New(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second))
		for i, d := range trace {
			s.HandleVXLAN(outer, d, int64(i+1)*1000)
			if i%7 == 0 {
				s.EndBatch() // socket reads of varying sizes
			}
		}
		s.Tick(int64(len(trace)+1) * 1000)
		s.Flush()
		s.Flush() // harmless
		if got := st.HTTP.Requests.Load(); got != 64*20 {
			t.Errorf("%d shards: %d requests counted, want %d", n, got, 64*20)
		}
		return sink
	}
	one, four := run(1), run(4)
	if one.n.Load() != 64*20 {
		t.Fatalf("one engine extracted %d", one.n.Load())
	}
	if a, b := one.byConnection(), four.byConnection(); !slices.Equal(a, b) {
		t.Errorf("four shards extracted differently: %d connections against %d", len(b), len(a))
	}
}

// BenchmarkShards measures the capture path spread over GOMAXPROCS shards
// (compare -cpu 1,2): the reader's hash and copy, and the shards' work.
func BenchmarkShards(b *testing.B) {
	trace := keepAliveTrace(64, 100)
	outer := netip.MustParseAddr("172.31.0.238")
	sink := &countSink{}
	var st Stats
	n := max(1, testingProcs())
	s := NewShards(n, shardConfig(), sink, &st, ratelog.New(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second))
	b.ReportAllocs()
	b.ResetTimer()
	ts := int64(1)
	for i := range b.N {
		ts += 1000
		s.HandleVXLAN(outer, trace[i%len(trace)], ts)
		if i%32 == 31 {
			s.EndBatch() // a recvmmsg batch
		}
	}
	s.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(n), "shards")
	if b.N > len(trace) && sink.n.Load() == 0 {
		b.Fatal("no requests extracted")
	}
}

// BenchmarkSteeredShards measures decode, reassembly and extraction on
// GOMAXPROCS engines, each fed by its own goroutine the datagrams the
// kernel steers to its socket (capture.ListenGroup), as the handler runs
// with -shards N (compare -cpu 1,2). Each engine takes an equal share of
// b.N from its connections, as with many connections the hash balances.
func BenchmarkSteeredShards(b *testing.B) {
	n := max(1, testingProcs())
	steer, err := capture.Steerer(n)
	if err != nil {
		b.Fatal(err)
	}
	trace := keepAliveTrace(256, 25)
	parts := make([][][]byte, n)
	for _, d := range trace {
		i := steer(d)
		parts[i] = append(parts[i], d)
	}
	outer := netip.MustParseAddr("172.31.0.238")
	// A sink per engine: what is measured is the engines, not a counter
	// they would share.
	sinks := make([]countSink, n)
	var st Stats
	engines := make([]*Engine, n)
	for i, e := range ShardEngines(n, shardConfig(), nil, &st, ratelog.New(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second)) {
		engines[i] = New(e.cfg, &sinks[i], &st, e.log)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, e := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part, ts := parts[i], int64(1)
			for j := range b.N / n {
				ts += 1000
				e.HandleVXLAN(outer, part[j%len(part)], ts)
				if j%32 == 31 {
					e.EndBatch() // a recvmmsg batch
				}
			}
			e.Flush()
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(n), "shards")
	for i := range sinks {
		if b.N > len(trace) && sinks[i].n.Load() == 0 {
			b.Fatalf("shard %d extracted no request", i)
		}
	}
}

type countSink struct{ n atomic.Int64 }

func (s *countSink) Submit(uint64, *httpstream.Request) { s.n.Add(1) }
func (s *countSink) EndConn(uint64)                     {}

func testingProcs() int { return runtime.GOMAXPROCS(0) }

// The out-of-order bytes are counted once for all shards (their counter
// is shared), so each shard's cap is the handler's whole cap: dividing it
// by the shard count made the documented 256 MiB a quarter of that on 4
// shards, and forced gaps the cap should have held.
func TestShardsShareTheWholeBufferCap(t *testing.T) {
	cfg := Config{}
	cfg.Reassembly.MaxBufferedTotal = 256 << 20
	cfg.Reassembly.MaxFlows = 4000
	for _, e := range ShardEngines(4, cfg, nil, &Stats{}, nil) {
		if got := e.cfg.Reassembly.MaxBufferedTotal; got != 256<<20 {
			t.Errorf("a shard's cap on the shared count: %d, want the handler's %d", got, 256<<20)
		}
		if got := e.cfg.Reassembly.MaxFlows; got != 1000 {
			t.Errorf("a shard's flows: %d, want a quarter (each shard counts its own)", got)
		}
	}
}
