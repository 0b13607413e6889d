package pipeline

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"go.uber.org/goleak"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/source"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

func request(body int) *httpstream.Request {
	raw := "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(body) + "\r\n\r\n" + strings.Repeat("x", body)
	return &httpstream.Request{Message: httpstream.Message{Raw: []byte(raw)}}
}

// The recorder never holds up the engines: with the writer stuck, it
// queues up to its bounds (in exchanges and in bytes), drops and counts
// the rest, and once the writer moves on, writes every queued exchange.
func TestRecorderBoundsItsQueue(t *testing.T) {
	for _, c := range []struct {
		name        string
		count       int
		bytes       int64
		body, sends int
		written     int
	}{
		{"by count", 3, 1 << 20, 10, 10, 4}, // one taken by the stuck writer, three queued
		{"by bytes", 100, 1000, 400, 10, 3}, // one taken, then two of about 450 bytes
		{"one larger than the bound", 100, 100, 400, 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			release := make(chan struct{})
			got := 0
			r := newRecorderBounded(func(recording.Record) error { <-release; got++; return nil }, c.count, c.bytes)
			r.start()
			r.Response(1, request(c.body), nil)
			// Wait for the writer to take the first: it is now stuck.
			for deadline := time.Now().Add(5 * time.Second); len(r.q) > 0 || r.queued.Load() != 0; {
				if time.Now().After(deadline) {
					t.Fatal("the writer never took the first exchange")
				}
				time.Sleep(time.Millisecond)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range c.sends - 1 {
					r.Response(1, request(c.body), nil)
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Response blocked on a stuck writer")
			}
			close(release)
			if err := r.close(); err != nil {
				t.Fatal(err)
			}
			if got != c.written || int(r.dropped.Load()) != c.sends-c.written || r.queued.Load() != 0 {
				t.Errorf("written %d, dropped %d, queued bytes %d; want %d written", got, r.dropped.Load(), r.queued.Load(), c.written)
			}
			if err := r.close(); err != nil { // a second close is harmless
				t.Fatal(err)
			}
		})
	}
}

