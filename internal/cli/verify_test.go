package cli

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/testkit/shoptest"
)

// serve starts h on a loopback port and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// The JUnit file as the schema Jenkins' JUnit plugin reads it (and
// GitLab's and GitHub's reporters): every attribute it requires is
// decoded, so that the test can check it is there.
type xTestsuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    *int         `xml:"tests,attr"`
	Failures *int         `xml:"failures,attr"`
	Errors   *int         `xml:"errors,attr"`
	Suites   []xTestsuite `xml:"testsuite"`
}

type xTestsuite struct {
	Name       *string `xml:"name,attr"`
	Tests      *int    `xml:"tests,attr"`
	Failures   *int    `xml:"failures,attr"`
	Errors     *int    `xml:"errors,attr"`
	Skipped    *int    `xml:"skipped,attr"`
	Time       *string `xml:"time,attr"`
	Timestamp  *string `xml:"timestamp,attr"`
	Hostname   *string `xml:"hostname,attr"`
	Properties *struct {
		Property []struct {
			Name  *string `xml:"name,attr"`
			Value *string `xml:"value,attr"`
		} `xml:"property"`
	} `xml:"properties"`
	Cases []struct {
		Name      *string `xml:"name,attr"`
		Classname *string `xml:"classname,attr"`
		Time      *string `xml:"time,attr"`
		Failures  []struct {
			Message *string `xml:"message,attr"`
			Type    *string `xml:"type,attr"`
			Text    string  `xml:",chardata"`
		} `xml:"failure"`
		Errors  []struct{} `xml:"error"`
		Skipped *struct{}  `xml:"skipped"`
	} `xml:"testcase"`
}

// readJUnit parses a JUnit file, checks the schema's required elements and
// attributes and that the counts add up, and returns the failures as
// "endpoint field" keyed by comparison.
func readJUnit(t *testing.T, path string) (failures map[string][]string, properties []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("<?xml")) {
		t.Fatalf("%s: no XML declaration", path)
	}
	var doc xTestsuites
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if doc.Tests == nil || doc.Failures == nil || doc.Errors == nil {
		t.Fatalf("testsuites: tests, failures and errors are required")
	}
	failures = map[string][]string{}
	var tests, fails int
	for _, s := range doc.Suites {
		switch {
		case s.Name == nil || s.Tests == nil || s.Failures == nil || s.Errors == nil || s.Skipped == nil || s.Time == nil ||
			s.Timestamp == nil || s.Hostname == nil:
			t.Fatalf("testsuite: a required attribute is missing: %+v", s)
		case s.Properties == nil:
			t.Fatalf("testsuite %s: properties element missing", *s.Name)
		}
		if _, err := time.Parse("2006-01-02T15:04:05", *s.Timestamp); err != nil {
			t.Errorf("testsuite %s: timestamp %q: %v", *s.Name, *s.Timestamp, err)
		}
		if _, err := strconv.ParseFloat(*s.Time, 64); err != nil {
			t.Errorf("testsuite %s: time %q", *s.Name, *s.Time)
		}
		for _, p := range s.Properties.Property {
			if p.Name == nil || p.Value == nil {
				t.Fatalf("property without name or value")
			}
			properties = append(properties, *p.Name)
		}
		var sf, ss int
		for _, c := range s.Cases {
			if c.Name == nil || c.Classname == nil || c.Time == nil {
				t.Fatalf("testcase: name, classname and time are required")
			}
			if c.Skipped != nil {
				ss++
			}
			for _, f := range c.Failures {
				if f.Message == nil || f.Type == nil || f.Text == "" {
					t.Fatalf("failure of %s: message, type and text are required", *c.Name)
				}
				field, _, _ := strings.Cut(*f.Message, ":")
				if !strings.Contains(f.Text, "rate:") {
					t.Errorf("failure %s %s: no rate in %q", *c.Name, field, f.Text)
				}
				failures[*s.Name] = append(failures[*s.Name], *c.Name+" "+field)
				sf++
			}
		}
		if sf != *s.Failures || len(s.Cases) != *s.Tests || ss != *s.Skipped {
			t.Errorf("testsuite %s: counts %d/%d/%d, attributes %d/%d/%d", *s.Name, len(s.Cases), sf, ss, *s.Tests, *s.Failures, *s.Skipped)
		}
		tests += *s.Tests
		fails += *s.Failures
	}
	if tests != *doc.Tests || fails != *doc.Failures {
		t.Errorf("testsuites: %d tests, %d failures; attributes say %d, %d", tests, fails, *doc.Tests, *doc.Failures)
	}
	return failures, properties
}

