package correlate

import (
	"net/http"
	"testing"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// An answer that creates nothing (a list, a page) costs the capture path
// no allocation: correlation is on by default, and it reads every answer.
func TestAnswerCreatingNothingAllocatesNothing(t *testing.T) {
	m := diff.Message{Status: 200, Header: http.Header{"Content-Type": {"text/html"}, "Content-Length": {"9"}},
		Body: []byte(`<p>ok</p>`)}
	if n := testing.AllocsPerRun(100, func() { values(m, "items") }); n != 0 {
		t.Fatalf("values of an answer carrying no created value: %.0f allocations, want 0", n)
	}
}
