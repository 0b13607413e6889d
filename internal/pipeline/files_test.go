package pipeline

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/recording"
)

// Ctrl-C while inspecting a large capture stops reading it at once, and
// says it was interrupted rather than summarising part of the file.
func TestReadFileStopsWhenInterrupted(t *testing.T) {
	in := filepath.Join(t.TempDir(), "big.pcap")
	const total = 150_000
	bigCapture(t, in, total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	var cancelled time.Time
	_, _, err := ReadFile(ctx, in, Derive(config.Default(), Inspect), func(recording.Record) {
		if n++; n == 1000 {
			cancelled = time.Now()
			cancel()
		}
	})
	took := time.Since(cancelled)
	if !errors.Is(err, context.Canceled) || n > 1000 || took > time.Second {
		t.Errorf("returned %v after the interrupt, having read %d of %d, error %v", took, n, total, err)
	}
}
