package cli

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// A capture whose every request the strict parser refuses (bare LF line
// ends) replays nothing, and the summary says why, with the count.
func TestReplaySaysWhyNothingWasReplayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bare.pcap")
	c := synth.NewConn(netip.MustParseAddrPort("10.1.0.1:20000"), netip.MustParseAddrPort("10.0.0.2:80"), 1000, 2000)
	segs := append(c.Handshake(), c.ClientData([]byte("GET /bare HTTP/1.1\nHost: shop\n\n"))...)
	writeCapture(t, path, append(segs, c.Close()...))
	var out, errOut bytes.Buffer
	code := Main("test", []string{"replay", "-destination", "http://127.0.0.1:9", "-progress", "off", path}, &out, &errOut)
	if code != 0 || !strings.Contains(errOut.String(), "1 refused: bare_lf 1") {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out.String(), errOut.String())
	}
}
