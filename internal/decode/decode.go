// Package decode parses mirrored packets in place: VXLAN, Ethernet (with
// 802.1Q/QinQ tags), IPv4, IPv6 and TCP. Nothing is allocated; the decoded
// Packet points into the caller's buffer and is valid until that buffer is
// reused. Checksums are not verified: AWS does not fix them up on truncated
// mirror packets, and a replay handler has no use for them.
package decode

import (
	"encoding/binary"
	"net/netip"
)

// TCP flags, as in the TCP header's flag byte.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
)

// VXLANPort is the IANA port for VXLAN (RFC 7348), the one AWS mirrors to.
const VXLANPort = 4789

// Reason says why a packet did not decode to a TCP segment. Reasons are
// counted by the caller; they are values, not errors, because a dropped
// packet is routine traffic on a mirror and must not allocate.
type Reason uint8

const (
	OK            Reason = iota
	ShortVXLAN           // datagram shorter than a VXLAN header
	ShortEthernet        // frame shorter than its Ethernet/VLAN headers
	NotIP                // ARP, LLDP, ...: ignored, not an error
	BadIPv4              // version/IHL/length inconsistent
	BadIPv6              // short header or extension chain
	Fragment             // IP fragment: counted, not reassembled
	NotTCP               // UDP, ICMP, ...: ignored, not an error
	ShortTCP             // TCP header cut short or data offset invalid
	ShortGeneve          // datagram shorter than its Geneve header and options
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK:            "ok",
	ShortVXLAN:    "short_vxlan",
	ShortEthernet: "short_ethernet",
	NotIP:         "not_ip",
	BadIPv4:       "bad_ipv4",
	BadIPv6:       "bad_ipv6",
	Fragment:      "fragment",
	NotTCP:        "not_tcp",
	ShortTCP:      "short_tcp",
	ShortGeneve:   "short_geneve",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Packet is one decoded TCP segment.
type Packet struct {
	VNI    uint32 // VXLAN network identifier; 0 when not encapsulated
	VXLAN  bool   // the packet came in a VXLAN header
	IPv6   bool
	Src    [16]byte // IPv4 addresses are stored in their IPv4-mapped form
	Dst    [16]byte
	SrcPrt uint16
	DstPrt uint16
	Seq    uint32
	Ack    uint32
	Flags  uint8
	// Payload is the TCP payload bytes that arrived. Missing counts the
	// payload bytes the IP header declares but that were cut off (mirror
	// packet-length limit, snaplen): the caller must treat them as a gap.
	Payload []byte
	Missing int
}

// SrcAddr returns the inner source address and port.
func (p *Packet) SrcAddr() netip.AddrPort { return netip.AddrPortFrom(addr(p.Src, p.IPv6), p.SrcPrt) }

// DstAddr returns the inner destination address and port.
func (p *Packet) DstAddr() netip.AddrPort { return netip.AddrPortFrom(addr(p.Dst, p.IPv6), p.DstPrt) }

func addr(a [16]byte, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16(a)
	}
	return netip.AddrFrom4([4]byte(a[12:16]))
}

// DecodeVXLAN decodes a VXLAN datagram (the UDP payload). The I flag and the
// reserved bits are not checked: RFC 7348 says to ignore reserved bits on
// receipt, and real captures set them.
func (p *Packet) DecodeVXLAN(b []byte) Reason {
	if len(b) < 8 {
		return ShortVXLAN
	}
	p.VXLAN = true
	p.VNI = uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
	return p.decodeEthernet(b[8:])
}

// GenevePort is the IANA port for Geneve (RFC 8926), on which a Gateway
// Load Balancer sends traffic to its appliances.
const GenevePort = 6081

// DecodeGeneve decodes a Geneve datagram (the UDP payload): its header and
// options (AWS's are skipped), then an Ethernet frame or an IP packet; an
// IP packet that carries VXLAN (UDP 4789) is decapsulated again. VNI is
// the innermost network id.
func (p *Packet) DecodeGeneve(b []byte) Reason {
	if len(b) < 8 {
		return ShortGeneve
	}
	hl := 8 + int(b[0]&0x3f)*4
	if len(b) < hl {
		return ShortGeneve
	}
	p.VXLAN = false
	p.VNI = uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
	proto := binary.BigEndian.Uint16(b[2:4])
	inner := b[hl:]
	switch proto {
	case 0x6558: // transparent Ethernet bridging
		return p.decodeEthernet(inner)
	case 0x0800, 0x86dd:
		if _, dport, udp, ok := OuterUDPFromIP(proto, inner); ok && dport == VXLANPort {
			return p.DecodeVXLAN(udp)
		}
		if proto == 0x0800 {
			return p.decodeIPv4(inner)
		}
		return p.decodeIPv6(inner)
	}
	return NotIP
}

// DecodeEthernet decodes an Ethernet frame that was not encapsulated.
func (p *Packet) DecodeEthernet(b []byte) Reason {
	p.VXLAN, p.VNI = false, 0
	return p.decodeEthernet(b)
}

