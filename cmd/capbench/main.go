// Command capbench measures what the handler alone costs per replayed
// request, with the client and production out of the loop: it pre-builds
// the mirrored datagrams of keep-alive GETs (request, response and ACK, both
// directions, as a mirror sends them), sends them at a fixed request rate
// over loopback to a shadowtap process, which replays to a minimal test
// server here. It reports the requests delivered and exact, the handler's
// CPU time per replayed request (user and system, from /proc) and its peak
// RSS. It is a benchmark, not a pass/fail test; no root needed.
//
//	go run ./cmd/capbench -rate 5000 -duration 20s
//	go run ./cmd/capbench -rate 40000 -duration 20s -- -shards 2
//
// With -phases it offers one rate after another on the same long-lived
// connections, and reports per phase what was offered, what the test server
// received while the phase was offered, and of the phase's requests how many
// were delivered, byte-exact and at most once. -server-delay (each answer
// takes this long: the handler can replay at most -workers/delay a second)
// or -server-rate (answers per second, all connections together) bound what
// the handler can replay, so that an overload is offered on purpose:
//
//	go run ./cmd/capbench -server-delay 20ms -phases 4800:5s,1600:5s -- -workers 64 -queue 640
//
// Arguments after -- go to shadowtap.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/internal/procstat"
	"github.com/shadowtap/shadowtap/internal/rawserver"
	"github.com/shadowtap/shadowtap/internal/synth"
)

func main() {
	rate := flag.Int("rate", 5000, "requests per second, all connections together")
	conns := flag.Int("conns", 64, "mirrored keep-alive connections")
	duration := flag.Duration("duration", 20*time.Second, "how long to send")
	bin := flag.String("shadowtap", "", "shadowtap binary (default: build ./cmd/shadowtap)")
	phases := flag.String("phases", "", "rate:duration,... offered one after another on the same connections (instead of -rate and -duration)")
	delay := flag.Duration("server-delay", 0, "the test server answers each request after this long")
	serverRate := flag.Float64("server-rate", 0, "the test server answers at most this many requests per second")
	flag.Parse()
	var err error
	if *phases != "" {
		err = runPhases(*phases, *conns, *delay, *serverRate, *bin, flag.Args())
	} else {
		err = run(*rate, *conns, *duration, *bin, flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "capbench:", err)
		os.Exit(1)
	}
}

func run(rate, conns int, duration time.Duration, bin string, extra []string) error {
	if rate <= 0 || conns <= 0 || duration <= 0 || duration > time.Hour {
		return fmt.Errorf("rate, conns and duration (at most 1h) must be positive")
	}
	bin, cleanup, err := shadowtapBinary(bin)
	if err != nil {
		return err
	}
	defer cleanup()
	test, err := rawserver.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer test.Close()
	cmd, udp, err := startHandler(bin, test.Addr(), extra)
	if err != nil {
		return err
	}
	defer cmd.Process.Kill()

	total := int(float64(rate) * duration.Seconds())
	perConn := (total + conns - 1) / conns
	fmt.Printf("building %d requests' datagrams on %d connections\n", perConn*conns, conns)
	trace := buildTrace(conns, perConn)

	out, err := net.Dial("udp", udp)
	if err != nil {
		return err
	}
	defer out.Close()
	cpu0 := procstat.CPUSeconds(cmd.Process.Pid)
	began := time.Now()
	// Paced in slices of 1 ms: each carries its share of the requests.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sent, next := 0, 0
	peak := int64(0)
	for next < len(trace) && time.Since(began) < duration+10*time.Second {
		<-tick.C
		due := int(float64(rate) * time.Since(began).Seconds())
		for next < len(trace) && trace[next].req < due {
			out.Write(trace[next].b)
			next++
		}
		if sent++; sent%100 == 0 {
			peak = max(peak, procstat.RSSKiB(cmd.Process.Pid))
		}
	}
	sendTime := time.Since(began)
	// Let the replays finish, then stop the handler gracefully.
	deadline := time.Now().Add(10 * time.Second)
	want := perConn * conns
	for len(test.Requests()) < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		peak = max(peak, procstat.RSSKiB(cmd.Process.Pid))
	}
	cpu := procstat.CPUSeconds(cmd.Process.Pid) - cpu0
	cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-ctx.Done():
	}

	got := test.Requests()
	exact := 0
	for _, r := range got {
		if bytes.HasPrefix(r.Raw, []byte("GET /bench/")) && bytes.Contains(r.Raw, []byte("\r\nX-Shadowtap-Replay: default\r\n")) {
			exact++
		}
	}
	fmt.Printf("offered                %d requests at %d/s over %v\n", want, rate, sendTime.Round(time.Millisecond))
	fmt.Printf("replayed               %d (%.4f)\n", len(got), float64(len(got))/float64(want))
	fmt.Printf("well-formed replays    %d\n", exact)
	fmt.Printf("handler CPU            %.2f s, %.1f us per replayed request, %.0f%% of a core\n",
		cpu, cpu*1e6/float64(max(len(got), 1)), 100*cpu/sendTime.Seconds())
	fmt.Printf("handler peak RSS       %d KiB\n", peak)
	return nil
}

type datagram struct {
	req int // the request this datagram belongs to, in sending order
	b   []byte
}

// buildTrace interleaves the connections request by request: each
// request's segments (request, response, ACK) are sent together.
func buildTrace(conns, perConn int) []datagram {
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
		cl := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(30000+i))
		cs[i] = synth.NewConn(cl, server, uint32(i)*1000003, uint32(i)*7919)
		add(0, cs[i].Handshake())
	}
	n := 0
	for r := range perConn {
		for i, c := range cs {
			req := fmt.Sprintf("GET /bench/%d/%d HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: capbench/1.0\r\nAccept: application/json\r\n\r\n", i, r)
			add(n, c.ClientData([]byte(req)))
			add(n, c.ServerData(resp))
			add(n, []synth.Segment{c.ClientACK()})
			n++
		}
	}
	return out
}

func freeUDP() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}
