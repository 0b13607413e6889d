package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// The stop tests of issue 10's ordered lifecycle, on a child process
// (TestMain in lifecycle_test.go) so that real signals reach it: SIGTERM
// under a UDP backlog, Ctrl-C during a large file replay (while the file
// is counted, and while it is sent), SIGHUP and SIGTERM together.

// childLines is a child process whose output is read line by line as it
// comes, each line stamped with the time it arrived.
type childLines struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	all  bytes.Buffer
	seen []stampedLine
	more chan struct{} // closed and replaced at each new line
	done chan struct{} // closed when the output ends
	exit chan error    // cmd.Wait's result, once
}

type stampedLine struct {
	text string
	at   time.Time
}

// startChild runs this test binary as shadowtap with args, both its
// outputs into one pipe.
func startChild(t *testing.T, args ...string) *childLines {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	// The race detector's build sleeps a second at exit by default; the
	// exit times measured here are the program's own.
	race := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), "SHADOWTAP_CLI_CHILD=1", "GORACE="+race)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	c := &childLines{cmd: cmd, more: make(chan struct{}), done: make(chan struct{}), exit: make(chan error, 1)}
	go func() {
		defer close(c.done)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			now := time.Now()
			c.mu.Lock()
			c.all.WriteString(sc.Text() + "\n")
			c.seen = append(c.seen, stampedLine{sc.Text(), now})
			close(c.more)
			c.more = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	go func() {
		err := cmd.Wait()
		<-c.done
		c.exit <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
	})
	return c
}

func (c *childLines) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all.String()
}

// waitLine returns the first line containing s, waiting at most d.
func (c *childLines) waitLine(s string, d time.Duration) (stampedLine, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for _, l := range c.seen {
			if strings.Contains(l.text, s) {
				c.mu.Unlock()
				return l, true
			}
		}
		more := c.more
		c.mu.Unlock()
		select {
		case <-more:
		case <-c.done:
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, l := range c.seen {
				if strings.Contains(l.text, s) {
					return l, true
				}
			}
			return stampedLine{}, false
		case <-deadline.C:
			return stampedLine{}, false
		}
	}
}

// waitExit waits at most d for the child to end; ok is false if it did
// not (it is then killed).
func (c *childLines) waitExit(d time.Duration) (at time.Time, ok bool, err error) {
	select {
	case err := <-c.exit:
		return time.Now(), true, err
	case <-time.After(d):
		c.cmd.Process.Kill()
		err := <-c.exit
		return time.Now(), false, err
	}
}

// logTime reads the time= field of a log line (slog's text format, in
// milliseconds): when the child wrote it, whatever the pipe's delay.
func logTime(line string) (time.Time, bool) {
	i := strings.Index(line, "time=")
	if i < 0 {
		return time.Time{}, false
	}
	f, _, _ := strings.Cut(line[i+len("time="):], " ")
	at, err := time.Parse(time.RFC3339Nano, f)
	return at, err == nil
}

// raceBuild says whether this binary (and so the child) has the race
// detector, which makes everything several times slower.
func raceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// exactServer is a test environment that keeps every request it received
// and the bytes of each connection that were not a whole request (a
// request cut short by the stop).
type exactServer struct {
	ln    net.Listener
	delay time.Duration // before each answer: a slow environment keeps the queues full
	mu    sync.Mutex
	reqs  [][]byte
	cut   int // connections that ended inside a request
	wg    sync.WaitGroup
	open  map[net.Conn]bool
}

func newExactServer(t *testing.T, delay time.Duration) *exactServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &exactServer{ln: ln, delay: delay, open: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *exactServer) addr() string { return s.ln.Addr().String() }

func (s *exactServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.open[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *exactServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	var pending [][]byte
	var whole int // bytes of the connection that made whole requests
	p := httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(r *httpstream.Request) {
		pending = append(pending, bytes.Clone(r.Raw))
		whole += len(r.Raw)
	})
	var total int
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			total += n
			p.Feed(buf[:n], 0)
			for _, r := range pending {
				s.mu.Lock()
				s.reqs = append(s.reqs, r)
				s.mu.Unlock()
				time.Sleep(s.delay)
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
					break
				}
			}
			pending = pending[:0]
		}
		if err != nil {
			break
		}
	}
	s.mu.Lock()
	if total != whole {
		s.cut++
	}
	delete(s.open, c)
	s.mu.Unlock()
}

