package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/testkit/procstat"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// phase is one stretch of offered load; its requests are numbered from
// first, request i of the whole run going to connection i % conns.
type phase struct {
	rate   float64
	dur    time.Duration
	first  int
	n      int
	began  time.Time
	ended  time.Time
	during int // requests the test server received while it was offered
}

// parsePhases reads "rate:duration,rate:duration".
func parsePhases(spec string) ([]*phase, error) {
	var ps []*phase
	first := 0
	for part := range strings.SplitSeq(spec, ",") {
		r, d, ok := strings.Cut(strings.TrimSpace(part), ":")
		rt, err1 := strconv.ParseFloat(r, 64)
		dur, err2 := time.ParseDuration(d)
		if !ok || err1 != nil || err2 != nil || rt <= 0 || rt > 1e6 || dur <= 0 || dur > time.Hour {
			return nil, fmt.Errorf("phase %q: want rate:duration, a positive rate up to 1e6/s and a duration up to 1h", part)
		}
		n := int(rt * dur.Seconds())
		ps = append(ps, &phase{rate: rt, dur: dur, first: first, n: n})
		first += n
	}
	return ps, nil
}

// benchRequest is the request numbered i of phase p on connection conn,
// as the mirror carries it; the path says which, so that the test server's
// copy can be checked.
func benchRequest(p, conn, i int) []byte {
	return fmt.Appendf(nil, "GET /bench/%d/%d/%d HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: capbench/1.0\r\nAccept: application/json\r\n\r\n", p, conn, i)
}

// replayed is benchRequest as the handler replays it to host by default:
// the Host rewritten, the AWS sample's forwarding headers and the marker
// added.
func replayed(p, conn, i int, host string) []byte {
	return fmt.Appendf(nil, "GET /bench/%d/%d/%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: capbench/1.0\r\nAccept: application/json\r\n"+
		"X-Forwarded-For: %s\r\nX-Forwarded-Port: 80\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: shop.example\r\nX-Shadowtap-Replay: default\r\n\r\n",
		p, conn, i, host, clientAddr(conn).Addr())
}

// clientAddr is production connection conn's client end.
func clientAddr(conn int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(conn >> 8), byte(conn)}), uint16(30000+conn))
}

