package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/shadowtap/shadowtap/internal/testkit/procstat"
	"github.com/shadowtap/shadowtap/internal/testkit/synth"
)

// rateResult is what one rate's run measured.
type rateResult struct {
	rate                    float64
	sent, delivered         int
	inexact, dup, unordered int
	cpu                     float64 // handler seconds, user and system
	benchCPU                float64 // this process's: the sender and the test server
	wall                    time.Duration
	peakKiB                 int64
	lagP50, lagP99          time.Duration
	losses                  string
}

// parseRates reads "5000,40000".
func parseRates(spec string) ([]float64, error) {
	var rates []float64
	for part := range strings.SplitSeq(spec, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || r <= 0 || r > 1e6 {
			return nil, fmt.Errorf("rate %q: want a positive number of requests per second up to 1e6", part)
		}
		rates = append(rates, r)
	}
	return rates, nil
}

// runRates measures the handler at each rate in turn, each with a fresh
// handler process, and prints one table.
func runRates(spec string, conns int, dur, serverTime, tick time.Duration, bin string, extra []string) error {
	rates, err := parseRates(spec)
	if err != nil {
		return err
	}
	if conns <= 0 || dur <= 0 || dur > time.Hour || serverTime < 0 || serverTime > time.Second || tick < 0 || tick > 10*time.Millisecond {
		return fmt.Errorf("conns and duration (at most 1h) must be positive, server-time between 0 and 1s, send-tick between 0 and 10ms")
	}
	bin, cleanup, err := shadowtapBinary(bin)
	if err != nil {
		return err
	}
	defer cleanup()
	var results []rateResult
	for _, r := range rates {
		// A connection's next request follows its answer: enough
		// connections that each waits at least twice the server time.
		c := max(conns, int(2*r*serverTime.Seconds())+1)
		res, err := runRate(r, c, dur, serverTime, tick, bin, extra)
		if err != nil {
			return fmt.Errorf("%.0f/s: %w", r, err)
		}
		results = append(results, res)
		fmt.Printf("%.0f/s done: %s\n", r, res.losses)
	}
	fmt.Printf("\neach rate for %v, requests evenly spaced (sent at most every %v), production's answer %v after its request, %s\n", dur, tick, serverTime, machine())
	fmt.Printf("%-9s %-18s %-6s %-10s %-11s %-8s %-9s %-9s %-s\n", "offered", "delivered", "twice", "us/req", "core", "RSS MiB", "lag p50", "lag p99", "bench core")
	var bad error
	for _, r := range results {
		fmt.Printf("%-9.0f %-18s %-6d %-10.1f %-11s %-8.1f %-9s %-9s %.0f%%\n", r.rate,
			fmt.Sprintf("%d/%d (%.1f%%)", r.delivered, r.sent, 100*float64(r.delivered)/float64(max(r.sent, 1))),
			r.dup, r.cpu*1e6/float64(max(r.delivered, 1)), fmt.Sprintf("%.0f%%", 100*r.cpu/r.wall.Seconds()),
			float64(r.peakKiB)/1024, r.lagP50.Round(time.Microsecond), r.lagP99.Round(time.Microsecond), 100*r.benchCPU/r.wall.Seconds())
		if r.inexact+r.dup+r.unordered > 0 && bad == nil {
			bad = fmt.Errorf("%.0f/s: %d requests not exact, %d received twice, %d out of order", r.rate, r.inexact, r.dup, r.unordered)
		}
	}
	return bad
}

// span is where one request's datagrams are in the trace: its request's
// from req, the answer and the client's ACK from resp, up to end.
type span struct{ req, resp, end int }

// buildTrace builds n requests on conns keep-alive connections (request n
// on connection n % conns): the handshakes' datagrams, then each request's.
func buildTrace(conns, n int) (hello [][]byte, trace [][]byte, spans []span) {
	server := netip.MustParseAddrPort("10.0.0.2:80")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"items\":[1,2,3]}")
	wrap := func(dst [][]byte, segs ...synth.Segment) [][]byte {
		for _, s := range segs {
			dst = append(dst, synth.AppendVXLAN(nil, 7, synth.AppendFrame(nil, s)))
		}
		return dst
	}
	cs := make([]*synth.Conn, conns)
	for i := range cs {
		cs[i] = synth.NewConn(clientAddr(i), server, uint32(i)*1000003, uint32(i)*7919)
		hello = wrap(hello, cs[i].Handshake()...)
	}
	spans = make([]span, n)
	for i := range n {
		c := cs[i%conns]
		spans[i].req = len(trace)
		trace = wrap(trace, c.ClientData(benchRequest(0, i%conns, i/conns))...)
		spans[i].resp = len(trace)
		trace = wrap(trace, c.ServerData(resp)...)
		trace = wrap(trace, c.ClientACK())
		spans[i].end = len(trace)
	}
	return hello, trace, spans
}