func (s *exactServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *exactServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// check reports requests that arrived twice or not as captured, and
// connections that ended inside a request.
func (s *exactServer) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range s.reqs {
		line, _, _ := bytes.Cut(r, []byte("\r\n"))
		if seen[string(line)] {
			t.Errorf("%q reached the test server twice", line)
		}
		seen[string(line)] = true
		if !bytes.HasPrefix(r, []byte("GET /stop/")) || !bytes.Contains(r, []byte("\r\nUser-Agent: stoptest/1.0\r\n")) ||
			!bytes.HasSuffix(r, []byte("\r\n\r\n")) {
			t.Errorf("not as captured: %q", r)
		}
	}
	if s.cut > 0 {
		t.Errorf("%d connections to the test server ended inside a request", s.cut)
	}
}

// mirrorStream emits the mirrored datagrams of keep-alive GETs on conns
// connections, request by request (request, production's answer, the
// client's ACK, as a mirror sends both directions).
type mirrorStream struct {
	conns []*synth.Conn
	next  int // request number
	frame []byte
}

var stopResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"items\":[1,2,3]}")

func newMirrorStream(conns int, firstOctet byte) *mirrorStream {
	m := &mirrorStream{}
	server := netip.MustParseAddrPort("10.0.0.2:80")
	for i := range conns {
		cl := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, firstOctet, byte(i >> 8), byte(i)}), uint16(20000+i))
		m.conns = append(m.conns, synth.NewConn(cl, server, uint32(i)*1000003, uint32(i)*7919))
	}
	return m
}

// handshakes returns every connection's handshake segments.
func (m *mirrorStream) handshakes() []synth.Segment {
	var segs []synth.Segment
	for _, c := range m.conns {
		segs = append(segs, c.Handshake()...)
	}
	return segs
}

// request returns the segments of the next request, in turn on each
// connection.
func (m *mirrorStream) request() []synth.Segment {
	i := m.next % len(m.conns)
	c := m.conns[i]
	req := fmt.Sprintf("GET /stop/%d/%d HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: stoptest/1.0\r\nAccept: application/json\r\n\r\n", i, m.next)
	m.next++
	segs := c.ClientData([]byte(req))
	segs = append(segs, c.ServerData(stopResponse)...)
	return append(segs, c.ClientACK())
}

// vxlan returns s as the payload of one VXLAN datagram; the result is
// valid until the next call.
func (m *mirrorStream) vxlan(s synth.Segment) []byte {
	m.frame = synth.AppendVXLAN(m.frame[:0], 7, synth.AppendFrame(nil, s))
	return m.frame
}

// udpSocketStats returns the receive queue and the drop count of the UDP
// sockets bound to addr (one, or a group of steered ones), summed, from
// /proc/net/udp.
func udpSocketStats(addr string) (queue, drops uint64, ok bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, 0, false
	}
	a := ap.Addr().As4()
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 13 || f[1] != local {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		q, err1 := strconv.ParseUint(rx, 16, 64)
		d, err2 := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, false
		}
		queue, drops, ok = queue+q, drops+d, true
	}
	return queue, drops, ok
}

