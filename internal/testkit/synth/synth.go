// Package synth builds mirrored packets: TCP segments in IPv4 or IPv6 in
// Ethernet, optionally wrapped in VXLAN. It plays the part of the mirror in
// the demo, in tests and in benchmarks. Checksums are left zero, as the
// decoder never reads them.
package synth

import (
	"encoding/binary"
	"net/netip"

	"github.com/shadowtap/shadowtap/internal/decode"
)

// Segment describes one TCP segment to build.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    uint8
	Payload  []byte
	VLANs    []uint16 // 802.1Q tags, outermost first
	// Declared, when larger than len(Payload), is the payload length written
	// into the IP header: the frame is then truncated as a mirror with a
	// packet-length limit would cut it.
	Declared int
}

// AppendFrame appends the Ethernet frame for s to dst.
func AppendFrame(dst []byte, s Segment) []byte {
	dst = append(dst, 0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1) // dst, src MAC
	for _, tag := range s.VLANs {
		dst = binary.BigEndian.AppendUint16(dst, 0x8100)
		dst = binary.BigEndian.AppendUint16(dst, tag)
	}
	declared := max(s.Declared, len(s.Payload))
	if s.Src.Addr().Is4() {
		dst = binary.BigEndian.AppendUint16(dst, 0x0800)
		dst = append(dst, 0x45, 0)
		dst = binary.BigEndian.AppendUint16(dst, uint16(20+20+declared))
		dst = append(dst, 0, 1, 0x40, 0, 64, 6, 0, 0) // id, DF, ttl, proto, csum
		src, d := s.Src.Addr().As4(), s.Dst.Addr().As4()
		dst = append(dst, src[:]...)
		dst = append(dst, d[:]...)
	} else {
		dst = binary.BigEndian.AppendUint16(dst, 0x86dd)
		dst = append(dst, 0x60, 0, 0, 0)
		dst = binary.BigEndian.AppendUint16(dst, uint16(20+declared))
		dst = append(dst, 6, 64)
		src, d := s.Src.Addr().As16(), s.Dst.Addr().As16()
		dst = append(dst, src[:]...)
		dst = append(dst, d[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, s.Src.Port())
	dst = binary.BigEndian.AppendUint16(dst, s.Dst.Port())
	dst = binary.BigEndian.AppendUint32(dst, s.Seq)
	dst = binary.BigEndian.AppendUint32(dst, s.Ack)
	dst = append(dst, 5<<4, s.Flags, 0xff, 0xff, 0, 0, 0, 0) // off, flags, win, csum, urg
	return append(dst, s.Payload...)
}

// AppendVXLAN appends a VXLAN header for vni (I flag set) followed by frame.
func AppendVXLAN(dst []byte, vni uint32, frame []byte) []byte {
	dst = append(dst, 0x08, 0, 0, 0, byte(vni>>16), byte(vni>>8), byte(vni), 0)
	return append(dst, frame...)
}

// Conn tracks the sequence numbers of one TCP connection so that its
// traffic can be emitted as segments, both directions.
type Conn struct {
	Client, Server netip.AddrPort
	MSS            int // payload bytes per segment; 1460 when zero
	cseq, sseq     uint32
}

// NewConn returns a connection with the given initial sequence numbers.
func NewConn(client, server netip.AddrPort, clientISN, serverISN uint32) *Conn {
	return &Conn{Client: client, Server: server, cseq: clientISN, sseq: serverISN}
}

// Handshake returns the SYN, SYN-ACK and ACK segments.
func (c *Conn) Handshake() []Segment {
	syn := Segment{Src: c.Client, Dst: c.Server, Seq: c.cseq, Flags: decode.FlagSYN}
	c.cseq++
	synack := Segment{Src: c.Server, Dst: c.Client, Seq: c.sseq, Ack: c.cseq, Flags: decode.FlagSYN | decode.FlagACK}
	c.sseq++
	ack := Segment{Src: c.Client, Dst: c.Server, Seq: c.cseq, Ack: c.sseq, Flags: decode.FlagACK}
	return []Segment{syn, synack, ack}
}

// ClientData returns the segments that carry p from client to server.
func (c *Conn) ClientData(p []byte) []Segment { return c.data(p, true) }

// ServerData returns the segments that carry p from server to client.
func (c *Conn) ServerData(p []byte) []Segment { return c.data(p, false) }

func (c *Conn) data(p []byte, fromClient bool) []Segment {
	mss := c.MSS
	if mss <= 0 {
		mss = 1460
	}
	var out []Segment
	for len(p) > 0 {
		n := min(len(p), mss)
		if fromClient {
			out = append(out, Segment{Src: c.Client, Dst: c.Server, Seq: c.cseq, Ack: c.sseq, Flags: decode.FlagACK | decode.FlagPSH, Payload: p[:n]})
			c.cseq += uint32(n)
		} else {
			out = append(out, Segment{Src: c.Server, Dst: c.Client, Seq: c.sseq, Ack: c.cseq, Flags: decode.FlagACK | decode.FlagPSH, Payload: p[:n]})
			c.sseq += uint32(n)
		}
		p = p[n:]
	}
	return out
}

// Close returns a FIN from each side.
func (c *Conn) Close() []Segment {
	fin1 := Segment{Src: c.Client, Dst: c.Server, Seq: c.cseq, Ack: c.sseq, Flags: decode.FlagFIN | decode.FlagACK}
	c.cseq++
	fin2 := Segment{Src: c.Server, Dst: c.Client, Seq: c.sseq, Ack: c.cseq, Flags: decode.FlagFIN | decode.FlagACK}
	c.sseq++
	return []Segment{fin1, fin2}
}

// ClientACK returns a bare ACK from the client acknowledging all the
// server has sent.
func (c *Conn) ClientACK() Segment {
	return Segment{Src: c.Client, Dst: c.Server, Seq: c.cseq, Ack: c.sseq, Flags: decode.FlagACK}
}

// AppendGeneve appends a Geneve header (with opts, a multiple of 4 bytes,
// as AWS's Gateway Load Balancer adds) for protocol proto and vni, then
// payload.
func AppendGeneve(dst []byte, vni uint32, proto uint16, opts, payload []byte) []byte {
	dst = append(dst, byte(len(opts)/4), 0, byte(proto>>8), byte(proto), byte(vni>>16), byte(vni>>8), byte(vni), 0)
	dst = append(dst, opts...)
	return append(dst, payload...)
}

// AppendIPv4UDP appends an IPv4/UDP packet from src to dst carrying payload.
func AppendIPv4UDP(b []byte, src, dst netip.AddrPort, payload []byte) []byte {
	b = append(b, 0x45, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(28+len(payload)))
	b = append(b, 0, 1, 0x40, 0, 64, 17, 0, 0)
	s, d := src.Addr().As4(), dst.Addr().As4()
	b = append(append(b, s[:]...), d[:]...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = append(b, 0, 0)
	return append(b, payload...)
}