// runRate offers rate requests a second for dur to a new handler process,
// as a mirror delivers them: request i's packets together at i/rate, its
// answer's serverTime later. What is due is sent at most every tick, in
// one sendmmsg: a wake-up per datagram would cost this process a core at
// 40,000 req/s on a small machine, and take it from the handler measured.
func runRate(rate float64, conns int, dur, serverTime, tick time.Duration, bin string, extra []string) (rateResult, error) {
	res := rateResult{rate: rate}
	n := int(rate * dur.Seconds())
	hello, trace, spans := buildTrace(conns, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	test, _, err := startTestServer(ctx, 0, 0)
	if err != nil {
		return res, err
	}
	defer test.Close()
	admin, err := freeTCP()
	if err != nil {
		return res, err
	}
	cmd, udp, err := startHandler(bin, test.Addr(), append([]string{"-admin-listen", admin}, extra...))
	if err != nil {
		return res, err
	}
	defer cmd.Process.Kill()
	out, err := net.Dial("udp", udp)
	if err != nil {
		return res, err
	}
	defer out.Close()
	batch := ipv4.NewPacketConn(out.(*net.UDPConn))
	var due []ipv4.Message // reused: what one wake-up sends
	for _, b := range hello {
		out.Write(b)
	}
	time.Sleep(200 * time.Millisecond)

	pid := cmd.Process.Pid
	sentAt := make([]time.Time, n)
	cpu0, bench0 := procstat.CPUSeconds(pid), procstat.CPUSeconds(os.Getpid())
	began := time.Now()
	every := time.Duration(float64(time.Second) / rate)
	lastRSS := began
	// Two sorted streams merged: requests due at i*every, answers at
	// i*every+serverTime. The sender sleeps until the next one is due and
	// then sends all that are. time.Sleep wakes on the runtime's poller,
	// to the millisecond: requests would leave in bursts, which is not
	// how a mirror delivers them. A thread of its own sleeping in the
	// kernel with the least timer slack wakes within microseconds.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	woke := began.Add(-tick)
	for i, j := 0, 0; j < n; {
		reqDue := began.Add(time.Duration(i) * every)
		respDue := began.Add(time.Duration(j)*every + serverTime)
		next := respDue
		if i < n && reqDue.Before(respDue) {
			next = reqDue
		}
		if next.Before(woke.Add(tick)) {
			next = woke.Add(tick)
		}
		if d := time.Until(next); d > 0 {
			ts := unix.NsecToTimespec(d.Nanoseconds())
			unix.Nanosleep(&ts, nil) // interrupted: the loop sleeps again
		}
		now := time.Now()
		woke = now
		due = due[:0]
		// In the order they were due: requests and answers interleaved.
		for {
			reqDue := i < n && !began.Add(time.Duration(i)*every).After(now)
			respDue := j < i && !began.Add(time.Duration(j)*every+serverTime).After(now)
			if reqDue && (!respDue || time.Duration(i)*every < time.Duration(j)*every+serverTime) {
				due = appendMessages(due, trace[spans[i].req:spans[i].resp])
				sentAt[i] = now
				i++
			} else if respDue {
				due = appendMessages(due, trace[spans[j].resp:spans[j].end])
				j++
			} else {
				break
			}
		}
		sendAll(batch, due)
		if now.Sub(lastRSS) > 100*time.Millisecond {
			res.peakKiB, lastRSS = max(res.peakKiB, procstat.RSSKiB(pid)), now
		}
	}
	// Until every request arrived, or none has for half a second.
	for m, quiet := len(test.Requests()), 0; m < n && quiet < 10 && time.Since(began) < dur+30*time.Second; {
		time.Sleep(50 * time.Millisecond)
		res.peakKiB = max(res.peakKiB, procstat.RSSKiB(pid))
		if k := len(test.Requests()); k != m {
			m, quiet = k, 0
		} else {
			quiet++
		}
	}
	res.cpu = procstat.CPUSeconds(pid) - cpu0
	res.benchCPU = procstat.CPUSeconds(os.Getpid()) - bench0
	res.wall = time.Since(began)
	res.losses = scrape(admin)
	stopHandler(cmd)

	got := test.Requests()
	c := checkReceived(got, test.Addr(), 1)
	res.sent, res.delivered = n, c.delivered[0]
	res.inexact, res.dup, res.unordered = c.inexact, c.dup, c.unordered
	var lags []time.Duration
	for i, k := range c.keys {
		if k[0] == 0 {
			if at := k[2]*conns + k[1]; at < n && !sentAt[at].IsZero() {
				lags = append(lags, got[i].At.Sub(sentAt[at]))
			}
		}
	}
	slices.Sort(lags)
	if len(lags) > 0 {
		res.lagP50, res.lagP99 = lags[len(lags)/2], lags[len(lags)*99/100]
	}
	return res, nil
}

func appendMessages(dst []ipv4.Message, datagrams [][]byte) []ipv4.Message {
	for _, b := range datagrams {
		dst = append(dst, ipv4.Message{Buffers: [][]byte{b}})
	}
	return dst
}

// sendAll sends msgs on the connected socket, as many a call as the
// kernel takes; an error (the handler gone) ends the batch, as a lost
// datagram would.
func sendAll(c *ipv4.PacketConn, msgs []ipv4.Message) {
	for len(msgs) > 0 {
		n, err := c.WriteBatch(msgs, 0)
		if err != nil || n == 0 {
			return
		}
		msgs = msgs[n:]
	}
}

// machine names the processor, its cores and the kernel, for the figures.
func machine() string {
	model := "unknown processor"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u syscall.Utsname
	kernel := ""
	if syscall.Uname(&u) == nil {
		var b []byte
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		kernel = ", Linux " + string(b)
	}
	return fmt.Sprintf("%s, %d cores%s, %s", model, runtime.NumCPU(), kernel, runtime.Version())
}