// metric reads one counter from the admin server's /metrics.
func metric(admin, name string) (float64, bool) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// SIGTERM while the mirror floods the socket faster than the handler
// reads it: capture stops within a bound of the signal (issue 10: 100 ms;
// it once took 15.5 s, the read loop renewing the deadline the stop had
// set, while datagrams_total kept rising), the datagram counter stops,
// and the handler exits 0 within the drain timeout and a margin.
func TestStopUnderUDPBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a child handler")
	}
	const drain = time.Second
	// The bound asked for is 100 ms; the race detector's build of the
	// handler is several times slower, and the machine is shared.
	stopBound := 100 * time.Millisecond
	if raceBuild() {
		stopBound = 400 * time.Millisecond
	}
	// A slow test environment: the queue stays full, so the drain lasts
	// to its deadline and the admin server answers meanwhile.
	srv := newExactServer(t, 20*time.Millisecond)
	udp, admin := freeAddr(t, "udp"), freeAddr(t, "tcp")
	// 8 MiB of socket buffer (the kernel doubles it; each socket of a
	// steered group has its own) holds thousands of datagrams: a backlog
	// as good as the default 64 MiB for the test, lighter on a shared
	// machine.
	child := startChild(t, "-destination", "http://"+srv.addr(), "-listen", udp, "-health-listen", "",
		"-admin-listen", admin, "-drain-timeout", drain.String(), "-read-buffer", strconv.Itoa(8<<20))
	if _, ok := child.waitLine("shadowtap started", 20*time.Second); !ok {
		t.Fatalf("the handler did not start:\n%s", child.output())
	}

	// A sender floods the socket with keep-alive GETs until told to stop,
	// the child has gone, or a time cap.
	out, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	stopFlood, flooded := make(chan struct{}), make(chan struct{})
	var sent atomic.Uint64
	go func() {
		defer close(flooded)
		m := newMirrorStream(256, 1)
		for _, s := range m.handshakes() {
			out.Write(m.vxlan(s))
		}
		capAt := time.Now().Add(60 * time.Second)
		for i := 0; ; i++ {
			if i%64 == 0 {
				select {
				case <-stopFlood:
					return
				case <-child.done:
					return
				default:
				}
				if time.Now().After(capAt) {
					return
				}
			}
			for _, s := range m.request() {
				if _, err := out.Write(m.vxlan(s)); err == nil {
					sent.Add(1)
				}
			}
		}
	}()
	defer func() {
		close(stopFlood)
		<-flooded
	}()
	// The handler has work: connections open, requests replayed.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if n, _ := metric(admin, "shadowtap_datagrams_total"); n >= 20000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the handler received too few datagrams in 20 s (%d sent):\n%s", sent.Load(), child.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	before, _ := metric(admin, "shadowtap_datagrams_total")

	// A mirror can send faster than a handler reads, but on loopback the
	// sender pays for the delivery: instead, the handler is frozen while
	// the sender fills its socket to the brim (the kernel drops), and the
	// SIGTERM is the first thing it sees when it thaws, with the flood
	// still coming.
	if err := child.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	_, drops0, _ := udpSocketStats(udp)
	var queue, drops uint64
	deadline = time.Now().Add(15 * time.Second)
	for {
		var ok bool
		queue, drops, ok = udpSocketStats(udp)
		if !ok {
			child.cmd.Process.Signal(syscall.SIGCONT)
			t.Fatalf("the handler's socket %s is not in /proc/net/udp", udp)
		}
		if drops > drops0 {
			break
		}
		if time.Now().After(deadline) {
			child.cmd.Process.Signal(syscall.SIGCONT)
			t.Fatalf("the socket never filled (queue %d, drops %d, %d datagrams sent)", queue, drops, sent.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}

	signalled := time.Now()
	if err := child.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := child.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	line, ok := child.waitLine("capture stopped", 20*time.Second)
	if !ok {
		t.Fatalf("no \"capture stopped\" within 20 s of SIGTERM:\n%s", child.output())
	}
	at, ok := logTime(line.text)
	if !ok {
		t.Fatalf("no time in %q", line.text)
	}
	// The log's time has millisecond precision; the pipe may delay the
	// line itself on a loaded machine, so the child's own clock decides.
	stopped := at.Sub(signalled.Truncate(time.Millisecond))
	t.Logf("socket queue %d bytes, %d drops at SIGTERM; %.0f datagrams received before; capture stopped %v after SIGTERM "+
		"(line read after %v); bound %v", queue, drops, before, stopped, line.at.Sub(signalled).Round(time.Millisecond), stopBound)
	if stopped > stopBound {
		t.Errorf("capture stopped %v after SIGTERM under a backlog, want at most %v", stopped, stopBound)
	}

	// The datagram counter stops rising while the sender floods on (the
	// admin server answers until the drain ends).
	if n1, ok := metric(admin, "shadowtap_datagrams_total"); ok {
		sent1 := sent.Load()
		watched := time.Now()
		for time.Since(watched) < 300*time.Millisecond {
			time.Sleep(50 * time.Millisecond)
			n2, ok := metric(admin, "shadowtap_datagrams_total")
			if !ok {
				break // the drain ended; the admin server closed
			}
			if n2 != n1 {
				t.Errorf("datagrams_total rose from %.0f to %.0f after capture stopped", n1, n2)
				break
			}
		}
		t.Logf("datagrams_total stayed at %.0f for %v after capture stopped, while %d more were sent",
			n1, time.Since(watched).Round(time.Millisecond), sent.Load()-sent1)
	} else {
		t.Log("the admin server had closed: the datagram counter not watched")
	}

	margin := 2 * time.Second
	exited, ok, err := child.waitExit(stopBound + drain + margin + 10*time.Second)
	took := exited.Sub(signalled)
	t.Logf("exit %v after SIGTERM (drain timeout %v)", took.Round(time.Millisecond), drain)
	if !ok {
		t.Fatalf("the handler did not exit within %v of SIGTERM:\n%s", took, child.output())
	}
	if err != nil || strings.Contains(child.output(), "panic") {
		t.Fatalf("exit: %v\n%s", err, child.output())
	}
	if took > stopBound+drain+margin {
		t.Errorf("exited %v after SIGTERM, want at most %v (stop, drain %v, margin)", took, stopBound+drain+margin, drain)
	}
}

// stopCapture writes a capture file of n mirrored keep-alive GETs on 64
// connections, each connection closed at the end.
func stopCapture(t *testing.T, path string, n int) {
	t.Helper()
	m := newMirrorStream(64, 1)
	segs := m.handshakes()
	for range n {
		segs = append(segs, m.request()...)
	}
	for _, c := range m.conns {
		segs = append(segs, c.Close()...)
	}
	writeCapture(t, path, segs)
}

// writeCapture writes the segments, each in its VXLAN datagram (VNI 7),
// as a capture file: VXLAN in UDP in IPv4 in Ethernet, as tcpdump on the
// mirror target's interface saves them, 10 µs apart.
func writeCapture(t *testing.T, path string, segs []synth.Segment) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddrPort("10.9.0.1:41000"), netip.MustParseAddrPort("10.9.0.2:4789")
	eth := []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00}
	ts := time.Unix(1_700_000_000, 0)
	var pkt, frame []byte
	for _, s := range segs {
		frame = synth.AppendVXLAN(frame[:0], 7, synth.AppendFrame(nil, s))
		pkt = synth.AppendIPv4UDP(append(pkt[:0], eth...), src, dst, frame)
		ts = ts.Add(10 * time.Microsecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(pkt), Length: len(pkt)}, pkt); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// hasOpen says whether process pid has path open.
