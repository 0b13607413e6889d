package e2e

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/cli"
	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/fakeshop"
	"github.com/shadowtap/shadowtap/internal/netlab"
	"github.com/shadowtap/shadowtap/internal/rawserver"
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
	dir := t.TempDir()
	bin := filepath.Join(dir, "shadowtap")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/shadowtap/shadowtap/cmd/shadowtap").CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
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
	rec := filepath.Join(dir, "prod.strec")
	var recOut bytes.Buffer
	recorder := lab.Exec(lab.Mon, bin, "record", "-listen", "198.18.1.1:4789", "-output", rec, "-reorder-wait", "50ms")
	recorder.Stdout, recorder.Stderr = &recOut, &recOut
	if err := recorder.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the recorder binds its socket
	const rounds = 12
	for range rounds { // one keep-alive connection per round, every path
		var args []string
		for _, p := range fakeshop.Paths {
			args = append(args, "-o", "/dev/null", "http://198.18.0.2"+p)
		}
		if out, err := lab.Exec(lab.Client, "curl", append([]string{"-sS", "--max-time", "20"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
	}
	time.Sleep(300 * time.Millisecond) // the last segments cross the mirror
	recorder.Process.Signal(syscall.SIGTERM)
	if err := recorder.Wait(); err != nil {
		t.Fatalf("record: %v\n%s", err, recOut.String())
	}

	verify := func(shop *fakeshop.Shop) (int, string, compare.Report) {
		srv, err := shop.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		junit, js := filepath.Join(dir, "junit.xml"), filepath.Join(dir, "report.json")
		var out, errOut bytes.Buffer
		code := cli.Main("test", []string{"verify", rec, "-candidate", "http://" + srv.Addr(), "-junit", junit, "-json", js}, &out, &errOut)
		x, _ := os.ReadFile(junit)
		var r compare.Report
		if b, err := os.ReadFile(js); err == nil {
			json.Unmarshal(b, &r)
		}
		if code == 2 {
			t.Fatalf("verify: usage or input error:\n%s%s", out.String(), errOut.String())
		}
		return code, string(x), r
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
