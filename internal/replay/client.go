// Package replay sends captured requests to a test environment: exact
// bytes, on pooled keep-alive connections, one production connection's
// requests in order, with bounded workers and a bounded queue.
package replay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// The client writes each request's bytes itself rather than using
// http.Client: a stock Transport adds User-Agent and Accept-Encoding,
// re-orders and re-cases headers, re-chunks bodies and decompresses
// responses, and any of those breaks an exact replay. Responses are read
// with net/http's own parser (http.ReadResponse).

// Destination is where requests are replayed.
type Destination struct {
	URL        *url.URL
	Addr       string // host:port to dial
	Host       string // Host header value
	PathPrefix string
	TLS        bool
}

// ParseDestination parses an http or https URL with an optional path prefix.
func ParseDestination(s string) (Destination, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Destination{}, fmt.Errorf("destination %q: %w", s, err)
	}
	var d Destination
	switch u.Scheme {
	case "http":
	case "https":
		d.TLS = true
	default:
		return Destination{}, fmt.Errorf("destination %q: scheme must be http or https", s)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Destination{}, fmt.Errorf("destination %q: want scheme://host[:port][/prefix]", s)
	}
	d.URL, d.Host = u, u.Host
	port := u.Port()
	if port == "" {
		port = map[bool]string{false: "80", true: "443"}[d.TLS]
	}
	d.Addr = net.JoinHostPort(u.Hostname(), port)
	d.PathPrefix = strings.TrimSuffix(u.EscapedPath(), "/")
	return d, nil
}

// ClientOptions are the connection settings for one destination.
type ClientOptions struct {
	DialTimeout     time.Duration
	ResponseTimeout time.Duration // from the last byte written to the response head
	BodyTimeout     time.Duration // to read and discard the response body
	ContinueTimeout time.Duration // wait for "100 Continue" before sending a body anyway
	// IdleTimeout retires a pooled connection idle this long. It must stay
	// below the test servers' own keep-alive timeouts (Node's is 5 s): a
	// request written just as the server closes its end cannot be proved
	// unread, so it fails instead of being sent again.
	IdleTimeout time.Duration
	MaxIdle     int
	MaxDiscard  int64 // response bodies larger than this close the connection
	InsecureTLS bool  // accept any certificate (self-signed staging)
	KeepBody    int64 // keep up to this many body bytes for comparison; 0: keep none
}

// DefaultClientOptions suit a test environment in the same region.
var DefaultClientOptions = ClientOptions{
	DialTimeout:     3 * time.Second,
	ResponseTimeout: 10 * time.Second,
	BodyTimeout:     30 * time.Second,
	ContinueTimeout: time.Second,
	IdleTimeout:     4 * time.Second,
	MaxIdle:         256,
	MaxDiscard:      64 << 20,
}

// Client holds a pool of keep-alive connections to one destination.
type Client struct {
	dest Destination
	opts ClientOptions
	tls  *tls.Config
	idle chan *conn
	// StaleConns counts pooled connections found closed by the server or
	// expired, and so not used.
	StaleConns atomic.Uint64
}

type conn struct {
	net.Conn
	br        *bufio.Reader
	sock      syscall.RawConn // the TCP socket (under TLS too), for the liveness check
	isTLS     bool
	idleSince time.Time
	// deadline is the last one set, so that a read cut by it is named a
	// timeout even when net/http reports the partial answer as malformed.
	deadline atomic.Int64
	// aborted: a stop cut the exchange short. Its past deadline must win
	// over any deadline the exchange sets afterwards.
	aborted atomic.Bool
}

var past = time.Unix(1, 0)

func (cn *conn) setDeadline(t time.Time) {
	cn.deadline.Store(t.UnixNano())
	cn.Conn.SetDeadline(t)
	if cn.aborted.Load() { // the abort ran meanwhile: restore its deadline
		cn.Conn.SetDeadline(past)
	}
}

func (cn *conn) setReadDeadline(t time.Time) {
	cn.Conn.SetReadDeadline(t)
	if cn.aborted.Load() {
		cn.Conn.SetDeadline(past)
	}
}

// abort is called by a stop, from another goroutine.
func (cn *conn) abort() {
	cn.aborted.Store(true)
	cn.deadline.Store(past.UnixNano())
	cn.Conn.SetDeadline(past)
}

// readFailure classifies a failed read of the answer: a reset or a close
// is named so; an unparseable answer cut by a deadline is a timeout.
func (cn *conn) readFailure(err error) *Error {
	e := classify(err, FailRead)
	if e.Reason == FailRead {
		if d := cn.deadline.Load(); d != 0 && time.Now().UnixNano() >= d || cn.aborted.Load() {
			e.Reason = FailTimeout
		}
	}
	return e
}

