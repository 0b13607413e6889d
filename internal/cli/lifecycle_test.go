package cli

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
)

// The handler runs as a child process (this test binary, re-executed), so
// that real signals reach it and its exit code is seen.
func TestMain(m *testing.M) {
	if os.Getenv("SHADOWTAP_CLI_CHILD") == "1" {
		os.Exit(Main("test", os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// child starts the handler on loopback with the configuration file cfg.
func child(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SHADOWTAP_CLI_CHILD=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHealthy waits until the admin server answers, that is until the
// handler has opened its listeners and is running.
func waitHealthy(t *testing.T, admin string, out *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", admin, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the handler did not start:\n%s", out)
}

func writeTargets(t *testing.T, path string, names ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("targets:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    destination: http://127.0.0.1:9\n", n)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// SIGHUP and SIGTERM together, after the configuration file changed, in
// both orders: the reload and the stop are serialised, never a panic
// (once "close of closed channel": the reload retired targets the stop
// had already stopped), and the handler exits 0.
func TestReloadAndStopTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the handler 20 times")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shadowtap.yaml")
	for i := range 20 {
		writeTargets(t, cfg, "a", "b")
		admin := freeAddr(t, "tcp")
		cmd, out := child(t, "-config", cfg, "-listen", freeAddr(t, "udp"), "-health-listen", "",
			"-admin-listen", admin, "-drain-timeout", "2s")
		waitHealthy(t, admin, out)
		writeTargets(t, cfg, "c")
		first, second := syscall.SIGHUP, syscall.SIGTERM
		if i%2 == 1 {
			first, second = second, first
		}
		cmd.Process.Signal(first)
		cmd.Process.Signal(second)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil || strings.Contains(out.String(), "panic") {
				t.Fatalf("run %d (%v then %v): %v\n%s", i, first, second, err, out)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("run %d (%v then %v) did not exit:\n%s", i, first, second, out)
		}
	}
}

// A SIGHUP that arrives before the handler has opened anything, or while
// it stops, must not kill it (the default action of SIGHUP is to end the
// process). The configuration file is a FIFO, so the child is held inside
// its configuration loading, before any listener opens, while the test
// sends SIGHUP; opening the FIFO for writing returns once the child has
// opened it for reading.
func TestEarlySIGHUPDoesNotKill(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shadowtap.yaml")
	if err := syscall.Mkfifo(cfg, 0o600); err != nil {
		t.Skipf("no FIFO: %v", err)
	}
	admin := freeAddr(t, "tcp")
	cmd, out := child(t, "-config", cfg, "-listen", freeAddr(t, "udp"), "-health-listen", "",
		"-admin-listen", admin, "-drain-timeout", "1s")
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(cfg, os.O_WRONLY, 0)
		if err != nil {
			opened <- nil
			return
		}
		opened <- f
	}()
	var fifo *os.File
	select {
	case fifo = <-opened:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the child never read its configuration:\n%s", out)
	}
	if fifo == nil {
		t.Fatal("could not open the FIFO")
	}
	for range 5 {
		cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(2 * time.Millisecond)
	}
	// Reloads read the path again: a regular file by then.
	regular := filepath.Join(dir, "regular.yaml")
	writeTargets(t, regular, "a")
	if err := os.Rename(regular, cfg); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(fifo, "targets:\n  - name: a\n    destination: http://127.0.0.1:9\n")
	fifo.Close()
	waitHealthy(t, admin, out)
	cmd.Process.Signal(syscall.SIGTERM)
	for range 20 {
		cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, out)
	}
}

// shadowtap alone prints the usage and exits 2.
func TestNoArgumentsPrintsUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main("dev", nil, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "usage:") || strings.Contains(errOut.String(), "invalid configuration") {
		t.Errorf("output %q", errOut.String())
	}
}

// The file first and the flags after it, as people type it.
func TestReplayFileBeforeFlags(t *testing.T) {
	srv, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var out, errOut bytes.Buffer
	args := []string{"replay", pcaps + "zeek__http-get_nosyn.pcap", "-destination", "http://" + srv.Addr(), "-progress", "off"}
	if code := Main("dev", args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("the test server got %d requests, want 1", n)
	}
}

// Each command's help shows its own flags and the groups that mean
// something to it: replaying a file has no socket to listen on.
func TestHelpShowsOnlyTheCommandsFlags(t *testing.T) {
	tests := []struct {
		args      []string
		want, not []string
	}{
		{[]string{"replay", "-h"}, []string{"-speed", "-destination", "-workers", "every target:"}, []string{"-listen", "-health-listen", "-geneve-listen", "-admin-listen"}},
		{[]string{"inspect", "-h"}, []string{"-max-flows"}, []string{"-listen", "-destination", "-workers"}},
		{[]string{"run", "-h"}, []string{"-listen", "-destination", "-geneve-listen", "live capture:"}, nil},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		if code := Main("dev", tt.args, &out, &errOut); code != 0 {
			t.Errorf("%v: exit %d", tt.args, code)
		}
		help := out.String() + errOut.String()
		for _, w := range tt.want {
			if !strings.Contains(help, w+"\n") && !strings.Contains(help, w+" ") {
				t.Errorf("%v: help lacks %s:\n%s", tt.args, w, help)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(help, n+" ") || strings.Contains(help, n+"\n") {
				t.Errorf("%v: help shows %s", tt.args, n)
			}
		}
	}
}