// planted reports whether "endpoint field" is one of the planted
// differences.
func planted(s string) bool {
	return slices.ContainsFunc(shoptest.Planted, func(p [2]string) bool {
		return strings.HasPrefix(s, p[0]) && strings.HasSuffix(s, " "+p[1])
	})
}

func TestVerifyGate(t *testing.T) {
	if testing.Short() {
		t.Skip("replays a recording over loopback")
	}
	dir := t.TempDir()
	rec := filepath.Join(dir, "prod.strec")
	// 40 connections of 24 exchanges: 240 per endpoint kind.
	if err := shoptest.Record(rec, 40, 24, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, candidate http.Handler, extra ...string) (int, string, string) {
		t.Helper()
		url := serve(t, candidate)
		args := []string{"verify", rec, "-candidate", url, "-progress", "off",
			"-o", filepath.Join(dir, t.Name()+".html"), "-json", filepath.Join(dir, t.Name()+".json"),
			"-junit", filepath.Join(dir, t.Name()+".xml"), "-summary", filepath.Join(dir, t.Name()+".md")}
		var stdout, stderr bytes.Buffer
		code := Main("test", append(args, extra...), &stdout, &stderr)
		t.Logf("exit %d\n%s%s", code, stdout.String(), stderr.String())
		return code, stdout.String(), filepath.Join(dir, t.Name())
	}
	os.MkdirAll(filepath.Join(dir, "TestVerifyGate"), 0o755)

	t.Run("planted", func(t *testing.T) {
		code, stdout, base := run(t, shoptest.New(2, true))
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		failures, props := readJUnit(t, base+".xml")
		got := failures["candidate-vs-production"]
		// Each failure shows an example exchange's values.
		if x, _ := os.ReadFile(base + ".xml"); bytes.Count(x, []byte("example: ")) != len(shoptest.Planted) {
			t.Errorf("not one example per failure:\n%s", x)
		}
		if len(got) != len(shoptest.Planted) {
			t.Errorf("failures %q, want one per planted difference %q", got, shoptest.Planted)
		}
		for _, f := range got {
			if !planted(f) {
				t.Errorf("failure %q was not planted", f)
			}
		}
		for _, p := range shoptest.Planted {
			if !slices.ContainsFunc(got, func(f string) bool { return strings.HasPrefix(f, p[0]) && strings.HasSuffix(f, " "+p[1]) }) {
				t.Errorf("planted %v not among the failures", p)
			}
		}
		// The noise (request ids, times) is explained, and said so.
		if !slices.ContainsFunc(props, func(p string) bool { return strings.HasPrefix(p, "noise ") && strings.HasSuffix(p, "body.requestId") }) {
			t.Errorf("no noise property for body.requestId: %q", props)
		}
		md, _ := os.ReadFile(base + ".md")
		for _, p := range shoptest.Planted {
			if !strings.Contains(string(md), "`"+p[1]+"`") || !strings.Contains(string(md), "`"+p[0]) {
				t.Errorf("the summary does not name %v:\n%s", p, md)
			}
			if !strings.Contains(stdout, p[1]) {
				t.Errorf("stdout does not name %v", p)
			}
		}
		var js struct {
			Regressions int `json:"regressions"`
			Compared    int `json:"compared"`
			Endpoints   []struct {
				Name     string   `json:"name"`
				Findings []string `json:"findings"`
			} `json:"endpoints"`
		}
		b, _ := os.ReadFile(base + ".json")
		if err := json.Unmarshal(b, &js); err != nil {
			t.Fatal(err)
		}
		if js.Regressions != len(shoptest.Planted) || js.Compared != 40*24 {
			t.Errorf("JSON: %d regressions, %d compared; want %d, %d", js.Regressions, js.Compared, len(shoptest.Planted), 40*24)
		}
		html, _ := os.ReadFile(base + ".html")
		if !bytes.Contains(html, []byte(`"regressions":3`)) || bytes.Contains(html, []byte("/*DATA*/null")) {
			t.Errorf("the HTML report does not embed the report")
		}
		// The page opens in a browser, the planted endpoints flagged.
		names, regs := openInBrowser(t, base+".html")
		if len(names) != 4 || regs != len(shoptest.Planted) {
			t.Errorf("page: rows %q, %d with a regression; want 4 and %d", names, regs, len(shoptest.Planted))
		}
	})

	t.Run("production", func(t *testing.T) {
		code, _, base := run(t, shoptest.New(3, false))
		if code != 0 {
			t.Fatalf("exit %d, want 0", code)
		}
		failures, _ := readJUnit(t, base+".xml")
		if len(failures) != 0 {
			t.Errorf("failures against production's own code: %q", failures)
		}
	})

	t.Run("baseline", func(t *testing.T) {
		// The old code on the same test data beside the candidate: both
		// comparisons find the planted differences, and only them.
		baseline := serve(t, shoptest.New(6, false))
		code, _, base := run(t, shoptest.New(7, true), "-baseline", baseline)
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		failures, _ := readJUnit(t, base+".xml")
		for _, cmp := range []string{"candidate-vs-production", "candidate-vs-baseline"} {
			got := failures[cmp]
			if len(got) != len(shoptest.Planted) || slices.ContainsFunc(got, func(f string) bool { return !planted(f) }) {
				t.Errorf("%s: failures %q, want the planted %q", cmp, got, shoptest.Planted)
			}
		}
	})

	t.Run("goreplay", func(t *testing.T) {
		// The same exchanges as a GoReplay file (request and original
		// response payloads). GoReplay keeps no connection, so each
		// request is replayed on its own and the carts' order is not
		// kept: only the stateless endpoints must match.
		gor := filepath.Join(dir, "prod.gor")
		var recOut bytes.Buffer
		if code := Main("test", []string{"record", "-keep-credentials", "-input", rec, "-output", gor}, &recOut, &recOut); code != 0 {
			t.Fatalf("record to GoReplay: exit %d: %s", code, recOut.String())
		}
		url := serve(t, shoptest.New(10, true))
		junit := filepath.Join(dir, "gor.xml")
		var stdout, stderr bytes.Buffer
		code := Main("test", []string{"verify", "-candidate", url, "-progress", "off", "-junit", junit, "-fail-on", "none", gor}, &stdout, &stderr)
		if code != 0 || !strings.Contains(stdout.String(), "960 exchange(s) compared") {
			t.Fatalf("exit %d:\n%s%s", code, stdout.String(), stderr.String())
		}
		t.Log(stdout.String())
		failures, _ := readJUnit(t, junit)
		for _, p := range shoptest.Planted {
			if !slices.ContainsFunc(failures["candidate-vs-production"], func(f string) bool { return strings.HasPrefix(f, p[0]) && strings.HasSuffix(f, " "+p[1]) }) {
				t.Errorf("planted %v not found in %q", p, failures)
			}
		}
		for _, f := range failures["candidate-vs-production"] {
			if !planted(f) && !strings.HasPrefix(f, "GET /api/carts/") && !strings.HasPrefix(f, "POST /api/carts/") {
				t.Errorf("failure %q on a stateless endpoint was not planted", f)
			}
		}
	})

	t.Run("fail-on none", func(t *testing.T) {
		code, stdout, _ := run(t, shoptest.New(8, true), "-fail-on", "none")
		if code != 0 || !strings.Contains(stdout, "3 regression(s)") {
			t.Errorf("exit %d, want 0 with the regressions reported", code)
		}
	})

	t.Run("candidate down", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		down := "http://" + ln.Addr().String()
		ln.Close() // nothing listens: every request is refused
		var stdout, stderr bytes.Buffer
		junit := filepath.Join(dir, "down.xml")
		code := Main("test", []string{"verify", "-candidate", down, "-progress", "off", "-junit", junit, rec}, &stdout, &stderr)
		if code != 1 || !strings.Contains(stdout.String(), "the candidate did not answer 960 request(s)") {
			t.Errorf("exit %d, want 1 naming the refused requests:\n%s", code, stdout.String())
		}
		b, _ := os.ReadFile(junit)
		if !bytes.Contains(b, []byte(`<error message="the candidate did not answer 960 request(s)`)) {
			t.Errorf("JUnit without the error:\n%s", b)
		}
	})

	t.Run("accepted", func(t *testing.T) {
		accept := filepath.Join(dir, "accept.yaml")
		os.WriteFile(accept, []byte(`accept:
  - endpoint: "GET /api/items/*"
    field: "body.items[*].price"
    reason: prices rounded to 5 cents (PR 412)
  - endpoint: "GET /api/users/*"
    field: body.email
    reason: e-mail moved to /contact
  - endpoint: "POST /api/carts/*"
    field: status
    reason: 200 instead of 201, clients agree
`), 0o644)
		code, stdout, base := run(t, shoptest.New(4, true), "-accept", accept)
		if code != 0 {
			t.Fatalf("exit %d, want 0 with every planted difference accepted", code)
		}
		failures, props := readJUnit(t, base+".xml")
		if len(failures) != 0 {
			t.Errorf("failures: %q", failures)
		}
		if !slices.ContainsFunc(props, func(p string) bool { return strings.HasPrefix(p, "accepted ") && strings.HasSuffix(p, "body.email") }) {
			t.Errorf("accepted change not among the properties: %q", props)
		}
		if !strings.Contains(stdout, "prices rounded to 5 cents") {
			t.Errorf("stdout does not give the reason")
		}
		md, _ := os.ReadFile(base + ".md")
		if !strings.Contains(string(md), "Accepted changes") || !strings.Contains(string(md), "e-mail moved") {
			t.Errorf("summary without the accepted changes:\n%s", md)
		}
		// Accepted in the page too.
		if names, regs := openInBrowser(t, base+".html"); len(names) != 4 || regs != 0 {
			t.Errorf("page: rows %q, %d with a regression; want 4 and 0", names, regs)
		}
	})

	t.Run("one accepted", func(t *testing.T) {
		accept := filepath.Join(dir, "accept1.yaml")
		os.WriteFile(accept, []byte("accept:\n  - {endpoint: \"GET /api/users/*\", field: body.email, reason: moved}\n"), 0o644)
		code, _, base := run(t, shoptest.New(5, true), "-accept", accept)
		if code != 1 {
			t.Fatalf("exit %d, want 1: two planted differences are not accepted", code)
		}
		failures, _ := readJUnit(t, base+".xml")
		if got := failures["candidate-vs-production"]; len(got) != 2 || slices.ContainsFunc(got, func(f string) bool { return strings.HasSuffix(f, "body.email") }) {
			t.Errorf("failures %q: want the two not accepted", got)
		}
	})
}

