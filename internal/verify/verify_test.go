package verify_test

import (
	"context"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/verify"
	"github.com/shadowtap/shadowtap/internal/verify/shoptest"
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
	res, err := verify.Run(context.Background(), verifyConfig(t, url), []string{rec}, verify.Options{MaxOpen: 8})
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
	res, err := verify.Run(context.Background(), cfg, []string{rec}, verify.Options{Speed: 0.1})
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
