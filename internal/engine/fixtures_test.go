package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/pcapfile"
	"github.com/shadowtap/shadowtap/internal/ratelog"
	"github.com/shadowtap/shadowtap/internal/reassembly"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

const pcaps = "../../testdata/pcaps/"

type recordSink struct {
	reqs  []*httpstream.Request
	ended int
}

var _ ResponseSink = (*pairSink)(nil)

func (s *recordSink) Submit(_ uint64, r *httpstream.Request) { s.reqs = append(s.reqs, r) }
func (s *recordSink) EndConn(uint64)                         { s.ended++ }

func newEngine(t testing.TB, ports ...uint16) (*Engine, *recordSink, *Stats) {
	sink, stats := &recordSink{}, &Stats{}
	cfg := Config{Ports: ports, Reassembly: reassembly.DefaultOptions, HTTP: httpstream.DefaultOptions}
	return New(cfg, sink, stats, ratelog.New(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Minute)), sink, stats
}

type tsharkRequest struct {
	Method string `json:"method"`
	URI    string `json:"uri"`
	Body   int    `json:"body_len"`
	TE     any    `json:"transfer_encoding"`
}

func readJSONL(t *testing.T, path string) []tsharkRequest {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []tsharkRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r tsharkRequest
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestCapturesAgreeWithTshark plays every HTTP capture and compares the
// requests extracted with what tshark dissected. Where they differ, the
// case says why ours is right.
func TestCapturesAgreeWithTshark(t *testing.T) {
	tests := []struct {
		file  string
		port  uint16
		check func(t *testing.T, got []*httpstream.Request, st *Stats, tshark []tsharkRequest) // extra checks, or the documented difference
	}{
		{"arkime__http-no-length.pcap", 80, nil},
		{"arkime__wireshark-retrans.pcap", 4000, nil}, // 63 duplicated frames: still 4 requests
		{"gopacket__pcap-test_ethernet.pcap", 80, nil},
		{"gopacket__pcap-test_loopback.pcap", 8080, nil}, // BSD loopback, IPv6
		{"suricata__http-gap-simple.pcap", 8080, nil},    // the gap is in a response
		{"suricata__http-pipeline-files-with-gap.pcap", 80, nil},
		{"suricata__vxlan-non-zero-reserved-fields.pcap", 80, nil}, // VXLAN flags 0xff
		{"zeek__http-1000-requests-one-dropped-response.pcap.gz", 80, nil},
		{"zeek__http-cooper-grill-dvwa.pcapng", 80, nil},
		{"zeek__http-get-without-fins.pcap", 80, nil},  // ends at end of file
		{"zeek__http-get_nosyn.pcap", 80, nil},         // picked up mid-connection
		{"zeek__http-m57-long-49583-80.pcap", 80, nil}, // 113 duplicate frames
		{"zeek__http-pipelined-requests.pcap", 80, nil},
		{"zeek__http-smuggle-http-request.pcap", 8080, func(t *testing.T, got []*httpstream.Request, _ *Stats, _ []tsharkRequest) {
			// The header lookalike inside the first body stays body.
			if !bytes.Contains(got[0].Body(), []byte("Transfer-Encoding")) {
				t.Errorf("first body = %q", got[0].Body())
			}
		}},
		{"zeek__http-zero-length-bodies-with-drops.pcap", 80, nil},
		{"zeek__vxlan-encapsulated-http.pcap", 80, nil}, // 9100-byte jumbo frame
		{"suricata__http-chunked.pcap", 80, func(t *testing.T, got []*httpstream.Request, st *Stats, tshark []tsharkRequest) {
			// tshark shows the HEAD, but it has Content-Length: 0 and an
			// obfuscated "Transfer-Encoding: ,\tchunked,": ambiguous framing,
			// which a server and a proxy may read differently. Not replayed.
			if len(tshark) != 1 || len(got) != 0 || st.HTTP.Rejected[httpstream.RejectAmbiguousLength].Load() != 1 {
				t.Errorf("got %d requests, rejected %d", len(got), st.HTTP.Rejected[httpstream.RejectAmbiguousLength].Load())
			}
		}},
		{"suricata__firewall-88-default-accept-tx-pipeline.pcap", 80, func(t *testing.T, got []*httpstream.Request, st *Stats, tshark []tsharkRequest) {
			// tshark shows two pipelined GETs whose lines end in a bare LF.
			// llhttp in strict mode (Node) refuses such a head, and parsers
			// disagree on where its lines end: not replayed, counted.
			if len(tshark) != 2 || len(got) != 0 || st.HTTP.Rejected[httpstream.RejectBareLF].Load() != 1 {
				t.Errorf("got %d requests, rejected %d", len(got), st.HTTP.Rejected[httpstream.RejectBareLF].Load())
			}
		}},
		{"arkime__http-tcp-seq-issue.pcap", 80, func(t *testing.T, got []*httpstream.Request, _ *Stats, _ []tsharkRequest) {
			// The second half of the request comes first, then a
			// retransmission of all of it: tshark (no out-of-order
			// reassembly) finds nothing, the right answer is one POST.
			if len(got) != 1 || string(got[0].Method()) != "POST" || !bytes.Contains(got[0].Target(), []byte("Command=FileUpload")) {
				t.Errorf("got %d requests", len(got))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			e, sink, st := newEngine(t, tt.port)
			if _, err := pcapfile.Play(pcaps+tt.file, 4789, e); err != nil {
				t.Fatal(err)
			}
			tshark := readJSONL(t, pcaps+tt.file+".requests.jsonl")
			if tt.check != nil {
				tt.check(t, sink.reqs, st, tshark)
				if len(sink.reqs) != len(tshark) {
					return
				}
			}
			if len(sink.reqs) != len(tshark) {
				t.Fatalf("extracted %d requests, tshark %d", len(sink.reqs), len(tshark))
			}
			for i, r := range sink.reqs {
				w := tshark[i]
				if string(r.Method()) != w.Method || string(r.Target()) != w.URI {
					t.Errorf("request %d: %s %s, tshark %s %s", i, r.Method(), r.Target(), w.Method, w.URI)
				}
				if !r.Chunked && len(r.Body()) != w.Body {
					t.Errorf("request %d: body %d bytes, tshark %d", i, len(r.Body()), w.Body)
				}
			}
			if st.Reassembly.BufferedBytes.Load() != 0 || e.Flows() != 0 {
				t.Errorf("left after flush: %d bytes buffered, %d flows", st.Reassembly.BufferedBytes.Load(), e.Flows())
			}
		})
	}
}

// TestNonHTTPCapturesAreIgnored plays VXLAN captures without HTTP (AWS's
// real mirror capture among them): nothing is extracted, nothing breaks.
func TestNonHTTPCapturesAreIgnored(t *testing.T) {
	for _, f := range []string{"suricata__vxlan-decoder-03.pcap", "suricata__vxlan-decoder-01.pcap", "tcpdump__vxlan.pcap",
		"zeek__tunnels-vxlan.pcap", "zeek__geneve-vxlan-dns-truncated.pcap", "tcpdump__gso-ipv4-vxlan-ipv4.pcap", "arkime__tcpseq_synthetic.pcap"} {
		e, sink, st := newEngine(t, 80, 22)
		ps, err := pcapfile.Play(pcaps+f, 4789, e)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(sink.reqs) != 0 || ps.Packets == 0 {
			t.Errorf("%s: %d requests from %d packets", f, len(sink.reqs), ps.Packets)
		}
		if f == "zeek__geneve-vxlan-dns-truncated.pcap" {
			// Geneve (protocol IPv4) -> UDP 4789 VXLAN -> Ethernet -> DNS:
			// decoded all the way down to the UDP that is not TCP.
			if ps.Geneve != 2 || st.Decode[decode.NotTCP].Load() != 2 {
				t.Errorf("geneve: %d datagrams, not-TCP %d", ps.Geneve, st.Decode[decode.NotTCP].Load())
			}
		}
		if f == "suricata__vxlan-decoder-03.pcap" {
			// The AWS capture: SSH flows on port 22 are tracked (and not
			// HTTP: parsing stops), DNS and NTP are not TCP.
			if st.Reassembly.FlowsOpened.Load() != 4 || ps.VXLAN != 100 {
				t.Errorf("AWS capture: %d flows, %d VXLAN packets", st.Reassembly.FlowsOpened.Load(), ps.VXLAN)
			}
		}
	}
}

// rawSet returns the raw requests extracted from pkts.
func rawSet(t *testing.T, pkts []pcapfile.Packet, port uint16) ([]string, *Stats) {
	e, sink, st := newEngine(t, port)
	pcapfile.PlayPackets(pkts, 4789, e)
	var out []string
	for _, r := range sink.reqs {
		out = append(out, string(r.Raw))
	}
	return out, st
}

// TestPerturbedCaptures replays real captures reordered, duplicated,
// dropped and truncated, deterministically. Reordering and duplication
// must change nothing; loss must only ever lose whole requests: every
// request extracted is byte-identical to one from the clean capture.
func TestPerturbedCaptures(t *testing.T) {
	for _, f := range []struct {
		name string
		port uint16
	}{
		{"zeek__http-1000-requests-one-dropped-response.pcap.gz", 80},
		{"zeek__http-pipelined-requests.pcap", 80},
		{"arkime__wireshark-retrans.pcap", 4000},
		{"zeek__http-cooper-grill-dvwa.pcapng", 80},
	} {
		pkts, err := pcapfile.ReadAll(filepath.Join(pcaps, f.name))
		if err != nil {
			t.Fatal(err)
		}
		clean, _ := rawSet(t, pkts, f.port)
		if len(clean) == 0 {
			t.Fatalf("%s: no requests", f.name)
		}
		rng := rand.New(rand.NewPCG(1, uint64(len(pkts))))

		// Reorder within windows of 5 packets, and duplicate 20%.
		var shuffled []pcapfile.Packet
		for i := 0; i < len(pkts); i += 5 {
			w := append([]pcapfile.Packet(nil), pkts[i:min(i+5, len(pkts))]...)
			rng.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
			for _, p := range w {
				shuffled = append(shuffled, p)
				if rng.IntN(5) == 0 {
					shuffled = append(shuffled, p)
				}
			}
		}
		got, st := rawSet(t, shuffled, f.port)
		if !equalStrings(got, clean) {
			t.Errorf("%s reordered/duplicated: %d requests, clean %d", f.name, len(got), len(clean))
		}
		if st.Reassembly.Gaps.Load() != 0 && f.name != "zeek__http-1000-requests-one-dropped-response.pcap.gz" {
			t.Errorf("%s reordered: %d gaps", f.name, st.Reassembly.Gaps.Load())
		}

		// Drop 3% of packets and truncate another 3% (IP length kept).
		var lossy []pcapfile.Packet
		truncated := 0
		for _, p := range pkts {
			switch rng.IntN(100) {
			case 0, 1, 2:
				continue
			case 3, 4, 5:
				if len(p.Data) > 100 {
					p.Data = p.Data[:len(p.Data)-len(p.Data)/3]
					truncated++
				}
			}
			lossy = append(lossy, p)
		}
		got, st = rawSet(t, lossy, f.port)
		cleanSet := map[string]int{}
		for _, c := range clean {
			cleanSet[c]++
		}
		for _, g := range got {
			if cleanSet[g] == 0 {
				t.Errorf("%s lossy: corrupted request %q", f.name, g[:min(len(g), 80)])
			}
			cleanSet[g]--
		}
		if truncated > 0 && st.Reassembly.TruncatedSegs.Load() == 0 {
			t.Errorf("%s: truncation not counted", f.name)
		}
		t.Logf("%s: clean %d, lossy %d (gaps %d, lost to gaps %d, truncated %d)", f.name, len(clean), len(got),
			st.Reassembly.Gaps.Load(), st.HTTP.LostToGap.Load(), st.Reassembly.TruncatedSegs.Load())
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDedupBothEnds plays one connection as two mirror sessions see it:
// one on the client's interface, one on the server's (other outer source,
// other VNI). Without dedup each copy is a flow of its own; with it, each
// request is extracted once.
func TestDedupBothEnds(t *testing.T) {
	c := synth.NewConn(netip.MustParseAddrPort("10.0.0.1:5555"), netip.MustParseAddrPort("10.0.0.2:80"), 1, 1)
	segs := c.Handshake()
	segs = append(segs, c.ClientData([]byte("GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"))...)
	segs = append(segs, c.Close()...)
	for _, dedup := range []bool{false, true} {
		e, sink, _ := newEngine(t, 80)
		e.cfg.Dedup = dedup
		for i, s := range segs {
			frame := synth.AppendFrame(nil, s)
			e.HandleVXLAN(netip.MustParseAddr("172.31.0.1"), synth.AppendVXLAN(nil, 100, frame), int64(i+1))
			e.HandleVXLAN(netip.MustParseAddr("172.31.0.2"), synth.AppendVXLAN(nil, 200, frame), int64(i+1))
		}
		e.Flush()
		want := 4
		if dedup {
			want = 2
		}
		if len(sink.reqs) != want {
			t.Errorf("dedup %v: %d requests, want %d", dedup, len(sink.reqs), want)
		}
	}
}

type pairSink struct {
	recordSink
	pairs []pair
}

type pair struct {
	req  *httpstream.Request
	resp *httpstream.Response
}

func (s *pairSink) Response(_ uint64, req *httpstream.Request, resp *httpstream.Response) {
	s.pairs = append(s.pairs, pair{req, resp})
}

// TestResponsesPaired checks production's responses against the captures.
func TestResponsesPaired(t *testing.T) {
	tests := []struct {
		file               string
		port               uint16
		paired, unanswered int
		status             int
	}{
		// The first response's header segment was not captured: that one
		// request stays unanswered, the other 999 pair up after the resync.
		{"zeek__http-1000-requests-one-dropped-response.pcap.gz", 80, 999, 1, 200},
		{"zeek__http-m57-long-49583-80.pcap", 80, 3, 0, 206}, // duplicated frames
		{"arkime__http-no-length.pcap", 80, 1, 0, 200},       // body delimited by the close
		{"zeek__http-pipelined-requests.pcap", 80, 5, 0, 200},
		{"suricata__http-gap-simple.pcap", 8080, 2, 1, 200}, // a hole in the second response's body
		{"arkime__wireshark-retrans.pcap", 4000, 4, 0, 200}, // chunked responses, duplicated
	}
	for _, tt := range tests {
		e, _, st := newEngine(t, tt.port)
		sink := &pairSink{}
		e.sink, e.rsink, e.cfg.PairResponses = sink, sink, true
		if _, err := pcapfile.Play(pcaps+tt.file, 4789, e); err != nil {
			t.Fatal(err)
		}
		paired, unanswered := 0, 0
		for _, p := range sink.pairs {
			if p.resp == nil {
				unanswered++
				continue
			}
			paired++
			if p.resp.Status != tt.status || p.resp.Start < p.req.End {
				t.Errorf("%s: status %d, response at %d before request end %d", tt.file, p.resp.Status, p.resp.Start, p.req.End)
			}
		}
		if paired != tt.paired || unanswered != tt.unanswered || len(sink.pairs) != len(sink.reqs) {
			t.Errorf("%s: paired %d unanswered %d of %d requests (unmatched responses %d)", tt.file, paired, unanswered,
				len(sink.reqs), st.Unmatched.Load())
		}
	}
}

// TestPairingSurvivesOverflow: more pipelined requests than the pending
// bound; the oldest go unanswered and every later pair stays aligned.
func TestPairingSurvivesOverflow(t *testing.T) {
	const n = maxPending + 6
	c := synth.NewConn(netip.MustParseAddrPort("10.0.0.1:5555"), netip.MustParseAddrPort("10.0.0.2:80"), 1, 1)
	var reqs, resps []byte
	for i := range n {
		reqs = fmt.Appendf(reqs, "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
		resps = fmt.Appendf(resps, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n/%d", len(fmt.Sprint(i))+1, i)
	}
	segs := append(c.Handshake(), c.ClientData(reqs)...)
	segs = append(segs, c.ServerData(resps)...)
	segs = append(segs, c.Close()...)
	e, _, _ := newEngine(t, 80)
	sink := &pairSink{}
	e.sink, e.rsink, e.cfg.PairResponses = sink, sink, true
	for i, s := range segs {
		e.HandleFrame(synth.AppendFrame(nil, s), int64(i+1))
	}
	e.Flush()
	unanswered := 0
	for _, p := range sink.pairs {
		if p.resp == nil {
			unanswered++
		} else if string(p.resp.Body()) != string(p.req.Target()) {
			t.Fatalf("request %s paired with response %s", p.req.Target(), p.resp.Body())
		}
	}
	if unanswered != 6 || len(sink.pairs) != n {
		t.Errorf("unanswered %d of %d", unanswered, len(sink.pairs))
	}
}
