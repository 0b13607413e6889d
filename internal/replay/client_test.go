package replay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// misbehavingServer answers the first request on each connection normally
// (so the client pools the connection) and then treats the next request
// with the given fault. It counts every request it reads in full, so a
// test can see a duplicate that the client's own counters would hide.
type misbehavingServer struct {
	ln       net.Listener
	fault    func(c net.Conn)
	posts    atomic.Int64
	requests atomic.Int64
	conns    atomic.Int64
	wg       sync.WaitGroup
}

func newMisbehavingServer(t *testing.T, fault func(c net.Conn)) *misbehavingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &misbehavingServer{ln: ln, fault: fault}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *misbehavingServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serve(c)
		}()
	}
}

func (s *misbehavingServer) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		s.requests.Add(1)
		if req.Method == "POST" {
			s.posts.Add(1)
		}
		if n == 0 || s.fault == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			continue
		}
		s.fault(c)
		return
	}
}

const (
	testGET  = "GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
	testPOST = "POST /pay HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\namount"
)

func testClient(t *testing.T, addr string, opts ClientOptions) *Client {
	t.Helper()
	dest, err := ParseDestination("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(dest, opts)
	t.Cleanup(c.CloseIdle)
	return c
}

func do(c *Client, raw string) (*Response, error) {
	head := strings.Index(raw, "\r\n\r\n") + 4
	method := raw[:strings.IndexByte(raw, ' ')]
	return c.Do(context.Background(), []byte(raw), head, method, false)
}

// A request written on a reused connection that then fails must never be
// sent again: the server may have acted on it (a payment, an order).
func TestNoResendAfterWriteOnReusedConnection(t *testing.T) {
	opts := DefaultClientOptions
	opts.ResponseTimeout = 300 * time.Millisecond
	cases := []struct {
		name   string
		fault  func(c net.Conn)
		reason FailReason
	}{
		{"close after reading", func(c net.Conn) {}, FailClosed},
		{"reset after reading", func(c net.Conn) { c.(*net.TCPConn).SetLinger(0) }, FailReset},
		{"answer after the timeout", func(c net.Conn) {
			time.Sleep(600 * time.Millisecond)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}, FailTimeout},
		{"partial answer then stall", func(c net.Conn) {
			io.WriteString(c, "HTT")
			time.Sleep(600 * time.Millisecond)
		}, FailTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newMisbehavingServer(t, tc.fault)
			c := testClient(t, srv.ln.Addr().String(), opts)
			if _, err := do(c, testGET); err != nil {
				t.Fatal(err)
			}
			_, err := do(c, testPOST)
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("POST: want a replay error, got %v", err)
			}
			if re.Reason != tc.reason {
				t.Errorf("reason %v, want %v (%v)", re.Reason, tc.reason, err)
			}
			// Give a wrongly resent copy time to arrive.
			time.Sleep(100 * time.Millisecond)
			if n := srv.posts.Load(); n != 1 {
				t.Errorf("the server received the POST %d times, want exactly once", n)
			}
		})
	}
}

