package pipeline_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/gate"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/player"
	"github.com/shadowtap/shadowtap/internal/testkit/shoptest"
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
	m.marks = append(m.marks, strconv.FormatInt(p.Sent, 10)+" sent, "+strconv.FormatUint(p.Answered, 10)+" answered, "+
		strconv.FormatUint(p.Failed, 10)+" failed: heap "+strconv.FormatUint(ms.HeapInuse>>20, 10)+" MiB")
	if testing.Verbose() {
		println(m.marks[len(m.marks)-1]) // live, for a long run
	}
}

// cpuTime is the process's CPU time so far: the machine is shared, so a
// rate per CPU second says what the code costs where a wall-clock rate
// says how busy the neighbours were.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerify replays a recording of 20,000 exchanges as fast as a
// loopback candidate allows, every answer compared with production's.
//
//	go test -run X -bench Verify -benchtime 3x ./internal/pipeline
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
	cpu0 := cpuTime()
	for range b.N {
		res, err := pipeline.VerifyFiles(context.Background(), cfg, []string{rec}, pipeline.VerifyOptions{})
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
	b.ReportMetric(float64(sent)/(cpuTime()-cpu0).Seconds(), "exchanges/cpu-s")
}

// TestLargeRecording is the measured run on a large recording: set
// SHADOWTAP_VERIFY_LARGE to the number of exchanges (1000000 for the
// figure in the README). It reports the rate and the heap over the run.
//
//	SHADOWTAP_VERIFY_LARGE=1000000 go test -run LargeRecording -v -timeout 30m ./internal/pipeline
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
	cpu0 := cpuTime()
	res, err := pipeline.VerifyFiles(ctx, cfg, []string{rec}, pipeline.VerifyOptions{Progress: m.sample, ProgressEvery: 5 * time.Second})
	cpu := cpuTime() - cpu0
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.marks {
		t.Log(l)
	}
	rate := float64(res.Sent) / res.Elapsed.Seconds()
	t.Logf("%d exchanges replayed and compared in %s: %.0f/s, %.0f per CPU second (%s of CPU, the server's included); peak heap in use %d MiB",
		res.Report.Compared, res.Elapsed.Round(time.Millisecond), rate, float64(res.Sent)/cpu.Seconds(), cpu.Round(time.Millisecond), m.peak>>20)
	o := gate.Decide(res.Report, nil, gate.Options{})
	for _, f := range o.Regressions {
		t.Errorf("regression against production's own code: %s %s %s", f.Endpoint, f.Field, f.Example)
	}
	for _, f := range o.Latency {
		t.Logf("latency (not gating at max speed): %s %s %s", f.Endpoint, f.Field, f.Example)
	}
	if res.Report.Compared != uint64(conns*per) {
		t.Errorf("compared %d of %d", res.Report.Compared, conns*per)
	}
}
