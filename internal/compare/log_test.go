package compare

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/endpoint"
)

// TestDifferenceLogBoundedAndMerged: the log holds only exchanges with a
// finding that is not noise, at most LogSamples per endpoint, comparison
// and finding, plus statistics lines; an A/A run logs no exchange; two
// handlers' logs merge into the same findings with doubled counts.
func TestDifferenceLogBoundedAndMerged(t *testing.T) {
	var aa bytes.Buffer
	c, _ := simulate(t, false, false, &aa)
	c.Close()
	if n := strings.Count(aa.String(), `"type":"diff"`); n != 0 {
		t.Errorf("A/A run logged %d exchanges", n)
	}

	var log bytes.Buffer
	c, live := simulate(t, true, true, &log)
	c.Close()
	perKey, perCmp := map[string]int{}, map[string]int{}
	diffs := 0
	sc := bufio.NewScanner(bytes.NewReader(log.Bytes()))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.Type != "diff" {
			continue
		}
		diffs++
		perCmp[l.Endpoint+" "+l.Comparison]++
		if strings.Contains(l.Sample.Request, "secret") {
			t.Errorf("credential in the log: %q", l.Sample.Request)
		}
		for _, k := range l.Sample.Findings {
			perKey[l.Endpoint+" "+l.Comparison+" "+k]++
		}
	}
	// 8 planted findings in 2 comparisons, 5 lines each at most (an
	// exchange may carry several findings; the status one its collateral).
	if diffs == 0 || diffs > 2*len(planted)*5 {
		t.Errorf("%d exchanges logged", diffs)
	}
	for _, f := range []string{"GET /api/stock/{id} candidate-vs-production status", "POST /api/orders candidate-vs-baseline body.status",
		"POST /api/orders candidate-vs-baseline body.confirmation"} {
		if perKey[f] < 5 {
			t.Errorf("%s: %d lines, want 5 at least", f, perKey[f])
		}
	}
	// A line shows all its exchange's findings: per endpoint and
	// comparison, at most 5 per finding.
	if n := perCmp["POST /api/orders candidate-vs-baseline"]; n > 2*5 {
		t.Errorf("orders: %d lines for 2 findings", n)
	}
	if n := perCmp["GET /api/stock/{id} candidate-vs-production"]; n != 5 {
		t.Errorf("stock: %d lines for 1 finding", n)
	}
	t.Logf("log: %d bytes, %d exchanges, for %d compared", log.Len(), diffs, live.Compared)
	if log.Len() > 4<<20 {
		t.Errorf("log of %d bytes", log.Len())
	}

	merged, err := MergeLogs([]io.Reader{bytes.NewReader(log.Bytes()),
		strings.NewReader(strings.ReplaceAll(log.String(), `"handler":"sim"`, `"handler":"sim2"`))}, live.Rules)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := findings(merged), findings(live); !slices.Equal(got, want) {
		t.Errorf("merged findings\n%s\nlive\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(merged.Handlers) != 2 || merged.Compared != 2*live.Compared || merged.Regressions != live.Regressions {
		t.Errorf("merged: handlers %v, compared %d (live %d), regressions %d", merged.Handlers, merged.Compared, live.Compared, merged.Regressions)
	}
	for _, e := range merged.Endpoints {
		if e.Regressions > 0 && !strings.HasPrefix(e.Findings[0], "latency") && len(e.Samples) == 0 {
			t.Errorf("%s: no samples in the merged report", e.Name)
		}
	}
}

// TestRenameWith: names given before a template was learned, by another
// handler, fold into it in a merged report.
func TestRenameWith(t *testing.T) {
	rename := renameWith([]string{"GET /api/skus/{id}", "POST /api/coupons/{id}"})
	for in, want := range map[string]string{
		"GET /api/skus/SKU-00012":         "GET /api/skus/{id}",
		"GET /api/skus/SKU-00012/reviews": "GET /api/skus/{id}/reviews",
		"POST /api/skus/SKU-00012":        "POST /api/skus/SKU-00012", // another method
		"POST /api/coupons/CPN-7KQ2X":     "POST /api/coupons/{id}",
		"GET /api/orders":                 "GET /api/orders",
		endpoint.Other:                    endpoint.Other,
	} {
		if got := rename(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// stuckDisk is a log whose writes wait until released, as a full or hung
// disk does.
type stuckDisk struct {
	release chan struct{}
	writes  atomic.Int64
}

func (d *stuckDisk) Write(b []byte) (int, error) {
	d.writes.Add(1)
	<-d.release
	return len(b), nil
}

type failingDisk struct{}

func (failingDisk) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestLogNeverBlocksTheComparison: a difference log whose writes hang
// holds up neither the comparison (every exchange is compared) nor the
// report (it takes the same lock); a log whose writes fail is counted.
func TestLogNeverBlocksTheComparison(t *testing.T) {
	disk := &stuckDisk{release: make(chan struct{})}
	c, r := simulateWith(t, true, false, func(cfg *Config) { cfg.Log, cfg.LogEvery = disk, time.Millisecond })
	if r.Compared == 0 || disk.writes.Load() == 0 {
		t.Errorf("compared %d, %d log writes begun", r.Compared, disk.writes.Load())
	}
	close(disk.release)
	c.Close()

	c, _ = simulateWith(t, true, false, func(cfg *Config) { cfg.Log, cfg.LogEvery = failingDisk{}, time.Millisecond })
	c.Close()
	if c.Stats.LogWriteErrors.Load() == 0 {
		t.Error("failed log writes not counted")
	}
}
