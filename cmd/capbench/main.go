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
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	rateFlag := flag.Int("rate", 5000, "requests per second, all connections together")
	conns := flag.Int("conns", 64, "mirrored keep-alive connections")
	duration := flag.Duration("duration", 20*time.Second, "how long to send")
	bin := flag.String("shadowtap", "", "shadowtap binary (default: build ./cmd/shadowtap)")
	phases := flag.String("phases", "", "rate:duration,... offered one after another on the same connections (instead of -rate and -duration)")
	delay := flag.Duration("server-delay", 0, "the test server answers each request after this long")
	serverRate := flag.Float64("server-rate", 0, "the test server answers at most this many requests per second")
	flag.Parse()
	spec := *phases
	if spec == "" {
		// One rate for one duration is a run of one phase.
		if *rateFlag <= 0 || *duration <= 0 || *duration > time.Hour {
			fmt.Fprintln(os.Stderr, "capbench: rate and duration (at most 1h) must be positive")
			os.Exit(2)
		}
		spec = fmt.Sprintf("%d:%s", *rateFlag, *duration)
	}
	if err := runPhases(spec, *conns, *delay, *serverRate, *bin, flag.Args()); err != nil {
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
