// Package pgtest runs a PostgreSQL cluster of a test's own: Debian's
// server (the postgresql package), initdb in a temporary directory,
// listening on a Unix socket only (reachable from every network
// namespace, bound to none), stopped with the test. A test skips where
// the server is absent.
package pgtest

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

// Cluster is one running server.
type Cluster struct {
	bin, socketDir string
	cred           *syscall.Credential // the server's user: PostgreSQL refuses to run as root
}

// Start starts a cluster with the server settings given (name=value, as
// postgres -c takes them), or skips the test with the reason.
func Start(t testing.TB, settings ...string) *Cluster {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Skip("no PostgreSQL server (Debian postgresql)")
	}
	slices.Sort(bins)
	pg := &Cluster{bin: filepath.Dir(bins[len(bins)-1])}
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
	args := []string{"-D", data, "-k", dir, "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	server := pg.cmd("postgres", args...)
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
func (pg *Cluster) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(pg.bin, name), args...)
	c.Env = append(os.Environ(), "LANG=C", "LC_ALL=C")
	if pg.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
		c.Dir = pg.socketDir
	}
	return c
}

// CreateDB makes a database from the SQL files, then runs the statements.
func (pg *Cluster) CreateDB(t testing.TB, name string, files []string, sql ...string) {
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

// SQL runs statements on a database of the cluster, as the superuser.
func (pg *Cluster) SQL(t testing.TB, db string, sql ...string) {
	t.Helper()
	for _, s := range sql {
		if out, err := pg.cmd("psql", "-h", pg.socketDir, "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-q", "-c", s).CombinedOutput(); err != nil {
			t.Fatalf("psql %s %q: %v: %s", db, s, err, out)
		}
	}
}

// DSN is libpq's connection string for a database of the cluster.
func (pg *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s user=postgres dbname=%s", pg.socketDir, db)
}

// DSNAs is DSN for another role of the cluster.
func (pg *Cluster) DSNAs(db, user string) string {
	return fmt.Sprintf("host=%s user=%s dbname=%s", pg.socketDir, user, db)
}
