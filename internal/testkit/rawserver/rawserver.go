// Package rawserver is an HTTP/1.x test server that records the exact bytes
// of every request it receives, for checking that a replay is exact. The
// demo and the tests use it as the test environment.
package rawserver

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// Received is one request as it arrived.
type Received struct {
	Conn   int    // which accepted connection, from 0
	Remote string // the connection's peer address
	Raw    []byte
	At     time.Time
}

// Server records requests and answers each with 200 and a short body.
type Server struct {
	ln    net.Listener
	Delay time.Duration // wait before answering (a slow test environment)
	Hold  bool          // never answer (a blackholed one)
	// Respond, when set before traffic, returns each request's whole
	// response (status line, headers, body); otherwise 200 "ok".
	Respond func(r *httpstream.Request) []byte

	mu      sync.Mutex
	reqs    []Received
	conns   int
	active  int // requests being answered
	maxSeen int
	open    map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// Listen starts a server on addr ("127.0.0.1:0" for any free port).
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return Serve(ln), nil
}

// Serve starts a server on ln.
func Serve(ln net.Listener) *Server { return ServeResponding(ln, nil) }

// ServeResponding starts a server on ln that answers with respond. Set
// here, before the server's goroutines start, the answerer and what it
// reads are visible to them (assigning Respond afterwards is a data race).
func ServeResponding(ln net.Listener, respond func(*httpstream.Request) []byte) *Server {
	s := &Server{ln: ln, open: make(map[net.Conn]struct{}), Respond: respond}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr returns the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Requests returns what has been received so far.
func (s *Server) Requests() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.reqs...)
}

// MaxConcurrent returns the most requests it was answering at once.
func (s *Server) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxSeen
}

// Conns returns how many connections were accepted.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Close stops the server and closes its connections.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		id := s.conns
		s.conns++
		s.open[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c, id)
	}
}

var expect100 = []byte("expect: 100-continue")

func (s *Server) serve(c net.Conn, id int) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.open, c)
		s.mu.Unlock()
		c.Close()
	}()
	w := bufio.NewWriter(c)
	var pending []*httpstream.Request
	p := httpstream.NewParser(httpstream.DefaultOptions, &httpstream.Stats{}, func(r *httpstream.Request) {
		pending = append(pending, r)
	})
	buf := make([]byte, 64<<10)
	var head []byte // bytes of a request whose head may ask for 100 Continue
	continued := false
	for {
		n, err := c.Read(buf)
		if n > 0 {
			p.Feed(buf[:n], 0)
			head = append(head, buf[:n]...)
			if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 && !continued && len(pending) == 0 &&
				bytes.Contains(bytes.ToLower(head[:i]), expect100) {
				fmt.Fprint(w, "HTTP/1.1 100 Continue\r\n\r\n")
				w.Flush()
				continued = true
			}
			for _, r := range pending {
				s.mu.Lock()
				s.reqs = append(s.reqs, Received{Conn: id, Remote: c.RemoteAddr().String(), Raw: r.Raw, At: time.Now()})
				s.active++
				s.maxSeen = max(s.maxSeen, s.active)
				s.mu.Unlock()
				if s.Hold {
					continue
				}
				time.Sleep(s.Delay)
				s.mu.Lock()
				s.active--
				s.mu.Unlock()
				body := "ok"
				if s.Respond != nil {
					w.Write(s.Respond(r))
					continue
				}
				if string(r.Method()) == "HEAD" {
					fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
				} else {
					fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			}
			if len(pending) > 0 {
				pending, head, continued = pending[:0], nil, false
				if err := w.Flush(); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