// NewClient returns a client for dest.
func NewClient(dest Destination, opts ClientOptions) *Client {
	c := &Client{dest: dest, opts: opts, idle: make(chan *conn, opts.MaxIdle)}
	if dest.TLS {
		c.tls = &tls.Config{
			ServerName:         dest.URL.Hostname(),
			InsecureSkipVerify: opts.InsecureTLS, //nolint:gosec // opt-in, for staging targets
			NextProtos:         []string{"http/1.1"},
		}
	}
	return c
}

// Response is what the destination answered.
type Response struct {
	Status        int
	Header        http.Header
	BodySize      int64
	Body          []byte // up to KeepBody bytes, as sent (not decoded)
	BodyTruncated bool
	Reused        bool // sent on a kept-alive connection
	// FirstByte is the time from the request's last byte written to the
	// answer's first byte read: what production's packets show too.
	FirstByte time.Duration
	// Duration is the time from the request's first byte written to the
	// answer's last byte read.
	Duration time.Duration
}

// FailReason classifies replay failures for counting.
type FailReason uint8

const (
	FailDial    FailReason = iota
	FailTLS                // TLS handshake
	FailWrite              // writing the request failed
	FailTimeout            // any deadline: response, body, or a stop's abort
	FailReset              // the server reset the connection
	FailClosed             // the server closed the connection before a whole answer
	FailRead               // an unparseable answer
	// FailUntranslated: an unsafe request names a value production
	// created whose counterpart the target had not answered in time (see
	// correlate): sent as it is it would act on production's session or
	// order, so it is not sent.
	FailUntranslated
	NumFailReasons
)

var failNames = [NumFailReasons]string{"dial", "tls", "write", "timeout", "reset", "closed", "read", "untranslated"}

func (f FailReason) String() string { return failNames[f] }

// Error is a failed replay.
type Error struct {
	Reason FailReason
	Err    error
	// unsent: the kernel took none of the request's bytes, so the server
	// cannot have seen any of it.
	unsent bool
}

func (e *Error) Error() string { return "replay: " + e.Reason.String() + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Do sends one request (head then body, head of headLen bytes) and reads
// the response, discarding its body so the connection can be reused.
//
// At most once: a request is sent again only when it provably never
// reached the server, that is when the first write on a kept-alive
// connection failed with no byte taken. Once any byte was written, a
// failure (a close, a reset, a timeout, a partial answer) is reported and
// never retried, whatever the method: the server may have acted on it.
func (c *Client) Do(ctx context.Context, req []byte, headLen int, method string, expect100 bool) (*Response, error) {
	for attempt := 0; ; attempt++ {
		// A stop that came first sends nothing, not even a resend.
		if err := ctx.Err(); err != nil {
			return nil, &Error{Reason: FailTimeout, Err: err}
		}
		cn, reused, err := c.get(ctx)
		if err != nil {
			return nil, err
		}
		// Cancelling ctx aborts the exchange at once: a stop must not wait
		// out a blackholed target's timeouts.
		abort := context.AfterFunc(ctx, cn.abort)
		resp, err := c.roundTrip(cn, req, headLen, method, expect100)
		abort()
		if err == nil {
			resp.Reused = reused
			return resp, nil
		}
		cn.Close()
		var re *Error
		if reused && attempt == 0 && errors.As(err, &re) && re.unsent {
			continue
		}
		return nil, err
	}
}

// get takes a live pooled connection or dials a new one. Pooled ones that
// the server closed, that hold unsolicited bytes, or that idled past
// IdleTimeout are closed and counted instead of used.
func (c *Client) get(ctx context.Context) (*conn, bool, error) {
	for {
		var cn *conn
		select {
		case cn = <-c.idle:
		default:
		}
		if cn == nil {
			break
		}
		if c.usable(cn) {
			return cn, true, nil
		}
		cn.Close()
		c.StaleConns.Add(1)
	}
	d := net.Dialer{Timeout: c.opts.DialTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.dest.Addr)
	if err != nil {
		return nil, false, &Error{Reason: FailDial, Err: err}
	}
	var sock syscall.RawConn
	if tc, ok := nc.(*net.TCPConn); ok {
		sock, _ = tc.SyscallConn()
	}
	if c.tls != nil {
		tc := tls.Client(nc, c.tls)
		hctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, false, &Error{Reason: FailTLS, Err: err}
		}
		nc = tc
	}
	return &conn{Conn: nc, br: bufio.NewReaderSize(nc, 16<<10), sock: sock, isTLS: c.tls != nil}, false, nil
}

