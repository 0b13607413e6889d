package e2e

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	vxlan "github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/testkit/netlab"
	"github.com/shadowtap/shadowtap/internal/testkit/redistest"
)

// TestRedisFleetKeepsTheCopyInStep is a fleet of two handlers behind a
// load balancer that spreads connections, not users: every login goes to
// handler A, every other connection to handler B, so each session is
// created on A and used on B. Sharing their correlation through a real
// Redis, the copy answers 2xx what production answered 2xx, as one
// handler alone does. Then Redis is killed: capture and replay go on, no
// request is lost or sent twice, and only the sessions created while it
// is down fail on the copy (the control: without the store, B cannot
// translate). Redis restarted, the fleet is coherent again by itself.
func TestRedisFleetKeepsTheCopyInStep(t *testing.T) {
	start, lab := statefulLab(t, "fleet")
	srv := redistest.Start(t)
	t.Setenv(config.SecretEnv, "e2e fleet secret")
	_, prodLog := start(lab, lab.Prod, "198.18.0.2:80", "prod")
	copyURL, copyLog := start(nil, "", "", "fleet")

	handler := func() *pipeline.Handler {
		cfg := config.Default()
		cfg.Listen, cfg.HealthListen, cfg.AdminListen = "127.0.0.1:0", "", ""
		cfg.ReorderWait = 50 * time.Millisecond
		cfg.Destination = copyURL
		cfg.Correlate = config.Fleet{Store: srv.URL(), Namespace: "e2e"}
		return startHandler(t, lab, cfg)
	}
	a, b := handler(), handler()
	watching := func() bool {
		for _, h := range []*pipeline.Handler{a, b} {
			if s := h.Targets()[0].Pairs.Stats().Fleet; !s.Watching || !s.Up {
				return false
			}
		}
		return true
	}
	waitUntil(t, 10*time.Second, watching)
	split := startSplitter(t, lab, a.ListenAddr(), b.ListenAddr())

	const users = 10 // per phase
	phase := func(from int) (prod, cp answered) {
		p0, c0 := len(statuses(t, prodLog).all), len(statuses(t, copyLog).all)
		driveUsersFrom(t, lab, from, users)
		p := statuses(t, prodLog)
		waitUntil(t, 20*time.Second, func() bool { return len(statuses(t, copyLog).all) >= len(p.all) })
		time.Sleep(300 * time.Millisecond) // nothing more comes: no request sent twice
		c := statuses(t, copyLog)
		return p.after(p0), c.after(c0)
	}
	coherence := func(p, c answered) float64 { return float64(c.ok) / float64(p.ok) }

	p1, c1 := phase(1)
	srv.Stop()
	p2, c2 := phase(1 + users)
	srv.Start()
	waitUntil(t, 30*time.Second, watching)
	p3, c3 := phase(1 + 2*users)

	t.Logf("coherence: shared %d/%d (%.1f%%), store down %d/%d (%.1f%%), back %d/%d (%.1f%%); routed to A %d, B %d connections",
		c1.ok, p1.ok, 100*coherence(p1, c1), c2.ok, p2.ok, 100*coherence(p2, c2), c3.ok, p3.ok, 100*coherence(p3, c3), split.routed(0), split.routed(1))
	for i, ph := range []struct{ p, c answered }{{p1, c1}, {p2, c2}, {p3, c3}} {
		if len(ph.c.all) != len(ph.p.all) {
			t.Errorf("phase %d: production answered %d requests, the copy received %d: lost or doubled", i+1, len(ph.p.all), len(ph.c.all))
		}
		if ph.p.ok != users*7 {
			t.Errorf("phase %d: production answered %d 2xx of %d", i+1, ph.p.ok, len(ph.p.all))
		}
	}
	if coherence(p1, c1) < 0.99 || coherence(p3, c3) < 0.99 || c1.unknown+c3.unknown != 0 {
		t.Errorf("with the store: %.1f%% and, after its restart, %.1f%% coherent; %d unknown credentials", 100*coherence(p1, c1),
			100*coherence(p3, c3), c1.unknown+c3.unknown)
	}
	if coherence(p2, c2) > 0.6 {
		t.Errorf("store down: %.1f%% coherent: the test would not see a fleet without sharing fail", 100*coherence(p2, c2))
	}
	if split.routed(0) < 3*users || split.routed(1) < 3*users*3 {
		t.Errorf("the logins and the rest did not each go to one handler: %d, %d", split.routed(0), split.routed(1))
	}
	for _, h := range []*pipeline.Handler{a, b} {
		if s := h.Targets()[0].Pairs.Stats().Fleet; s.Errors == 0 {
			t.Errorf("the store's failure was not counted: %+v", s)
		}
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// splitter stands in for a Network Load Balancer in front of two
// handlers, receiving the kernel mirror's VXLAN on 198.18.1.1:4789 in the
// monitor's namespace: it sends each connection, both directions, to one
// handler, a login's (its first request is POST /api/login) to the first
// and every other to the second. A connection's first datagrams wait for
// its first request to say where it goes.
type splitter struct {
	in, out *net.UDPConn
	to      [2]*net.UDPAddr
	mu      sync.Mutex
	flows   map[[2]netip.AddrPort]*route
	count   [2]int
	done    chan struct{}
}

type route struct {
	to      int // -1: not known yet
	waiting [][]byte
}

func startSplitter(t *testing.T, lab *netlab.Lab, a, b netip.AddrPort) *splitter {
	t.Helper()
	s := &splitter{to: [2]*net.UDPAddr{net.UDPAddrFromAddrPort(a), net.UDPAddrFromAddrPort(b)}, flows: map[[2]netip.AddrPort]*route{},
		done: make(chan struct{})}
	if err := lab.Do(lab.Mon, func() (err error) {
		if s.in, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(198, 18, 1, 1), Port: 4789}); err != nil {
			return err
		}
		s.out, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go s.run()
	t.Cleanup(func() {
		s.in.Close()
		<-s.done
		s.out.Close()
	})
	return s
}

func (s *splitter) routed(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[i]
}

// run forwards datagrams until the socket is closed.
func (s *splitter) run() {
	defer close(s.done)
	buf := make([]byte, 65536)
	var p vxlan.Packet
	for {
		n, err := s.in.Read(buf)
		if err != nil {
			return
		}
		d := append([]byte(nil), buf[:n]...)
		if p.DecodeVXLAN(d) != vxlan.OK {
			s.out.WriteToUDP(d, s.to[0])
			continue
		}
		src, dst := p.SrcAddr(), p.DstAddr()
		key := [2]netip.AddrPort{src, dst}
		if dst.Port() != 80 {
			key = [2]netip.AddrPort{dst, src}
		}
		s.mu.Lock()
		r := s.flows[key]
		if r == nil {
			r = &route{to: -1}
			s.flows[key] = r
		}
		if r.to < 0 && dst.Port() == 80 && len(p.Payload) > 0 {
			r.to = 1
			if bytes.HasPrefix(p.Payload, []byte("POST /api/login ")) {
				r.to = 0
			}
			s.count[r.to]++
			for _, w := range r.waiting {
				s.out.WriteToUDP(w, s.to[r.to])
			}
			r.waiting = nil
		}
		if r.to < 0 {
			if len(r.waiting) < 64 {
				r.waiting = append(r.waiting, d)
			}
		} else {
			s.out.WriteToUDP(d, s.to[r.to])
		}
		s.mu.Unlock()
	}
}