// Recording live runs the live pipeline's capture and engines (two
// shards here) with the recorder as their sink: every exchange mirrored is
// recorded with production's answer, and no goroutine outlives the run.
func TestRecordLive(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := config.Default()
	cfg.Listen, cfg.ReadBuffer, cfg.Shards = "127.0.0.1:0", 1<<20, 2
	var got []recording.Record
	rec := newRecorder(func(r recording.Record) error { got = append(got, r); return nil })
	h, err := build(Derive(cfg, Record), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), rec)
	if err != nil {
		t.Fatal(err)
	}
	if h.HealthAddr() != "" || h.AdminAddr() != "" || len(h.Targets()) != 0 {
		t.Errorf("recording opened health %q, admin %q, targets %d", h.HealthAddr(), h.AdminAddr(), len(h.Targets()))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	m := newMirror(t, h)
	const conns = 20
	for i := range conns {
		c := synth.NewConn(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(5000+i)), netip.MustParseAddrPort("10.0.0.2:80"), 1, 1)
		m.send(1, c.Handshake())
		m.send(1, c.ClientData([]byte("GET /live HTTP/1.1\r\nHost: h\r\n\r\n")))
		m.send(1, c.ServerData([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")))
		m.send(1, c.Close())
	}
	waitFor(t, func() bool { return h.Engine.Paired.Load() == conns })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if !r.HasResponse || r.Status != 200 || !strings.HasPrefix(string(r.Request), "GET /live ") {
			t.Errorf("record %+v", r)
		}
	}
	if len(got) != conns || rec.dropped.Load() != 0 {
		t.Errorf("recorded %d of %d, dropped %d", len(got), conns, rec.dropped.Load())
	}
}

// bigCapture writes a plain Ethernet capture of n keep-alive exchanges
// (request and answer) on 64 connections to port 80.
func bigCapture(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1_700_000_000, 0)
	var pkt []byte
	write := func(segs []synth.Segment) {
		for _, s := range segs {
			pkt = synth.AppendFrame(pkt[:0], s)
			ts = ts.Add(10 * time.Microsecond)
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(pkt), Length: len(pkt)}, pkt); err != nil {
				t.Fatal(err)
			}
		}
	}
	conns := make([]*synth.Conn, 64)
	for i := range conns {
		conns[i] = synth.NewConn(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(20000+i)), netip.MustParseAddrPort("10.0.0.2:80"), 1, 1)
		write(conns[i].Handshake())
	}
	for i := range n {
		c := conns[i%len(conns)]
		write(c.ClientData([]byte("GET /big HTTP/1.1\r\nHost: h\r\n\r\n")))
		write(c.ServerData([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")))
	}
	for _, c := range conns {
		write(c.Close())
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Ctrl-C while recording from a large file stops reading it at once: what
// was read so far is recorded, the recording is closed whole, and the
// rest of the file is not decoded.
func TestRecordFileStopsWhenInterrupted(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "big.pcap"), filepath.Join(dir, "big.strec")
	const total = 150_000
	bigCapture(t, in, total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cancelled := make(chan time.Time, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancelled <- time.Now()
		cancel()
	}()
	res, err := RecordExchanges(ctx, config.Default(), slog.New(slog.NewTextHandler(io.Discard, nil)), RecordOptions{Inputs: []string{in}, Output: out})
	took := time.Since(<-cancelled)
	if err != nil {
		t.Fatal(err)
	}
	if took > time.Second || res.Exchanges >= total {
		t.Errorf("returned %v after the interrupt, having recorded %d of %d", took, res.Exchanges, total)
	}
	rd, err := recording.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	n := 0
	for {
		if _, err := rd.Next(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		n++
	}
	if n != res.Exchanges {
		t.Errorf("the recording holds %d exchanges, %d reported", n, res.Exchanges)
	}
}

// A live recording that cannot listen fails, leaves its output closed and
// no writer behind.
func TestRecordLiveCannotListen(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:99999" // no such port
	_, err := RecordExchanges(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)),
		RecordOptions{Output: filepath.Join(t.TempDir(), "r.strec")})
	if err == nil {
		t.Fatal("recorded on an address it cannot listen on")
	}
}

// An exchange that GoReplay's format cannot hold (a body holding its
// payload separator) is skipped and counted; the others are recorded and
// the file reads back whole.
func TestRecordGoReplaySkipsWhatItCannotHold(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in"+recording.Ext)
	w, err := recording.Create(recording.WriterOptions{Path: in})
	if err != nil {
		t.Fatal(err)
	}
	client, server := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:80")
	bodies := []string{"a", "b\n🐵🙈🙉\nc", "d"}
	for i, b := range bodies {
		req := "POST /" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(b)) + "\r\n\r\n" + b
		if err := w.Write(recording.Record{Start: int64(i + 1), End: int64(i + 1), Conn: 1, Index: i, Client: client, Server: server,
			Request: []byte(req)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.gor")
	cfg := config.Default()
	rec, err := RecordExchanges(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)),
		RecordOptions{Inputs: []string{in}, Output: out, Format: "goreplay"})
	if err != nil {
		t.Fatalf("record: %v", err)
	}
	if rec.Exchanges != 2 || rec.Unrepresentable != 1 {
		t.Errorf("recorded %+v, want 2 exchanges and 1 skipped", rec)
	}
	n := 0
	if err := copyAll(context.Background(), source.OpenAll([]string{out}, Derive(cfg, Record).Sources()), func(r recording.Record) error {
		n++
		if strings.Contains(string(r.Request), "POST /1 ") {
			t.Errorf("the unrepresentable exchange was written: %q", r.Request)
		}
		return nil
	}); err != nil || n != 2 {
		t.Errorf("read back %d exchanges, err %v", n, err)
	}
}
