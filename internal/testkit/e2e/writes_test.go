package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/testkit/netlab"
	"github.com/shadowtap/shadowtap/internal/testkit/pgtest"
)

// TestPostgresWritesCompared is the comparison of what each version writes,
// on real parts: an order service (Flask) whose old version places an
// order through a stored procedure and whose new version does it in
// application code, each on its own PostgreSQL server, the new one's
// sequences 5000 ahead. Production's traffic (place, show, pay) is
// recorded through the kernel mirror and verified against both versions
// with their databases' logical replication streams read: the answers
// agree, and exactly the two things the new code writes wrong are found,
// on the endpoint that writes them (a total truncated instead of rounded,
// an event written twice), as write findings. The old code against itself
// is reported clean, with every request's writes compared. The old
// version marks its transactions with the request's marker; the new one
// does not (its writes are attributed by the request's window). Then the
// same live: a handler replays the mirror's copy as it happens, with the
// same findings.
func TestPostgresWritesCompared(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two PostgreSQL servers and their services")
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
	logical := []string{"wal_level=logical", "max_replication_slots=8", "max_wal_senders=8"}
	old, next := pgtest.Start(t, logical...), pgtest.Start(t, logical...)
	schema, _ := filepath.Abs("testdata/writes/schema.sql")
	ahead := []string{"ALTER SEQUENCE orders_id_seq RESTART WITH 5001", "ALTER SEQUENCE order_events_id_seq RESTART WITH 9001"}
	old.CreateDB(t, "prod", []string{schema})
	old.CreateDB(t, "base_ab", []string{schema})
	old.CreateDB(t, "base_aa", []string{schema})
	old.CreateDB(t, "base_live", []string{schema})
	next.CreateDB(t, "cand_live", []string{schema}, ahead...)
	next.CreateDB(t, "cand_ab", []string{schema}, ahead...)
	next.CreateDB(t, "cand_aa", []string{schema}, ahead...)

	app, _ := filepath.Abs("testdata/writes/app.py")
	s := shop{"writes", func(string) []string { return []string{python, app} }}
	logs := t.TempDir()
	start := func(lab *netlab.Lab, ns, addr, dsn, version, mark string) (url, log string) {
		f, err := os.CreateTemp(logs, version+"-*.log")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		log = f.Name()
		return startShop(t, s, lab, ns, addr, "A", "DSN="+dsn, "VERSION="+version, "MARK="+mark, "LOG="+log), log
	}
	lab, err := netlab.Setup(netlab.Options{InnerMTU: 1500, VNI: 77})
	if err != nil {
		t.Skip("cannot build namespaces here:", err)
	}
	t.Cleanup(lab.Close)

	bin := buildShadowtap(t)
	_, prodLog := start(lab, lab.Prod, "198.18.0.2:80", old.DSN("prod"), "procedure", "0")
	const customers = 30
	rec := recordThroughMirror(t, lab, bin, func() { driveOrders(t, lab, customers) })
	if got := statuses(t, prodLog); got.ok != 3*customers {
		t.Fatalf("production answered %d requests 2xx, want %d: %v", got.ok, 3*customers, got.all)
	}

	verify := func(name, baseDSN, candDSN, candVersion, candMark string) (int, string, compare.Report) {
		baseURL, _ := start(nil, "", "", baseDSN, "procedure", "1")
		candURL, _ := start(nil, "", "", candDSN, candVersion, candMark)
		t.Setenv("BASE_DSN", baseDSN)
		t.Setenv("CAND_DSN", candDSN)
		conf := filepath.Join(t.TempDir(), "writes.yaml")
		os.WriteFile(conf, []byte(`compare:
  writes:
    baseline: {postgres: {dsn_env: BASE_DSN}}
    candidate: {postgres: {dsn_env: CAND_DSN}}
`), 0o600)
		return runVerify(t, name, "-config", conf, "-baseline", baseURL, "-candidate", candURL, rec)
	}

	code, junit, r := verify("writes-ab", old.DSN("base_ab"), next.DSN("cand_ab"), "app", "0")
	var got []string
	for ep, keys := range findings(r) {
		for _, k := range keys {
			got = append(got, ep+" "+compare.KindOf(k)+" "+k)
		}
	}
	slices.Sort(got)
	want := []string{
		"POST /api/orders write write.insert.public.order_events[*]",
		"POST /api/orders write write.insert.public.orders[*].total",
	}
	if code != 1 || !slices.Equal(got, want) {
		t.Errorf("procedure vs application code: exit %d, findings\n%s\nwant\n%s", code, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := strings.Count(junit, `type="write regression"`); n != 2 {
		t.Errorf("JUnit holds %d write regressions, want 2", n)
	}
	if r.WritesCompared < 3*customers {
		t.Errorf("writes compared for %d exchanges, want %d", r.WritesCompared, 3*customers)
	}

	code, _, r = verify("writes-aa", old.DSN("base_aa"), next.DSN("cand_aa"), "procedure", "1")
	if code != 0 || r.Regressions != 0 || r.WritesCompared < 3*customers {
		t.Errorf("the same code on both sides: exit %d, %d regressions %v, writes compared for %d exchanges",
			code, r.Regressions, findings(r), r.WritesCompared)
	}

	// Live: the handler replays the mirror's copy of production's traffic
	// as it happens, and reads both databases' streams while it runs.
	baseURL, _ := start(nil, "", "", old.DSN("base_live"), "procedure", "1")
	candURL, _ := start(nil, "", "", next.DSN("cand_live"), "app", "0")
	t.Setenv("BASE_LIVE_DSN", old.DSN("base_live"))
	t.Setenv("CAND_LIVE_DSN", next.DSN("cand_live"))
	cfg := config.Default()
	cfg.Listen, cfg.HealthListen, cfg.AdminListen = "198.18.1.1:4789", "", ""
	cfg.ReorderWait = 50 * time.Millisecond
	cfg.Targets = []config.Target{{Name: "candidate", Destination: candURL}, {Name: "baseline", Destination: baseURL}}
	cfg.Compare.Candidate, cfg.Compare.Baseline = "candidate", "baseline"
	cfg.Compare.Writes = map[string]config.Writes{
		"baseline":  {Postgres: &config.PostgresWrites{DSNEnv: "BASE_LIVE_DSN"}},
		"candidate": {Postgres: &config.PostgresWrites{DSNEnv: "CAND_LIVE_DSN"}}}
	h := startHandler(t, lab, cfg)
	time.Sleep(300 * time.Millisecond) // the handler binds its socket
	driveOrders(t, lab, customers)
	c := h.Comparator()
	for deadline := time.Now().Add(30 * time.Second); c.Stats.WritesCompared.Load() < 3*customers && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	r = c.Report()
	if d := os.Getenv("SHADOWTAP_KEEP"); d != "" {
		b, _ := json.Marshal(r)
		os.WriteFile(filepath.Join(d, "writes-live.json"), b, 0o644)
	}
	got = nil
	for ep, keys := range findings(r) {
		for _, k := range keys {
			got = append(got, ep+" "+compare.KindOf(k)+" "+k)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) || r.WritesCompared < 3*customers {
		t.Errorf("live: findings\n%s\nwant\n%s\nwrites compared for %d exchanges", strings.Join(got, "\n"), strings.Join(want, "\n"), r.WritesCompared)
	}
}

// driveOrders has customers place an order, look at it and pay it, from
// the client's namespace, each request on a connection of its own.
func driveOrders(t *testing.T, lab *netlab.Lab, customers int) {
	const prod = "http://198.18.0.2"
	for i := range customers {
		var placed struct{ ID int }
		decode(t, curl(t, lab, "-H", "Content-Type: application/json", "--data",
			fmt.Sprintf(`{"customer":"c%d","qty":%d}`, i, 1+i%2), prod+"/api/orders"), &placed)
		curl(t, lab, "-o", "/dev/null", fmt.Sprintf("%s/api/orders/%d", prod, placed.ID))
		curl(t, lab, "-o", "/dev/null", "-X", "POST", fmt.Sprintf("%s/api/orders/%d/pay", prod, placed.ID))
	}
}
