package procstat

import (
	"os"
	"testing"
)

// This process has run (so some CPU time) and holds memory.
func TestReadsOwnProcess(t *testing.T) {
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	_ = x
	if CPUSeconds(os.Getpid()) <= 0 {
		t.Error("no CPU time read for this process")
	}
	if RSSKiB(os.Getpid()) <= 0 {
		t.Error("no RSS read for this process")
	}
	if CPUSeconds(-1) != 0 || RSSKiB(-1) != 0 {
		t.Error("a missing process reads as non-zero")
	}
}
