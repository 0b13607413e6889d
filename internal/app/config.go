// Package app assembles the replay handler from its stages: configuration,
// the UDP capture, the engine, the replayer, the health and admin servers.
package app

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/internal/replay"
	"github.com/shadowtap/shadowtap/internal/sample"
)

// Config is every setting of the handler. The zero value is not useful;
// start from DefaultConfig.
type Config struct {
	// Flags of the AWS sample handler, same names and meaning.
	Destination        string   // -destination: http(s)://host[:port][/prefix]
	Percentage         float64  // -percentage: 0-100
	PercentageBy       string   // -percentage-by: "", header or remoteaddr
	PercentageByHeader string   // -percentage-by-header
	Ports              []uint16 // -filter-request-port: one port or a comma list
	KeepHostHeader     bool     // -keep-host-header

	Listen       string   // UDP address for VXLAN
	VNIs         []uint32 // allowed VNIs; empty: any
	HealthListen string   // TCP address for load-balancer health checks; "" disables
	AdminListen  string   // HTTP address for /healthz and /metrics; "" disables
	ReadBuffer   int      // socket receive buffer, bytes

	Workers         int           // concurrent replays
	Queue           int           // replay queue length
	MaxBody         int64         // larger request bodies are skipped
	MaxFlows        int           // TCP connections tracked at once
	ReorderWait     time.Duration // wait for a missing segment before declaring a gap
	IdleTimeout     time.Duration // forget a connection idle this long
	DialTimeout     time.Duration
	ResponseTimeout time.Duration
	InsecureTLS     bool          // accept any certificate from an https destination
	DrainTimeout    time.Duration // on SIGTERM, how long to finish queued replays

	LogLevel  string // debug, info, warn, error
	LogFormat string // text or json
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Percentage:      100,
		Ports:           []uint16{80},
		Listen:          ":4789",
		HealthListen:    ":4789",
		AdminListen:     ":4790",
		ReadBuffer:      64 << 20,
		Workers:         64,
		Queue:           10_000,
		MaxBody:         10 << 20,
		MaxFlows:        100_000,
		ReorderWait:     200 * time.Millisecond,
		IdleTimeout:     2 * time.Minute,
		DialTimeout:     3 * time.Second,
		ResponseTimeout: 10 * time.Second,
		DrainTimeout:    10 * time.Second,
		LogLevel:        "info",
		LogFormat:       "text",
	}
}

// RegisterFlags binds the config's fields to flags in fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Destination, "destination", c.Destination, "where to replay requests: http(s)://host[:port][/path-prefix] (required)")
	fs.Float64Var(&c.Percentage, "percentage", c.Percentage, "share of requests (or of keys, with -percentage-by) to replay, 0-100")
	fs.StringVar(&c.PercentageBy, "percentage-by", c.PercentageBy, `what -percentage is keyed on: "" (each request), header or remoteaddr`)
	fs.StringVar(&c.PercentageByHeader, "percentage-by-header", c.PercentageByHeader, "the header keying -percentage-by header")
	fs.Func("filter-request-port", "server port(s) whose requests are replayed: one port or a comma list (default 80)", func(s string) error {
		ports, err := parsePorts(s)
		c.Ports = ports
		return err
	})
	fs.BoolVar(&c.KeepHostHeader, "keep-host-header", c.KeepHostHeader, "send the captured Host header instead of the destination's")
	fs.StringVar(&c.Listen, "listen", c.Listen, "UDP address receiving VXLAN mirror traffic")
	fs.Func("vni", "accept only this VXLAN network id (repeatable, or a comma list; default any)", func(s string) error {
		for _, part := range strings.Split(s, ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
			if err != nil || v >= 1<<24 {
				return fmt.Errorf("%q is not a VNI (0-16777215)", part)
			}
			c.VNIs = append(c.VNIs, uint32(v))
		}
		return nil
	})
	fs.StringVar(&c.HealthListen, "health-listen", c.HealthListen, `TCP address answering load-balancer health checks ("" disables)`)
	fs.StringVar(&c.AdminListen, "admin-listen", c.AdminListen, `HTTP address serving /healthz and /metrics ("" disables)`)
	fs.IntVar(&c.ReadBuffer, "read-buffer", c.ReadBuffer, "UDP socket receive buffer in bytes (raise net.core.rmem_max, or run with CAP_NET_ADMIN)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "requests replayed concurrently (and connections to the destination at most)")
	fs.IntVar(&c.Queue, "queue", c.Queue, "requests waiting for replay; beyond it new connections, then requests, are dropped")
	fs.Int64Var(&c.MaxBody, "max-body", c.MaxBody, "requests with a larger body are skipped and counted")
	fs.IntVar(&c.MaxFlows, "max-flows", c.MaxFlows, "TCP connections tracked at once")
	fs.DurationVar(&c.ReorderWait, "reorder-wait", c.ReorderWait, "wait for a missing segment this long before declaring a gap")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "forget a connection without packets for this long")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", c.DialTimeout, "connect (and TLS handshake) timeout to the destination")
	fs.DurationVar(&c.ResponseTimeout, "response-timeout", c.ResponseTimeout, "wait this long for the destination's response head")
	fs.BoolVar(&c.InsecureTLS, "insecure-skip-verify", c.InsecureTLS, "accept any certificate from an https destination (self-signed staging)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "on SIGTERM, finish queued replays for at most this long")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
}

func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, part := range strings.Split(s, ",") {
		p, err := strconv.ParseUint(strings.TrimSpace(part), 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%q is not a port (1-65535)", part)
		}
		ports = append(ports, uint16(p))
	}
	return ports, nil
}

// Validate checks the config as a whole; each problem is reported.
func (c *Config) Validate() error {
	var errs []error
	if c.Destination == "" {
		errs = append(errs, errors.New("-destination is required"))
	} else if _, err := replay.ParseDestination(c.Destination); err != nil {
		errs = append(errs, err)
	}
	if _, err := sample.New(c.Percentage, sample.By(c.PercentageBy), c.PercentageByHeader); err != nil {
		errs = append(errs, err)
	}
	if len(c.Ports) == 0 {
		errs = append(errs, errors.New("-filter-request-port: at least one port"))
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("-listen is required"))
	}
	positive := map[string]int64{"-workers": int64(c.Workers), "-queue": int64(c.Queue), "-max-body": c.MaxBody,
		"-max-flows": int64(c.MaxFlows), "-read-buffer": int64(c.ReadBuffer)}
	for _, name := range []string{"-workers", "-queue", "-max-body", "-max-flows", "-read-buffer"} {
		if positive[name] <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	durations := map[string]time.Duration{"-reorder-wait": c.ReorderWait, "-idle-timeout": c.IdleTimeout,
		"-dial-timeout": c.DialTimeout, "-response-timeout": c.ResponseTimeout, "-drain-timeout": c.DrainTimeout}
	for _, name := range []string{"-reorder-wait", "-idle-timeout", "-dial-timeout", "-response-timeout", "-drain-timeout"} {
		if durations[name] <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.ReorderWait >= c.IdleTimeout {
		errs = append(errs, errors.New("-reorder-wait must be shorter than -idle-timeout"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("-log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("-log-format %q: want text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}

// ClientOptions derives the replay client's settings.
func (c *Config) ClientOptions() replay.ClientOptions {
	o := replay.DefaultClientOptions
	o.DialTimeout, o.ResponseTimeout, o.InsecureTLS = c.DialTimeout, c.ResponseTimeout, c.InsecureTLS
	o.MaxIdle = c.Workers
	return o
}
