package capture

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loopback binds a listener with opts on a loopback port and dials it;
// both close when the test ends.
func loopback(t *testing.T, opts Options, st *Stats) (*Listener, net.Conn) {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	l, err := Listen(opts, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c, err := net.Dial("udp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return l, c
}

func TestListenerReceivesJumboDatagrams(t *testing.T) {
	var st Stats
	opts := DefaultOptions
	opts.Addr = "127.0.0.1:0"
	opts.ReadBuffer = 1 << 20
	l, err := Listen(opts, &st)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st.ReadBuffer.Load() < 1<<20 {
		t.Logf("receive buffer %d (capped by rmem_max without CAP_NET_ADMIN)", st.ReadBuffer.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var sizes []int
	var from []netip.Addr
	idles := 0
	done := make(chan error)
	go func() {
		done <- l.Run(ctx, func(src netip.Addr, b []byte, ts int64) {
			mu.Lock()
			sizes = append(sizes, len(b))
			from = append(from, src)
			mu.Unlock()
		}, func(int64) { mu.Lock(); idles++; mu.Unlock() })
	}()
	c, err := net.Dial("udp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []int{100, 9100, 1500, 60000}
	for _, n := range want {
		if _, err := c.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := len(sizes)
		mu.Unlock()
		if got == len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		ticked := idles > 0
		mu.Unlock()
		if ticked {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != len(want) {
		t.Fatalf("received %v, want %v", sizes, want)
	}
	for i := range want {
		if sizes[i] != want[i] || from[i] != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("datagram %d: %d bytes from %v", i, sizes[i], from[i])
		}
	}
	if idles == 0 {
		t.Error("no idle tick")
	}
	if _, err := l.KernelDrops(); err != nil {
		t.Errorf("kernel drops: %v", err)
	}
}

// A stop ends reading within a batch even while the socket still holds a
// backlog: the stop's deadline must not be pushed back by the loop.
func TestRunStopsPromptlyUnderBacklog(t *testing.T) {
	var st Stats
	opts := DefaultOptions
	opts.ReadBuffer = 4 << 20
	opts.Batch = 8
	l, c := loopback(t, opts, &st)
	// Fill the socket: 2,000 datagrams, more than the handler below gets
	// through in the test's time at 1 ms each.
	for range 2000 {
		if _, err := c.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var handled sync.WaitGroup
	handled.Add(1)
	var once sync.Once
	go func() {
		done <- l.Run(ctx, func(netip.Addr, []byte, int64) {
			once.Do(handled.Done)
			time.Sleep(time.Millisecond) // a slow consumer keeps the backlog
		}, func(int64) {})
	}()
	handled.Wait()
	atStop := st.Datagrams.Load()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of the stop")
	}
	// At most the batch in progress and one more are read after the stop
	// (counted, not timed: a loaded machine stretches any time bound).
	if n := st.Datagrams.Load() - atStop; n > 2*uint64(opts.Batch) {
		t.Errorf("read %d datagrams after the stop, want at most %d", n, 2*opts.Batch)
	}
}

// A burst of several batches is read to its end without waiting for
// another datagram or the idle tick (the reader waits for readiness
// first only after a batch that emptied the socket), and a datagram
// after a quiet spell is read at once too.
func TestBurstLongerThanABatchIsReadWhole(t *testing.T) {
	var st Stats
	opts := DefaultOptions
	opts.ReadBuffer = 4 << 20
	opts.Batch = 8
	opts.IdleTick = time.Hour // only the reads themselves can deliver
	l, c := loopback(t, opts, &st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	got := make(chan int, 1000)
	go func() {
		done <- l.Run(ctx, func(_ netip.Addr, b []byte, _ int64) { got <- len(b) }, func(int64) {})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	expect := func(n, size int) {
		t.Helper()
		for i := range n {
			select {
			case g := <-got:
				if g != size {
					t.Fatalf("datagram %d of %d bytes, want %d", i, g, size)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%d of %d datagrams read, then none for 5 s", i, n)
			}
		}
	}
	send := func(n, size int) {
		for range n {
			if _, err := c.Write(make([]byte, size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(3, 10) // a short batch: the reader then waits for readiness
	expect(3, 10)
	time.Sleep(50 * time.Millisecond)
	send(1, 20) // a lone datagram after the wait began
	expect(1, 20)
	send(8*5+3, 30) // five full batches and a short one
	expect(8*5+3, 30)
	time.Sleep(50 * time.Millisecond)
	send(8, 40) // exactly a batch, then the socket is empty
	expect(8, 40)
	send(1, 50)
	expect(1, 50)
}

// A datagram that arrives while the reader is still handling the batch
// that emptied the socket is read at once, not at the next datagram or
// idle tick: the poller's readiness from its arrival must not be lost
// (internal/poll resets it at the start of each RawConn.Read).
func TestDatagramArrivingDuringHandlingIsRead(t *testing.T) {
	var st Stats
	opts := DefaultOptions
	opts.Batch = 8
	opts.IdleTick = time.Hour
	l, c := loopback(t, opts, &st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	got := make(chan int, 100)
	go func() {
		done <- l.Run(ctx, func(_ netip.Addr, b []byte, _ int64) {
			if len(b) == 1 {
				// While the first is handled, the second arrives.
				if _, err := c.Write(make([]byte, 2)); err != nil {
					t.Error(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			got <- len(b)
		}, func(int64) {})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for round := range 20 {
		if _, err := c.Write(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		for want := 1; want <= 2; want++ {
			select {
			case g := <-got:
				if g != want {
					t.Fatalf("round %d: datagram of %d bytes, want %d", round, g, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: the datagram of %d bytes that arrived during handling was not read in 5 s", round, want)
			}
		}
	}
}

// After an idle tick the reader goes on reading, and ticks once an
// IdleTick, not in a loop on the deadline that passed.
func TestReadingGoesOnAfterIdleTicks(t *testing.T) {
	var st Stats
	opts := DefaultOptions
	opts.IdleTick = 20 * time.Millisecond
	l, c := loopback(t, opts, &st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	got := make(chan int, 10)
	var idles atomic.Int64
	go func() {
		done <- l.Run(ctx, func(_ netip.Addr, b []byte, _ int64) { got <- len(b) }, func(int64) { idles.Add(1) })
	}()
	time.Sleep(200 * time.Millisecond) // about 10 ticks
	if _, err := c.Write(make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("a datagram after idle ticks was not read in 5 s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := idles.Load(); n == 0 || n > 100 {
		t.Fatalf("%d idle ticks in about 200 ms at one per 20 ms", n)
	}
}