func hasOpen(pid int, path string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}

// Ctrl-C during the replay of large capture files returns promptly,
// whether it comes as soon as the files are opened or while their
// requests are sent; no request reaches the test environment twice or
// cut short. (The files are not read ahead to count them: that took a
// whole decode of every file before the first request went out.)
func TestInterruptLargeFileReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes a large capture file")
	}
	const requests = 150_000
	path := filepath.Join(t.TempDir(), "big.pcap")
	began := time.Now()
	stopCapture(t, path, requests)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d requests, %d MiB, written in %v", filepath.Base(path), requests, st.Size()>>20, time.Since(began).Round(time.Millisecond))
	const drain = 500 * time.Millisecond
	bound := 1500 * time.Millisecond
	if raceBuild() {
		bound = 2500 * time.Millisecond
	}

	replay := func(t *testing.T, srv *exactServer, files ...string) *childLines {
		args := append([]string{"replay"}, files...)
		return startChild(t, append(args, "-destination", "http://"+srv.addr(), "-speed", "max", "-progress", "off",
			"-drain-timeout", drain.String())...)
	}
	interrupt := func(t *testing.T, child *childLines) time.Duration {
		t.Helper()
		signalled := time.Now()
		if err := child.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		// Not waiting for the whole count when the signal is ignored.
		exited, ok, err := child.waitExit(max(4*bound, 10*time.Second))
		took := exited.Sub(signalled)
		if !ok {
			t.Fatalf("replay did not exit within %v of Ctrl-C:\n%s", took, child.output())
		}
		if err != nil || strings.Contains(child.output(), "panic") {
			t.Fatalf("exit: %v\n%s", err, child.output())
		}
		return took
	}

	// A day's worth of files: a whole decode of them takes seconds, many
	// times the bound.
	var day []string
	for i := range 16 {
		link := filepath.Join(filepath.Dir(path), fmt.Sprintf("hour%02d.pcap", i))
		if err := os.Symlink(path, link); err != nil {
			t.Fatal(err)
		}
		day = append(day, link)
	}

	t.Run("as the files open", func(t *testing.T) {
		srv := newExactServer(t, 0)
		child := replay(t, srv, day...)
		real, err := filepath.EvalSymlinks(path) // as /proc shows it
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !hasOpen(child.cmd.Process.Pid, real) {
			if time.Now().After(deadline) {
				t.Fatalf("replay never opened the file:\n%s", child.output())
			}
			time.Sleep(2 * time.Millisecond)
		}
		took := interrupt(t, child)
		t.Logf("exit %v after Ctrl-C; %d requests sent", took.Round(time.Millisecond), srv.count())
		if took > bound {
			t.Errorf("replay exited %v after Ctrl-C as the files opened, want at most %v", took, bound)
		}
		srv.check(t)
	})

	t.Run("while sending", func(t *testing.T) {
		srv := newExactServer(t, 0)
		child := replay(t, srv, path)
		deadline := time.Now().Add(120 * time.Second)
		for srv.count() < 100 {
			if time.Now().After(deadline) {
				t.Fatalf("nothing replayed within 120 s:\n%s", child.output())
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := interrupt(t, child)
		n := srv.count()
		t.Logf("exit %v after Ctrl-C (drain timeout %v); %d of %d requests sent", took.Round(time.Millisecond), drain, n, requests)
		if took > drain+bound {
			t.Errorf("replay exited %v after Ctrl-C while sending, want at most %v", took, drain+bound)
		}
		if n >= requests {
			t.Errorf("all %d requests were sent: the interruption came too late to test anything", n)
		}
		srv.check(t)
	})
}

// SIGHUP and SIGTERM together, after the configuration file changed, in
// both orders, 20 times each, the second signal 0 to 9 ms after the first
// so that the reload lands before the stop, while capture stops, and
// while the targets drain; the new file alternately replaces every target
// and keeps one with a new destination (its replayer is rebuilt). Never
// a panic, exit 0, and "capture stopped" logged once.
// TestReloadAndStopTogether sends the signals back to back, 10 times each.
func TestReloadAndStopStaggered(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the handler 40 times")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shadowtap.yaml")
	write := func(yaml string) {
		t.Helper()
		// Renamed into place: the reload never reads a half-written file.
		tmp := cfg + ".tmp"
		if err := os.WriteFile(tmp, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfg); err != nil {
			t.Fatal(err)
		}
	}
	const perOrder = 20
	var reloaded, ignored int // how the reloads fell, for the log
	for i := range 2 * perOrder {
		write("targets:\n  - name: a\n    destination: http://127.0.0.1:9\n  - name: b\n    destination: http://127.0.0.1:9\n")
		admin := freeAddr(t, "tcp")
		child := startChild(t, "-config", cfg, "-listen", freeAddr(t, "udp"), "-health-listen", "",
			"-admin-listen", admin, "-drain-timeout", "1s")
		if _, ok := child.waitLine("shadowtap started", 20*time.Second); !ok {
			t.Fatalf("run %d: the handler did not start:\n%s", i, child.output())
		}
		if i%4 < 2 {
			write("targets:\n  - name: c\n    destination: http://127.0.0.1:9\n")
		} else {
			write("targets:\n  - name: a\n    destination: http://127.0.0.1:7\n")
		}
		first, second := syscall.SIGHUP, syscall.SIGTERM
		if i%2 == 1 {
			first, second = second, first
		}
		gap := time.Duration(i/2%10) * time.Millisecond
		child.cmd.Process.Signal(first)
		if gap > 0 {
			time.Sleep(gap)
		}
		child.cmd.Process.Signal(second)
		_, ok, err := child.waitExit(15 * time.Second)
		out := child.output()
		if !ok {
			t.Fatalf("run %d (%v, %v later %v) did not exit within 15 s:\n%s", i, first, gap, second, out)
		}
		if err != nil || strings.Contains(out, "panic") || strings.Count(out, "capture stopped") != 1 {
			t.Fatalf("run %d (%v, %v later %v): %v\n%s", i, first, gap, second, err, out)
		}
		reloaded += strings.Count(out, "configuration reloaded")
		ignored += strings.Count(out, "reload ignored")
	}
	t.Logf("%d runs: %d reloads put in force, %d ignored as the stop had begun, the rest not read before the stop",
		2*perOrder, reloaded, ignored)
}
