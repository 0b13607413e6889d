package app

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/rawserver"
	"github.com/shadowtap/shadowtap/internal/synth"
)

func TestFlagsOfTheAWSSample(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	err := fs.Parse([]string{"-destination", "http://staging:8080", "-percentage", "12.5", "-percentage-by", "header",
		"-percentage-by-header", "X-User", "-filter-request-port", "8080,80", "-keep-host-header", "-vni", "7", "-vni", "8,9"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Percentage != 12.5 || !cfg.KeepHostHeader || len(cfg.Ports) != 2 || cfg.Ports[0] != 8080 || len(cfg.VNIs) != 3 {
		t.Errorf("cfg = %+v", cfg)
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "-destination is required"},
		{[]string{"-destination", "ftp://x"}, "scheme must be http or https"},
		{[]string{"-destination", "http://x", "-percentage", "101"}, "percentage 101 is not between 0 and 100"},
		{[]string{"-destination", "http://x", "-percentage-by", "header"}, "percentage-by-header is empty"},
		{[]string{"-destination", "http://x", "-percentage-by", "cookie"}, `percentage-by "cookie"`},
		{[]string{"-destination", "http://x", "-workers", "0"}, "-workers must be positive"},
		{[]string{"-destination", "http://x", "-reorder-wait", "5m"}, "-reorder-wait must be shorter than -idle-timeout"},
		{[]string{"-destination", "http://x", "-log-format", "xml"}, `-log-format "xml"`},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		cfg.RegisterFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
	for _, bad := range [][]string{{"-filter-request-port", "0"}, {"-filter-request-port", "80,x"}, {"-vni", "16777216"}} {
		cfg := DefaultConfig()
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.RegisterFlags(fs)
		if fs.Parse(bad) == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

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
	cfg := DefaultConfig()
	cfg.Destination = "http://" + test.Addr()
	cfg.Listen, cfg.HealthListen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ReadBuffer = 4 << 20
	cfg.Workers = 2
	cfg.VNIs = []uint32{77}
	h, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx) }()

	out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(h.ListenAddr()))
	if err != nil {
		t.Fatal(err)
	}
	send := func(vni uint32, segs []synth.Segment) {
		for _, s := range segs {
			out.Write(synth.AppendVXLAN(nil, vni, synth.AppendFrame(nil, s)))
		}
	}
	const conns = 10
	for i := range conns {
		c := synth.NewConn(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(1000+i)), netip.MustParseAddrPort("10.0.0.2:80"), 1, 1)
		send(77, c.Handshake())
		send(77, c.ClientData([]byte("GET /x HTTP/1.1\r\nHost: prod\r\n\r\n")))
		send(78, c.ClientData([]byte("GET /other-vni HTTP/1.1\r\nHost: prod\r\n\r\n"))) // filtered out
	}
	// Garbage is counted, not fatal.
	out.Write([]byte{1, 2, 3})

	waitFor(t, func() bool { return h.Engine.HTTP.Requests.Load() == conns })
	if h.Engine.VNIFiltered.Load() != conns || h.Engine.Decode[1].Load() != 1 {
		t.Errorf("vni filtered %d, short vxlan %d", h.Engine.VNIFiltered.Load(), h.Engine.Decode[1].Load())
	}
	hc, err := net.Dial("tcp", h.HealthAddr())
	if err != nil {
		t.Fatalf("health port: %v", err)
	}
	hc.Close()
	body := get(t, "http://"+h.AdminAddr()+"/healthz")
	if body != "ok\n" {
		t.Errorf("/healthz = %q", body)
	}
	metrics := get(t, "http://"+h.AdminAddr()+"/metrics")
	for _, want := range []string{"shadowtap_requests_captured_total 10", "shadowtap_packets_vni_filtered_total 10",
		`shadowtap_packets_dropped_total{reason="short_vxlan"} 1`, "shadowtap_replay_duration_seconds_bucket", "shadowtap_socket_kernel_drops_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Stop while replays are queued (2 workers, 20ms each): they drain.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := len(test.Requests()); got != conns || h.Replay.Replayed.Load() != conns {
		t.Errorf("test server got %d, replayed %d, want %d", got, h.Replay.Replayed.Load(), conns)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
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
