package e2e

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/testkit/fakeshop"
	"github.com/shadowtap/shadowtap/internal/testkit/netlab"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
)

// TestRecordThenVerify is the release gate end to end: `shadowtap record`
// takes both directions of production's traffic from the kernel's VXLAN
// mirror, then `shadowtap verify` replays the recording to a candidate
// with planted differences (exit 1, the JUnit file naming exactly those
// endpoints and fields) and to production's own code (exit 0).
func TestRecordThenVerify(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip("network namespaces:", err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	bin := buildShadowtap(t)
	lab, err := netlab.Setup(netlab.Options{InnerMTU: 1500, VNI: 77})
	if err != nil {
		t.Skip("cannot build namespaces here:", err)
	}
	t.Cleanup(lab.Close)
	if err := lab.Do(lab.Prod, func() error {
		ln, err := netListen("198.18.0.2:80")
		if err != nil {
			return err
		}
		prod := rawserver.ServeResponding(ln, fakeshop.New(4, false).Handler())
		t.Cleanup(prod.Close)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	const rounds = 12
	rec := recordThroughMirror(t, lab, bin, curlRounds(t, lab, rounds, func() (args []string) { // every path
		for _, p := range fakeshop.Paths {
			args = append(args, "-o", "/dev/null", "http://198.18.0.2"+p)
		}
		return args
	}))

	verify := func(shop *fakeshop.Shop) (int, string, compare.Report) {
		srv, err := shop.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		return runVerify(t, "", rec, "-candidate", "http://"+srv.Addr())
	}
	code, junit, r := verify(fakeshop.New(1, true))
	if code != 1 {
		t.Errorf("verify of the planted candidate: exit %d, want 1", code)
	}
	for _, p := range fakeshop.Planted {
		ep, field, _ := strings.Cut(strings.TrimPrefix(p, "GET "), " ")
		if !strings.Contains(junit, ep) || !strings.Contains(junit, field) {
			t.Errorf("JUnit lacks %s %s:\n%s", ep, field, junit)
		}
	}
	if r.Regressions != len(fakeshop.Planted) {
		t.Errorf("%d regressions, want exactly the %d planted", r.Regressions, len(fakeshop.Planted))
	}
	code, junit, r = verify(fakeshop.New(5, false))
	if code != 0 || strings.Contains(junit, "<failure") || r.Regressions != 0 {
		t.Errorf("verify of production's own code: exit %d, %d regressions\n%s", code, r.Regressions, junit)
	}
}

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
