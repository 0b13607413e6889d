package replay

import (
	"container/heap"
	"time"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// causal keeps production's order across connections when a recording is
// replayed: a request that production received after another's answer
// had ended (a client that read an order's id, then paid it on another
// connection) is sent only once that other request is done here. What
// production ran at the same time still runs at the same time. Live, a
// request's answer's end is learned when production's answer is seen on
// the mirror, while the request may still wait here (for a value to
// translate): a request production received after that end waits for it
// too (a client shows an order, then pays it, on two connections, both
// waiting for the order's id).
//
// A connection whose next request must wait is parked, its worker free
// for the others (a worker never waits on a request no worker may take),
// and handed back to the workers when a request it waits for is done, or
// after causalWait at most. Guarded by Replayer.mu.
type causal struct {
	ends   endHeap       // Answered of the requests accepted, not yet done (with stale ones)
	live   map[int64]int // how many of each end are not done
	parked []*connQueue
}

// causalWait bounds how long a connection is parked: past it, its request
// is sent (counted in Stats.OrderWaitsExpired).
const causalWait = 5 * time.Second

// add counts a request whose production answer ended at end as
// outstanding (from its acceptance, or once its answer was seen).
func (c *causal) add(end int64) {
	if end == 0 {
		return
	}
	if c.live == nil {
		c.live = map[int64]int{}
	}
	if c.live[end] == 0 {
		heap.Push(&c.ends, end)
	}
	c.live[end]++
}

// done says the request of end is done (answered, failed or dropped).
func (c *causal) done(end int64) {
	if end == 0 || c.live[end] == 0 {
		return
	}
	if c.live[end]--; c.live[end] <= 0 {
		delete(c.live, end)
	}
}

// ready says whether req may be sent: no request whose production answer
// ended before req began is outstanding.
func (c *causal) ready(req *httpstream.Request) bool {
	for c.ends.Len() > 0 {
		top := c.ends[0]
		if c.live[top] > 0 {
			return top >= req.Start
		}
		heap.Pop(&c.ends)
	}
	return true
}

// park sets q aside until its next request is ready.
func (c *causal) park(q *connQueue) {
	q.parkedAt = time.Now()
	c.parked = append(c.parked, q)
}

// unpark returns the parked connections whose next request is ready, or
// that waited causalWait (all of them with all), and forgets them.
func (c *causal) unpark(all bool) (ready []*connQueue, expired int) {
	now := time.Now()
	kept := c.parked[:0]
	for _, q := range c.parked {
		switch {
		case all || c.ready(q.reqs[0]):
			ready = append(ready, q)
		case now.Sub(q.parkedAt) >= causalWait:
			q.unordered = true // sent without waiting further
			ready, expired = append(ready, q), expired+1
		default:
			kept = append(kept, q)
		}
	}
	clear(c.parked[len(kept):])
	c.parked = kept
	return ready, expired
}

// endHeap is a min-heap of answers' ends.
type endHeap []int64

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
