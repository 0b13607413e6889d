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
	MaxIdle         int
	MaxDiscard      int64 // response bodies larger than this close the connection
	InsecureTLS     bool  // accept any certificate (self-signed staging)
	KeepBody        int64 // keep up to this many body bytes for comparison; 0: keep none
}

// DefaultClientOptions suit a test environment in the same region.
var DefaultClientOptions = ClientOptions{
	DialTimeout:     3 * time.Second,
	ResponseTimeout: 10 * time.Second,
	BodyTimeout:     30 * time.Second,
	ContinueTimeout: time.Second,
	MaxIdle:         256,
	MaxDiscard:      64 << 20,
}

// Client holds a pool of keep-alive connections to one destination.
type Client struct {
	dest Destination
	opts ClientOptions
	tls  *tls.Config
	idle chan *conn
}

type conn struct {
	net.Conn
	br *bufio.Reader
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
}

// FailReason classifies replay failures for counting.
type FailReason uint8

const (
	FailDial FailReason = iota
	FailTLS
	FailWrite
	FailTimeout
	FailRead // connection closed or unparseable response
	NumFailReasons
)

var failNames = [NumFailReasons]string{"dial", "tls", "write", "timeout", "read"}

func (f FailReason) String() string { return failNames[f] }

// Error is a failed replay.
type Error struct {
	Reason FailReason
	Err    error
}

func (e *Error) Error() string { return "replay: " + e.Reason.String() + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Do sends one request (head then body, head of headLen bytes) and reads
// the response, discarding its body so the connection can be reused.
func (c *Client) Do(ctx context.Context, req []byte, headLen int, method string, expect100 bool) (*Response, error) {
	for attempt := 0; ; attempt++ {
		cn, reused, err := c.get(ctx)
		if err != nil {
			return nil, err
		}
		// Cancelling ctx aborts the exchange at once: a stop must not wait
		// out a blackholed target's timeouts.
		abort := context.AfterFunc(ctx, func() { cn.SetDeadline(time.Unix(1, 0)) })
		resp, sent, err := c.roundTrip(cn, req, headLen, method, expect100)
		abort()
		if err == nil {
			resp.Reused = reused
			return resp, nil
		}
		cn.Close()
		// A kept-alive connection may have been closed by the server while
		// idle; retry once on a fresh one if nothing of a response came.
		if reused && !sent && attempt == 0 {
			continue
		}
		return nil, err
	}
}

func (c *Client) get(ctx context.Context) (*conn, bool, error) {
	select {
	case cn := <-c.idle:
		return cn, true, nil
	default:
	}
	d := net.Dialer{Timeout: c.opts.DialTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.dest.Addr)
	if err != nil {
		return nil, false, &Error{FailDial, err}
	}
	if c.tls != nil {
		tc := tls.Client(nc, c.tls)
		hctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, false, &Error{FailTLS, err}
		}
		nc = tc
	}
	return &conn{Conn: nc, br: bufio.NewReaderSize(nc, 16<<10)}, false, nil
}

func (c *Client) put(cn *conn) {
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

// roundTrip reports whether any response byte was read (sent=true means
// the request can no longer be retried).
func (c *Client) roundTrip(cn *conn, req []byte, headLen int, method string, expect100 bool) (*Response, bool, error) {
	body := req[headLen:]
	first := req
	if expect100 && len(body) > 0 {
		first = req[:headLen]
	}
	cn.SetDeadline(time.Now().Add(c.opts.ResponseTimeout))
	if _, err := cn.Write(first); err != nil {
		return nil, false, classify(err, FailWrite)
	}
	hreq := &http.Request{Method: method}
	var resp *http.Response
	var err error
	if len(first) < len(req) {
		// Expect: 100-continue. Wait briefly for the interim answer, as
		// clients do, then send the body.
		cn.SetReadDeadline(time.Now().Add(c.opts.ContinueTimeout))
		_, perr := cn.br.Peek(1)
		cn.SetDeadline(time.Now().Add(c.opts.ResponseTimeout))
		if perr == nil {
			resp, err = http.ReadResponse(cn.br, hreq)
			if err != nil {
				return nil, true, classify(err, FailRead)
			}
			if resp.StatusCode != http.StatusContinue {
				// A final answer before the body: the server did not want
				// it. Report the answer; the connection cannot be reused.
				r, err := c.finish(cn, resp)
				cn.Close()
				return r, true, err
			}
		} else if !errors.Is(perr, os.ErrDeadlineExceeded) {
			return nil, false, classify(perr, FailRead)
		}
		if _, err := cn.Write(body); err != nil {
			return nil, true, classify(err, FailWrite)
		}
	}
	for {
		resp, err = http.ReadResponse(cn.br, hreq)
		if err != nil {
			return nil, cn.br.Buffered() > 0, classify(err, FailRead)
		}
		// Skip interim responses (100 Continue, 103 Early Hints).
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	r, err := c.finish(cn, resp)
	if err != nil {
		return nil, true, err
	}
	if resp.Close || resp.StatusCode == http.StatusSwitchingProtocols {
		cn.Close()
	} else {
		cn.SetDeadline(time.Time{})
		c.put(cn)
	}
	return r, true, nil
}

// finish discards the response body, bounded in time and size.
func (c *Client) finish(cn *conn, resp *http.Response) (*Response, error) {
	cn.SetDeadline(time.Now().Add(c.opts.BodyTimeout))
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
		return nil, classify(err, FailRead)
	}
	if rest > c.opts.MaxDiscard {
		resp.Close = true
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, BodySize: n, Body: kept, BodyTruncated: rest > 0 && c.opts.KeepBody > 0}, nil
}

func classify(err error, def FailReason) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{FailTimeout, err}
	}
	return &Error{def, err}
}
