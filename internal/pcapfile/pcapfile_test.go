package pcapfile

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// recorder decodes what it is handed and keeps the TCP payloads.
type recorder struct{ payloads []string }

func (r *recorder) keep(p *decode.Packet, reason decode.Reason) {
	if reason == decode.OK && len(p.Payload) > 0 {
		r.payloads = append(r.payloads, string(p.Payload))
	}
}
func (r *recorder) HandleVXLAN(_ netip.Addr, b []byte, _ int64) {
	var p decode.Packet
	r.keep(&p, p.DecodeVXLAN(b))
}
func (r *recorder) HandleGeneve(_ netip.Addr, b []byte, _ int64) {
	var p decode.Packet
	r.keep(&p, p.DecodeGeneve(b))
}
func (r *recorder) HandleFrame(b []byte, _ int64) {
	var p decode.Packet
	r.keep(&p, p.DecodeEthernet(b))
}
func (r *recorder) HandleIP(b []byte, _ int64) {
	var p decode.Packet
	r.keep(&p, p.DecodeIP(b))
}
func (r *recorder) Tick(int64) {}
func (r *recorder) Flush()     {}

// TestLinkTypes writes the same TCP segment under every link type and
// encapsulation a capture file may hold and reads it back.
func TestLinkTypes(t *testing.T) {
	seg := synth.Segment{Src: netip.MustParseAddrPort("10.0.0.1:1234"), Dst: netip.MustParseAddrPort("10.0.0.2:80"),
		Flags: decode.FlagACK, Payload: []byte("GET /x HTTP/1.1\r\n\r\n")}
	eth := synth.AppendFrame(nil, seg)
	ip := eth[14:]
	outer := func(port uint16, payload []byte) []byte {
		udp := synth.AppendIPv4UDP(nil, netip.MustParseAddrPort("172.31.0.1:40000"), netip.AddrPortFrom(netip.MustParseAddr("172.31.0.2"), port), payload)
		return append(append([]byte(nil), eth[:12]...), append([]byte{0x08, 0x00}, udp...)...)
	}
	sll := append([]byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00}, ip...)
	sll2 := append([]byte{0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}, ip...)
	null := append(binary.LittleEndian.AppendUint32(nil, 2), ip...)
	tests := []struct {
		name  string
		link  layers.LinkType
		frame []byte
	}{
		{"ethernet", layers.LinkTypeEthernet, eth},
		{"ethernet, VXLAN", layers.LinkTypeEthernet, outer(4789, synth.AppendVXLAN(nil, 7, eth))},
		{"ethernet, Geneve then VXLAN", layers.LinkTypeEthernet, outer(6081, synth.AppendGeneve(nil, 9, 0x0800, nil,
			synth.AppendIPv4UDP(nil, netip.MustParseAddrPort("10.9.0.1:5000"), netip.MustParseAddrPort("10.9.0.2:4789"), synth.AppendVXLAN(nil, 7, eth))))},
		{"linux cooked", layers.LinkTypeLinuxSLL, sll},
		{"linux cooked v2", layers.LinkTypeLinuxSLL2, sll2},
		{"raw IP", layers.LinkTypeRaw, ip},
		{"BSD loopback", layers.LinkTypeNull, null},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		w := pcapgo.NewWriter(&buf)
		w.WriteFileHeader(65535, tt.link)
		w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(tt.frame), Length: len(tt.frame)}, tt.frame)
		r := &recorder{}
		st, err := PlayReader(&buf, 4789, r)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if len(r.payloads) != 1 || r.payloads[0] != "GET /x HTTP/1.1\r\n\r\n" || st.Packets != 1 || st.Skipped != 0 {
			t.Errorf("%s: payloads %q, stats %+v", tt.name, r.payloads, st)
		}
	}
}

// TestNestedGzip reads a small file of gzip streams nested a hundred deep.
// Each level would cost a decompressor and its buffers, so a file a few
// kilobytes long could take many megabytes; a gzipped capture holds a
// capture, so the second level is refused.
func TestNestedGzip(t *testing.T) {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	file := buf.Bytes()
	for range 100 {
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.NoCompression)
		zw.Write(file)
		zw.Close()
		file = z.Bytes()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := each(bytes.NewReader(file), func(Packet) {})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "gzip stream inside a gzip stream") {
		t.Errorf("err = %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("a %d-byte file allocated %d bytes", len(file), alloc)
	}
}
