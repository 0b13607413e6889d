package demo

import (
	"net"
	"net/netip"
	"sync"

	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// tap is the demo's stand-in for VPC Traffic Mirroring: a TCP proxy in
// front of production that sends a copy of every segment it relays, both
// directions, as VXLAN to the handler. Each proxied connection gets an
// inner client address of its own, as distinct clients would have.
type tap struct {
	ln      net.Listener
	prod    string
	server  netip.AddrPort // inner address of production
	vni     uint32
	out     *net.UDPConn
	pace    func() // called before each datagram: waits while the handler is behind
	mu      sync.Mutex
	nconn   int
	clients map[string]netip.AddrPort // production-side local address -> inner client address
	wg      sync.WaitGroup
}

func newTap(prod string, handler netip.AddrPort, vni uint32, pace func()) (*tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(handler))
	if err != nil {
		ln.Close()
		return nil, err
	}
	t := &tap{ln: ln, prod: prod, server: netip.MustParseAddrPort("10.0.0.80:80"), vni: vni, out: out, pace: pace,
		clients: make(map[string]netip.AddrPort)}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

func (t *tap) addr() string { return t.ln.Addr().String() }

func (t *tap) close() {
	t.ln.Close()
	t.wg.Wait()
	t.out.Close()
}

// clientFor returns the inner client address of the proxied connection
// whose production-side local address is local.
func (t *tap) clientFor(local string) (netip.AddrPort, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.clients[local]
	return a, ok
}

func (t *tap) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		p, err := net.Dial("tcp", t.prod)
		if err != nil {
			c.Close()
			continue
		}
		t.mu.Lock()
		t.nconn++
		n := t.nconn
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(n / 250), byte(n%250 + 1)}), uint16(40000+n%20000))
		t.clients[p.LocalAddr().String()] = client
		t.mu.Unlock()
		t.wg.Add(1)
		go t.relay(c, p, client, uint32(n)*7919)
	}
}

// relay copies bytes both ways and mirrors them. One mutex orders the
// mirrored segments of a connection as the proxy saw them.
func (t *tap) relay(client, prod net.Conn, inner netip.AddrPort, isn uint32) {
	defer t.wg.Done()
	conn := synth.NewConn(inner, t.server, isn, isn^0x5a5a5a5a)
	conn.MSS = 1448
	var mu sync.Mutex
	mirror := func(segs []synth.Segment) {
		for _, s := range segs {
			t.send(s)
		}
	}
	mu.Lock()
	mirror(conn.Handshake())
	mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn, fromClient bool) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				mu.Lock()
				if fromClient {
					mirror(conn.ClientData(buf[:n]))
				} else {
					mirror(conn.ServerData(buf[:n]))
				}
				mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// Half-close so the other side sees the end, as TCP would.
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}
	wg.Add(2)
	go pipe(prod, client, true)
	go pipe(client, prod, false)
	wg.Wait()
	mu.Lock()
	mirror(conn.Close())
	mu.Unlock()
	client.Close()
	prod.Close()
}

func (t *tap) send(s synth.Segment) {
	frame := synth.AppendFrame(make([]byte, 0, 64+len(s.Payload)), s)
	dgram := synth.AppendVXLAN(make([]byte, 0, 8+len(frame)), t.vni, frame)
	t.pace()
	t.out.Write(dgram)
}
