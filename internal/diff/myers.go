package diff

// pair is a matched element: a[a] == b[b].
type pair struct{ a, b int }

// maxEdits bounds Myers' search: beyond it the middle of the two sequences
// is treated as one changed block. Its memory is O(maxEdits²) at worst.
const maxEdits = 1000

// lcs returns the matched elements of a shortest edit script from a to b
// (Myers, "An O(ND) Difference Algorithm and Its Variations", 1986), in
// increasing order. A hand-written one: the Go diff libraries at hand
// either work on strings only or are internal to the toolchain, and the
// comparison needs it on hashes (lines, array elements, CSV rows).
func lcs(a, b []uint64) []pair {
	var out []pair
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		out = append(out, pair{pre, pre})
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	mid := myers(a[pre:len(a)-suf], b[pre:len(b)-suf])
	for _, p := range mid {
		out = append(out, pair{p.a + pre, p.b + pre})
	}
	for i := suf; i > 0; i-- {
		out = append(out, pair{len(a) - i, len(b) - i})
	}
	return out
}

func myers(a, b []uint64) []pair {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		return nil
	}
	maxD := min(n+m, maxEdits)
	off := maxD + 1
	v := make([]int, 2*maxD+3)
	var trace [][]int
	found := -1
	for d := 0; d <= maxD && found < 0; d++ {
		snap := make([]int, 2*d+1) // v[k] for k in [-d, d] before this round
		for k := -d; k <= d; k++ {
			snap[k+d] = v[k+off]
		}
		trace = append(trace, snap)
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || k != d && v[k-1+off] < v[k+1+off] {
				x = v[k+1+off] // down: an insertion
			} else {
				x = v[k-1+off] + 1 // right: a deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[k+off] = x
			if x >= n && y >= m {
				found = d
				break
			}
		}
	}
	if found < 0 {
		return nil // too different: one changed block
	}
	// Backtrack from (n, m) through the snapshots.
	var rev []pair
	x, y := n, m
	for d := found; d > 0; d-- {
		snap := trace[d]
		k := x - y
		var prevK int
		// snap holds v before round d, i.e. after round d-1, indexed by k+d.
		at := func(k int) int { return snap[k+d] }
		if k == -d || k != d && at(k-1) < at(k+1) {
			prevK = k + 1
		} else {
			prevK = k - 1
		}
		prevX := at(prevK)
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			x, y = x-1, y-1
			rev = append(rev, pair{x, y})
		}
		x, y = prevX, prevY
	}
	for x > 0 && y > 0 {
		x, y = x-1, y-1
		rev = append(rev, pair{x, y})
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev
}
