package decode_test

import (
	"net/netip"
	"testing"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

func TestDecodeGeneve(t *testing.T) {
	seg := synth.Segment{Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:80"),
		Seq: 7, Flags: decode.FlagACK, Payload: []byte("GET / HTTP/1.1\r\n\r\n")}
	frame := synth.AppendFrame(nil, seg)
	ip := frame[14:]
	// AWS's Gateway Load Balancer options: three TLVs, 32 bytes in all.
	awsOpts := make([]byte, 32)
	awsOpts[0], awsOpts[1], awsOpts[2], awsOpts[3] = 0x01, 0x08, 0x01, 0x03
	vxlan := synth.AppendVXLAN(nil, 55, frame)
	nested := synth.AppendIPv4UDP(nil, netip.MustParseAddrPort("172.31.0.5:40000"), netip.MustParseAddrPort("172.31.0.9:4789"), vxlan)
	tests := []struct {
		name    string
		in      []byte
		want    decode.Reason
		wantVNI uint32
	}{
		{"ethernet with AWS options", synth.AppendGeneve(nil, 4242, 0x6558, awsOpts, frame), decode.OK, 4242},
		{"IPv4 inside (GWLB)", synth.AppendGeneve(nil, 4242, 0x0800, awsOpts, ip), decode.OK, 4242},
		{"VXLAN inside IPv4 inside Geneve", synth.AppendGeneve(nil, 4242, 0x0800, nil, nested), decode.OK, 55},
		{"short header", []byte{0, 0, 0x65}, decode.ShortGeneve, 0},
		{"options longer than the datagram", synth.AppendGeneve(nil, 1, 0x6558, awsOpts, nil)[:20], decode.ShortGeneve, 0},
		{"unknown protocol", synth.AppendGeneve(nil, 1, 0x88cc, nil, frame), decode.NotIP, 0},
	}
	for _, tt := range tests {
		var p decode.Packet
		if got := p.DecodeGeneve(tt.in); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
			continue
		}
		if tt.want == decode.OK && (p.VNI != tt.wantVNI || string(p.Payload) != "GET / HTTP/1.1\r\n\r\n" || p.Seq != 7) {
			t.Errorf("%s: vni %d payload %q", tt.name, p.VNI, p.Payload)
		}
	}
}
