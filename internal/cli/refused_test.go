package cli

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/shadowtap/shadowtap/internal/synth"
)

// A capture whose every request the strict parser refuses (bare LF line
// ends) replays nothing, and the summary says why, with the count.
func TestReplaySaysWhyNothingWasReplayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bare.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w := pcapgo.NewWriter(bw)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	c := synth.NewConn(netip.MustParseAddrPort("10.1.0.1:20000"), netip.MustParseAddrPort("10.0.0.2:80"), 1000, 2000)
	src, dst := netip.MustParseAddrPort("10.9.0.1:41000"), netip.MustParseAddrPort("10.9.0.2:4789")
	eth := []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00}
	ts := time.Unix(1_700_000_000, 0)
	segs := append(c.Handshake(), c.ClientData([]byte("GET /bare HTTP/1.1\nHost: shop\n\n"))...)
	segs = append(segs, c.Close()...)
	for _, s := range segs {
		pkt := synth.AppendIPv4UDP(append([]byte(nil), eth...), src, dst, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, s)))
		ts = ts.Add(time.Millisecond)
		w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(pkt), Length: len(pkt)}, pkt)
	}
	bw.Flush()
	f.Close()
	var out, errOut bytes.Buffer
	code := Main("test", []string{"replay", "-destination", "http://127.0.0.1:9", "-progress", "off", path}, &out, &errOut)
	if code != 0 || !strings.Contains(errOut.String(), "1 refused: bare_lf 1") {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out.String(), errOut.String())
	}
}
