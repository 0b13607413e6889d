package pipeline

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/player"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
)

// Replaying a file twice at full speed delivers every request of each
// pass, counts what the target answered, and leaves no goroutine behind.
func TestReplayFiles(t *testing.T) {
	srv, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/shadowtap/shadowtap/internal/testkit/rawserver.(*Server).serve"))
	cfg := config.Default()
	cfg.Destination = "http://" + srv.Addr()
	const input = "../../testdata/pcaps/zeek__http-1000-requests-one-dropped-response.pcap.gz"
	var size int64 = -1
	var reports int
	p, err := ReplayFiles(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), []string{input},
		ReplayOptions{Options: player.Options{Loops: 2}, Started: func(n int64) {
			if reports > 0 {
				t.Error("progress reported before the start")
			}
			size = n
		}, Progress: func(player.Progress) { reports++ }, ProgressEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(input); err != nil || size != fi.Size() {
		t.Errorf("started with %d bytes of input, err %v", size, err)
	}
	if p.Sent != 2000 || p.Total != 2000 || p.Fraction != 1 || p.Answered != uint64(p.Sent) || p.Failed != 0 || p.Dropped != 0 {
		t.Errorf("progress %+v", p)
	}
	if n := len(srv.Requests()); int64(n) != p.Sent || reports == 0 {
		t.Errorf("the target received %d, %d progress reports", n, reports)
	}
}

// A missing or unreadable input is found before anything is sent.
func TestReplayFilesChecksEveryInputFirst(t *testing.T) {
	srv, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := config.Default()
	cfg.Destination = "http://" + srv.Addr()
	_, err = ReplayFiles(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)),
		[]string{"../../testdata/pcaps/zeek__http-1000-requests-one-dropped-response.pcap.gz", "no-such-file.pcap"}, ReplayOptions{})
	if !errors.Is(err, ErrInput) {
		t.Errorf("err %v, want ErrInput", err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests sent before the bad input was found", n)
	}
}
