package cli

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/shadowtap/shadowtap/internal/testkit/shoptest"
)

// writeIdentity writes a new X25519 identity as age-keygen writes its
// file (comments, then the key) and returns the file and its recipient.
func writeIdentity(t *testing.T, dir string) (path, recipient string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, fmt.Sprintf("key-%s.txt", id.Recipient().String()[4:12]))
	text := fmt.Sprintf("# created: %s\n# public key: %s\n%s\n", time.Now().Format(time.RFC3339), id.Recipient(), id)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, id.Recipient().String()
}

// exit runs shadowtap with args and returns its exit code and output.
func exit(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main("test", args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestEncryptedRecordings records captures encrypted to two recipients:
// no request line of the capture, nor any piece of the clear recording,
// is on the disk in any file of the output directory; inspect without an identity exits 2 and says
// what to give, with either identity shows what the clear recording
// shows; replay with one sends the same requests as the clear recording,
// and without one sends nothing and exits 2.
func TestEncryptedRecordings(t *testing.T) {
	keys := t.TempDir()
	idFile, recipient := writeIdentity(t, keys)
	otherFile, other := writeIdentity(t, keys)
	strangerFile, _ := writeIdentity(t, keys)
	recipients := filepath.Join(keys, "recipients.txt")
	os.WriteFile(recipients, []byte("# the team\n"+other+"\n"), 0o644)
	for _, c := range []struct{ file, port string }{
		{"zeek__http-cooper-grill-dvwa.pcapng", "80"},
		{"zeek__http-1000-requests-one-dropped-response.pcap.gz", "80"},
		{"arkime__wireshark-retrans.pcap", "4000"},
	} {
		capture := pcaps + c.file
		clear := filepath.Join(t.TempDir(), "clear.strec")
		encDir := t.TempDir()
		enc := filepath.Join(encDir, "enc.strec")
		run(t, "record", "-keep-credentials", "-filter-request-port", c.port, "-input", capture, "-output", clear)
		run(t, "record", "-keep-credentials", "-filter-request-port", c.port, "-input", capture, "-output", enc,
			"-encrypt-to", recipient, "-encrypt-to-file", recipients)

		var lines [][]byte
		for _, r := range readRecords(t, clear) {
			lines = append(lines, firstLine(r.Request))
		}
		if len(lines) == 0 {
			t.Fatalf("%s: nothing recorded", c.file)
		}
		// The clear recording is the encrypted one's plaintext (credentials
		// kept, so the two writers wrote the same bytes): frames are
		// compressed, so pieces of it are looked for as well as the lines.
		plain, _ := os.ReadFile(clear)
		var pieces [][]byte
		step := max(32, len(plain)/500)
		for off := 16; off+32 <= len(plain); off += step {
			pieces = append(pieces, plain[off:off+32])
		}
		filepath.WalkDir(encDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, _ := os.ReadFile(path)
			if !bytes.HasPrefix(data, []byte("age-encryption.org/v1\n")) {
				t.Errorf("%s: %s is not an age file", c.file, path)
			}
			for _, l := range lines {
				if bytes.Contains(data, l) {
					t.Fatalf("%s: %q in clear in %s", c.file, l, path)
				}
			}
			for _, p := range pieces {
				if bytes.Contains(data, p) {
					t.Fatalf("%s: %s holds bytes of the clear recording (%q)", c.file, path, p)
				}
			}
			if fi, _ := d.Info(); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s has mode %v", c.file, path, fi.Mode().Perm())
			}
			return nil
		})

		code, stdout, stderr := exit("inspect", enc)
		if code != 2 || !strings.Contains(stderr, "encrypted") || !strings.Contains(stderr, "-identity FILE") || strings.Contains(stdout, "requests") {
			t.Errorf("%s: inspect without an identity: exit %d\n%s%s", c.file, code, stdout, stderr)
		}
		if code, _, stderr := exit("inspect", "-identity", strangerFile, enc); code != 2 || !strings.Contains(stderr, "none of the identities") {
			t.Errorf("%s: inspect with another identity: exit %d\n%s", c.file, code, stderr)
		}
		want, _ := run(t, "inspect", clear)
		for _, id := range []string{idFile, otherFile} {
			got, _ := run(t, "inspect", "-identity", id, enc)
			if !strings.HasPrefix(got, enc+": recording (encrypted)\n") || afterFirstLine(got) != afterFirstLine(want) {
				t.Errorf("%s: inspect of the encrypted recording:\n%s\nof the clear one:\n%s", c.file, got, want)
			}
			if !strings.Contains(got, fmt.Sprintf("requests     %d ", len(lines))) {
				t.Errorf("%s: inspect does not count %d requests:\n%s", c.file, len(lines), got)
			}
		}

		if direct, fromEnc := replayTo(t, c.port, clear), replayTo(t, c.port, "-identity", idFile, enc); !slices.Equal(direct, fromEnc) {
			t.Errorf("%s: the encrypted recording replays %d requests, the clear one %d, or they differ", c.file, len(fromEnc), len(direct))
		}
	}
}

func afterFirstLine(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return rest
}

