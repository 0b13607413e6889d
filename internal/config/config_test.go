package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBadFiles checks that each file under testdata/bad gives exactly the
// error in the .err file beside it.
func TestBadFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 8 {
		t.Fatalf("only %d bad files", len(files))
	}
	for _, f := range files {
		want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".err")
		if err != nil {
			t.Errorf("%s: no .err file", f)
			continue
		}
		c := Default()
		err = c.LoadFile(f)
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s: accepted", f)
			continue
		}
		if got := err.Error(); got != strings.TrimRight(string(want), "\n") {
			t.Errorf("%s:\n got %q\nwant %q", f, got, want)
		}
	}
}

func TestGoodFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	examples, _ := filepath.Glob("../../examples/*.yaml")
	if len(examples) == 0 {
		t.Error("no example configuration")
	}
	for _, f := range append(files, examples...) {
		c := Default()
		if err := c.LoadFile(f); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	c := Default()
	c.LoadFile("testdata/good/full.yaml")
	ts := c.Resolve()
	if len(ts) != 2 {
		t.Fatalf("targets: %+v", ts)
	}
	cand, base := ts[0], ts[1]
	if cand.RateLimit != 500 || cand.Workers != 32 || cand.Sampling.By != "cookie" || len(cand.Sampling.Routes) != 2 ||
		cand.MarkerName != "X-Replayed-By" || !cand.InsecureSkipVerify || cand.DialTimeout != 2*time.Second {
		t.Errorf("candidate = %+v", cand)
	}
	if base.RateLimit != 2000 || base.Sampling.By != "xff" || base.MarkerName != "" || !base.KeepHostHeader || !base.Filters.SafeMethodsOnly {
		t.Errorf("baseline = %+v", base)
	}
	if !c.Dedup || c.ReorderWait != 100*time.Millisecond || c.HandshakeTimeout != 3*time.Second || c.VNIs[0] != 5569041 {
		t.Errorf("top level = %+v", c)
	}
}

func TestWarnings(t *testing.T) {
	c := Default()
	c.LoadFile("testdata/good/full.yaml")
	w := c.Warnings()
	// candidate: POST, PUT, PATCH reach it (DELETE is denied); its Cookie is
	// removed and Authorization replaced. baseline: safe methods only, and
	// both credentials removed.
	if len(w) != 1 || !strings.Contains(w[0], `target "candidate" receives POST, PUT, PATCH requests`) {
		t.Errorf("warnings = %q", w)
	}
	c = Default()
	c.Destination = "http://x"
	w = c.Warnings()
	if len(w) != 2 || !strings.Contains(w[1], "Authorization and Cookie") {
		t.Errorf("warnings = %q", w)
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("destination: http://file\nvnis: [1]\nlisten: ':1'\nmax_flows: 7\ndefaults: {workers: 3}\n"), 0o644)
	env := map[string]string{"SHADOWTAP_LISTEN": ":2", "SHADOWTAP_VNI": "2,3", "SHADOWTAP_WORKERS": "9", "SHADOWTAP_CONFIG": file}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c, path, err := FromArgs([]string{"-vni", "4", "-destination", "http://flag"}, getenv, fs)
	if err != nil {
		t.Fatal(err)
	}
	// flag > env > file > default
	if path != file || c.Destination != "http://flag" || c.Listen != ":2" || c.Defaults.Workers != 9 || c.MaxFlows != 7 ||
		len(c.VNIs) != 1 || c.VNIs[0] != 4 || c.Defaults.Queue != Default().Defaults.Queue {
		t.Errorf("config = %+v", c)
	}
	// The -config flag names the file too; a bad environment value is an error.
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, _, err := FromArgs([]string{"-config=" + file}, func(k string) (string, bool) {
		if k == "SHADOWTAP_PERCENTAGE" {
			return "lots", true
		}
		return "", false
	}, fs); err == nil || !strings.Contains(err.Error(), "SHADOWTAP_PERCENTAGE") {
		t.Errorf("err = %v", err)
	}
}

func TestDestinationFlagKeepsFileTargets(t *testing.T) {
	c := Default()
	c.Load([]byte("targets: [{name: default, destination: 'http://old'}, {name: b, destination: 'http://b'}]"), "inline")
	c.Destination = "http://new"
	ts := c.Resolve()
	if len(ts) != 2 || ts[0].Destination != "http://new" || ts[1].Name != "b" {
		t.Errorf("targets = %+v", ts)
	}
}

