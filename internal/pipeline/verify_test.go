package pipeline_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/gate"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/testkit/shoptest"
)

// The exchanges open in the comparison are bounded: with MaxOpen 8, the
// candidate never sees more than 8 requests at once, though 64 workers
// could send them, and every exchange is still compared.
func TestRunBoundsOpenExchanges(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "r.strec")
	if err := shoptest.Record(rec, 40, 10, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	shop := shoptest.New(3, false)
	var now, peak atomic.Int64
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond) // long enough for requests to pile up
		shop.ServeHTTP(w, r)
		now.Add(-1)
	}))
	res, err := pipeline.VerifyFiles(context.Background(), verifyConfig(t, url), []string{rec}, pipeline.VerifyOptions{MaxOpen: 8})
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Compared != 400 || res.Sent != 400 {
		t.Errorf("compared %d, sent %d; want 400", res.Report.Compared, res.Sent)
	}
	if p := peak.Load(); p > 8 || p < 2 {
		t.Errorf("%d requests at once at the candidate, want 2 to 8", p)
	}
}

// -speed keeps the recording's timing: 400 exchanges 100µs apart span
// 40ms, which at a tenth of the speed takes at least 0.4s.
func TestRunKeepsTiming(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "r.strec")
	if err := shoptest.Record(rec, 40, 10, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	cfg := verifyConfig(t, serve(t, shoptest.New(3, false)))
	res, err := pipeline.VerifyFiles(context.Background(), cfg, []string{rec}, pipeline.VerifyOptions{Speed: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if span := time.Duration(399*100*time.Microsecond) * 10; res.Elapsed < span {
		t.Errorf("took %s, less than the recording's %s at a tenth of its speed", res.Elapsed, span)
	}
	if res.Report.Compared != 400 {
		t.Errorf("compared %d", res.Report.Compared)
	}
}

// Each recorded connection's requests are replayed in order: a cart's
// GET right after its POST sees the POST's count even when the POST is
// slow. The control, the same exchanges each on a connection of its own,
// lets GETs overtake POSTs (the shop sees a cart's GET while that cart's
// POST is still being served): so the test would see a replay that does
// not keep the order.
func TestRunKeepsConnectionOrder(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "r.strec")
	if err := shoptest.Record(rec, 2, 200, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The control: every exchange its own connection.
	loose := filepath.Join(dir, "loose.strec")
	rd, err := recording.Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	w, err := recording.Create(recording.WriterOptions{Path: loose})
	if err != nil {
		t.Fatal(err)
	}
	for n := uint64(1); ; n++ {
		r, err := rd.Next()
		if err != nil {
			break
		}
		r.Conn, r.Index = n, 0
		w.Write(r)
	}
	rd.Close()
	w.Close()

	// replay returns whether a cart's count differed from production's,
	// and whether a GET overtook its cart's POST at the shop.
	replay := func(path string) (countDiffers, overtaken bool) {
		shop := shoptest.New(3, false)
		var mu sync.Mutex
		writing := map[string]bool{} // carts with a POST being served
		url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cart := strings.Split(r.URL.Path, "/")[3]
			mu.Lock()
			if r.Method == http.MethodGet && writing[cart] {
				overtaken = true
			}
			if r.Method == http.MethodPost {
				writing[cart] = true
			}
			mu.Unlock()
			if r.Method == http.MethodPost {
				time.Sleep(5 * time.Millisecond) // a slow write: a GET sent meanwhile overtakes it
			}
			shop.ServeHTTP(w, r)
			if r.Method == http.MethodPost {
				mu.Lock()
				writing[cart] = false
				mu.Unlock()
			}
		}))
		res, err := pipeline.VerifyFiles(context.Background(), verifyConfig(t, url), []string{path}, pipeline.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		o := gate.Decide(res.Report, nil, gate.Options{})
		for _, f := range append(o.Regressions, o.Differences...) {
			if f.Field == "body.count" {
				countDiffers = true
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return countDiffers, overtaken
	}
	if differs, overtaken := replay(rec); differs || overtaken {
		t.Errorf("a connection's requests were not replayed in order: cart counts differ %v, a GET overtook its POST %v", differs, overtaken)
	}
	if _, overtaken := replay(loose); !overtaken {
		t.Error("control: no GET overtook its POST without connections; the test cannot see the order")
	}
}
