// Package capture receives mirrored packets: VXLAN datagrams on a UDP
// socket, read in batches (recvmmsg) into buffers large enough for jumbo
// frames. No root, libpcap or kernel VXLAN device is needed.
package capture

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Options configure the listener.
type Options struct {
	Addr        string // UDP address, ":4789"
	ReadBuffer  int    // requested socket receive buffer in bytes
	Batch       int    // datagrams per recvmmsg
	IdleTick    time.Duration
	MaxDatagram int // buffer per datagram; 64 KiB holds any UDP datagram
}

// DefaultOptions suit a mirror target at a few hundred thousand packets
// per second.
var DefaultOptions = Options{Addr: ":4789", ReadBuffer: 64 << 20, Batch: 64, IdleTick: 100 * time.Millisecond, MaxDatagram: 64 << 10}

// Stats count what the socket delivered.
type Stats struct {
	Datagrams   atomic.Uint64
	Bytes       atomic.Uint64
	ReadErrors  atomic.Uint64
	Truncated   atomic.Uint64 // datagrams larger than MaxDatagram (cannot happen at 64 KiB)
	ReadBuffer  atomic.Int64  // effective SO_RCVBUF as the kernel reports it
	KernelDrops atomic.Uint64 // last value read from /proc/net/udp
}

// Listener is a bound UDP socket.
type Listener struct {
	opts     Options
	conn     *net.UDPConn
	inode    uint64
	stats    *Stats        // shared by a group's sockets
	received atomic.Uint64 // datagrams this socket delivered
}

// Listen binds the socket and sizes its receive buffer.
func Listen(opts Options, stats *Stats) (*Listener, error) {
	return listen(opts, stats, nil)
}

// listen binds one socket; control, when set, runs on it before the bind.
func listen(opts Options, stats *Stats, control func(fd int) error) (*Listener, error) {
	lc := net.ListenConfig{}
	if control != nil {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) { err = control(int(fd)) }); cerr != nil {
				return cerr
			}
			return err
		}
	}
	pc, err := lc.ListenPacket(context.Background(), "udp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	conn := pc.(*net.UDPConn)
	l := &Listener{opts: opts, conn: conn, stats: stats}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("capture: %w", err)
	}
	rc.Control(func(fd uintptr) {
		// SO_RCVBUF is capped by net.core.rmem_max; SO_RCVBUFFORCE is not,
		// but needs CAP_NET_ADMIN. Try the forced one first.
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, opts.ReadBuffer) != nil {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, opts.ReadBuffer)
		}
		if n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
			stats.ReadBuffer.Store(int64(n))
		}
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) == nil {
			l.inode = st.Ino
		}
	})
	return l, nil
}

// ListenGroup binds n sockets to one address (SO_REUSEPORT) and has the
// kernel steer each datagram to one of them by its inner connection, the
// same socket for both directions (see steer.go). Each socket gets its own
// reader and engine, so the shards share nothing but the counters. An
// error means the kernel refused the group or its program; a single
// socket still works then.
func ListenGroup(opts Options, n int, stats *Stats) (*Group, error) {
	if n < 1 {
		return nil, fmt.Errorf("capture: a group of %d sockets", n)
	}
	prog, err := bpf.Assemble(steerProgram(n))
	if err != nil {
		return nil, fmt.Errorf("capture: steering program: %w", err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	reuse := func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	// The program goes on the first socket before it binds: the group
	// is then its own (another process's group or socket on the port is
	// refused, and cannot join ours), and steers from the first datagram.
	// The others bind the port the first got (the address may ask for
	// any port).
	first := func(fd int) error {
		if err := reuse(fd); err != nil {
			return err
		}
		fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog); err != nil {
			return fmt.Errorf("steering program: %w", err)
		}
		return nil
	}
	g := &Group{stats: stats}
	for i := range n {
		o, control := opts, reuse
		if i == 0 {
			control = first
		} else {
			o.Addr = g.Listeners[0].Addr().String()
		}
		l, err := listen(o, stats, control)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.Listeners = append(g.Listeners, l)
	}
	// Until the last socket joined, the kernel steered an index beyond
	// the sockets bound so far by its own hash, which is not symmetric:
	// what came in meanwhile (before Run reads anything) is dropped so
	// that no connection starts split over two engines.
	for _, l := range g.Listeners {
		g.Discarded += l.discardQueued()
	}
	return g, nil
}

// discardQueued reads and drops, without waiting, what the socket holds.
func (l *Listener) discardQueued() int {
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	buf := make([]byte, 1)
	rc.Control(func(fd uintptr) {
		for n < 1<<20 { // bounded: a flood cannot keep it here
			if _, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT|unix.MSG_TRUNC); err != nil {
				return
			}
			n++
		}
	})
	return n
}

// Group is a set of sockets sharing one address, each datagram of a
// connection steered to the same one.
type Group struct {
	Listeners []*Listener
	// Discarded counts datagrams received while the group was being
	// bound, dropped (they may have been steered to the wrong socket).
	Discarded int
	stats     *Stats
}

// Addr returns the bound address.
func (g *Group) Addr() netip.AddrPort { return g.Listeners[0].Addr() }

