package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// mirror sends synthesized VXLAN to a handler, paced so loopback never
// overflows the handler's socket buffer.
type mirror struct {
	t    *testing.T
	h    *Handler
	out  *net.UDPConn
	sent uint64
}

func newMirror(t *testing.T, h *Handler) *mirror {
	out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(h.ListenAddr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return &mirror{t: t, h: h, out: out}
}

func (m *mirror) send(vni uint32, segs []synth.Segment) {
	for _, s := range segs {
		for i := 0; m.sent > m.h.Capture.Datagrams.Load()+64 && i < 4000; i++ {
			time.Sleep(50 * time.Microsecond)
		}
		m.out.Write(synth.AppendVXLAN(nil, vni, synth.AppendFrame(nil, s)))
		m.sent++
	}
}

func start(t *testing.T, cfg config.Config) (*Handler, func()) {
	t.Helper()
	cfg.Listen, cfg.HealthListen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ReadBuffer = 4 << 20
	h, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx) }()
	return h, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func client(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint16(1000+i))
}

var server = netip.MustParseAddrPort("10.0.0.2:80")

// TestHandlerEndToEnd sends synthesized VXLAN to a running handler and
// checks the replay, the health port, /healthz, /metrics and a graceful
// stop that drains queued replays.
func TestHandlerEndToEnd(t *testing.T) {
	test, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer test.Close()
	test.Delay = 20 * time.Millisecond // replays still queued when the stop comes
	cfg := config.Default()
	cfg.Destination = "http://" + test.Addr()
	cfg.Defaults.Workers = 2
	cfg.VNIs = []uint32{77}
	h, stop := start(t, cfg)
	m := newMirror(t, h)
	const conns = 10
	for i := range conns {
		c := synth.NewConn(client(i), server, 1, 1)
		m.send(77, c.Handshake())
		m.send(77, c.ClientData([]byte("GET /x HTTP/1.1\r\nHost: prod\r\n\r\n")))
		m.send(78, c.ClientData([]byte("GET /other-vni HTTP/1.1\r\nHost: prod\r\n\r\n"))) // filtered out
	}
	m.out.Write([]byte{1, 2, 3}) // garbage is counted, not fatal

	waitFor(t, func() bool { return h.Engine.HTTP.Requests.Load() == conns })
	if h.Engine.VNIFiltered.Load() != conns || h.Engine.Decode[1].Load() != 1 {
		t.Errorf("vni filtered %d, short vxlan %d", h.Engine.VNIFiltered.Load(), h.Engine.Decode[1].Load())
	}
	hc, err := net.Dial("tcp", h.HealthAddr())
	if err != nil {
		t.Fatalf("health port: %v", err)
	}
	hc.Close()
	if body := get(t, "http://"+h.AdminAddr()+"/healthz"); body != "ok\n" {
		t.Errorf("/healthz = %q", body)
	}
	metrics := get(t, "http://"+h.AdminAddr()+"/metrics")
	for _, want := range []string{"shadowtap_requests_captured_total 10", "shadowtap_packets_vni_filtered_total 10",
		`shadowtap_packets_dropped_total{reason="short_vxlan"} 1`, `shadowtap_requests_submitted_total{target="default"} 10`,
		"shadowtap_socket_kernel_drops_total 0", `shadowtap_flows_evicted_total{reason="no_data"} 0`,
		`shadowtap_flows_evicted_total{reason="lru"} 0`, `shadowtap_flows_ended_total{reason="evicted"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	stop() // 2 workers, 20ms each: the stop drains the queue
	rs := &h.Targets()[0].Stats.Replay
	if got := len(test.Requests()); got != conns || rs.Replayed.Load() != conns {
		t.Errorf("test server got %d, replayed %d, want %d", got, rs.Replayed.Load(), conns)
	}
}

// TestTwoTargetsOneBlackholed: a target that accepts connections and never
// answers must not hold up the other, which receives everything, exactly;
// the blackholed one's queue stays within its bound.
func TestTwoTargetsOneBlackholed(t *testing.T) {
	good, _ := rawserver.Listen("127.0.0.1:0")
	defer good.Close()
	hole, _ := rawserver.Listen("127.0.0.1:0")
	defer hole.Close()
	hole.Hold = true
	cfg := config.Default()
	cfg.DrainTimeout = 500 * time.Millisecond
	cfg.Targets = []config.Target{
		{Name: "good", Destination: "http://" + good.Addr()},
		{Name: "hole", Destination: "http://" + hole.Addr(), Workers: 4, Queue: 100, ResponseTimeout: 30 * time.Second},
	}
	h, stop := start(t, cfg)
	m := newMirror(t, h)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const conns, perConn = 50, 20
	maxQueued := int64(0)
	for i := range conns {
		c := synth.NewConn(client(i), server, uint32(i)*1000, 1)
		m.send(7, c.Handshake())
		for j := range perConn {
			m.send(7, c.ClientData(fmt.Appendf(nil, "GET /c%d/r%d HTTP/1.1\r\nHost: prod\r\n\r\n", i, j)))
		}
		m.send(7, c.Close())
		maxQueued = max(maxQueued, h.Targets()[1].Stats.Replay.Queued.Load())
	}
	goodStats := &h.Targets()[0].Stats.Replay
	waitFor(t, func() bool { return goodStats.Replayed.Load() == conns*perConn })
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	holeStats := &h.Targets()[1].Stats.Replay
	if maxQueued > 100 || holeStats.QueueDrops.Load() == 0 || holeStats.ConnsRefused.Load() == 0 {
		t.Errorf("hole: max queued %d, drops %d, connections refused %d", maxQueued, holeStats.QueueDrops.Load(), holeStats.ConnsRefused.Load())
	}
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 64<<20 {
		t.Errorf("heap grew by %d MiB", grown>>20)
	}
	began := time.Now()
	stop()
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("stop took %v with a blackholed target", d)
	}
	if got := len(good.Requests()); got != conns*perConn {
		t.Errorf("good target received %d, want %d", got, conns*perConn)
	}
}

// TestReload changes a target's filter and adds a target in the middle of
// a connection: the connection is not dropped, its order is kept, and a
// bad configuration is refused.
func TestReload(t *testing.T) {
	a, _ := rawserver.Listen("127.0.0.1:0")
	defer a.Close()
	b, _ := rawserver.Listen("127.0.0.1:0")
	defer b.Close()
	cfg := config.Default()
	cfg.Targets = []config.Target{{Name: "a", Destination: "http://" + a.Addr(), Filters: config.Filters{Path: "^/keep"}}}
	h, stop := start(t, cfg)
	defer stop()
	m := newMirror(t, h)
	c := synth.NewConn(client(1), server, 1, 1)
	m.send(7, c.Handshake())
	m.send(7, c.ClientData([]byte("GET /keep/1 HTTP/1.1\r\nHost: p\r\n\r\nGET /drop/2 HTTP/1.1\r\nHost: p\r\n\r\n")))
	waitFor(t, func() bool { return h.Engine.HTTP.Requests.Load() == 2 })

	bad := cfg
	bad.Targets = []config.Target{{Name: "a", Destination: "ftp://nope"}}
	if err := h.Reload(bad); err == nil || !strings.Contains(err.Error(), "reload refused") {
		t.Errorf("bad reload: %v", err)
	}
	next := cfg
	next.Targets = []config.Target{{Name: "a", Destination: "http://" + a.Addr()}, {Name: "b", Destination: "http://" + b.Addr()}}
	if err := h.Reload(next); err != nil {
		t.Fatal(err)
	}
	m.send(7, c.ClientData([]byte("GET /drop/3 HTTP/1.1\r\nHost: p\r\n\r\nGET /keep/4 HTTP/1.1\r\nHost: p\r\n\r\n")))
	waitFor(t, func() bool { return len(a.Requests()) == 3 && len(b.Requests()) == 2 })
	var paths []string
	for _, r := range a.Requests() {
		paths = append(paths, strings.Fields(string(r.Raw))[1])
	}
	if strings.Join(paths, " ") != "/keep/1 /drop/3 /keep/4" {
		t.Errorf("target a got %v", paths)
	}
	if h.Engine.Reassembly.FlowsOpen.Load() != 1 || len(h.Targets()) != 2 {
		t.Errorf("flows %d targets %d", h.Engine.Reassembly.FlowsOpen.Load(), len(h.Targets()))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func get(t *testing.T, url string) string {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestGeneveListener: a Gateway Load Balancer appliance deployment, Geneve
// on its own port, with AWS-style options and IPv4 inside.
func TestGeneveListener(t *testing.T) {
	test, _ := rawserver.Listen("127.0.0.1:0")
	defer test.Close()
	cfg := config.Default()
	cfg.Destination = "http://" + test.Addr()
	cfg.GeneveListen = "127.0.0.1:0"
	h, stop := start(t, cfg)
	defer stop()
	out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(h.GeneveAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	opts := make([]byte, 16)
	c := synth.NewConn(client(3), server, 1, 1)
	segs := append(c.Handshake(), c.ClientData([]byte("GET /gwlb HTTP/1.1\r\nHost: p\r\n\r\n"))...)
	for _, s := range segs {
		out.Write(synth.AppendGeneve(nil, 99, 0x0800, opts, synth.AppendFrame(nil, s)[14:]))
	}
	waitFor(t, func() bool { return len(test.Requests()) == 1 })
	if !strings.HasPrefix(string(test.Requests()[0].Raw), "GET /gwlb HTTP/1.1\r\n") {
		t.Errorf("got %q", test.Requests()[0].Raw)
	}
}

// With the VXLAN traffic spread over several engines, each with its own
// kernel-steered socket, every request is replayed once, each
// connection's in order, and the two directions of a connection meet in
// one engine although the mirror sends them from different UDP ports.
func TestHandlerShards(t *testing.T) {
	test, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer test.Close()
	cfg := config.Default()
	cfg.Destination = "http://" + test.Addr()
	cfg.Shards = 3
	h, stop := start(t, cfg)
	if h.vxlan.group == nil || h.vxlan.shardCount() != 3 {
		t.Logf("not steered by the kernel: %d shards fed by one reader", h.vxlan.shardCount())
	}
	fromClient, fromServer := newMirror(t, h), newMirror(t, h)
	send := func(segs []synth.Segment) {
		for _, s := range segs {
			if s.Src == server {
				fromServer.send(0, []synth.Segment{s})
			} else {
				fromClient.send(0, []synth.Segment{s})
			}
		}
	}
	const conns, reqs = 30, 4
	for i := range conns {
		c := synth.NewConn(client(i), server, 1, 1)
		send(c.Handshake())
		for r := range reqs {
			send(c.ClientData(fmt.Appendf(nil, "GET /c%d/r%d HTTP/1.1\r\nHost: prod\r\n\r\n", i, r)))
			send(c.ServerData([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")))
		}
	}
	waitFor(t, func() bool { return h.Engine.HTTP.Requests.Load() == conns*reqs })
	// Each shard's socket shows what it received: 30 connections over
	// three sockets leave none empty.
	sockets := 0
	for _, line := range strings.Split(get(t, "http://"+h.AdminAddr()+"/metrics"), "\n") {
		var socket, n int
		if _, err := fmt.Sscanf(line, "shadowtap_socket_datagrams_total{socket=\"%d\"} %d", &socket, &n); err == nil {
			sockets++
			if n == 0 {
				t.Errorf("socket %d received nothing", socket)
			}
		}
	}
	if sockets != 3 {
		t.Errorf("%d sockets in the metrics, want 3", sockets)
	}
	stop()
	next := map[string]int{}
	for _, rq := range test.Requests() {
		var c, r int
		fmt.Sscanf(string(rq.Raw), "GET /c%d/r%d", &c, &r)
		key := fmt.Sprint(c)
		if r != next[key] {
			t.Fatalf("connection %d: request %d came after %d", c, r, next[key]-1)
		}
		next[key]++
	}
	if got := len(test.Requests()); got != conns*reqs {
		t.Errorf("test server got %d, want %d", got, conns*reqs)
	}
	// A connection split over two engines would be two flows.
	if got := h.Engine.Reassembly.FlowsOpened.Load(); got != conns {
		t.Errorf("%d flows opened for %d connections: directions split over shards", got, conns)
	}
}

// Correlation turned on by a reload, in a handler started without it and
// without comparing against production, learns nothing until a restart:
// production's answers are not read. The reload says so.
func TestReloadNamesCorrelationNeedingARestart(t *testing.T) {
	off := config.Default()
	off.Defaults.Correlate.Off = true
	on := config.Default()
	if got := needsRestart(Derive(off, Live), off, on); !slices.Contains(got, "correlate") {
		t.Errorf("turning correlation on: %q", got)
	}
	if got := needsRestart(Derive(on, Live), on, off); len(got) != 0 {
		t.Errorf("turning it off needs no restart: %q", got)
	}
	if got := needsRestart(Derive(on, Live), off, on); len(got) != 0 {
		t.Errorf("started with it on: %q", got)
	}
}

// compare.writes added by a reload is named as needing a restart and left
// out, not half applied (a database read whose sets the comparison, as
// started, never compares): the reload succeeds, no database is reached.
func TestReloadLeavesWritesToARestart(t *testing.T) {
	a, _ := rawserver.Listen("127.0.0.1:0")
	defer a.Close()
	b, _ := rawserver.Listen("127.0.0.1:0")
	defer b.Close()
	cfg := config.Default()
	cfg.Targets = []config.Target{{Name: "new", Destination: "http://" + a.Addr()}, {Name: "old", Destination: "http://" + b.Addr()}}
	cfg.Compare.Candidate, cfg.Compare.Baseline = "new", "old"
	h, stop := start(t, cfg)
	defer stop()
	t.Setenv("SHADOWTAP_TEST_UNREACHABLE_DSN", "host=127.0.0.1 port=1 dbname=none connect_timeout=1")
	next := cfg
	pg := func() config.Writes {
		return config.Writes{Postgres: &config.PostgresWrites{DSNEnv: "SHADOWTAP_TEST_UNREACHABLE_DSN"}}
	}
	next.Compare.Writes = map[string]config.Writes{"new": pg(), "old": pg()}
	if got := needsRestart(h.stages, h.cfg, next); !slices.Contains(got, "compare.writes") {
		t.Errorf("needs a restart: %q", got)
	}
	if err := h.Reload(next); err != nil {
		t.Fatalf("reload adding compare.writes: %v", err)
	}
	for _, tg := range h.Targets() {
		if tg.Writes != nil {
			t.Errorf("target %s reads its database after a reload", tg.Name)
		}
	}
}

// TestReloadIsTruthful: a reload puts the live settings in force
// (drain_timeout here; the targets in TestReload), and names every other
// setting it changed (those the issue found ignored: geneve_listen,
// extra_methods, any compare.*) as waiting for a restart, in /metrics;
// reverting them clears it.
func TestReloadIsTruthful(t *testing.T) {
	a, _ := rawserver.Listen("127.0.0.1:0")
	defer a.Close()
	cfg := config.Default()
	cfg.Destination = "http://" + a.Addr()
	h, stop := start(t, cfg)
	defer stop()
	started := h.cfg
	next := started
	next.DrainTimeout = started.DrainTimeout + 7*time.Second
	next.GeneveListen = "127.0.0.1:0"
	next.ExtraMethods = []string{"PURGE"}
	next.Compare.MinSamples = started.Compare.MinSamples + 1
	next.Compare.Candidate = "default"
	if err := h.Reload(next); err != nil {
		t.Fatal(err)
	}
	if h.cfg.DrainTimeout != next.DrainTimeout {
		t.Errorf("drain_timeout not applied: %v", h.cfg.DrainTimeout)
	}
	want := []string{"compare.candidate", "compare.min_samples", "extra_methods", "geneve_listen"}
	got := slices.Sorted(slices.Values(h.RestartPending()))
	if !slices.Equal(got, want) {
		t.Errorf("waiting for a restart: %q, want %q", got, want)
	}
	if h.compare != nil {
		t.Error("a comparison started by a reload")
	}
	resp, err := http.Get("http://" + h.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range want {
		if line := `shadowtap_config_restart_pending{setting="` + s + `"} 1`; !strings.Contains(string(body), line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	back := next
	back.GeneveListen, back.ExtraMethods, back.Compare = started.GeneveListen, started.ExtraMethods, started.Compare
	if err := h.Reload(back); err != nil {
		t.Fatal(err)
	}
	if p := h.RestartPending(); len(p) != 0 {
		t.Errorf("reverted, still waiting: %q", p)
	}
}
