// Package deploy holds the deployment files (CloudFormation template,
// systemd unit, sysctl settings) and the tests that check them.
package deploy

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeRelease runs `make release` and checks what it produced: the
// amd64 binary starts and prints its version, the arm64 one is built for
// that architecture, both are static, and SHA256SUMS matches them.
func TestMakeRelease(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("needs make")
	}
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("needs sha256sum")
	}
	dist := t.TempDir()
	cmd := exec.Command("make", "-C", "..", "release", "DIST="+dist, "VERSION=v9.9.9-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(dist, "shadowtap-linux-amd64"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "shadowtap v9.9.9-test ") {
		t.Errorf("amd64 version: %q %v", out, err)
	}
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		f, err := elf.Open(filepath.Join(dist, "shadowtap-linux-"+arch))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machine {
			t.Errorf("%s: machine %v", arch, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: dynamically linked", arch)
			}
		}
		f.Close()
	}
	sums, _ := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		want, name, _ := strings.Cut(line, "  ")
		b, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want {
			t.Errorf("%s: checksum differs", name)
		}
	}
}
