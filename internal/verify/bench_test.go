package verify_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/player"
	"github.com/shadowtap/shadowtap/internal/verify"
	"github.com/shadowtap/shadowtap/internal/verify/shoptest"
)

func serve(tb testing.TB, h http.Handler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func verifyConfig(tb testing.TB, url string) config.Config {
	cfg := config.Default()
	cfg.Targets = []config.Target{{Name: "candidate", Destination: url}}
	cfg.Compare.Candidate = "candidate"
	cfg.LogLevel = "error"
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// memWatch samples the heap in use while a run goes on, to show it flat.
type memWatch struct {
	mu    sync.Mutex
	marks []string
	peak  uint64
}

func (m *memWatch) sample(p player.Progress) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peak = max(m.peak, ms.HeapInuse)
	m.marks = append(m.marks, strconv.FormatInt(p.Sent, 10)+" sent: heap "+strconv.FormatUint(ms.HeapInuse>>20, 10)+" MiB")
}

// BenchmarkVerify replays a recording of 20,000 exchanges as fast as a
// loopback candidate allows, every answer compared with production's.
//
//	go test -run X -bench Verify -benchtime 3x ./internal/verify
func BenchmarkVerify(b *testing.B) {
	rec := filepath.Join(b.TempDir(), "bench.strec")
	const conns, per = 200, 100
	if err := shoptest.Record(rec, conns, per, time.Now().Add(-time.Hour)); err != nil {
		b.Fatal(err)
	}
	cfg := verifyConfig(b, serve(b, shoptest.New(9, false)))
	b.ResetTimer()
	var sent int64
	var elapsed time.Duration
	for range b.N {
		res, err := verify.Run(context.Background(), cfg, []string{rec}, verify.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if res.Report.Compared != conns*per {
			b.Fatalf("compared %d of %d", res.Report.Compared, conns*per)
		}
		sent += res.Sent
		elapsed += res.Elapsed
	}
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "exchanges/s")
}

// TestLargeRecording is the measured run on a large recording: set
// SHADOWTAP_VERIFY_LARGE to the number of exchanges (1000000 for the
// figure in the README). It reports the rate and the heap over the run.
//
//	SHADOWTAP_VERIFY_LARGE=1000000 go test -run LargeRecording -v -timeout 30m ./internal/verify
func TestLargeRecording(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SHADOWTAP_VERIFY_LARGE"))
	if n <= 0 {
		t.Skip("set SHADOWTAP_VERIFY_LARGE=N to run")
	}
	rec := filepath.Join(t.TempDir(), "large.strec")
	per := 1000
	conns := max(n/per, 1)
	if err := shoptest.Record(rec, conns, per, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(rec)
	t.Logf("recording: %d exchanges, %d MiB", conns*per, st.Size()>>20)
	cfg := verifyConfig(t, serve(t, shoptest.New(9, false)))
	var m memWatch
	// Bounded in time: a run that stalls ends, and fails, at the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	res, err := verify.Run(ctx, cfg, []string{rec}, verify.Options{Progress: m.sample, ProgressEvery: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.marks {
		t.Log(l)
	}
	rate := float64(res.Sent) / res.Elapsed.Seconds()
	t.Logf("%d exchanges replayed and compared in %s: %.0f/s; peak heap in use %d MiB; %d regressions",
		res.Report.Compared, res.Elapsed.Round(time.Millisecond), rate, m.peak>>20, res.Report.Regressions)
	if res.Report.Compared != uint64(conns*per) {
		t.Errorf("compared %d of %d", res.Report.Compared, conns*per)
	}
}