// A pooled connection that the server closed while it was idle is found
// dead before it is used, so the request goes out once on a fresh one.
func TestIdleConnectionClosedByServerIsNotUsed(t *testing.T) {
	// The server answers the GET, then closes the kept-alive connection
	// once told to, as a server whose keep-alive timeout ran out.
	closeIdle := make(chan struct{})
	var posts atomic.Int64
	ln, conns := acceptEach(t, func(cn net.Conn) {
		defer cn.Close()
		br := bufio.NewReader(cn)
		for {
			cn.SetReadDeadline(time.Now().Add(2 * time.Second))
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.Method == "POST" {
				posts.Add(1)
			}
			io.WriteString(cn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if req.Method == "GET" {
				<-closeIdle
				return // closes the kept-alive connection
			}
		}
	})
	c := testClient(t, ln.Addr().String(), DefaultClientOptions)
	if _, err := do(c, testGET); err != nil {
		t.Fatal(err)
	}
	close(closeIdle)
	time.Sleep(50 * time.Millisecond) // the FIN reaches the client
	resp, err := do(c, testPOST)
	if err != nil {
		t.Fatalf("POST after the server closed the idle connection: %v", err)
	}
	if resp.Reused {
		t.Error("the POST went out on the closed connection")
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("POST received %d times, want 1", n)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// Idle connections older than IdleTimeout are not reused: servers close
// theirs after a few seconds (Node: 5 s), and a request written as that
// close crosses it on the wire could not be proved unread.
func TestIdleConnectionExpires(t *testing.T) {
	srv := newMisbehavingServer(t, nil)
	opts := DefaultClientOptions
	opts.IdleTimeout = 300 * time.Millisecond
	c := testClient(t, srv.ln.Addr().String(), opts)
	if _, err := do(c, testGET); err != nil {
		t.Fatal(err)
	}
	resp, err := do(c, testGET)
	if err != nil || !resp.Reused {
		t.Fatalf("second GET at once: reused=%v err=%v, want reused", resp != nil && resp.Reused, err)
	}
	time.Sleep(400 * time.Millisecond)
	resp, err = do(c, testGET)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Reused {
		t.Error("a connection idle past IdleTimeout was reused")
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// The replayer measures the time to the first byte of the answer, so that
// latency is compared with production's, which is known from packets only
// to the first byte.
func TestFirstByteMeasured(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		cn, err := ln.Accept()
		if err != nil {
			return
		}
		defer cn.Close()
		req, err := http.ReadRequest(bufio.NewReader(cn))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		time.Sleep(30 * time.Millisecond)
		io.WriteString(cn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
		time.Sleep(80 * time.Millisecond)
		io.WriteString(cn, "cd")
	}()
	c := testClient(t, ln.Addr().String(), DefaultClientOptions)
	resp, err := do(c, testGET)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	// Lower bounds only: a loaded machine may stretch any upper one.
	if resp.FirstByte < 30*time.Millisecond {
		t.Errorf("first byte after %v, want at least 30ms", resp.FirstByte)
	}
	if resp.Duration < 110*time.Millisecond || resp.Duration < resp.FirstByte {
		t.Errorf("duration %v, want at least 110ms (the body's last byte)", resp.Duration)
	}
}

// The liveness peek looks at the TCP socket under TLS: TLS 1.3 session
// tickets, sent after the handshake, must not make a live connection look
// stale (they are read with the first answer), so keep-alive still works.
func TestTLSConnectionReused(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	dest, _ := ParseDestination("https://" + u.Host)
	opts := DefaultClientOptions
	opts.InsecureTLS = true
	c := NewClient(dest, opts)
	defer c.CloseIdle()
	for i := range 3 {
		resp, err := do(c, testGET)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && !resp.Reused {
			t.Errorf("request %d: the TLS connection was not reused", i)
		}
		time.Sleep(20 * time.Millisecond) // the tickets are on the socket by now
	}
	if n := c.StaleConns.Load(); n != 0 {
		t.Errorf("%d live TLS connections judged stale", n)
	}
}

// failingConn is a pooled connection whose first write fails, having
// handed the kernel n bytes.
type failingConn struct {
	net.Conn
	n int
}

func (f *failingConn) Write(b []byte) (int, error) { return f.n, syscall.EPIPE }

// The one resend: a request whose first write on a kept-alive connection
// took no byte is sent on a fresh connection; one that took a byte is not.
func TestResendOnlyWhatNeverLeft(t *testing.T) {
	for _, taken := range []int{0, 1} {
		srv := newMisbehavingServer(t, nil)
		c := testClient(t, srv.ln.Addr().String(), DefaultClientOptions)
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		fc := &failingConn{Conn: a, n: taken}
		c.put(&conn{Conn: fc, br: bufio.NewReader(fc)})
		_, err := do(c, testPOST)
		if taken == 0 && (err != nil || srv.posts.Load() != 1) {
			t.Errorf("nothing written: err %v, the server got %d POSTs, want the one resend", err, srv.posts.Load())
		}
		if taken == 1 && (err == nil || srv.posts.Load() != 0) {
			t.Errorf("a byte written: err %v, the server got %d POSTs, want none and a failure", err, srv.posts.Load())
		}
	}
}

// A stop that came before the request sends nothing, even on a pooled
// connection, and returns at once.
func TestCancelledContextSendsNothing(t *testing.T) {
	srv := newMisbehavingServer(t, nil)
	c := testClient(t, srv.ln.Addr().String(), DefaultClientOptions)
	if _, err := do(c, testGET); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		began := time.Now()
		_, err := c.Do(ctx, []byte(testPOST), strings.Index(testPOST, "\r\n\r\n")+4, "POST", false)
		var re *Error
		if !errors.As(err, &re) || re.Reason != FailTimeout {
			t.Fatalf("err %v, want a timeout", err)
		}
		if d := time.Since(began); d > time.Second {
			t.Errorf("took %v", d)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := srv.posts.Load(); n != 0 {
		t.Errorf("the server got %d POSTs after the stop", n)
	}
}

// A TLS server that answered and then sent close_notify (its TCP
// connection left open) has closed the connection for TLS: the next
// request goes on a fresh one, and runs once.
func TestTLSCloseNotifyMakesConnectionStale(t *testing.T) {
	certs := httptest.NewUnstartedServer(nil)
	certs.StartTLS() // only for its certificate
	defer certs.Close()
	var posts atomic.Int64
	ln, conns := acceptEach(t, func(raw net.Conn) {
		defer raw.Close()
		tc := tls.Server(raw, certs.TLS)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(tc))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if req.Method == "POST" {
			posts.Add(1)
		}
		io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		tc.CloseWrite() // close_notify; the TCP connection stays open
		io.Copy(io.Discard, raw)
	})
	dest, _ := ParseDestination("https://" + ln.Addr().String())
	opts := DefaultClientOptions
	opts.InsecureTLS = true
	c := NewClient(dest, opts)
	defer c.CloseIdle()
	if _, err := do(c, testGET); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	resp, err := do(c, testPOST)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	if resp.Reused || posts.Load() != 1 || conns.Load() != 2 {
		t.Errorf("reused %v, POSTs %d, connections %d", resp.Reused, posts.Load(), conns.Load())
	}
}

// Interim answers other than 100 (103 Early Hints) while the client waits
// to send a body are not the final answer: the body is sent and the final
// answer read.
func TestEarlyHintsDuringExpectContinue(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		cn, err := ln.Accept()
		if err != nil {
			got <- ""
			return
		}
		defer cn.Close()
		br := bufio.NewReader(cn)
		req, err := http.ReadRequest(br)
		if err != nil {
			got <- ""
			return
		}
		io.WriteString(cn, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n")
		body, _ := io.ReadAll(req.Body)
		io.WriteString(cn, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
		got <- string(body)
	}()
	c := testClient(t, ln.Addr().String(), DefaultClientOptions)
	raw := "POST /u HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"
	resp, err := c.Do(context.Background(), []byte(raw), strings.Index(raw, "\r\n\r\n")+4, "POST", true)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 201 {
		t.Errorf("status %d, want 201 (the final answer)", resp.Status)
	}
	if b := <-got; b != "hello" {
		t.Errorf("the server read body %q", b)
	}
}

// acceptEach serves every connection to a new loopback listener with
// serve, each on its own goroutine, until the test ends; conns counts them.
func acceptEach(t *testing.T, serve func(net.Conn)) (net.Listener, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := &atomic.Int64{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(cn)
			}()
		}
	}()
	return ln, conns
}
