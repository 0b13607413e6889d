package player

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/source"
	"github.com/shadowtap/shadowtap/internal/target"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
)

type sliceSource struct{ recs []recording.Record }

func (s *sliceSource) Next() (recording.Record, error) {
	if len(s.recs) == 0 {
		return recording.Record{}, io.EOF
	}
	r := s.recs[0]
	s.recs = s.recs[1:]
	return r, nil
}
func (s *sliceSource) Close() error { return nil }

// fiveOver400ms returns five requests on two connections spread over 400 ms.
func fiveOver400ms() func() (source.Source, error) {
	var recs []recording.Record
	for i := range 5 {
		recs = append(recs, recording.Record{Start: int64(i) * 100e6, End: int64(i)*100e6 + 1, Conn: uint64(i % 2), Index: i / 2,
			Client: netip.MustParseAddrPort("10.0.0.1:1"), Server: netip.MustParseAddrPort("10.0.0.2:80"),
			Request: fmt.Appendf(nil, "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i)})
	}
	return func() (source.Source, error) {
		return &sliceSource{recs: append([]recording.Record(nil), recs...)}, nil
	}
}

func fanoutTo(t *testing.T, addr string) (*target.Fanout, *target.Set) {
	cfg := config.Default()
	cfg.Destination = "http://" + addr
	rs := cfg.Resolve()
	rs[0].Block = true
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	set, _, err := target.Build(context.Background(), rs, nil, log, target.Observers{})
	if err != nil {
		t.Fatal(err)
	}
	return target.NewFanout(set, ratelog.New(log, time.Minute)), set
}

func TestPlaySpeedAndLoop(t *testing.T) {
	for _, c := range []struct {
		speed   float64
		loops   int
		minTime time.Duration
	}{
		{2, 1, 180 * time.Millisecond}, // 400 ms of traffic at 2x
		{0, 3, 0},                      // as fast as possible, three passes
	} {
		srv, _ := rawserver.Listen("127.0.0.1:0")
		f, set := fanoutTo(t, srv.Addr())
		open := fiveOver400ms()
		began := time.Now()
		p, err := Play(context.Background(), open, f, Options{Speed: c.speed, Loops: c.loops}, time.Hour, nil)
		elapsed := time.Since(began)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		target.Stop(ctx, set.Targets)
		cancel()
		p = Tally(f, p)
		if err != nil || p.Sent != int64(5*c.loops) || p.Total != p.Sent || p.Fraction != 1 || p.Answered != uint64(5*c.loops) || len(srv.Requests()) != 5*c.loops {
			t.Errorf("speed %v loops %d: %+v, server got %d, err %v", c.speed, c.loops, p, len(srv.Requests()), err)
		}
		if elapsed < c.minTime {
			t.Errorf("speed %v: took %v, original timing needs at least %v", c.speed, elapsed, c.minTime)
		}
		srv.Close()
	}
}

// endless yields exchanges forever, as a file too large to count before
// Ctrl-C; it counts its reads.
type endless struct{ reads atomic.Int64 }

func (e *endless) Next() (recording.Record, error) {
	n := e.reads.Add(1)
	return recording.Record{Start: n, Request: []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n")}, nil
}
func (e *endless) Close() error { return nil }

// Play sends from the first exchange on, without reading the input ahead
// to count it, and stops reading when its context ends.
func TestPlayDoesNotReadAhead(t *testing.T) {
	srv, _ := rawserver.Listen("127.0.0.1:0")
	defer srv.Close()
	f, set := fanoutTo(t, srv.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	src := &endless{}
	done := make(chan Progress, 1)
	go func() {
		p, _ := Play(ctx, func() (source.Source, error) { return src, nil }, f, Options{Loops: 1}, time.Hour, nil)
		done <- p
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(srv.Requests()) < 20 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if len(srv.Requests()) < 20 {
		t.Fatal("an endless input sent nothing: it was read ahead")
	}
	cancel()
	var p Progress
	select {
	case p = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Play did not stop within 5 s of its context ending")
	}
	if reads := src.reads.Load(); reads > p.Sent+1 {
		t.Errorf("%d reads for %d sent: read on after the stop", reads, p.Sent)
	}
	if p.Total != -1 {
		t.Errorf("total %d of an input never finished", p.Total)
	}
	stop, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
	target.Stop(stop, set.Targets)
	cancelStop()
}

func TestRenderer(t *testing.T) {
	var b bytes.Buffer
	p := Progress{Sent: 50, Total: 200, Fraction: 0.25, Answered: 48, Failed: 2, Elapsed: 10 * time.Second, Remaining: 30 * time.Second}
	(&Renderer{W: &b, Terminal: true}).Show(p)
	if got := b.String(); !strings.HasPrefix(got, "\r\x1b[K[=======") || !strings.Contains(got, "50/200 requests (25%), 5 req/s, 48 answered, 2 errors, 30s left") {
		t.Errorf("bar = %q", got)
	}
	b.Reset()
	r := &Renderer{W: &b, PlainEvery: time.Hour}
	r.Show(p)
	r.Show(p) // within the interval: not repeated
	if n := strings.Count(b.String(), "\n"); n != 1 || strings.Contains(b.String(), "\r") {
		t.Errorf("plain = %q", b.String())
	}
	for _, s := range []string{"1x", "2x", "0.5x", "3", "max"} {
		if _, err := ParseSpeed(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseSpeed("-1x"); err == nil {
		t.Error("-1x accepted")
	}
}

// TestProgressWhilePlaying reports progress every millisecond while a
// pass sends as fast as it can: the reporter reads the counters the pass
// writes (the race detector checks they are shared safely), and what it
// reads never goes backwards nor past what was sent.
func TestProgressWhilePlaying(t *testing.T) {
	srv, _ := rawserver.Listen("127.0.0.1:0")
	defer srv.Close()
	f, set := fanoutTo(t, srv.Addr())
	const n = 2000
	var recs []recording.Record
	for i := range n {
		req := fmt.Appendf(nil, "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
		if i%10 == 0 {
			req = []byte("not http\r\n\r\n") // counted as unparsed
		}
		recs = append(recs, recording.Record{Start: int64(i), End: int64(i), Conn: uint64(i), Request: req,
			Client: netip.MustParseAddrPort("10.0.0.1:1"), Server: netip.MustParseAddrPort("10.0.0.2:80")})
	}
	open := func() (source.Source, error) {
		return &sliceSource{recs: append([]recording.Record(nil), recs...)}, nil
	}
	var reports []Progress
	final, err := Play(context.Background(), open, f, Options{Loops: 1}, time.Millisecond, func(p Progress) {
		reports = append(reports, p)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	target.Stop(ctx, set.Targets)
	cancel()
	if err != nil || final.Sent != n-n/10 || final.Unparsed != n/10 {
		t.Fatalf("final %+v, err %v", final, err)
	}
	if len(reports) == 0 {
		t.Fatal("no progress reported")
	}
	var last Progress
	for _, p := range reports {
		if p.Sent < last.Sent || p.Unparsed < last.Unparsed || p.Sent > final.Sent || p.Unparsed > final.Unparsed {
			t.Fatalf("progress went from %+v to %+v (final %+v)", last, p, final)
		}
		last = p
	}
}

// sizedSource yields n exchanges, stops after the first `pauseAt` until
// resumed, and says it has read half its input.
type sizedSource struct {
	sliceSource
	given   int
	pauseAt int
	resume  chan struct{}
}

func (s *sizedSource) Next() (recording.Record, error) {
	if s.given == s.pauseAt {
		<-s.resume
	}
	s.given++
	return s.sliceSource.Next()
}

func (s *sizedSource) Input() (read, total int64) { return 500, 1000 }

// While the first pass is read, the progress is the share of the input
// read (the exchanges are not counted ahead); afterwards, of the
// exchanges.
func TestProgressFromInputBytes(t *testing.T) {
	srv, _ := rawserver.Listen("127.0.0.1:0")
	defer srv.Close()
	f, set := fanoutTo(t, srv.Addr())
	five := fiveOver400ms()
	first, _ := five()
	src := &sizedSource{sliceSource: *first.(*sliceSource), pauseAt: 3, resume: make(chan struct{})}
	reports := make(chan Progress, 1000)
	done := make(chan Progress, 1)
	go func() {
		p, _ := Play(context.Background(), func() (source.Source, error) { return src, nil }, f, Options{Loops: 1}, time.Millisecond,
			func(p Progress) {
				select {
				case reports <- p:
				default:
				}
			})
		done <- p
	}()
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case p := <-reports:
			if p.Sent == 3 {
				seen = true
				if p.Total != -1 || p.Fraction != 0.5 || p.Remaining < 0 {
					t.Errorf("mid-pass progress %+v: want half of the input, total unknown, a time left", p)
				}
			}
		case <-deadline:
			t.Fatal("no progress report while the source was paused")
		}
	}
	close(src.resume)
	p := <-done
	if p.Sent != 5 || p.Total != 5 || p.Fraction != 1 {
		t.Errorf("final progress %+v", p)
	}
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	target.Stop(stop, set.Targets)
	cancel()
}

// manyConns yields n exchanges, each on a connection of its own, one
// second apart in recording time; at exchange at it asks check.
type manyConns struct {
	n, i, at int
	check    func()
}

func (m *manyConns) Next() (recording.Record, error) {
	if m.i == m.n {
		return recording.Record{}, io.EOF
	}
	if m.i == m.at {
		m.check()
	}
	m.i++
	return recording.Record{Start: int64(m.i) * int64(time.Second), End: int64(m.i)*int64(time.Second) + 1000, Conn: uint64(m.i),
		Client: netip.MustParseAddrPort("10.0.0.1:1"), Server: netip.MustParseAddrPort("10.0.0.2:80"),
		Request: fmt.Appendf(nil, "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", m.i)}, nil
}
func (m *manyConns) Close() error { return nil }

// TestPlayForgetsIdleConnections: a long recording's connections are
// forgotten once idle for a while of recording time, not held by the
// targets until the pass ends; over several passes too.
func TestPlayForgetsIdleConnections(t *testing.T) {
	srv, _ := rawserver.Listen("127.0.0.1:0")
	defer srv.Close()
	f, set := fanoutTo(t, srv.Addr())
	held := 0
	open := func() (source.Source, error) {
		return &manyConns{n: 5000, at: 4900, check: func() {
			// What is queued is held anyway: wait for the replays.
			st := &set.Targets[0].Stats.Replay
			for deadline := time.Now().Add(10 * time.Second); (st.Queued.Load() > 0 || st.InFlight.Load() > 0) && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			held = max(held, set.Targets[0].Conns())
		}}, nil
	}
	p, err := Play(context.Background(), open, f, Options{Loops: 3}, time.Hour, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	target.Stop(ctx, set.Targets)
	cancel()
	if err != nil || p.Sent != 3*5000 {
		t.Fatalf("sent %d, %v", p.Sent, err)
	}
	// At most the connections of the last minute and of one sweep's
	// stretch, of the 4900 seen.
	if held > sweepEvery+int(connIdle/time.Second)+64 {
		t.Errorf("%d connections held at the 4900th exchange", held)
	}
	if n := set.Targets[0].Conns(); n != 0 {
		t.Errorf("%d connections held after the last pass", n)
	}
	t.Logf("at most %d connections held", held)
}
