package cli

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/source"
	"github.com/shadowtap/shadowtap/internal/testkit/ec2fake"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

const pcaps = "../../testdata/pcaps/"

func run(t *testing.T, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := Main("dev", args, &out, &errOut); code != 0 {
		t.Fatalf("shadowtap %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// replayTo replays files to a fresh raw server and returns what it received.
func replayTo(t *testing.T, port string, files ...string) []string {
	t.Helper()
	srv, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	run(t, append([]string{"replay", "-speed", "max", "-progress", "off", "-filter-request-port", port,
		"-destination", "http://" + srv.Addr()}, files...)...)
	var got []string
	for _, r := range srv.Requests() {
		// The Host header names the server, which differs per run.
		got = append(got, strings.ReplaceAll(string(r.Raw), srv.Addr(), "TEST"))
	}
	slices.Sort(got)
	return got
}

// TestRoundTrips: capture file -> recording -> replay delivers exactly the
// same requests as replaying the capture directly; so does the GoReplay
// file shadowtap writes.
func TestRoundTrips(t *testing.T) {
	for _, c := range []struct{ file, port string }{
		{"zeek__http-cooper-grill-dvwa.pcapng", "80"},
		{"zeek__http-pipelined-requests.pcap", "80"},
		{"arkime__wireshark-retrans.pcap", "4000"},
		{"zeek__vxlan-encapsulated-http.pcap", "80"},
	} {
		dir := t.TempDir()
		capture := pcaps + c.file
		strec := filepath.Join(dir, "r.strec")
		gor := filepath.Join(dir, "r.gor")
		run(t, "record", "-keep-credentials", "-filter-request-port", c.port, "-input", capture, "-output", strec)
		run(t, "record", "-keep-credentials", "-filter-request-port", c.port, "-input", capture, "-output", gor)
		direct := replayTo(t, c.port, capture)
		if len(direct) == 0 {
			t.Fatalf("%s: nothing replayed", c.file)
		}
		if fromRec := replayTo(t, c.port, strec); !slices.Equal(fromRec, direct) {
			t.Errorf("%s: recording replays %d requests, capture %d, or they differ", c.file, len(fromRec), len(direct))
		}
		// GoReplay's format has no client or server address: its replays
		// lack exactly the X-Forwarded-For and X-Forwarded-Port lines.
		if fromGor := replayTo(t, c.port, gor); !slices.Equal(fromGor, withoutAddresses(direct)) {
			t.Errorf("%s: GoReplay file replays %d requests, capture %d, or they differ", c.file, len(fromGor), len(direct))
		}
		// The GoReplay file reads back with the same requests and responses.
		a, b := readRecords(t, strec), readRecords(t, gor)
		if len(a) != len(b) {
			t.Fatalf("%s: %d vs %d records", c.file, len(a), len(b))
		}
		for i := range a {
			if !bytes.Equal(a[i].Request, b[i].Request) || !bytes.Equal(a[i].Response, b[i].Response) || a[i].Status != b[i].Status {
				t.Errorf("%s: record %d differs after GoReplay", c.file, i)
			}
		}
	}
}

func withoutAddresses(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		var b strings.Builder
		for _, line := range strings.SplitAfter(r, "\n") {
			if !strings.HasPrefix(line, "X-Forwarded-For: ") && !strings.HasPrefix(line, "X-Forwarded-Port: ") {
				b.WriteString(line)
			}
		}
		out = append(out, b.String())
	}
	slices.Sort(out)
	return out
}

func readRecords(t *testing.T, path string, ids ...age.Identity) []recording.Record {
	src, _, err := source.Open(path, source.Options{Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var out []recording.Record
	for {
		r, err := src.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

func TestRecordRedactsByDefault(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.strec")
	run(t, "record", "-input", pcaps+"zeek__http-cooper-grill-dvwa.pcapng", "-output", out)
	recs := readRecords(t, out)
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	for _, r := range recs {
		if !r.Redacted || !bytes.Contains(r.Request, []byte("Cookie: security=~p")) {
			t.Errorf("not redacted: %q", firstLine(r.Request))
		}
	}
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "r.strec")
	run(t, "record", "-input", pcaps+"zeek__http-1000-requests-one-dropped-response.pcap.gz", "-output", rec)
	for _, c := range []struct {
		file string
		want []string
	}{
		{pcaps + "zeek__http-1000-requests-one-dropped-response.pcap.gz", []string{"requests     1000 on 1 connections", "methods      GET 1000",
			"responses    999 seen (status 200 999), 1 not seen", "gaps 1 (238 bytes)", "1000  GET /"}},
		{pcaps + "suricata__vxlan-decoder-03.pcap", []string{"VXLAN 100", "VNIs         5569041 100", "rejected request_line 4"}},
		{pcaps + "zeek__geneve-vxlan-dns-truncated.pcap", []string{"Geneve 2"}},
		{rec, []string{"recording", "requests     1000", "responses    999 seen"}},
	} {
		out, _ := run(t, "inspect", c.file)
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("inspect %s lacks %q:\n%s", filepath.Base(c.file), w, out)
			}
		}
	}
}

// TestRecordLive records from the VXLAN listener for a fixed time, in
// clear and encrypted: the stop seals the encrypted file whole.
func TestRecordLive(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("clear", func(t *testing.T) { recordLive(t) })
	t.Run("encrypted", func(t *testing.T) { recordLive(t, id) })
}

// recordLive records one exchange live, encrypted to ids' recipients if
// any, and reads it back.
func recordLive(t *testing.T, ids ...*age.X25519Identity) {
	ln, _ := net.ListenPacket("udp", "127.0.0.1:0")
	addr := ln.LocalAddr().String()
	ln.Close()
	out := filepath.Join(t.TempDir(), "live.strec")
	args := []string{"record", "-listen", addr, "-read-buffer", "1048576", "-duration", "1500ms", "-output", out}
	var readWith []age.Identity
	for _, id := range ids {
		args = append(args, "-encrypt-to", id.Recipient().String())
		readWith = append(readWith, id)
	}
	done := make(chan string)
	go func() {
		o, _ := run(t, args...)
		done <- o
	}()
	time.Sleep(300 * time.Millisecond)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := synth.NewConn(netip.MustParseAddrPort("10.0.0.1:5000"), netip.MustParseAddrPort("10.0.0.2:80"), 1, 1)
	segs := append(c.Handshake(), c.ClientData([]byte("GET /live HTTP/1.1\r\nHost: h\r\n\r\n"))...)
	segs = append(segs, c.ServerData([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))...)
	segs = append(segs, c.Close()...)
	for _, s := range segs {
		conn.Write(synth.AppendVXLAN(nil, 1, synth.AppendFrame(nil, s)))
	}
	o := <-done
	if len(ids) > 0 && !recording.IsEncrypted(out) {
		t.Errorf("%s is not encrypted", out)
	}
	recs := readRecords(t, out, readWith...)
	if len(recs) != 1 || recs[0].Status != 200 || !strings.Contains(o, "recorded 1 exchanges (1 with production's response)") {
		t.Errorf("records %+v, output %q", recs, o)
	}
}

func TestReplayUsage(t *testing.T) {
	for _, args := range [][]string{
		{"replay", "-destination", "http://x", "-speed", "fast", pcaps + "zeek__http-get_nosyn.pcap"},
		{"replay", "-destination", "http://x"},
		{"record", "-input", pcaps + "zeek__http-get_nosyn.pcap"},
		{"record", "-output", "x.bin", "-format", "pcap"},
	} {
		var out, errOut bytes.Buffer
		if code := Main("dev", args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d: %s", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := Main("dev", []string{"inspect", os.DevNull}, &out, &errOut); code != 1 {
		t.Errorf("inspect of a non-capture: exit %d", code)
	}
}

func TestSessionsSyncCommand(t *testing.T) {
	f := &ec2fake.Server{PageSize: 10, Refuse: map[string]string{"eni-3": "InvalidParameterValue"}, Instances: []ec2fake.Instance{
		{ID: "i-1", ENI: "eni-1", Type: "m5.large", State: "running", Tags: map[string]string{"app": "shop"}},
		{ID: "i-2", ENI: "eni-2", Type: "m5.large", State: "running", Tags: map[string]string{"app": "shop"}},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	// -force: this fake account has no target or filter to pre-flight check
	// (sessions_test.go covers the check); this is about creating and refusals.
	args := []string{"sessions", "sync", "-region", "us-east-1", "-endpoint", srv.URL, "-target", "tmt-1", "-filter", "tmf-1", "-vni", "77", "-tag", "app=shop", "-force"}
	out, _ := run(t, append(args, "-dry-run")...)
	if !strings.Contains(out, "2 created, 0 deleted") || !strings.Contains(out, "dry run") || len(f.CallsOf("Create")) != 0 {
		t.Errorf("dry run: %s", out)
	}
	out, _ = run(t, args...)
	if !strings.Contains(out, "2 created") || len(f.CallsOf("CreateTrafficMirrorSession")) != 2 {
		t.Errorf("sync: %s", out)
	}
	// A refusal is reported and makes the exit code 1.
	f.Mu.Lock()
	f.Instances = append(f.Instances, ec2fake.Instance{ID: "i-3", ENI: "eni-3", Type: "t2.micro", State: "running", Tags: map[string]string{"app": "shop"}})
	f.Mu.Unlock()
	var o, e bytes.Buffer
	if code := Main("dev", args, &o, &e); code != 1 || !strings.Contains(o.String(), "refused  instance i-3") || !strings.Contains(o.String(), "2 already mirrored") {
		t.Errorf("refusal: exit %d\n%s%s", code, o.String(), e.String())
	}
	if code := Main("dev", []string{"sessions", "sync", "-target", "t", "-filter", "f"}, &o, &e); code != 2 {
		t.Errorf("no selector: exit %d", code)
	}
}

// A recording is its owner's alone (0600), and a record that fails
// leaves nothing behind: here its second input is not a capture at all.
func TestRecordFileModeAndFailure(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "r.strec")
	run(t, "record", "-input", pcaps+"zeek__http-cooper-grill-dvwa.pcapng", "-output", out)
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v %v", fi.Mode().Perm(), err)
	}
	junk := filepath.Join(dir, "junk.pcap")
	os.WriteFile(junk, []byte("not a capture file, not a recording"), 0o644)
	failed := filepath.Join(dir, "failed.strec")
	var stdout, stderr bytes.Buffer
	if code := Main("test", []string{"record", "-input", pcaps + "zeek__http-cooper-grill-dvwa.pcapng", "-input", junk, "-output", failed}, &stdout, &stderr); code == 0 {
		t.Fatalf("record of a junk input succeeded: %s", stdout.String())
	}
	if _, err := os.Stat(failed); !os.IsNotExist(err) {
		t.Errorf("a failed record left %s behind (%v)", failed, err)
	}
}
