package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	// Two handlers' logs, as compare writes them.
	var logs []string
	for i, handler := range []string{"handler-a", "handler-b"} {
		line := fmt.Sprintf(`{"type":"stats","handler":%q,"endpoint":"GET /api/items/{id}","time":"2026-11-22T07:00:00Z","state":{"requests":10,`+
			`"comparisons":{"candidate-vs-production":{"compared":10,"exact":2,"matched":2,"fields":{"body.items[*].price":{"diffs":8}}}}}}`, handler)
		diffLine := fmt.Sprintf(`{"type":"diff","handler":%q,"endpoint":"GET /api/items/{id}","comparison":"candidate-vs-production",`+
			`"sample":{"comparison":"candidate-vs-production","request":"GET /api/items/%d","reference":{"status":200,"body":"{\"price\":4.25}"},`+
			`"candidate":{"status":200,"body":"{\"price\":4.3}"},"differences":[{"field":"body.price","key":"body.price","kind":"changed","ref":"4.25","cand":"4.3"}]}}`, handler, i)
		p := filepath.Join(dir, handler+".jsonl")
		os.WriteFile(p, []byte(line+"\n"+diffLine+"\n"), 0o644)
		logs = append(logs, p)
	}
	html := filepath.Join(dir, "report.html")
	junit := filepath.Join(dir, "junit.xml")
	md := filepath.Join(dir, "summary.md")
	// Flags after the files, as verify takes them.
	var o, e bytes.Buffer
	code := Main("dev", append(append([]string{"report", "-o", html}, logs...), "-json", html+".json", "-junit", junit, "-summary", md), &o, &e)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (a regression)\n%s%s", code, o.String(), e.String())
	}
	if out := o.String(); !strings.Contains(out, "1 endpoints, 1 regressions, from 2 handler(s)") ||
		!strings.Contains(out, "body.items[*].price") {
		t.Errorf("output %q", out)
	}
	page, _ := os.ReadFile(html)
	if !strings.Contains(string(page), `const EMBEDDED = {"title":"shadowtap release report: 2 handler(s)"`) ||
		!strings.Contains(string(page), `GET /api/items/{id}`) || strings.Contains(string(page), "/*DATA*/null") {
		t.Error("report page does not embed the merged data")
	}
	data, _ := os.ReadFile(html + ".json")
	if !strings.Contains(string(data), `"compared": 20`) {
		t.Errorf("merged counts: %s", data[:min(len(data), 300)])
	}
	failures, _ := readJUnit(t, junit)
	if got := failures["candidate-vs-production"]; len(got) != 1 || got[0] != "GET /api/items/{id} body.items[*].price" {
		t.Errorf("JUnit failures %q", got)
	}
	if b, _ := os.ReadFile(md); !strings.Contains(string(b), "`body.items[*].price`") {
		t.Errorf("summary:\n%s", b)
	}

	// Accepted: exit 0, and the page no longer counts it.
	accept := filepath.Join(dir, "accept.yaml")
	os.WriteFile(accept, []byte("accept:\n  - endpoint: GET /api/items/*\n    field: body.items[*].price\n    reason: new prices\n"), 0o644)
	o.Reset()
	e.Reset()
	if code := Main("dev", append([]string{"report", "-o", html, "-junit", junit, "-accept", accept}, logs...), &o, &e); code != 0 {
		t.Fatalf("accepted: exit %d\n%s%s", code, o.String(), e.String())
	}
	if failures, props := readJUnit(t, junit); len(failures) != 0 || len(props) != 1 || !strings.HasPrefix(props[0], "accepted ") {
		t.Errorf("accepted: failures %q, properties %q", failures, props)
	}
	if page, _ := os.ReadFile(html); !strings.Contains(string(page), `"regressions":0`) {
		t.Error("accepted: the page still counts the regression")
	}
	// -fail-on none reports and passes.
	if code := Main("dev", append([]string{"report", "-o", html, "-fail-on", "none"}, logs...), &o, &e); code != 0 {
		t.Errorf("-fail-on none: exit %d", code)
	}

	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{not json\n"), 0o644)
	e.Reset()
	if code := Main("dev", []string{"report", "-o", html, bad}, &o, &e); code != 2 || !strings.Contains(e.String(), "line 1") {
		t.Errorf("bad log: exit %d %q", code, e.String())
	}
	if code := Main("dev", []string{"report", "-o", html, filepath.Join(dir, "missing.jsonl")}, &o, &e); code != 2 {
		t.Errorf("missing log: exit %d", code)
	}
}
