package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/cli"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/testkit/netlab"
	"github.com/shadowtap/shadowtap/internal/testkit/pgtest"
)

// TestStatefulReplayKeepsTheTestCopyInStep is correlation on real parts:
// a Flask shop on PostgreSQL whose sessions, bearer tokens, cart UUIDs and
// order numbers are made by the framework and the database. Production's
// traffic (users logging in, then using the session on other connections)
// is recorded through the kernel mirror and replayed with no extra flag to
// a second instance on a copy of the same snapshot, whose sequence is 5000
// ahead: what production's 2xx answered, the copy answers 2xx too, and it
// never receives a credential it did not issue. Without correlation (the
// control) the copy answers 401 and 404. verify of the same code reports
// nothing.
func TestStatefulReplayKeepsTheTestCopyInStep(t *testing.T) {
	start, lab := statefulLab(t, "copy", "control", "verify")
	bin := buildShadowtap(t)
	_, prodLog := start(lab, lab.Prod, "198.18.0.2:80", "prod")
	const users = 30
	rec := recordThroughMirror(t, lab, bin, func() { driveUsers(t, lab, users) })
	prodStatus := statuses(t, prodLog)
	if want := users * 7; len(prodStatus.all) != want || prodStatus.ok != want {
		t.Fatalf("production answered %d requests, %d of them 2xx; want all %d", len(prodStatus.all), prodStatus.ok, want)
	}

	replay := func(db string, args ...string) answered {
		url, log := start(nil, "", "", db)
		var out, errOut bytes.Buffer
		if code := cli.Main("test", append([]string{"replay", "-destination", url}, append(args, rec)...), &out, &errOut); code != 0 {
			t.Fatalf("replay: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		return statuses(t, log)
	}
	got := replay("copy")
	coherence := float64(got.ok) / float64(prodStatus.ok)
	t.Logf("coherence: %d of production's %d 2xx answered 2xx by the copy (%.1f%%)", got.ok, prodStatus.ok, 100*coherence)
	if coherence < 0.99 || got.unknown != 0 {
		t.Errorf("with correlation: %.1f%% coherent, %d requests with a credential the copy never issued; statuses %v",
			100*coherence, got.unknown, got.all)
	}
	control := replay("control", "-correlate=false")
	if c := float64(control.ok) / float64(prodStatus.ok); c > 0.5 || control.unknown == 0 {
		t.Errorf("control (no correlation): %.1f%% coherent, %d unknown credentials: the test would not see correlation fail", 100*c, control.unknown)
	}

	verifyURL, verifyLog := start(nil, "", "", "verify")
	code, junit, r := runVerify(t, "stateful", rec, "-candidate", verifyURL)
	if code != 0 || strings.Contains(junit, "<failure") || r.Regressions != 0 {
		var odd []string
		for _, s := range statuses(t, verifyLog).all {
			if s[0] != '2' {
				odd = append(odd, s)
			}
		}
		t.Errorf("verify of the same code: exit %d, %d regressions: %v; the candidate answered %v", code, r.Regressions, findings(r), odd)
	}
}

// TestStatefulLiveMirror is the same shop live: the handler replays the
// kernel mirror's copy of production's traffic to the copy as it happens,
// production's answers arriving on the mirror shortly after each request.
func TestStatefulLiveMirror(t *testing.T) {
	start, lab := statefulLab(t, "live")
	_, prodLog := start(lab, lab.Prod, "198.18.0.2:80", "prod")
	copyURL, copyLog := start(nil, "", "", "live")
	cfg := config.Default()
	cfg.Listen, cfg.HealthListen, cfg.AdminListen = "198.18.1.1:4789", "", ""
	cfg.ReorderWait = 50 * time.Millisecond
	cfg.Destination = copyURL
	h := startHandler(t, lab, cfg)
	time.Sleep(300 * time.Millisecond) // the handler binds its socket
	const users = 20
	driveUsers(t, lab, users)
	prodStatus := statuses(t, prodLog)
	var got answered
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = statuses(t, copyLog); len(got.all) >= len(prodStatus.all) {
			break
		}
	}
	coherence := float64(got.ok) / float64(prodStatus.ok)
	pairs := h.Targets()[0].Pairs.Stats()
	t.Logf("live coherence: %d of production's %d 2xx (%.1f%%); correlation %+v", got.ok, prodStatus.ok, 100*coherence, pairs)
	if prodStatus.ok != users*7 || coherence < 0.99 || got.unknown != 0 {
		t.Errorf("live: production %d 2xx of %d, copy %.1f%% coherent, %d unknown credentials; statuses %v",
			prodStatus.ok, len(prodStatus.all), 100*coherence, got.unknown, got.all)
	}
}

// statefulLab starts PostgreSQL with a production database and test
// copies named dbs, and a lab; start runs the shop on a database, in a
// namespace of the lab or on loopback (lab nil), and returns its URL and
// log. It skips the test where a part cannot run.
func statefulLab(t *testing.T, dbs ...string) (start func(lab *netlab.Lab, ns, addr, db string) (url, log string), lab *netlab.Lab) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL and its shops")
	}
	if err := netlab.Available(); err != nil {
		t.Skip("network namespaces:", err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	python := debianPython("flask, waitress, psycopg2")
	if python == "" {
		t.Skip("no python3 with flask, waitress and psycopg2 (Debian python3-flask python3-waitress python3-psycopg2)")
	}
	pg := pgtest.Start(t)
	schema, _ := filepath.Abs("testdata/stateful/schema.sql")
	// The test copies start from production's snapshot; their sequences
	// are ahead, as a copy's are once anything was created in it.
	pg.CreateDB(t, "prod", []string{schema})
	for _, db := range dbs {
		pg.CreateDB(t, db, []string{schema}, "ALTER SEQUENCE order_numbers RESTART WITH 6001")
	}
	app, _ := filepath.Abs("testdata/stateful/app.py")
	s := shop{"stateful", func(string) []string { return []string{python, app} }}
	logs := t.TempDir()
	start = func(lab *netlab.Lab, ns, addr, db string) (url, log string) {
		log = filepath.Join(logs, db+".log")
		return startShop(t, s, lab, ns, addr, "A", "DSN="+pg.DSN(db), "LOG="+log), log
	}
	lab, err := netlab.Setup(netlab.Options{InnerMTU: 1500, VNI: 77})
	if err != nil {
		t.Skip("cannot build namespaces here:", err)
	}
	t.Cleanup(lab.Close)
	return start, lab
}

// driveUsers has users log in and shop from the client's namespace, 7
// requests each, every step on a connection of its own: the session made
// on one is used on the next, a token from the login's body on the
// checkout, an order number from the checkout's in the next path.
func driveUsers(t *testing.T, lab *netlab.Lab, users int) { driveUsersFrom(t, lab, 1, users) }

// driveUsersFrom is driveUsers for users first, first+1, ...
func driveUsersFrom(t *testing.T, lab *netlab.Lab, first, users int) {
	const prod = "http://198.18.0.2"
	ct := "Content-Type: application/json"
	work := t.TempDir()
	for i := first; i < first+users; i++ {
		jar := filepath.Join(work, fmt.Sprintf("jar%d", i))
		var login struct{ Token string }
		decode(t, curl(t, lab, "-c", jar, "-H", ct, "--data", fmt.Sprintf(`{"user":"user%d"}`, i), prod+"/api/login"), &login)
		var cart struct{ ID string }
		decode(t, curl(t, lab, "-b", jar, "-X", "POST", prod+"/api/carts"), &cart)
		items := prod + "/api/carts/" + cart.ID
		var order struct{ Order struct{ Number int } }
		decode(t, curl(t, lab, "-b", jar, "-H", ct, "--data", `{"qty":2}`, "-o", "/dev/null", items+"/items",
			"--next", "-sS", "-b", jar, "-H", ct, "--data", `{"qty":1}`, "-o", "/dev/null", items+"/items",
			"--next", "-sS", "-H", "Authorization: Bearer "+login.Token, "-X", "POST", items+"/checkout"), &order)
		curl(t, lab, "-b", jar, "-o", "/dev/null", fmt.Sprintf("%s/api/orders/%d", prod, order.Order.Number),
			"--next", "-sS", "-o", "/dev/null", prod+"/api/products")
	}
}

// answered is what a stateful shop's log says it answered.
type answered struct {
	all     []string // "status method path", in order
	strange []bool   // of each: it carried a credential the shop never issued
	ok      int      // 2xx
	unknown int      // requests with a credential it never issued
}

// after is what a shop answered after its first n requests.
func (a answered) after(n int) answered {
	out := answered{all: a.all[n:], strange: a.strange[n:]}
	for i, s := range out.all {
		if s[0] == '2' {
			out.ok++
		}
		if out.strange[i] {
			out.unknown++
		}
	}
	return out
}

func statuses(t *testing.T, log string) answered {
	t.Helper()
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var a answered
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 4 {
			continue
		}
		a.all = append(a.all, strings.Join(fields[:3], " "))
		a.strange = append(a.strange, fields[3] == "unknown")
		if strings.HasPrefix(fields[0], "2") {
			a.ok++
		}
		if fields[3] == "unknown" {
			a.unknown++
		}
	}
	return a
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

// debianPython is a python3 that imports the modules: Debian's, whose
// packages CI installs, ahead of any other on PATH (pyenv's may lack them).
func debianPython(modules string) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import "+modules).Run() == nil {
			return p
		}
	}
	return ""
}