func (p *Packet) decodeEthernet(b []byte) Reason {
	if len(b) < 14 {
		return ShortEthernet
	}
	etype := binary.BigEndian.Uint16(b[12:14])
	b = b[14:]
	// 802.1Q, 802.1ad (QinQ) and the old 0x9100 tag: skip any stack of them.
	for etype == 0x8100 || etype == 0x88a8 || etype == 0x9100 {
		if len(b) < 4 {
			return ShortEthernet
		}
		etype = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	switch etype {
	case 0x0800:
		return p.decodeIPv4(b)
	case 0x86dd:
		return p.decodeIPv6(b)
	}
	return NotIP
}

// DecodeIP decodes a raw IPv4 or IPv6 packet, chosen by its version nibble.
func (p *Packet) DecodeIP(b []byte) Reason {
	p.VXLAN, p.VNI = false, 0
	if len(b) == 0 {
		return BadIPv4
	}
	if b[0]>>4 == 6 {
		return p.decodeIPv6(b)
	}
	return p.decodeIPv4(b)
}

func (p *Packet) decodeIPv4(b []byte) Reason {
	if len(b) < 20 || b[0]>>4 != 4 {
		return BadIPv4
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total < ihl || len(b) < ihl {
		return BadIPv4
	}
	if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x3fff != 0 { // MF set or offset non-zero
		return Fragment
	}
	if b[9] != 6 {
		return NotTCP
	}
	p.IPv6 = false
	p.Src = [16]byte{10: 0xff, 11: 0xff}
	copy(p.Src[12:], b[12:16])
	p.Dst = [16]byte{10: 0xff, 11: 0xff}
	copy(p.Dst[12:], b[16:20])
	// The IP length, not the frame, says where the packet ends: frames may
	// be padded, and truncated ones are shorter than the IP length.
	return p.decodeTCP(b[ihl:min(len(b), total)], total-ihl)
}

func (p *Packet) decodeIPv6(b []byte) Reason {
	if len(b) < 40 || b[0]>>4 != 6 {
		return BadIPv6
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	if plen == 0 { // jumbogram (hop-by-hop option): not on a VPC
		return BadIPv6
	}
	p.IPv6 = true
	copy(p.Src[:], b[8:24])
	copy(p.Dst[:], b[24:40])
	next := b[6]
	rest := b[40:min(len(b), 40+plen)]
	declared := plen
	for {
		var n int
		switch next {
		case 6:
			return p.decodeTCP(rest, declared)
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(rest) < 8 {
				return BadIPv6
			}
			n = (int(rest[1]) + 1) * 8
		case 44: // fragment
			if len(rest) < 8 {
				return BadIPv6
			}
			if binary.BigEndian.Uint16(rest[2:4])&0xfff9 != 0 { // offset or M flag
				return Fragment
			}
			n = 8
		case 51: // authentication header
			if len(rest) < 8 {
				return BadIPv6
			}
			n = (int(rest[1]) + 2) * 4
		default:
			return NotTCP
		}
		if n > len(rest) {
			return BadIPv6
		}
		next = rest[0]
		rest = rest[n:]
		declared -= n
	}
}

// decodeTCP decodes a TCP header from b, the bytes that arrived of a TCP
// segment whose length per the IP header is declared.
func (p *Packet) decodeTCP(b []byte, declared int) Reason {
	if len(b) < 20 {
		return ShortTCP
	}
	off := int(b[12]>>4) * 4
	if off < 20 || off > len(b) || off > declared {
		return ShortTCP
	}
	p.SrcPrt = binary.BigEndian.Uint16(b[0:2])
	p.DstPrt = binary.BigEndian.Uint16(b[2:4])
	p.Seq = binary.BigEndian.Uint32(b[4:8])
	p.Ack = binary.BigEndian.Uint32(b[8:12])
	p.Flags = b[13]
	p.Payload = b[off:]
	p.Missing = declared - len(b)
	return OK
}

// OuterUDP parses an Ethernet frame (VLAN tags allowed) that carries a UDP
// datagram in IPv4 or IPv6, as a capture taken on a mirror target holds
// them, and returns the sender's address, the destination port and the
// datagram's payload. IPv6 extension headers and IP fragments are not
// followed: ok is false for them.
func OuterUDP(frame []byte) (src netip.Addr, dport uint16, payload []byte, ok bool) {
	if len(frame) < 14 {
		return src, 0, nil, false
	}
	etype := binary.BigEndian.Uint16(frame[12:14])
	b := frame[14:]
	for (etype == 0x8100 || etype == 0x88a8 || etype == 0x9100) && len(b) >= 4 {
		etype = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	return OuterUDPFromIP(etype, b)
}

// OuterUDPFromIP is OuterUDP for an IP packet of the given EtherType.
func OuterUDPFromIP(etype uint16, b []byte) (src netip.Addr, dport uint16, payload []byte, ok bool) {
	switch {
	case etype == 0x0800 && len(b) >= 20 && b[0]>>4 == 4:
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if b[9] != 17 || ihl < 20 || total < ihl+8 || len(b) < ihl+8 || binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
			return src, 0, nil, false
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		b = b[ihl:min(len(b), total)]
	case etype == 0x86dd && len(b) >= 48 && b[0]>>4 == 6:
		if b[6] != 17 {
			return src, 0, nil, false
		}
		src = netip.AddrFrom16([16]byte(b[8:24]))
		b = b[40:min(len(b), 40+int(binary.BigEndian.Uint16(b[4:6])))]
	default:
		return src, 0, nil, false
	}
	if len(b) < 8 {
		return src, 0, nil, false
	}
	return src, binary.BigEndian.Uint16(b[2:4]), b[8:], true
}