// Replay, record and verify refuse an encrypted recording they cannot
// decrypt before anything is sent or written (exit 2); record reads one
// with its identity, and writes no GoReplay file when asked to encrypt.
func TestEncryptedRecordingNeedsItsKey(t *testing.T) {
	dir := t.TempDir()
	idFile, recipient := writeIdentity(t, dir)
	enc := filepath.Join(dir, "enc.strec")
	run(t, "record", "-input", pcaps+"zeek__http-cooper-grill-dvwa.pcapng", "-output", enc, "-encrypt-to", recipient)
	// Nothing listens on port 9: a replay that began would fail (exit 1).
	for _, args := range [][]string{
		{"replay", "-destination", "http://127.0.0.1:9", "-progress", "off", enc},
		{"verify", "-candidate", "http://127.0.0.1:9", "-progress", "off", enc},
		{"record", "-input", enc, "-output", filepath.Join(dir, "copy.strec")},
	} {
		code, stdout, stderr := exit(args...)
		if code != 2 || !strings.Contains(stderr, "is encrypted (age) and no identity was given") || !strings.Contains(stderr, "-identity FILE") {
			t.Errorf("%s without -identity: exit %d\n%s%s", args[0], code, stdout, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "copy.strec")); !os.IsNotExist(err) {
		t.Errorf("a refused record left its output: %v", err)
	}
	// Re-recorded with the identity, to the same recipient: the same records.
	again := filepath.Join(dir, "again.strec")
	run(t, "record", "-identity", idFile, "-input", enc, "-output", again, "-encrypt-to", recipient)
	a, _ := run(t, "inspect", "-identity", idFile, enc)
	b, _ := run(t, "inspect", "-identity", idFile, again)
	if !strings.Contains(a, "requests     3 ") || afterFirstLine(a) != afterFirstLine(b) {
		t.Errorf("re-recorded:\n%s\nfrom\n%s", b, a)
	}
	for _, args := range [][]string{
		{"record", "-input", enc, "-identity", idFile, "-output", filepath.Join(dir, "r.gor"), "-encrypt-to", recipient},
		{"record", "-input", enc, "-output", filepath.Join(dir, "x.strec"), "-encrypt-to", "age1notarecipient"},
		{"record", "-input", enc, "-output", filepath.Join(dir, "x.strec"), "-encrypt-to", "AGE-SECRET-KEY-1QQQQ"},
		{"record", "-input", enc, "-output", filepath.Join(dir, "x.strec"), "-encrypt-to-file", idFile},
		{"inspect", "-identity", filepath.Join(dir, "missing.txt"), enc},
	} {
		code, _, stderr := exit(args...)
		if code != 2 || strings.Contains(stderr, "AGE-SECRET-KEY-1QQQQ") {
			t.Errorf("%q: exit %d: %s", args, code, stderr)
		}
	}
	for _, name := range []string{"r.gor", "x.strec"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("a refused record wrote %s", name)
		}
	}
}

// TestVerifyEncrypted: the release gate reads an encrypted recording with
// its identity and finds the same regressions as in the clear one.
func TestVerifyEncrypted(t *testing.T) {
	if testing.Short() {
		t.Skip("replays a recording over loopback")
	}
	dir := t.TempDir()
	idFile, recipient := writeIdentity(t, dir)
	clear, enc := filepath.Join(dir, "prod.strec"), filepath.Join(dir, "enc.strec")
	if err := shoptest.Record(clear, 10, 24, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	run(t, "record", "-keep-credentials", "-input", clear, "-output", enc, "-encrypt-to", recipient)
	for _, c := range []struct {
		planted bool
		code    int
	}{{false, 0}, {true, 1}} {
		url := serve(t, shoptest.New(3, c.planted))
		code, stdout, stderr := exit("verify", "-candidate", url, "-progress", "off", "-identity", idFile, enc)
		if code != c.code || !strings.Contains(stdout, "replayed 240 of 240 recorded exchange(s)") {
			t.Errorf("planted %v: exit %d, want %d\n%s%s", c.planted, code, c.code, stdout, stderr)
		}
	}
}

// With Debian's age installed, a key made by age-keygen encrypts a
// recording that age itself decrypts to the clear recording's bytes.
func TestAgeKeygenInterop(t *testing.T) {
	keygen, err := exec.LookPath("age-keygen")
	if err != nil {
		t.Skip("no age-keygen (Debian's age package)")
	}
	ageBin, err := exec.LookPath("age")
	if err != nil {
		t.Skip("no age (Debian's age package)")
	}
	dir := t.TempDir()
	idFile := filepath.Join(dir, "key.txt")
	if out, err := exec.Command(keygen, "-o", idFile).CombinedOutput(); err != nil {
		t.Fatalf("age-keygen: %v\n%s", err, out)
	}
	pub, err := exec.Command(keygen, "-y", idFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	clear, enc, dec := filepath.Join(dir, "clear.strec"), filepath.Join(dir, "enc.strec"), filepath.Join(dir, "dec.strec")
	capture := pcaps + "zeek__http-cooper-grill-dvwa.pcapng"
	// Credentials kept: redaction's pseudonyms differ from one recording
	// to the next, and the bytes are compared.
	run(t, "record", "-keep-credentials", "-input", capture, "-output", clear)
	run(t, "record", "-keep-credentials", "-input", capture, "-output", enc, "-encrypt-to", strings.TrimSpace(string(pub)))
	if out, err := exec.Command(ageBin, "-d", "-i", idFile, "-o", dec, enc).CombinedOutput(); err != nil {
		t.Fatalf("age -d: %v\n%s", err, out)
	}
	a, _ := os.ReadFile(clear)
	b, _ := os.ReadFile(dec)
	if !bytes.Equal(a, b) {
		t.Errorf("age decrypts %d bytes, the clear recording has %d, or they differ", len(b), len(a))
	}
	got, _ := run(t, "inspect", "-identity", idFile, enc)
	want, _ := run(t, "inspect", clear)
	if afterFirstLine(got) != afterFirstLine(want) {
		t.Errorf("inspect:\n%s\nwant\n%s", got, want)
	}
}
