package sessions_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/pcapfile"
)

// TestAWSMirrorKeepsBothDirectionsOnOneOuterFlow pins what docs/deploy.md
// promises about a Network Load Balancer in front of the handlers: AWS
// gives both directions of a mirrored connection the same outer UDP
// source port, so requests and responses share one outer 5-tuple and the
// load balancer's flow hash sends them to the same handler, which the
// comparison against production's responses needs. The capture is the
// only real AWS Traffic Mirroring capture in testdata (SOURCES.md: taken
// with the AWS traffic mirror feature, from suricata-verify).
func TestAWSMirrorKeepsBothDirectionsOnOneOuterFlow(t *testing.T) {
	pkts, err := pcapfile.ReadAll("../../testdata/pcaps/suricata__vxlan-decoder-03.pcap")
	if err != nil {
		t.Fatal(err)
	}
	type conn struct{ a, b netip.AddrPort } // endpoints in a fixed order
	type outer struct {
		src, dst netip.Addr
		sport    uint16
	}
	flows := map[conn]map[outer]int{}
	dirs := map[conn]map[netip.AddrPort]bool{}
	ports := map[uint16]bool{}
	for i, p := range pkts {
		src, dport, payload, ok := decode.OuterUDP(p.Data)
		if !ok || dport != 4789 {
			t.Fatalf("packet %d: not VXLAN over UDP 4789", i+1)
		}
		// OuterUDP returns the datagram's payload as a slice of the frame:
		// the UDP header is the 8 bytes before it, and slices share the
		// frame's end, so the capacities give the offset even when the
		// frame has trailing padding.
		off := cap(p.Data) - cap(payload)
		sport := binary.BigEndian.Uint16(p.Data[off-8 : off-6])
		if binary.BigEndian.Uint16(p.Data[12:14]) != 0x0800 {
			t.Fatalf("packet %d: outer frame is not plain IPv4 over Ethernet", i+1)
		}
		dst := netip.AddrFrom4([4]byte(p.Data[30:34]))
		var in decode.Packet
		if in.DecodeVXLAN(payload) != decode.OK {
			continue // DNS and NTP: the mirror carries them too, no TCP to pair
		}
		c := conn{in.SrcAddr(), in.DstAddr()}
		if c.b.Addr().Less(c.a.Addr()) || (c.a.Addr() == c.b.Addr() && c.b.Port() < c.a.Port()) {
			c.a, c.b = c.b, c.a
		}
		if flows[c] == nil {
			flows[c], dirs[c] = map[outer]int{}, map[netip.AddrPort]bool{}
		}
		flows[c][outer{src, dst, sport}]++
		dirs[c][in.SrcAddr()] = true
		ports[sport] = true
	}
	if len(flows) != 4 {
		t.Fatalf("%d TCP connections, want the capture's 4 SSH connections", len(flows))
	}
	for c, outers := range flows {
		if len(dirs[c]) != 2 {
			t.Errorf("%v <-> %v: only one direction mirrored", c.a, c.b)
		}
		// The whole outer 5-tuple (the protocol is UDP and the destination
		// port 4789 for all) is one per connection, both directions included.
		if len(outers) != 1 {
			t.Errorf("%v <-> %v: both directions should share one outer flow, got %v", c.a, c.b, outers)
		}
	}
	// Different connections get different ports, which is what lets a
	// load balancer spread connections over the handlers.
	if len(ports) < 4 {
		t.Errorf("outer source ports %v: want one per connection", ports)
	}
}