func TestVerifyUsage(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.strec")
	os.WriteFile(bad, []byte("not a recording"), 0o644)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"no candidate", []string{"verify", bad}},
		{"no file", []string{"verify", "-candidate", "http://127.0.0.1:1"}},
		{"unreadable", []string{"verify", "-candidate", "http://127.0.0.1:1", bad}},
		{"missing", []string{"verify", "-candidate", "http://127.0.0.1:1", filepath.Join(dir, "none.strec")}},
		{"bad policy", []string{"verify", "-candidate", "http://127.0.0.1:1", "-fail-on", "some", bad}},
		{"bad url", []string{"verify", "-candidate", "ftp://x", bad}},
		{"bad accept", []string{"verify", "-candidate", "http://127.0.0.1:1", "-accept", bad, bad}},
	} {
		var out, errb bytes.Buffer
		if code := Main("test", c.args, &out, &errb); code != 2 {
			t.Errorf("%s: exit %d, want 2 (%s)", c.name, code, errb.String())
		}
	}
}

func TestLoadConfigAnywhere(t *testing.T) {
	for _, args := range [][]string{
		{"-candidate", "http://a", "f1", "f2"},
		{"f1", "-candidate", "http://a", "f2"},
		{"f1", "f2", "-candidate=http://a"},
		{"-candidate", "http://a", "--", "f1", "f2"},
	} {
		fs := newFlagSet()
		c := fs.String("candidate", "", "")
		_, files, err := loadConfigAnywhere(fs, args)
		if err != nil || *c != "http://a" || !slices.Equal(files, []string{"f1", "f2"}) {
			t.Errorf("%q: files %q, candidate %q, %v", args, files, *c, err)
		}
	}
}

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// The example configuration validates, and -candidate sets the
// destination of the target it names.
func TestExampleVerifyConfig(t *testing.T) {
	fs := newFlagSet()
	cfg, _, err := loadConfigAnywhere(fs, []string{"-config", filepath.Join("..", "..", "examples", "ci", ".shadowtap", "verify.yaml"), "r.strec"})
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyTargets(&cfg, [3]string{"http://10.1.2.3:9000", "", ""}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rs := cfg.Resolve()
	if len(rs) != 1 || rs[0].Name != "candidate" || rs[0].Destination != "http://10.1.2.3:9000" || len(rs[0].Credentials.Remove) != 2 {
		t.Errorf("targets %+v", rs)
	}
}
