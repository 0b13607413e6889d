// Command capbench measures what the handler alone costs per replayed
// request, with the client and production out of the loop. It pre-builds
// the mirrored datagrams of keep-alive GETs (request, response and ACK, both
// directions) and sends them over loopback to a shadowtap process, which
// replays to a minimal test server here. It sends as a mirror delivers:
// requests evenly spaced within each second, each request's packets
// together, production's answer -server-time after it (what is due is sent
// at most every -send-tick, in one sendmmsg). Each of -rates gets
// a fresh handler, and one table reports per rate the requests delivered
// of those sent (byte-exact, at most once), the handler's CPU per
// delivered request (user and system from /proc, over the run), its peak
// RSS and the replay lag (the request's packets sent to its replay
// received) at p50 and p99. It is a benchmark, not a pass/fail test; no
// root needed.
//
//	go run ./cmd/capbench -rates 5000,40000 -duration 10s
//	go run ./cmd/capbench -rates 40000 -- -shards 2
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
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	rates := flag.String("rates", "5000", "requests per second, all connections together; several (5000,40000) run one after another, each with a fresh handler")
	serverTime := flag.Duration("server-time", time.Millisecond, "production's answer is mirrored this long after its request")
	tick := flag.Duration("send-tick", 100*time.Microsecond, "send what is due at most this often, in one sendmmsg (0: at each datagram's time)")
	conns := flag.Int("conns", 64, "mirrored keep-alive connections")
	duration := flag.Duration("duration", 20*time.Second, "how long to send each rate")
	bin := flag.String("shadowtap", "", "shadowtap binary (default: build ./cmd/shadowtap)")
	phases := flag.String("phases", "", "rate:duration,... offered one after another on the same connections (instead of -rate and -duration)")
	delay := flag.Duration("server-delay", 0, "the test server answers each request after this long")
	serverRate := flag.Float64("server-rate", 0, "the test server answers at most this many requests per second")
	flag.Parse()
	var err error
	if *phases != "" {
		err = runPhases(*phases, *conns, *delay, *serverRate, *bin, flag.Args())
	} else {
		err = runRates(*rates, *conns, *duration, *serverTime, *tick, *bin, flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "capbench:", err)
		os.Exit(1)
	}
}

type datagram struct {
	req int // the request this datagram belongs to, in sending order
	b   []byte
}

func freeUDP() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}
