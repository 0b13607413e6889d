// Package shoptest is a small stateful HTTP API for the release gate's
// tests: production's code and a candidate with planted differences, and
// a recording of production's answers written as `shadowtap record`
// writes them. Each answer carries noise of its own (a request id unique
// per response, the time of the answer), and carts keep state per
// recorded connection, so a replay that reorders a connection's requests
// answers differently from production.
package shoptest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/shadowtap/shadowtap/internal/recording"
)

// Planted lists the candidate's differences as endpoint path prefix and
// field key: the price of an item deep in a list, a missing field, and
// a changed status.
var Planted = [][2]string{
	{"GET /api/items/", "body.items[*].price"},
	{"GET /api/users/", "body.email"},
	{"POST /api/carts/", "status"},
}

// Shop is one deployment.
type Shop struct {
	Planted bool
	Now     func() time.Time // the answers' timestamps; nil: time.Now

	mu    sync.Mutex
	carts map[string]int
	rng   *rand.Rand
}

// New returns a deployment; planted makes it the candidate.
func New(seed uint64, planted bool) *Shop {
	return &Shop{Planted: planted, carts: map[string]int{}, rng: rand.New(rand.NewPCG(seed, seed+1))}
}

func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	id := fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", s.rng.Uint32(), s.rng.IntN(1<<16), s.rng.IntN(1<<12), s.rng.IntN(1<<12), s.rng.Uint64()&(1<<48-1))
	s.mu.Unlock()
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	out := map[string]any{"requestId": id, "generatedAt": now().UTC().Format("2006-01-02T15:04:05.000000Z")}
	status := http.StatusOK
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 3 && parts[1] == "items" && r.Method == http.MethodGet:
		last := 4.25
		if s.Planted {
			last = 4.30
		}
		out["items"] = []map[string]any{{"sku": "a", "price": 1}, {"sku": "b", "price": 2}, {"sku": "c", "price": last}}
		out["id"] = parts[2]
	case len(parts) == 3 && parts[1] == "users" && r.Method == http.MethodGet:
		out["name"] = "ann-" + parts[2]
		if !s.Planted {
			out["email"] = "ann-" + parts[2] + "@example.com"
		}
	case len(parts) == 4 && parts[1] == "carts" && parts[3] == "items" && r.Method == http.MethodPost:
		var add struct{ Qty int }
		json.NewDecoder(r.Body).Decode(&add)
		s.mu.Lock()
		s.carts[parts[2]] += add.Qty
		out["count"] = s.carts[parts[2]]
		s.mu.Unlock()
		status = http.StatusCreated
		if s.Planted {
			status = http.StatusOK
		}
	case len(parts) == 3 && parts[1] == "carts" && r.Method == http.MethodGet:
		s.mu.Lock()
		out["count"] = s.carts[parts[2]]
		s.mu.Unlock()
	default:
		status = http.StatusNotFound
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// Request is the raw request of exchange i of connection conn.
func Request(conn, i int) []byte {
	switch i % 4 {
	case 0:
		return fmt.Appendf(nil, "GET /api/items/%d HTTP/1.1\r\nHost: shop\r\nAccept: application/json\r\n\r\n", 1+(conn*7+i)%50)
	case 1:
		return fmt.Appendf(nil, "GET /api/users/%d HTTP/1.1\r\nHost: shop\r\n\r\n", 100+(conn*3+i)%40)
	case 2:
		body := fmt.Sprintf(`{"qty":%d}`, 1+i%3)
		return fmt.Appendf(nil, "POST /api/carts/c%d/items HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			conn, len(body), body)
	}
	return fmt.Appendf(nil, "GET /api/carts/c%d HTTP/1.1\r\nHost: shop\r\n\r\n", conn)
}

// Record writes a recording of conns connections of perConn exchanges
// each, interleaved as a mirror sees them, with production's answers (by
// a fresh production deployment, each connection's requests in order).
func Record(path string, conns, perConn int, start time.Time) error {
	w, err := recording.Create(recording.WriterOptions{Path: path})
	if err != nil {
		return err
	}
	prod := New(1, false)
	var clock time.Time
	prod.Now = func() time.Time { return clock }
	n := 0
	for i := 0; i < perConn; i++ {
		for c := 0; c < conns; c++ {
			at := start.Add(time.Duration(n) * 100 * time.Microsecond)
			n++
			clock = at.Add(time.Millisecond)
			raw := Request(c, i)
			rec, err := Answer(prod, raw)
			if err != nil {
				w.Close()
				return err
			}
			r := recording.Record{Start: at.UnixNano(), End: at.UnixNano(), Conn: uint64(c + 1), Index: i,
				Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(c)}), uint16(40000+c)),
				Server: netip.MustParseAddrPort("10.0.1.1:80"), Request: raw,
				HasResponse: true, Status: rec.Code, Response: rawResponse(rec),
				RespStart: clock.UnixNano(), RespEnd: clock.Add(50 * time.Microsecond).UnixNano()}
			if err := w.Write(r); err != nil {
				w.Close()
				return err
			}
		}
	}
	return w.Close()
}

// Answer runs h on a raw request, in memory.
func Answer(h http.Handler, raw []byte) (*httptest.ResponseRecorder, error) {
	req, err := http.ReadRequest(bufioReader(raw))
	if err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec, nil
}

// rawResponse is rec as it crossed the wire.
func rawResponse(rec *httptest.ResponseRecorder) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
	rec.Header().Write(&b)
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", rec.Body.Len())
	b.Write(rec.Body.Bytes())
	return b.Bytes()
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
