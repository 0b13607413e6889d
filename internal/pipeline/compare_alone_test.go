package pipeline

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/internal/compare"
	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/testkit/fakeshop"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// chunked re-frames a whole response with chunked transfer coding, as
// many production servers send JSON.
func chunked(resp []byte) []byte {
	head, body, _ := strings.Cut(string(resp), "\r\n\r\n")
	var b strings.Builder
	for _, l := range strings.Split(head, "\r\n") {
		if !strings.HasPrefix(l, "Content-Length:") {
			b.WriteString(l + "\r\n")
		}
	}
	b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	for len(body) > 0 {
		n := min(len(body), 10)
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return []byte(b.String())
}

// TestCompareEndToEndAlone is the passive set-up: the candidate against
// production's mirrored answers only, no baseline, no secondary, with
// production's answers chunked on the wire. The planted differences are
// found and nothing else; with a candidate running production's code
// (A/A) nothing is.
func TestCompareEndToEndAlone(t *testing.T) {
	for _, planted := range []bool{true, false} {
		cand := shopServer(t, fakeshop.New(1, planted))
		prod := fakeshop.New(4, false)
		cfg := config.Default()
		cfg.Targets = []config.Target{{Name: "candidate", Destination: "http://" + cand.Addr()}}
		cfg.Compare.Candidate = "candidate"
		h, stop := start(t, cfg)
		m := newMirror(t, h)
		n := 0
		for round := range 8 {
			c := synth.NewConn(client(round), server, uint32(round)*1000, uint32(round)*5000)
			m.send(1, c.Handshake())
			for _, p := range fakeshop.Paths {
				m.send(1, c.ClientData(fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: shop\r\n\r\n", p)))
				m.send(1, c.ServerData(chunked(prod.Respond(p))))
				n++
			}
			m.send(1, c.Close())
		}
		waitFor(t, func() bool { return h.Comparator().Stats.Compared.Load() == uint64(n) })
		var r compare.Report
		if err := json.Unmarshal([]byte(get(t, "http://"+h.AdminAddr()+"/api/report")), &r); err != nil {
			t.Fatal(err)
		}
		stop()
		var got []string
		for _, e := range r.Endpoints {
			for _, c := range e.Comparisons {
				if c.Comparison != compare.VsProduction {
					t.Errorf("%s: comparison %s without a baseline", e.Name, c.Comparison)
				}
				for _, f := range c.Fields {
					if f.Regression {
						got = append(got, e.Name+" "+f.Key)
					}
				}
			}
		}
		slices.Sort(got)
		var want []string
		if planted {
			want = slices.Sorted(slices.Values(fakeshop.Planted))
		}
		if !slices.Equal(got, want) {
			t.Errorf("planted %v: findings\n%s\nwant\n%s", planted, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