func (c *Client) usable(cn *conn) bool {
	if c.opts.IdleTimeout > 0 && time.Since(cn.idleSince) >= c.opts.IdleTimeout {
		return false
	}
	if cn.br.Buffered() > 0 {
		return false // bytes nobody asked for
	}
	if cn.sock == nil {
		return true
	}
	pending := !socketIdle(cn.sock)
	if !cn.isTLS {
		return !pending
	}
	// Under TLS the socket's bytes may be a session ticket (not an answer),
	// and a close_notify may already sit inside tls.Conn, read with the
	// last answer. Ask TLS itself: only "nothing to read" makes the
	// connection usable. A past deadline answers at once; with bytes
	// pending, a short one lets TLS read and handle them.
	deadline := past
	if pending {
		deadline = time.Now().Add(time.Millisecond)
	}
	cn.Conn.SetReadDeadline(deadline)
	_, err := cn.br.Peek(1)
	cn.Conn.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func (c *Client) put(cn *conn) {
	cn.idleSince = time.Now()
	select {
	case c.idle <- cn:
	default:
		cn.Close()
	}
}

// CloseIdle closes every idle connection.
func (c *Client) CloseIdle() {
	for {
		select {
		case cn := <-c.idle:
			cn.Close()
		default:
			return
		}
	}
}

// roundTrip writes the request and reads the answer.
func (c *Client) roundTrip(cn *conn, req []byte, headLen int, method string, expect100 bool) (*Response, error) {
	body := req[headLen:]
	first := req
	if expect100 && len(body) > 0 {
		first = req[:headLen]
	}
	start := time.Now()
	cn.setDeadline(start.Add(c.opts.ResponseTimeout))
	if n, err := cn.Write(first); err != nil {
		e := classify(err, FailWrite)
		e.unsent = n == 0
		return nil, e
	}
	hreq := &http.Request{Method: method}
	var resp *http.Response
	var err error
	if len(first) < len(req) {
		// Expect: 100-continue. Wait briefly for the interim answer, as
		// clients do, then send the body. Other interim answers (102,
		// 103 Early Hints) are not it: keep waiting.
		wait := time.Now().Add(c.opts.ContinueTimeout)
		for {
			cn.setReadDeadline(wait)
			_, perr := cn.br.Peek(1)
			cn.setDeadline(time.Now().Add(c.opts.ResponseTimeout))
			if perr != nil {
				if errors.Is(perr, os.ErrDeadlineExceeded) && !cn.aborted.Load() {
					break // no answer yet: send the body
				}
				return nil, cn.readFailure(perr)
			}
			resp, err = http.ReadResponse(cn.br, hreq)
			if err != nil {
				return nil, cn.readFailure(err)
			}
			if s := resp.StatusCode; s > 100 && s < 200 && s != http.StatusSwitchingProtocols {
				continue
			}
			if resp.StatusCode == http.StatusContinue {
				break
			}
			// A final answer before the body: the server did not want
			// it. Report the answer; the connection cannot be reused.
			r, err := c.finish(cn, resp)
			cn.Close()
			if r != nil {
				r.Duration = time.Since(start)
			}
			return r, err
		}
		if _, err := cn.Write(body); err != nil {
			return nil, classify(err, FailWrite)
		}
	}
	written := time.Now()
	if _, err := cn.br.Peek(1); err != nil {
		return nil, cn.readFailure(err)
	}
	firstByte := time.Since(written)
	for {
		resp, err = http.ReadResponse(cn.br, hreq)
		if err != nil {
			return nil, cn.readFailure(err)
		}
		// Skip interim responses (100 Continue, 103 Early Hints).
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	r, err := c.finish(cn, resp)
	if err != nil {
		return nil, err
	}
	r.FirstByte, r.Duration = firstByte, time.Since(start)
	if resp.Close || resp.StatusCode == http.StatusSwitchingProtocols {
		cn.Close()
	} else {
		cn.setDeadline(time.Time{})
		c.put(cn)
	}
	return r, nil
}

// finish discards the response body, bounded in time and size.
func (c *Client) finish(cn *conn, resp *http.Response) (*Response, error) {
	cn.setDeadline(time.Now().Add(c.opts.BodyTimeout))
	var kept []byte
	var n int64
	if c.opts.KeepBody > 0 {
		// The body as sent: net/http does not decompress what it reads
		// with ReadResponse; chunked framing is removed.
		kept, _ = io.ReadAll(io.LimitReader(resp.Body, c.opts.KeepBody))
		n = int64(len(kept))
	}
	rest, err := io.Copy(io.Discard, io.LimitReader(resp.Body, c.opts.MaxDiscard+1))
	n += rest
	resp.Body.Close()
	if err != nil {
		return nil, cn.readFailure(err)
	}
	if rest > c.opts.MaxDiscard {
		resp.Close = true
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, BodySize: n, Body: kept, BodyTruncated: rest > 0 && c.opts.KeepBody > 0}, nil
}

// classify names a failure: any deadline is a timeout, whoever set it; a
// reset and an early close are told apart from an unreadable answer.
func classify(err error, def FailReason) *Error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Reason: FailTimeout, Err: err}
	case errors.Is(err, syscall.ECONNRESET):
		return &Error{Reason: FailReset, Err: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return &Error{Reason: FailClosed, Err: err}
	}
	return &Error{Reason: def, Err: err}
}