// Close closes every socket.
func (g *Group) Close() error {
	for _, l := range g.Listeners {
		l.Close()
	}
	return nil
}

// KernelDrops returns the datagrams the kernel dropped for the group's
// sockets together.
func (g *Group) KernelDrops() (uint64, error) {
	inodes := make([]uint64, len(g.Listeners))
	for i, l := range g.Listeners {
		inodes[i] = l.inode
	}
	sum, err := drops(inodes)
	if err == nil {
		g.stats.KernelDrops.Store(sum)
	}
	return sum, err
}

// Received returns how many datagrams this socket delivered.
func (l *Listener) Received() uint64 { return l.received.Load() }

// Addr returns the bound address.
func (l *Listener) Addr() netip.AddrPort { return l.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the socket.
func (l *Listener) Close() error { return l.conn.Close() }

// Run reads datagrams until ctx ends, calling handle for each (b is only
// valid during the call; ts is the batch's receive time in unix ns) and
// idle when no datagram came for IdleTick, so timers run without traffic.
func (l *Listener) Run(ctx context.Context, handle func(src netip.Addr, b []byte, ts int64), idle func(now int64)) error {
	return l.RunBatches(ctx, handle, nil, idle)
}

// RunBatches is Run that also calls batchDone (when not nil) after the
// datagrams of each socket read were handled, so that a consumer batching
// them can hand its batches on without waiting for the next read.
func (l *Listener) RunBatches(ctx context.Context, handle func(src netip.Addr, b []byte, ts int64), batchDone func(), idle func(now int64)) error {
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return err
	}
	r := newBatchReader(l.opts.Batch, l.opts.MaxDatagram)
	stop := context.AfterFunc(ctx, func() { l.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	// batch handles one recvmmsg; it says whether to wait before the next
	// (the socket was emptied) and whether to stop.
	var readErr syscall.Errno
	batch := func(fd uintptr) (wait, stopped bool) {
		// Checked before each batch: with a backlog in the socket every
		// read succeeds, and the deadline set here would undo the stop's.
		if ctx.Err() != nil {
			return false, true
		}
		l.conn.SetReadDeadline(time.Now().Add(l.opts.IdleTick))
		n, errno := r.recv(fd)
		if errno == unix.EAGAIN {
			return true, false
		}
		if errno != 0 {
			readErr = errno
			return false, true
		}
		now := time.Now().UnixNano()
		// Counted once per read: sockets of a group share the counters,
		// and an add per datagram would have their readers contend.
		var bytes uint64
		for i := range n {
			b, src, truncated := r.datagram(i)
			bytes += uint64(len(b))
			if truncated {
				l.stats.Truncated.Add(1)
			}
			handle(src, b, now)
		}
		l.stats.Datagrams.Add(uint64(n))
		l.stats.Bytes.Add(bytes)
		l.received.Add(uint64(n))
		if batchDone != nil {
			batchDone()
		}
		return n < len(r.hdrs), false
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		readErr = 0
		// The Read fails at once on a deadline passed: set before it too.
		l.conn.SetReadDeadline(time.Now().Add(l.opts.IdleTick))
		// One Read for as long as batches come: see batchReader. After a
		// Read ends (a deadline, an error), the first batch of the next
		// is read at once, since the Read's start cleared the readiness.
		err := rc.Read(func(fd uintptr) bool {
			for {
				wait, stopped := batch(fd)
				if stopped {
					return true
				}
				if wait {
					return false
				}
			}
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
			idle(time.Now().UnixNano())
		case err != nil && errors.Is(err, net.ErrClosed):
			return nil
		case err != nil || readErr != 0:
			l.stats.ReadErrors.Add(1)
			time.Sleep(time.Millisecond) // a persistent error must not spin a core
		}
	}
}

// KernelDrops returns how many datagrams the kernel dropped for this socket
// (receive buffer full), from /proc/net/udp and /proc/net/udp6.
func (l *Listener) KernelDrops() (uint64, error) {
	n, err := l.drops()
	if err == nil {
		l.stats.KernelDrops.Store(n)
	}
	return n, err
}

func (l *Listener) drops() (uint64, error) { return drops([]uint64{l.inode}) }

// drops sums the drop counts of the sockets with the given inodes, each
// file of /proc read once.
func drops(inodes []uint64) (uint64, error) {
	want := make(map[string]bool, len(inodes))
	for _, ino := range inodes {
		want[strconv.FormatUint(ino, 10)] = true
	}
	var sum uint64
	found := 0
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		n, k, err := procDrops(f, want)
		if err != nil {
			return 0, err
		}
		sum, found = sum+n, found+k
	}
	if found != len(want) {
		return 0, fmt.Errorf("capture: %d of %d sockets not in /proc/net/udp*", len(want)-found, len(want))
	}
	return sum, nil
}

// procDrops sums, over the lines of the sockets whose inodes are in
// want, the last column: the drop count.
func procDrops(path string, want map[string]bool) (sum uint64, found int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
		if len(fields) >= 13 && want[fields[9]] {
			n, err := strconv.ParseUint(fields[len(fields)-1], 10, 64)
			if err != nil {
				return 0, 0, err
			}
			sum, found = sum+n, found+1
		}
	}
	return sum, found, sc.Err()
}
