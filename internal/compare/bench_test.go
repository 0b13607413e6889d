package compare

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// body2K is a 2 KB JSON answer with per-response noise (an id, a time).
func body2K(r *rand.Rand, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"requestId":%q,"generatedAt":%q,"items":[`, uuid(r), now.UTC().Format(time.RFC3339Nano))
	for i := range 16 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%05d","name":"Item number %d","price":%d.25,"tags":["a","b"],"stock":{"n":%d,"ok":true}}`, i, i, i, i%5)
	}
	b.WriteString(`],"page":{"n":1,"of":7}}`)
	return b.String()
}

// BenchmarkCompareExchange measures the comparator's worker on one
// exchange: parsing both 2 KB JSON answers, learning from production's,
// comparing, recording. Run with -cpu 1; exchanges/s is per core.
func BenchmarkCompareExchange(b *testing.B) {
	c, err := New(Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Minute,
		MaxPending: 10, Queue: 10, MinSamples: 20, Threshold: 0.01, Handler: "bench"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	h := http.Header{"Content-Type": {"application/json"}}
	const n = 64
	xs := make([]*exchange, n)
	for i := range xs {
		req := parseRequest(b, "GET", fmt.Sprintf("/api/items/%d", i), "")
		xs[i] = &exchange{req: req, endpoint: c.grouper.Name("GET", "/api/items/1"), expect: partProd | partCand}
		a := answer{status: 200, header: [][2]string{{"Content-Type", "application/json"}}, body: body2K(r, now)}
		xs[i].sides[0] = side{prod: mirrored(b, a, 1, 2), firstByte: time.Millisecond, at: now}
		xs[i].sides[1] = side{msg: diff.Message{Status: 200, Header: h, Body: []byte(body2K(r, now))}, firstByte: time.Millisecond, at: now}
	}
	b.SetBytes(int64(len(xs[0].sides[0].prod.Body()) + len(xs[0].sides[1].msg.Body)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for i := 0; b.Loop(); i++ {
		c.process(xs[i%n])
	}
	// Per CPU second as well as per wall second: on a shared machine the
	// wall clock counts other processes' time too. (The process's CPU
	// time: garbage collection included.)
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "exchanges/cpu-s")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
