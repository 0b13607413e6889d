// Package fakeshop is a small JSON shop API for tests and demos of the
// comparison: each deployment answers the same data with a timestamp and
// a request id of its own (noise), and a planted deployment (the
// candidate) differs in known ways: a price deep in a list, a missing
// field, a failing status.
package fakeshop

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
)

// Shop is one deployment.
type Shop struct {
	mu      sync.Mutex
	rng     *rand.Rand
	planted bool
}

// New returns a deployment; planted makes it the candidate with known
// differences.
func New(seed uint64, planted bool) *Shop {
	return &Shop{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), planted: planted}
}

// Planted lists the differences a planted deployment shows, as the
// comparison names them (endpoint and field).
var Planted = []string{
	"GET /api/items/{id} body.items[*].price",
	"GET /api/users/{id} body.email",
	"GET /api/health status",
}

// Paths are the requests the shop answers.
var Paths = []string{"/api/items/1", "/api/items/2", "/api/users/7", "/api/health"}

// Respond returns the whole response to a request for target.
func (s *Shop) Respond(target string) []byte {
	s.mu.Lock()
	noise := fmt.Sprintf(`"generatedAt":"2026-11-22T07:%02d:%02d.%06dZ","requestId":"%016x"`,
		s.rng.IntN(60), s.rng.IntN(60), s.rng.IntN(1e6), s.rng.Uint64())
	s.mu.Unlock()
	status, body := 200, ""
	switch {
	case strings.HasPrefix(target, "/api/items/"):
		price := "4.25"
		if s.planted {
			price = "4.30"
		}
		body = fmt.Sprintf(`{%s,"items":[{"sku":"a","price":1},{"sku":"b","price":2},{"sku":"c","price":3},{"sku":"d","price":%s}]}`, noise, price)
	case strings.HasPrefix(target, "/api/users/"):
		body = fmt.Sprintf(`{%s,"name":"ann","email":"ann@example.com"}`, noise)
		if s.planted {
			body = fmt.Sprintf(`{%s,"name":"ann"}`, noise)
		}
	default:
		body = fmt.Sprintf(`{%s,"ok":true}`, noise)
		if s.planted {
			status = 500
		}
	}
	return fmt.Appendf(nil, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nDate: %d\r\nContent-Length: %d\r\n\r\n%s",
		status, time.Now().UnixNano(), len(body), body)
}

// Handler adapts Respond to rawserver.Server.Respond.
func (s *Shop) Handler() func(*httpstream.Request) []byte {
	return func(r *httpstream.Request) []byte { return s.Respond(string(r.Target())) }
}

// Listen serves the shop on addr ("127.0.0.1:0" for any free port).
func (s *Shop) Listen(addr string) (*rawserver.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return rawserver.ServeResponding(ln, s.Handler()), nil
}