func TestFlagsOfTheAWSSample(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c, _, err := FromArgs([]string{"-destination", "http://staging:8080", "-percentage", "12.5", "-percentage-by", "header",
		"-percentage-by-header", "X-User", "-filter-request-port", "8080,80", "-keep-host-header", "-vni", "7", "-vni", "8,9"},
		func(string) (string, bool) { return "", false }, fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ts := c.Resolve()
	if len(ts) != 1 || ts[0].Name != "default" || ts[0].Sampling.Percentage != 12.5 || ts[0].Sampling.Key != "X-User" ||
		!ts[0].KeepHostHeader || len(c.Ports) != 2 || c.Ports[0] != 8080 || len(c.VNIs) != 3 {
		t.Errorf("config = %+v, targets %+v", c, ts)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-destination", "ftp://x"}, "scheme must be http or https"},
		{[]string{"-destination", "http://x", "-percentage", "101"}, "percentage 101 is not between 0 and 100"},
		{[]string{"-destination", "http://x", "-percentage-by", "header"}, "by header needs key"},
		{[]string{"-destination", "http://x", "-percentage-by", "rot13"}, `by "rot13" is not one of`},
		{[]string{"-destination", "http://x", "-workers", "0"}, "workers: must be positive"},
		{[]string{"-destination", "http://x", "-reorder-wait", "5m"}, "reorder_wait: must be shorter than idle_timeout"},
		{[]string{"-destination", "http://x", "-handshake-timeout", "0s"}, "handshake_timeout: must be positive"},
		{[]string{"-destination", "http://x", "-handshake-timeout", "3m"}, "handshake_timeout: must not be longer than idle_timeout"},
		{[]string{"-destination", "http://x", "-log-format", "xml"}, `log_format: "xml"`},
		{[]string{"-filter-request-port", "0"}, `"0" is not a port`},
		{[]string{"-vni", "16777216"}, "is not a VNI"},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c, _, err := FromArgs(tt.args, func(string) (string, bool) { return "", false }, fs)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}

// Flags may follow the positional arguments; "--" still ends the flags.
func TestFlagsAfterPositionalArguments(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	speed := fs.String("speed", "max", "")
	c, _, err := FromArgs([]string{"day.pcap", "-destination", "http://rc1:8080", "more.strec", "-speed", "2x", "-vni", "7"}, noEnv, fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Destination != "http://rc1:8080" || *speed != "2x" || len(c.VNIs) != 1 || c.VNIs[0] != 7 {
		t.Errorf("destination %q speed %q vnis %v", c.Destination, *speed, c.VNIs)
	}
	if got := strings.Join(fs.Args(), " "); got != "day.pcap more.strec" {
		t.Errorf("positional arguments %q", got)
	}
	fs = flag.NewFlagSet("replay", flag.ContinueOnError)
	c, _, err = FromArgs([]string{"-percentage", "5", "a", "--", "-odd-file-name", "b"}, noEnv, fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Defaults.Sampling.Percentage != 5 || strings.Join(fs.Args(), " ") != "a -odd-file-name b" {
		t.Errorf("percentage %v, positional %q", c.Defaults.Sampling.Percentage, fs.Args())
	}
}

// Found by FuzzLoad: NaN passes every "x < 0 || x > max" check, and a
// second YAML document was silently ignored (with its typos).
func TestNaNAndSecondDocumentRefused(t *testing.T) {
	for name, doc := range map[string]string{
		"nan rate limit":  "destination: http://t.internal\ndefaults:\n  rate_limit: .nan\n",
		"inf rate limit":  "destination: http://t.internal\ndefaults:\n  rate_limit: .inf\n",
		"nan route":       "targets:\n  - name: a\n    destination: http://a.internal\n    sampling:\n      percentage: 50\n      routes:\n        - {path: ^/x, percentage: .nan}\n",
		"nan threshold":   "destination: http://t.internal\ncompare:\n  candidate: default\n  threshold: .nan\n",
		"nan confidence":  "destination: http://t.internal\ncompare:\n  candidate: default\n  confidence: .nan\n",
		"second document": "destination: http://t.internal\n---\ndestinaton: http://typo.internal\nretries: 3\n",
	} {
		c := Default()
		err := c.Load([]byte(doc), name)
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestShardsDefaultToOnePerCPU(t *testing.T) {
	c := Default()
	c.Destination = "http://127.0.0.1:8080"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.ShardCount(), runtime.GOMAXPROCS(0); got != want {
		t.Errorf("default shards %d, want one per CPU (%d)", got, want)
	}
	c.Shards = 3
	if c.ShardCount() != 3 {
		t.Errorf("shards 3 gave %d", c.ShardCount())
	}
	for _, bad := range []int{-1, 257} {
		c.Shards = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "shards") {
			t.Errorf("shards %d: %v", bad, err)
		}
	}
}

// The fleet's store: a Redis or Valkey URL is taken, any other scheme
// refused with its line.
func TestCorrelateStore(t *testing.T) {
	c := Default()
	if err := c.Load([]byte("correlate: {store: redis://127.0.0.1:6379, namespace: shop}\n"), "ok.yaml"); err != nil || c.Correlate.Store != "redis://127.0.0.1:6379" {
		t.Errorf("%v %+v", err, c.Correlate)
	}
	c = Default()
	err := c.Load([]byte("listen: :4789\ncorrelate:\n  namespace: shop\n  store: ftp://x\n"), "bad.yaml")
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "ftp") {
		t.Errorf("ftp store: %v", err)
	}
	for _, s := range []string{"memory", "", "valkey://cache:6379/2", "rediss://user:pw@cache.example:6380"} {
		if err := CheckStore(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"http://x", "redis://", "valkey"} {
		if err := CheckStore(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// compare.writes reads only the compared targets' databases, the
// candidate's with the baseline's, each from one source whose connection
// string is never in the file.
func TestCompareWrites(t *testing.T) {
	base := "targets: [{name: new, destination: 'http://127.0.0.1:1'}, {name: old, destination: 'http://127.0.0.1:2'}, {name: other, destination: 'http://127.0.0.1:3'}]\n" +
		"compare: {candidate: new, baseline: old, writes: "
	for yaml, want := range map[string]string{
		"{new: {postgres: {dsn_env: A}}, old: {postgres: {dsn_file: /x}}}}":                                        "",
		"{new: {postgres: {dsn_env: A}}, old: {debezium: {brokers: [k:9092], prefix: shop, barrier_dsn_env: B}}}}": "",
		"{new: {postgres: {dsn_env: A}}}}":                                                                         "name both",
		"{new: {postgres: {dsn_env: A}}, old: {postgres: {dsn_env: B}}, other: {postgres: {dsn_env: C}}}}":         "not a compared target",
		"{new: {postgres: {dsn: 'host=x password=y'}}, old: {postgres: {dsn_env: B}}}}":                            "dsn",
		"{new: {postgres: {dsn_env: A, dsn_file: /x}}, old: {postgres: {dsn_env: B}}}}":                            "one of dsn_env and dsn_file",
		"{new: {postgres: {dsn_env: A, slot: Bad-Slot}}, old: {postgres: {dsn_env: B}}}}":                          "lower-case",
		"{new: {debezium: {prefix: shop, barrier_dsn_env: B}}, old: {postgres: {dsn_env: B}}}}":                    "brokers and prefix",
	} {
		c := Default()
		err := c.Load([]byte(base+yaml+"\n"), "writes.yaml")
		if err == nil {
			err = c.Validate()
		}
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", yaml, err, want)
		}
	}
	c := Default()
	c.Load([]byte(base+"{new: {postgres: {dsn_env: A}}, old: {postgres: {dsn_env: B}}}}\n"), "w.yaml")
	for _, r := range c.Resolve() {
		if (r.Writes != nil) != (r.Name != "other") {
			t.Errorf("target %s: writes %v", r.Name, r.Writes)
		}
	}
}

// compare.mask takes headers, cookies, fields and known detectors.
func TestCompareMask(t *testing.T) {
	base := "targets: [{name: new, destination: 'http://127.0.0.1:1'}]\ncompare: {candidate: new, mask: "
	for yaml, want := range map[string]string{
		"{headers: [X-Name], cookies: [cart], fields: [body.customer.address, email], detect: [email, card]}}": "",
		"{detect: [none]}}":  "",
		"{detect: [phone]}}": `"phone": want email, card, jwt, iban, bearer or none`,
		"{fieldz: [email]}}": "fieldz",
	} {
		c := Default()
		err := c.Load([]byte(base+yaml+"\n"), "mask.yaml")
		if err == nil {
			err = c.Validate()
		}
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", yaml, err, want)
		}
	}
}
