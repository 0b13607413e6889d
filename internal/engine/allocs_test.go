package engine

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/reassembly"
	"net/netip"
	"runtime"
	"testing"

	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// TestEstablishedConnectionAllocations: on an established keep-alive
// connection an ACK allocates nothing, and a request's or a response's
// packet only what it hands on (the request and its bytes, the pairing;
// the response); measured per packet over 300 requests.
func TestEstablishedConnectionAllocations(t *testing.T) {
	server := netip.MustParseAddrPort("10.0.0.2:80")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"items\":[1,2,3]}")
	cl := netip.MustParseAddrPort("10.1.0.1:30000")
	conn := synth.NewConn(cl, server, 1000003, 7919)
	sink := &pairingSink{}
	cfg := Config{Ports: []uint16{80}, Reassembly: reassembly.DefaultOptions, HTTP: httpstream.DefaultOptions, PairResponses: true}
	e := New(cfg, sink, &Stats{}, ratelog.New(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Minute))
	outer := netip.MustParseAddr("172.31.0.238")
	ts := int64(1)
	send := func(s synth.Segment) {
		ts += 1000
		e.HandleVXLAN(outer, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, s)), ts)
	}
	for _, s := range conn.Handshake() {
		send(s)
	}
	const n = 300
	var reqs, resps, acks [][]byte
	for r := range n + 1 {
		req := fmt.Sprintf("GET /api/items?id=%d HTTP/1.1\r\nHost: shop.example\r\n\r\n", r)
		for _, s := range conn.ClientData([]byte(req)) {
			reqs = append(reqs, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, s)))
		}
		for _, s := range conn.ServerData(resp) {
			resps = append(resps, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, s)))
		}
		acks = append(acks, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, conn.ClientACK())))
	}
	i := 0
	var m0, m1, m2, m3 runtime.MemStats
	var a [3]uint64
	for range n {
		runtime.ReadMemStats(&m0)
		ts += 1000
		e.HandleVXLAN(outer, reqs[i], ts)
		runtime.ReadMemStats(&m1)
		e.HandleVXLAN(outer, resps[i], ts)
		runtime.ReadMemStats(&m2)
		e.HandleVXLAN(outer, acks[i], ts)
		runtime.ReadMemStats(&m3)
		i++
		a[0] += m1.Mallocs - m0.Mallocs
		a[1] += m2.Mallocs - m1.Mallocs
		a[2] += m3.Mallocs - m2.Mallocs
	}
	req, rsp, ack := float64(a[0])/n, float64(a[1])/n, float64(a[2])/n
	t.Logf("per request: request packet %.2f, response %.2f, ACK %.2f allocations", req, rsp, ack)
	if sink.n != n || sink.resps != n {
		t.Fatalf("%d requests, %d responses handed on; want %d", sink.n, sink.resps, n)
	}
	// A little over the count for the rare growth of a reused buffer.
	if ack != 0 || req > 4.1 || rsp > 3.1 {
		t.Errorf("allocations per packet: request %.2f (want 4), response %.2f (want 3), ACK %.2f (want 0)", req, rsp, ack)
	}
}

type pairingSink struct{ n, resps int }

func (s *pairingSink) Submit(uint64, *httpstream.Request)                         { s.n++ }
func (s *pairingSink) EndConn(uint64)                                             {}
func (s *pairingSink) Response(uint64, *httpstream.Request, *httpstream.Response) { s.resps++ }
