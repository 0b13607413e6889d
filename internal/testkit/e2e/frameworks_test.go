package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/testkit/netlab"
)

// shop is one of testdata/frameworks' shops: how to start it on an
// address, or why it cannot run here.
type shop struct {
	name string
	argv func(addr string) []string
}

// frameworkShops finds the shops this machine can run. A missing runtime
// or package skips that shop with its reason; CI installs them all.
func frameworkShops(t *testing.T, dir string) (shops []shop, skipped []string) {
	root, err := filepath.Abs("testdata/frameworks")
	if err != nil {
		t.Fatal(err)
	}
	goBin := filepath.Join(dir, "goshop")
	if out, err := exec.Command("go", "build", "-o", goBin, "./testdata/frameworks/go").CombinedOutput(); err != nil {
		skipped = append(skipped, fmt.Sprintf("go: build: %v: %s", err, out))
	} else {
		shops = append(shops, shop{"go", func(string) []string { return []string{goBin} }})
	}
	if node, err := exec.LookPath("node"); err != nil {
		skipped = append(skipped, "node: no node")
	} else if _, err := os.Stat(filepath.Join(root, "node/node_modules/express")); err != nil {
		skipped = append(skipped, "node: express not installed (npm ci in testdata/frameworks/node)")
	} else {
		app := filepath.Join(root, "node/app.js")
		shops = append(shops, shop{"express", func(string) []string { return []string{node, app} }})
	}
	python := debianPython("flask, waitress")
	if python == "" {
		skipped = append(skipped, "flask: no python3 with flask and waitress (Debian python3-flask python3-waitress)")
	} else {
		app := filepath.Join(root, "python/app.py")
		shops = append(shops, shop{"flask", func(string) []string { return []string{python, app} }})
	}
	if php, err := exec.LookPath("php"); err != nil {
		skipped = append(skipped, "php: no php (Debian php-cli)")
	} else {
		app := filepath.Join(root, "php/app.php")
		shops = append(shops, shop{"php", func(addr string) []string { return []string{php, "-S", addr, app} }})
		// As PHP runs in production, several workers at once (php-fpm's
		// pool), not the built-in server's one request at a time.
		t.Setenv("PHP_CLI_SERVER_WORKERS", "4")
	}
	return shops, skipped
}

// shopPaths are the GETs of a round; each round also posts an order.
var shopPaths = []string{
	"/api/items", "/api/items/0", "/api/items/1", "/api/items/2", "/api/items/3",
	"/api/ranking", "/api/slow", "/api/status", "/api/report.csv", "/api/health.txt",
}

// shopPlanted are the findings variant B must raise, each exactly once:
// endpoint and the start of the finding's key.
var shopPlanted = map[string][]string{
	"GET /api/items/{id}": {"status", "body.item.price"},
	"GET /api/items":      {"header.Cache-Control"},
	"GET /api/ranking":    {"body.ranking:order"},
	"GET /api/slow":       {"latency"},
}

