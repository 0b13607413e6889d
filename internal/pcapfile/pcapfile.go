// Package pcapfile plays capture files (pcap or pcapng, optionally gzipped)
// into an engine, through the same decoding, reassembly and extraction as
// live traffic. Frames carrying UDP to the VXLAN port are decapsulated;
// other frames are taken as the mirrored traffic itself.
package pcapfile

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/shadowtap/shadowtap/internal/decode"
)

// Handler takes the packets of a file; *engine.Engine is one.
type Handler interface {
	HandleVXLAN(outer netip.Addr, b []byte, ts int64)
	HandleGeneve(outer netip.Addr, b []byte, ts int64)
	HandleFrame(b []byte, ts int64)
	HandleIP(b []byte, ts int64)
	Tick(now int64)
	Flush()
}

// Stats describe a played file.
type Stats struct {
	Packets   int
	VXLAN     int
	Geneve    int
	Skipped   int // link-layer headers that could not be read
	FirstTime int64
	LastTime  int64
}

// Packet is one captured packet.
type Packet struct {
	Data []byte
	TS   int64 // unix ns
	Link layers.LinkType
}

// Play reads the file at path into h and flushes h at the end.
func Play(path string, vxlanPort uint16, h Handler) (Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return Stats{}, fmt.Errorf("pcapfile: %w", err)
	}
	defer f.Close()
	return PlayReader(f, vxlanPort, h)
}

// PlayReader is Play for an open file.
func PlayReader(r io.Reader, vxlanPort uint16, h Handler) (Stats, error) {
	var st Stats
	err := each(r, func(p Packet) { dispatch(p, vxlanPort, h, &st) })
	h.Flush()
	return st, err
}

// ReadAll returns every packet of the file at path.
func ReadAll(path string) ([]Packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pcapfile: %w", err)
	}
	defer f.Close()
	var pkts []Packet
	err = each(f, func(p Packet) {
		p.Data = bytes.Clone(p.Data)
		pkts = append(pkts, p)
	})
	return pkts, err
}

// PlayPackets plays packets into h and flushes h at the end.
func PlayPackets(pkts []Packet, vxlanPort uint16, h Handler) Stats {
	var st Stats
	for _, p := range pkts {
		dispatch(p, vxlanPort, h, &st)
	}
	h.Flush()
	return st
}

// each calls fn for every packet read from r; p.Data is only valid during
// the call.
func each(r io.Reader, fn func(Packet)) error {
	pr, err := open(r)
	if err != nil {
		return err
	}
	for n := 1; ; n++ {
		p, err := pr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pcapfile: packet %d: %w", n, err)
		}
		fn(p)
	}
}

func dispatch(p Packet, vxlanPort uint16, h Handler, st *Stats) {
	st.Packets++
	if st.FirstTime == 0 {
		st.FirstTime = p.TS
	}
	// Timestamps may go backwards in real captures; time never does here.
	st.LastTime = max(st.LastTime, p.TS)
	ts := st.LastTime
	etype, payload, ok := linkPayload(p.Link, p.Data)
	if !ok {
		st.Skipped++
		return
	}
	if src, dport, udp, ok := decode.OuterUDPFromIP(etype, payload); ok {
		switch dport {
		case vxlanPort:
			st.VXLAN++
			h.HandleVXLAN(src, udp, ts)
			return
		case decode.GenevePort:
			st.Geneve++
			h.HandleGeneve(src, udp, ts)
			return
		}
	}
	if p.Link == layers.LinkTypeEthernet {
		h.HandleFrame(p.Data, ts)
	} else {
		h.HandleIP(payload, ts)
	}
}

type packetReader interface {
	next() (Packet, error)
}

// linkPayload strips the link-layer header and returns the EtherType of
// what follows (IPv4 or IPv6).
func linkPayload(lnk layers.LinkType, b []byte) (etype uint16, payload []byte, ok bool) {
	ipType := func(p []byte) (uint16, []byte, bool) {
		if len(p) == 0 {
			return 0, nil, false
		}
		switch p[0] >> 4 {
		case 4:
			return 0x0800, p, true
		case 6:
			return 0x86dd, p, true
		}
		return 0, nil, false
	}
	switch lnk {
	case layers.LinkTypeEthernet:
		if len(b) < 14 {
			return 0, nil, false
		}
		etype, b = binary.BigEndian.Uint16(b[12:14]), b[14:]
		for (etype == 0x8100 || etype == 0x88a8 || etype == 0x9100) && len(b) >= 4 {
			etype, b = binary.BigEndian.Uint16(b[2:4]), b[4:]
		}
		return etype, b, true
	case layers.LinkTypeNull, layers.LinkTypeLoop: // 4-byte address family
		if len(b) < 4 {
			return 0, nil, false
		}
		return ipType(b[4:])
	case layers.LinkTypeRaw, layers.LinkType(12), layers.LinkType(14), layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return ipType(b)
	case layers.LinkTypeLinuxSLL:
		if len(b) < 16 {
			return 0, nil, false
		}
		return ipType(b[16:])
	case layers.LinkTypeLinuxSLL2:
		if len(b) < 20 {
			return 0, nil, false
		}
		return ipType(b[20:])
	}
	return 0, nil, false
}

func open(r io.Reader) (packetReader, error) {
	return openLevel(r, true)
}

// openLevel opens a capture file, gzipped if mayUnzip. A gzipped file holds
// a capture, never another gzip stream: each level costs buffers and a
// decompressor, and a small file of nested streams would cost many.
func openLevel(r io.Reader, mayUnzip bool) (packetReader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("pcapfile: reading header: %w", err)
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		if !mayUnzip {
			return nil, errors.New("pcapfile: a gzip stream inside a gzip stream")
		}
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("pcapfile: %w", err)
		}
		return openLevel(zr, false)
	}
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, fmt.Errorf("pcapfile: pcapng: %w", err)
		}
		return ngReader{ng}, nil
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("pcapfile: pcap: %w", err)
	}
	return pcapReader{pr}, nil
}

type pcapReader struct{ r *pcapgo.Reader }

func (p pcapReader) next() (Packet, error) {
	data, ci, err := p.r.ZeroCopyReadPacketData()
	return Packet{Data: data, TS: ci.Timestamp.UnixNano(), Link: p.r.LinkType()}, err
}

type ngReader struct{ r *pcapgo.NgReader }

func (p ngReader) next() (Packet, error) {
	data, ci, err := p.r.ZeroCopyReadPacketData()
	lnk := p.r.LinkType()
	if ci.InterfaceIndex >= 0 && ci.InterfaceIndex < p.r.NInterfaces() {
		if iface, err := p.r.Interface(ci.InterfaceIndex); err == nil {
			lnk = iface.LinkType
		}
	}
	return Packet{Data: data, TS: ci.Timestamp.UnixNano(), Link: lnk}, err
}