// runPhases offers the phases on the same long-lived connections to a
// shadowtap process replaying to a test server of bounded capacity.
func runPhases(spec string, conns int, delay time.Duration, serverRate float64, bin string, extra []string) error {
	phases, err := parsePhases(spec)
	if err != nil {
		return err
	}
	if conns <= 0 || delay < 0 || delay > time.Minute || serverRate < 0 {
		return fmt.Errorf("conns must be positive, server-delay at most 1m, server-rate not negative")
	}
	bin, cleanup, err := shadowtapBinary(bin)
	if err != nil {
		return err
	}
	defer cleanup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	test, lim, err := startTestServer(ctx, delay, serverRate)
	if err != nil {
		return err
	}
	defer test.Close()
	defer cancel() // before the server closes: answers waiting for tokens end
	admin, err := freeTCP()
	if err != nil {
		return err
	}
	cmd, udp, err := startHandler(bin, test.Addr(), append([]string{"-admin-listen", admin}, extra...))
	if err != nil {
		return err
	}
	defer cmd.Process.Kill()

	last := phases[len(phases)-1]
	total := last.first + last.n
	fmt.Printf("building %d requests' datagrams on %d connections\n", total, conns)
	trace := buildPhasedTrace(conns, phases)
	out, err := net.Dial("udp", udp)
	if err != nil {
		return err
	}
	defer out.Close()
	cpu0 := procstat.CPUSeconds(cmd.Process.Pid)
	began := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	next, ticks, peak := 0, 0, int64(0)
	for _, p := range phases {
		p.began = time.Now()
		for next < len(trace) && trace[next].req < p.first+p.n && time.Since(p.began) < p.dur+10*time.Second {
			<-tick.C
			if ticks++; ticks%100 == 0 {
				peak = max(peak, procstat.RSSKiB(cmd.Process.Pid))
			}
			due := p.first + min(p.n, int(p.rate*time.Since(p.began).Seconds()))
			for next < len(trace) && trace[next].req < due {
				out.Write(trace[next].b)
				next++
			}
		}
		p.ended = time.Now()
	}
	sendTime := time.Since(began)
	// Let the backlog drain: until nothing has arrived for a second.
	for n, quiet := len(test.Requests()), 0; quiet < 20 && time.Since(began) < sendTime+30*time.Second; {
		time.Sleep(50 * time.Millisecond)
		peak = max(peak, procstat.RSSKiB(cmd.Process.Pid))
		if m := len(test.Requests()); m != n {
			n, quiet = m, 0
		} else {
			quiet++
		}
	}
	cpu := procstat.CPUSeconds(cmd.Process.Pid) - cpu0
	losses := scrape(admin)
	stopHandler(cmd)
	cancel()

	host := test.Addr()
	got := test.Requests()
	c := checkReceived(got, host, len(phases))
	delivered := c.delivered
	for _, r := range got {
		for _, p := range phases {
			if r.At.After(p.began) && !r.At.After(p.ended) {
				p.during++
			}
		}
	}
	switch {
	case delay > 0 && lim != nil:
		fmt.Printf("test server            answers after %v, at most %.0f/s\n", delay, serverRate)
	case delay > 0:
		fmt.Printf("test server            answers after %v (capacity: the handler's workers / %v)\n", delay, delay)
	case lim != nil:
		fmt.Printf("test server            answers at most %.0f/s\n", serverRate)
	}
	fmt.Printf("%-6s %-8s %-9s %-18s %-22s %s\n", "phase", "offered", "for", "offered requests", "received while offered", "of its requests delivered")
	for i, p := range phases {
		d := p.ended.Sub(p.began)
		fmt.Printf("%-6d %-8.0f %-9v %-18d %-22s %d (%.3f)\n", i+1, p.rate, d.Round(time.Millisecond), p.n,
			fmt.Sprintf("%d (%.0f/s)", p.during, float64(p.during)/d.Seconds()), delivered[i], float64(delivered[i])/float64(max(p.n, 1)))
	}
	fmt.Printf("received               %d of %d offered; not exact %d, twice %d, out of order %d\n", len(got), total, c.inexact, c.dup, c.unordered)
	fmt.Printf("handler CPU            %.2f s, %.1f us per replayed request, %.0f%% of a core while offered\n",
		cpu, cpu*1e6/float64(max(len(got), 1)), 100*cpu/sendTime.Seconds())
	fmt.Printf("handler peak RSS       %d KiB\n", peak)
	fmt.Printf("where requests went    %s\n", losses)
	return c.err()
}

// startTestServer starts the test server the handler replays to: it
// answers each request after delay, and at most serverRate a second (0:
// no bound) until ctx ends.
func startTestServer(ctx context.Context, delay time.Duration, serverRate float64) (*rawserver.Server, *rate.Limiter, error) {
	var lim *rate.Limiter
	if serverRate > 0 {
		lim = rate.NewLimiter(rate.Limit(serverRate), max(1, int(serverRate/100)))
	}
	ok := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"items\":[1,2,3]}")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	test := rawserver.ServeResponding(ln, func(*httpstream.Request) []byte {
		if delay > 0 {
			time.Sleep(delay)
		}
		if lim != nil {
			lim.Wait(ctx) // an error: the run is over
		}
		return ok
	})
	return test, lim, nil
}

// received is what the test server's requests say: per phase how many of
// its requests arrived, and how many were not exact, came twice, or came
// before an earlier one of their connection.
type received struct {
	delivered               []int
	inexact, dup, unordered int
	keys                    [][3]int // each request's phase, connection and index; -1s if not one of ours
}

