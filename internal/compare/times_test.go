package compare

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// TestTimesAreEachSidesNow: verify replays a recording months after
// production answered. A time each side wrote as its own "now" differs by
// months, and is no finding even before any noise is learned (a few
// requests per endpoint); a stored time that changed still is.
func TestTimesAreEachSidesNow(t *testing.T) {
	c, err := New(Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Minute,
		MaxPending: 1000, Queue: 1000, MinSamples: 3, Threshold: 0.05, Handler: "test"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recorded := time.Now().Add(-90 * 24 * time.Hour)
	const n = 5
	for i := range n {
		req := request(t, uint64(i), fmt.Sprintf("/api/orders/%d", i))
		c.Expect(req)
		body := func(now time.Time, created string) string {
			// Go's encoder: RFC3339Nano, trailing zeros dropped.
			return fmt.Sprintf(`{"generatedAt":%q,"createdAt":%q}`, now.UTC().Format(time.RFC3339Nano), created)
		}
		prodAt := recorded.Add(time.Duration(i) * time.Second)
		c.Production(req, response(t, 200, body(prodAt.Add(-3*time.Millisecond), "2026-01-02T03:04:05Z"), prodAt.UnixNano()))
		res := replayed("cand", req, 200, body(time.Now(), "2026-01-02T03:04:06Z"), 5*time.Millisecond)
		res.Started = time.Now().Add(-5 * time.Millisecond)
		c.Result(res)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats.Compared.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := regressions(c.Report())
	if want := []string{"GET /api/orders/{id} candidate-vs-production body.createdAt"}; !slices.Equal(got, want) {
		t.Errorf("regressions %q, want %q", got, want)
	}
}

// TestSetOrderLearnedAtAnyDepth: tags are a set written in map order
// (Go's encoding of a map's keys, a Python set): their order varies from
// answer to answer in production too, and is no finding at any depth,
// with no identical requests to learn from; an ordered list reversed is.
func TestSetOrderLearnedAtAnyDepth(t *testing.T) {
	c, err := New(Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Minute,
		MaxPending: 1000, Queue: 1000, MinSamples: 5, Threshold: 0.05, Handler: "test"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	answer := func(page int, reversed bool) string {
		var items []string
		for i := range 4 {
			tags := []string{`"red"`, `"sale"`, `"new"`, fmt.Sprintf(`"t%d"`, i)}
			rng.Shuffle(len(tags), func(a, b int) { tags[a], tags[b] = tags[b], tags[a] })
			items = append(items, fmt.Sprintf(`{"sku":"s%d","meta":{"tags":[%s]}}`, i, strings.Join(tags, ",")))
		}
		ranking := `["s3","s1","s0","s2"]`
		if reversed {
			ranking = `["s2","s0","s1","s3"]`
		}
		return fmt.Sprintf(`{"page":%d,"items":[%s],"ranking":%s}`, page, strings.Join(items, ","), ranking)
	}
	const n = 30
	for i := range n {
		req := request(t, uint64(i), fmt.Sprintf("/api/catalogue?page=%d", i))
		c.Expect(req)
		c.Production(req, response(t, 200, answer(i, false), 0))
		c.Result(replayed("cand", req, 200, answer(i, i%2 == 0), 5*time.Millisecond))
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats.Compared.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := regressions(c.Report())
	if want := []string{"GET /api/catalogue candidate-vs-production body.ranking:order"}; !slices.Equal(got, want) {
		t.Errorf("regressions %q, want %q", got, want)
	}
}

// TestAlwaysCompared: a field named in Always is never explained as
// noise, even where the reference's own answers vary like a time; a
// field not named still is.
func TestAlwaysCompared(t *testing.T) {
	c, err := New(Config{Candidate: "cand", AgainstProduction: true, Diff: diff.DefaultOptions, MaxEndpoints: 100, Wait: time.Minute,
		MaxPending: 1000, Queue: 1000, MinSamples: 5, Threshold: 0.05, Handler: "test",
		Always: []IgnoreRule{{Endpoint: "GET /api/*", Field: "body.expiresAt"}}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 20
	for i := range n {
		now := time.Now()
		req := request(t, uint64(i), fmt.Sprintf("/api/tokens/%d", i))
		c.Expect(req)
		body := func(at time.Time) string {
			return fmt.Sprintf(`{"generatedAt":%q,"expiresAt":%q}`, at.UTC().Format(time.RFC3339Nano), at.Add(time.Minute).UTC().Format(time.RFC3339Nano))
		}
		c.Production(req, response(t, 200, body(now), now.UnixNano()))
		res := replayed("cand", req, 200, body(now.Add(time.Second)), 5*time.Millisecond)
		res.Started = now.Add(time.Second)
		c.Result(res)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats.Compared.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := regressions(c.Report())
	if want := []string{"GET /api/tokens/{id} candidate-vs-production body.expiresAt"}; !slices.Equal(got, want) {
		t.Errorf("regressions %q, want %q", got, want)
	}
}
