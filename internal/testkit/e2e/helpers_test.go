package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/cli"
	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/testkit/netlab"
)

// buildShadowtap builds the command into the test's temporary directory:
// the recorder runs in a namespace of its own, as its own process.
func buildShadowtap(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shadowtap")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/shadowtap/shadowtap/cmd/shadowtap").CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	return bin
}

// recordThroughMirror runs `shadowtap record` on the lab's mirror target
// while drive makes production's traffic, and returns the recording.
func recordThroughMirror(t *testing.T, lab *netlab.Lab, bin string, drive func()) string {
	t.Helper()
	rec := filepath.Join(t.TempDir(), "prod.strec")
	var recOut bytes.Buffer
	recorder := lab.Exec(lab.Mon, bin, "record", "-listen", "198.18.1.1:4789", "-output", rec, "-reorder-wait", "50ms")
	recorder.Stdout, recorder.Stderr = &recOut, &recOut
	if err := recorder.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped { // drive failed the test
			recorder.Process.Kill()
			recorder.Wait()
		}
	}()
	time.Sleep(500 * time.Millisecond) // the recorder binds its socket
	drive()
	time.Sleep(300 * time.Millisecond) // the last segments cross the mirror
	recorder.Process.Signal(syscall.SIGTERM)
	stopped = true
	if err := recorder.Wait(); err != nil {
		t.Fatalf("record: %v\n%s", err, recOut.String())
	}
	return rec
}

// curlRounds drives rounds curl runs in the client's namespace, each one
// keep-alive connection with round's arguments.
func curlRounds(t *testing.T, lab *netlab.Lab, rounds int, round func() []string) func() {
	return func() {
		for range rounds {
			curl(t, lab, round()...)
		}
	}
}

// curl runs curl in the client's namespace and returns its output.
func curl(t *testing.T, lab *netlab.Lab, args ...string) []byte {
	t.Helper()
	cmd := lab.Exec(lab.Client, "curl", append([]string{"-sS", "--max-time", "20"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, stderr.String())
	}
	return out
}

// runVerify runs `shadowtap verify` with args and returns its exit code,
// its JUnit file and its JSON report; a usage or input error (exit 2)
// fails the test. With SHADOWTAP_KEEP set, the report is kept there as
// keep.json.
func runVerify(t *testing.T, keep string, args ...string) (int, string, compare.Report) {
	t.Helper()
	dir := t.TempDir()
	junit, js := filepath.Join(dir, "junit.xml"), filepath.Join(dir, "report.json")
	var out, errOut bytes.Buffer
	code := cli.Main("test", append([]string{"verify", "-progress", "off", "-o", "", "-junit", junit, "-json", js}, args...), &out, &errOut)
	if code == 2 {
		t.Fatalf("verify: usage or input error:\n%s%s", out.String(), errOut.String())
	}
	x, _ := os.ReadFile(junit)
	var r compare.Report
	b, err := os.ReadFile(js)
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		t.Fatalf("verify's report: %v\n%s%s", err, out.String(), errOut.String())
	}
	if d := os.Getenv("SHADOWTAP_KEEP"); d != "" && keep != "" {
		os.WriteFile(filepath.Join(d, keep+".json"), b, 0o644)
	}
	return code, string(x), r
}