// checkReceived checks every request the test server received: one
// offered, byte-exact, received once and after its connection's earlier
// ones.
func checkReceived(got []rawserver.Received, host string, phases int) received {
	c := received{delivered: make([]int, phases), keys: make([][3]int, len(got))}
	seen := make(map[[3]int]bool)
	lastOf := make(map[int][2]int)
	for i, r := range got {
		k := &c.keys[i]
		if _, err := fmt.Sscanf(string(r.Raw), "GET /bench/%d/%d/%d ", &k[0], &k[1], &k[2]); err != nil || k[0] < 0 || k[0] >= phases {
			*k = [3]int{-1, -1, -1}
			c.inexact++
			continue
		}
		if want := replayed(k[0], k[1], k[2], host); !bytes.Equal(r.Raw, want) {
			if c.inexact == 0 {
				fmt.Printf("not exact: got %q, want %q\n", r.Raw, want)
			}
			c.inexact++
		}
		if seen[*k] {
			c.dup++
		}
		seen[*k] = true
		c.delivered[k[0]]++
		if prev, ok := lastOf[k[1]]; ok && (prev[0] > k[0] || prev[0] == k[0] && prev[1] >= k[2]) {
			c.unordered++
		}
		lastOf[k[1]] = [2]int{k[0], k[2]}
	}
	return c
}

func (c received) err() error {
	if c.inexact+c.dup+c.unordered > 0 {
		return fmt.Errorf("%d requests not exact, %d received twice, %d out of order", c.inexact, c.dup, c.unordered)
	}
	return nil
}

// buildPhasedTrace builds the datagrams of every phase's requests on the
// same connections, request by request (request, response, ACK).
func buildPhasedTrace(conns int, phases []*phase) []datagram {
	server := netip.MustParseAddrPort("10.0.0.2:80")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"items\":[1,2,3]}")
	cs := make([]*synth.Conn, conns)
	var out []datagram
	add := func(req int, segs []synth.Segment) {
		for _, s := range segs {
			out = append(out, datagram{req, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, s))})
		}
	}
	for i := range cs {
		cs[i] = synth.NewConn(clientAddr(i), server, uint32(i)*1000003, uint32(i)*7919)
		add(0, cs[i].Handshake())
	}
	for pi, p := range phases {
		for n := p.first; n < p.first+p.n; n++ {
			c := cs[n%conns]
			add(n, c.ClientData(benchRequest(pi, n%conns, (n-p.first)/conns)))
			add(n, c.ServerData(resp))
			add(n, []synth.Segment{c.ClientACK()})
		}
	}
	return out
}

// shadowtapBinary returns bin, or builds ./cmd/shadowtap into a temporary
// directory that cleanup removes.
func shadowtapBinary(bin string) (string, func(), error) {
	if bin != "" {
		return bin, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "capbench")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "shadowtap")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/shadowtap").CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build: %v: %s", err, out)
	}
	return bin, cleanup, nil
}

// scrape returns the handler's counters that say where offered requests
// went: captured, lost in capture, shed by the replay queue, resumed.
func scrape(admin string) string {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return "(no metrics: " + err.Error() + ")"
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, name := range []string{"socket_kernel_drops_total", "requests_captured_total", "requests_lost_to_gaps_total",
		"replay_queue_drops_total", "replay_connections_refused_total", "replay_connections_resumed_total"} {
		sum := 0.0
		for line := range strings.SplitSeq(string(body), "\n") {
			if rest, ok := strings.CutPrefix(line, "shadowtap_"+name); ok && (rest[0] == ' ' || rest[0] == '{') {
				f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
				if len(f) > 0 {
					v, _ := strconv.ParseFloat(f[0], 64)
					sum += v
				}
			}
		}
		out = append(out, fmt.Sprintf("%s %.0f", strings.TrimSuffix(name, "_total"), sum))
	}
	return strings.Join(out, ", ")
}

func freeTCP() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// stopHandler stops the handler as SIGTERM does, waiting up to 15 s for
// it to drain.
func stopHandler(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
	}
}

// startHandler starts shadowtap listening for VXLAN on a free loopback
// port and replaying to dest.
func startHandler(bin, dest string, extra []string) (*exec.Cmd, string, error) {
	udp, err := freeUDP()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{"-destination", "http://" + dest, "-listen", udp, "-health-listen", "",
		"-admin-listen", "", "-log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	time.Sleep(500 * time.Millisecond) // the handler binds its socket
	return cmd, udp, nil
}
