package engine

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

type discardSink struct{ n int }

func (s *discardSink) Submit(uint64, *httpstream.Request) { s.n++ }
func (s *discardSink) EndConn(uint64)                     {}

// keepAliveTrace returns VXLAN datagrams for conns interleaved keep-alive
// connections of reqs small GETs each: request, response, ACK per request,
// with handshakes and closes.
func keepAliveTrace(conns, reqs int) [][]byte {
	all := make([][]synth.Segment, conns)
	server := netip.MustParseAddrPort("10.0.0.2:80")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"items\":[1,2,3]}")
	for i := range all {
		cl := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(30000+i))
		conn := synth.NewConn(cl, server, uint32(i)*1000003, uint32(i)*7919)
		segs := conn.Handshake()
		for r := range reqs {
			req := fmt.Sprintf("GET /api/items?id=%d&page=%d HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\nX-User: u%d\r\n\r\n", r, i, i)
			segs = append(segs, conn.ClientData([]byte(req))...)
			segs = append(segs, conn.ServerData(resp)...)
			segs = append(segs, conn.ClientACK())
		}
		segs = append(segs, conn.Close()...)
		all[i] = segs
	}
	var out [][]byte
	for j := 0; ; j++ {
		any := false
		for i := range all {
			if j < len(all[i]) {
				out = append(out, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, all[i][j])))
				any = true
			}
		}
		if !any {
			return out
		}
	}
}

// BenchmarkDecodeReassembleExtract measures the capture path for in-order
// keep-alive traffic on one core: VXLAN decode, flow lookup, reassembly of
// both directions, HTTP request extraction, sampling, hand-off.
func BenchmarkDecodeReassembleExtract(b *testing.B) {
	trace := keepAliveTrace(64, 100)
	e, _, _ := newEngine(b, 80)
	sink := &discardSink{}
	e.sink = sink
	outer := netip.MustParseAddr("172.31.0.238")
	b.ReportAllocs()
	b.ResetTimer()
	ts := int64(1)
	for i := range b.N {
		ts += 1000
		e.HandleVXLAN(outer, trace[i%len(trace)], ts)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	if b.N > len(trace) && sink.n == 0 {
		b.Fatal("no requests extracted")
	}
}

// TestTraceExtractsEveryRequest makes sure the benchmark measures real
// work: every request of the trace is extracted.
func TestTraceExtractsEveryRequest(t *testing.T) {
	trace := keepAliveTrace(8, 20)
	e, sink, st := newEngine(t, 80)
	for i, d := range trace {
		e.HandleVXLAN(netip.MustParseAddr("172.31.0.238"), d, int64(i+1)*1000)
	}
	if len(sink.reqs) != 8*20 || st.Reassembly.Gaps.Load() != 0 || e.Flows() != 0 {
		t.Errorf("requests %d gaps %d flows %d", len(sink.reqs), st.Reassembly.Gaps.Load(), e.Flows())
	}
}