// TestFrameworksSameCodeReportsNothing is the verdict on real encoders:
// the same shop written with Go's net/http, express, Flask and PHP,
// recorded through the kernel's VXLAN mirror, then verified against its
// own code (A/A: nothing reported, exit 0) and against a build with planted
// changes (A/B: exactly those, each once). The values that vary by
// themselves are each framework's own: its times of now, epoch numbers,
// request ids, counters, set order, ETags and Date headers.
func TestFrameworksSameCodeReportsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four frameworks")
	}
	if err := netlab.Available(); err != nil {
		t.Skip("network namespaces:", err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	dir := t.TempDir()
	bin := buildShadowtap(t)
	shops, skipped := frameworkShops(t, dir)
	for _, s := range skipped {
		t.Log("skipped:", s)
	}
	if len(shops) == 0 {
		t.Skip("no framework can run here")
	}
	for _, s := range shops {
		t.Run(s.name, func(t *testing.T) { testShop(t, bin, s) })
	}
}

func testShop(t *testing.T, bin string, s shop) {
	lab, err := netlab.Setup(netlab.Options{InnerMTU: 1500, VNI: 77})
	if err != nil {
		t.Skip("cannot build namespaces here:", err)
	}
	t.Cleanup(lab.Close)
	startShop(t, s, lab, lab.Prod, "198.18.0.2:80", "A")

	const rounds = 40
	rec := recordThroughMirror(t, lab, bin, curlRounds(t, lab, rounds, func() (args []string) {
		for _, p := range shopPaths {
			args = append(args, "-o", "/dev/null", "http://198.18.0.2"+p)
		}
		return append(args, "--next", "-sS", "--max-time", "20", "-o", "/dev/null",
			"-H", "Content-Type: application/json", "--data", `{"item":1,"qty":2}`, "http://198.18.0.2/api/orders")
	}))

	baseline := startShop(t, s, nil, "", "", "A")
	secondary := startShop(t, s, nil, "", "", "A")
	// As many requests at once as this machine's two cores serve with
	// three shops on them: a replay that saturates its targets measures
	// their queues, and every endpoint queues.
	const workers = "4"
	verify := func(variant string, withBaselines bool) (int, string, compare.Report) {
		args := []string{rec, "-workers", workers, "-candidate", startShop(t, s, nil, "", "", variant)}
		keep := s.name + "-" + variant
		if withBaselines {
			args = append(args, "-baseline", baseline, "-secondary", secondary)
		} else {
			keep += "-production"
		}
		return runVerify(t, keep, args...)
	}

	// Against production's recorded answers alone (passive), then with a
	// baseline and its secondary as well.
	for _, withBaselines := range []bool{false, true} {
		code, junit, r := verify("A", withBaselines)
		if r.Compared < rounds*uint64(len(shopPaths)) {
			t.Errorf("A/A (baselines %v): %d exchanges compared, want at least %d", withBaselines, r.Compared, rounds*len(shopPaths))
		}
		if code != 0 || strings.Contains(junit, "<failure") || r.Regressions != 0 {
			t.Errorf("A/A (the same code, baselines %v): exit %d, %d regressions: %v", withBaselines, code, r.Regressions, findings(r))
		}
	}

	code, _, r := verify("B", true)
	if code != 1 {
		t.Errorf("A/B: exit %d, want 1", code)
	}
	got := findings(r)
	for ep, keys := range shopPlanted {
		for _, k := range keys {
			n := 0
			for _, f := range got[ep] {
				if strings.HasPrefix(f, k) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("A/B: %s %s found %d times, want once", ep, k, n)
			}
		}
	}
	want := 0
	for _, keys := range shopPlanted {
		want += len(keys)
	}
	if r.Regressions != want {
		t.Errorf("A/B: %d regressions, want exactly the %d planted: %v", r.Regressions, want, got)
	}
}

// findings are a report's finding keys by endpoint.
func findings(r compare.Report) map[string][]string {
	out := map[string][]string{}
	for _, ep := range r.Endpoints {
		if len(ep.Findings) > 0 {
			out[ep.Name] = append([]string(nil), ep.Findings...)
			sort.Strings(out[ep.Name])
		}
	}
	return out
}

// startShop runs a shop of the variant in the lab's namespace ns, or on
// loopback when lab is nil (addr "" picks a port), with env added to its
// environment, waits until it accepts connections and returns its URL.
// The test's cleanup stops it.
func startShop(t *testing.T, s shop, lab *netlab.Lab, ns, addr, variant string, env ...string) string {
	t.Helper()
	if addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
	}
	argv := s.argv(addr)
	var cmd *exec.Cmd
	if lab != nil {
		cmd = lab.Exec(ns, argv[0], argv[1:]...)
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	var out bytes.Buffer
	cmd.Env = append(append(os.Environ(), "ADDR="+addr, "VARIANT="+variant), env...)
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, stopped whole: PHP's workers are children
	// that would keep the output pipe (and Wait) open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	t.Cleanup(stop)
	dial := func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if lab != nil {
			err = lab.Do(ns, dial)
		} else {
			err = dial()
		}
		if err == nil {
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			stop() // out is complete and no longer written
			t.Fatalf("%s (%s) did not listen on %s: %v\n%s", s.name, variant, addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
