package pipeline

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// No goroutine outlives Run: the sources, the engines' flush, the
// replayers, the drains of targets retired by a reload (their queues still
// full), the admin and health servers all end before Run returns.
func TestNoGoroutineOutlivesRun(t *testing.T) {
	fast, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slow, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slow.Delay = 3 * time.Second // the retired target's drain ends at its deadline
	defer slow.Close()
	defer fast.Close()
	// The test servers' goroutines are not the handler's.
	ignore := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/shadowtap/shadowtap/internal/testkit/rawserver.(*Server).serve")}

	cfg := config.Default()
	cfg.Targets = []config.Target{{Name: "a", Destination: "http://" + fast.Addr()}, {Name: "b", Destination: "http://" + slow.Addr()}}
	cfg.GeneveListen = "127.0.0.1:0"
	cfg.DrainTimeout = 1500 * time.Millisecond
	h, stop := start(t, cfg)
	m := newMirror(t, h)
	for i := range 20 {
		c := synth.NewConn(client(i), server, 1, 1)
		m.send(0, c.Handshake())
		m.send(0, c.ClientData([]byte("GET /x HTTP/1.1\r\nHost: prod\r\n\r\n")))
	}
	waitFor(t, func() bool { return h.Engine.HTTP.Requests.Load() == 20 })
	// Retire "b" while it still has work: its drain runs in the background
	// and must be joined by Run.
	next := cfg
	next.Targets = cfg.Targets[:1]
	if err := h.Reload(next); err != nil {
		t.Fatal(err)
	}
	stop()
	// A reload after the stop is a no-op, and starts nothing.
	if err := h.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	// goleak retries for about half a second: the retired target's drain,
	// had Run left it behind, would still be running then.
	goleak.VerifyNone(t, ignore...)
}
