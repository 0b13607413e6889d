package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// postgres is a PostgreSQL cluster of the test's own: Debian's server,
// in a temporary directory, listening on a Unix socket only (reachable
// from every network namespace, bound to none).
type postgres struct {
	bin, socketDir string
	cred           *syscall.Credential // the server's user: PostgreSQL refuses to run as root
}

// startPostgres starts a cluster, or skips the test with the reason.
func startPostgres(t *testing.T) *postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Skip("no PostgreSQL server (Debian postgresql)")
	}
	slices.Sort(bins)
	pg := &postgres{bin: filepath.Dir(bins[len(bins)-1])}
	dir, err := os.MkdirTemp("", "shadowtap-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Getuid() == 0 {
		pg.cred = &syscall.Credential{Uid: 65534, Gid: 65534} // nobody
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Skip("cannot hand a directory to nobody:", err)
		}
	}
	pg.socketDir = dir
	data := filepath.Join(dir, "data")
	if out, err := pg.cmd("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		t.Skipf("initdb: %v: %s", err, out)
	}
	server := pg.cmd("postgres", "-D", data, "-k", dir, "-c", "listen_addresses=", "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	var log bytes.Buffer
	server.Stdout, server.Stderr = &log, &log
	if err := server.Start(); err != nil {
		t.Skip("postgres:", err)
	}
	t.Cleanup(func() {
		server.Process.Signal(syscall.SIGINT) // fast shutdown
		done := make(chan struct{})
		go func() { server.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			server.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		if pg.cmd("pg_isready", "-h", dir, "-q").Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres did not start:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return pg
}

// cmd runs one of the server's programs as the server's user.
func (pg *postgres) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(pg.bin, name), args...)
	c.Env = append(os.Environ(), "LANG=C", "LC_ALL=C")
	if pg.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
		c.Dir = pg.socketDir
	}
	return c
}

// createDB makes a database from the SQL files, then runs the statements.
func (pg *postgres) createDB(t *testing.T, name string, files []string, sql ...string) {
	t.Helper()
	if out, err := pg.cmd("createdb", "-h", pg.socketDir, "-U", "postgres", name).CombinedOutput(); err != nil {
		t.Fatalf("createdb %s: %v: %s", name, err, out)
	}
	psql := func(args ...string) {
		base := []string{"-h", pg.socketDir, "-U", "postgres", "-d", name, "-v", "ON_ERROR_STOP=1", "-q"}
		if out, err := pg.cmd("psql", append(base, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("psql %s %v: %v: %s", name, args, err, out)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		psql("-c", string(b))
	}
	for _, s := range sql {
		psql("-c", s)
	}
}

// dsn is libpq's connection string for a database of the cluster.
func (pg *postgres) dsn(db string) string {
	return fmt.Sprintf("host=%s user=postgres dbname=%s", pg.socketDir, db)
}
