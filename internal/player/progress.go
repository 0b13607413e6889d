package player

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Renderer shows progress: a bar redrawn in place on a terminal, plain
// lines at most every PlainEvery otherwise.
type Renderer struct {
	W          io.Writer
	Terminal   bool
	PlainEvery time.Duration
	last       time.Time
}

// Show renders p.
func (r *Renderer) Show(p Progress) {
	if r.Terminal {
		fmt.Fprintf(r.W, "\r\x1b[K%s", r.line(p, true))
		return
	}
	if time.Since(r.last) < r.PlainEvery {
		return
	}
	r.last = time.Now()
	fmt.Fprintln(r.W, r.line(p, false))
}

// Done ends the display with a final line.
func (r *Renderer) Done(p Progress) {
	if r.Terminal {
		fmt.Fprint(r.W, "\r\x1b[K")
	}
	fmt.Fprintln(r.W, r.line(p, false))
}

func (r *Renderer) line(p Progress, bar bool) string {
	var b strings.Builder
	if bar && p.Fraction >= 0 {
		const width = 30
		n := int(min(p.Fraction, 1) * width)
		fmt.Fprintf(&b, "[%s%s] ", strings.Repeat("=", n), strings.Repeat(" ", width-n))
	}
	switch {
	case p.Total > 0:
		fmt.Fprintf(&b, "%d/%d requests (%.0f%%)", p.Sent, p.Total, min(p.Fraction, 1)*100)
	case p.Fraction >= 0:
		fmt.Fprintf(&b, "%d requests (%.0f%%)", p.Sent, min(p.Fraction, 1)*100)
	default:
		fmt.Fprintf(&b, "%d requests", p.Sent)
	}
	fmt.Fprintf(&b, ", %.0f req/s, %d answered, %d errors", p.Rate(), p.Answered, p.Failed)
	if p.Dropped > 0 {
		fmt.Fprintf(&b, ", %d not replayed", p.Dropped)
	}
	if r := RefusedSummary(p.Refused); r != "" {
		b.WriteString(", " + r)
	}
	if p.Remaining >= 0 {
		fmt.Fprintf(&b, ", %s left", p.Remaining.Round(time.Second))
	}
	return b.String()
}

// RefusedSummary says how many requests were never offered, and why:
// "2 refused: bare_lf 2"; "" when none were.
func RefusedSummary(refused map[string]uint64) string {
	var n uint64
	for _, c := range refused {
		n += c
	}
	if n == 0 {
		return ""
	}
	parts := make([]string, 0, len(refused))
	for _, k := range slices.Sorted(maps.Keys(refused)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, refused[k]))
	}
	return fmt.Sprintf("%d refused: %s", n, strings.Join(parts, ", "))
}
