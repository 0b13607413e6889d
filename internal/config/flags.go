package config

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// RegisterFlags binds the top-level settings and the AWS sample's flags to
// fs. A list flag given on the command line replaces the file's list.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.String("config", "", "YAML configuration file (see README); flags and SHADOWTAP_* variables override it")
	// The AWS sample handler's flags: same names, same meaning.
	fs.StringVar(&c.Destination, "destination", c.Destination, `replay to this URL, http(s)://host[:port][/path-prefix]: the target named "default"`)
	fs.Float64Var(&c.Defaults.Sampling.Percentage, "percentage", c.Defaults.Sampling.Percentage, "share of requests (or of keys) replayed, 0-100")
	fs.StringVar(&c.Defaults.Sampling.By, "percentage-by", c.Defaults.Sampling.By, `what -percentage is keyed on: "" (each request), header, remoteaddr; also cookie, query, xff`)
	fs.StringVar(&c.Defaults.Sampling.Key, "percentage-by-header", c.Defaults.Sampling.Key, "the header (or cookie, or query parameter) keying -percentage-by")
	fs.Var(newList(func(s string) error {
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil || p == 0 {
			return fmt.Errorf("%q is not a port (1-65535)", s)
		}
		c.Ports = append(c.Ports, uint16(p))
		return nil
	}, func() { c.Ports = nil }), "filter-request-port", "server port(s) whose requests are replayed: one port or a comma list (default 80)")
	fs.BoolVar(&c.Defaults.KeepHostHeader, "keep-host-header", c.Defaults.KeepHostHeader, "send the captured Host header instead of the destination's")

	fs.StringVar(&c.Listen, "listen", c.Listen, "UDP address receiving VXLAN mirror traffic")
	fs.StringVar(&c.GeneveListen, "geneve-listen", c.GeneveListen, `UDP address receiving Geneve, as a Gateway Load Balancer appliance (":6081"; "" disables)`)
	fs.Var(newList(func(s string) error {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil || v >= 1<<24 {
			return fmt.Errorf("%q is not a VNI (0-16777215)", s)
		}
		c.VNIs = append(c.VNIs, uint32(v))
		return nil
	}, func() { c.VNIs = nil }), "vni", "accept only these VXLAN network ids (repeatable or a comma list; default any)")
	fs.StringVar(&c.HealthListen, "health-listen", c.HealthListen, `TCP address answering load-balancer health checks ("" disables)`)
	fs.StringVar(&c.AdminListen, "admin-listen", c.AdminListen, `HTTP address serving /healthz and /metrics ("" disables)`)
	fs.StringVar(&c.WebConfig, "web-config", c.WebConfig, "the admin server's TLS and basic auth (exporter-toolkit web configuration file): /report and /api/* need its credentials; reloaded on SIGHUP")
	fs.BoolVar(&c.ProtectMetrics, "web-protect-metrics", c.ProtectMetrics, "with -web-config, /metrics needs the credentials too")
	fs.IntVar(&c.ReadBuffer, "read-buffer", c.ReadBuffer, "UDP socket receive buffer in bytes (raise net.core.rmem_max, or run with CAP_NET_ADMIN)")
	fs.Int64Var(&c.MaxBody, "max-body", c.MaxBody, "requests with a larger body are skipped and counted")
	fs.IntVar(&c.MaxFlows, "max-flows", c.MaxFlows, "TCP connections tracked at once")
	fs.IntVar(&c.Shards, "shards", c.Shards, "engines sharing the VXLAN traffic, each with its own socket and core (both directions of a connection on one); 0: one per CPU")
	fs.DurationVar(&c.ReorderWait, "reorder-wait", c.ReorderWait, "wait for a missing segment this long before declaring a gap")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "forget a connection without packets for this long")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", c.HandshakeTimeout, "forget a connection that has carried no data (handshake only, half-open) after this long without packets")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "on SIGTERM, finish queued replays for at most this long")
	fs.BoolVar(&c.Dedup, "dedup", c.Dedup, "replay once a connection mirrored from both ends (flows keyed by the inner 5-tuple only)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")

	// Defaults for every target.
	fs.IntVar(&c.Defaults.Workers, "workers", c.Defaults.Workers, "requests replayed concurrently per target (and connections to it at most)")
	fs.Var(inverse{&c.Defaults.Correlate.Off}, "correlate", "translate the values each target created for production's (session cookies, tokens, ids) in later requests; -correlate=false sends production's")
	fs.StringVar(&c.Correlate.Store, "correlate-store", c.Correlate.Store, "where a fleet of handlers shares its correlation pairs: memory (each alone), redis://, rediss://, valkey:// URL; the keyed hashes' secret is SHADOWTAP_CORRELATE_KEY")
	fs.StringVar(&c.Correlate.Namespace, "correlate-namespace", c.Correlate.Namespace, "the deployment's name in the correlation store: deployments sharing one store do not meet")
	fs.DurationVar(&c.Defaults.Correlate.Wait, "correlate-wait", c.Defaults.Correlate.Wait, "a request naming a value still being learned waits this long at most, then goes as it is (unsafe methods: not at all); 0: 2s")
	fs.Int64Var(&c.Defaults.QueueBytes, "queue-bytes", c.Defaults.QueueBytes, "bytes of requests waiting per target; bounds the queue's memory like -queue bounds its length")
	fs.IntVar(&c.Defaults.Queue, "queue", c.Defaults.Queue, "requests waiting per target; beyond it new connections, then requests, are dropped")
	fs.Float64Var(&c.Defaults.RateLimit, "rate-limit", c.Defaults.RateLimit, "requests per second per target (0: no limit); over it whole connections are dropped")
	fs.DurationVar(&c.Defaults.DialTimeout, "dial-timeout", c.Defaults.DialTimeout, "connect (and TLS handshake) timeout to a target")
	fs.DurationVar(&c.Defaults.ResponseTimeout, "response-timeout", c.Defaults.ResponseTimeout, "wait this long for a target's response head")
	fs.DurationVar(&c.Defaults.IdleConnTimeout, "idle-conn-timeout", c.Defaults.IdleConnTimeout, "close a kept-alive connection to a target idle this long (keep it below the target's keep-alive timeout)")
	fs.BoolVar(&c.Defaults.InsecureSkipVerify, "insecure-skip-verify", c.Defaults.InsecureSkipVerify, "accept any certificate from an https target (self-signed staging)")
}

// listValue is a repeatable, comma-separated list flag whose first use
// replaces the configured list; later uses append.
type listValue struct {
	add   func(string) error
	reset func()
	first bool
	text  string
}

func newList(add func(string) error, reset func()) *listValue {
	return &listValue{add: add, reset: reset, first: true}
}

func (l *listValue) String() string { return l.text }

func (l *listValue) Set(s string) error {
	if l.first {
		l.reset()
		l.first = false
		l.text = ""
	}
	l.text = strings.TrimPrefix(l.text+","+s, ",")
	for _, part := range strings.Split(s, ",") {
		if err := l.add(strings.TrimSpace(part)); err != nil {
			return err
		}
	}
	return nil
}

// EnvName is the environment variable setting flag name.
func EnvName(flagName string) string {
	return "SHADOWTAP_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// FromArgs builds the configuration from the defaults, the file named by
// -config (or SHADOWTAP_CONFIG), SHADOWTAP_* variables and args, in
// increasing precedence. It returns the path of the file read, if any.
func FromArgs(args []string, getenv func(string) (string, bool), fs *flag.FlagSet) (Config, string, error) {
	c := Default()
	path, _ := getenv(EnvName("config"))
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") && name == "config" {
			if hasValue {
				path = value
			} else if i+1 < len(args) {
				path = args[i+1]
			}
		}
	}
	if path != "" {
		if err := c.LoadFile(path); err != nil {
			return c, path, err
		}
	}
	c.RegisterFlags(fs)
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := getenv(EnvName(f.Name)); ok && envErr == nil && f.Name != "config" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", EnvName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return c, path, envErr
	}
	// Flags given on the command line come last and win: a list the
	// environment set is replaced, not appended to.
	fs.VisitAll(func(f *flag.Flag) {
		if l, ok := f.Value.(*listValue); ok {
			l.first = true
		}
	})
	if err := ParseInterspersed(fs, args); err != nil {
		return c, path, err
	}
	return c, path, nil
}

// ParseInterspersed parses flags wherever they stand among the positional
// arguments, as people type them (`shadowtap replay day.pcap -destination
// URL`), keeping Go's single-dash long flags (`-destination`, never read
// as `-d -e ...`). An explicit "--" ends the flags. Afterwards fs.Args()
// holds the positional arguments in their order.
func ParseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	// Parsing "--" alone sets no flag and leaves fs.Args() the positionals.
	return fs.Parse(append([]string{"--"}, positional...))
}

// flagGroup is a heading of the help output and the flags under it.
type flagGroup struct {
	title string
	names []string
}

// flagGroups sort the configuration's flags for help, by what they are
// about; each command shows the groups that mean something to it.
var flagGroups = map[string]flagGroup{
	"aws": {"the AWS sample handler's flags", []string{"destination", "percentage", "percentage-by",
		"percentage-by-header", "filter-request-port", "keep-host-header"}},
	"live": {"live capture", []string{"listen", "geneve-listen", "vni", "read-buffer", "health-listen", "admin-listen"}},
	"traffic": {"connections and requests", []string{"max-body", "max-flows", "reorder-wait", "idle-timeout",
		"handshake-timeout", "dedup", "shards"}},
	"targets": {"every target", []string{"workers", "queue", "queue-bytes", "rate-limit", "dial-timeout",
		"response-timeout", "idle-conn-timeout", "insecure-skip-verify", "drain-timeout"}},
	"general": {"general", []string{"config", "log-level", "log-format"}},
}

// commandGroups are the flag groups each command shows in its help.
var commandGroups = map[string][]string{
	"shadowtap": {"aws", "live", "traffic", "targets", "general"},
	"record":    {"live", "traffic", "general"},
	"replay":    {"aws", "traffic", "targets", "general"},
	"verify":    {"aws", "traffic", "targets", "general"},
	"inspect":   {"traffic", "general"},
}

// SetUsage makes fs's help show the command's own flags first, then the
// configuration's flag groups that mean something to the command (named
// by fs.Name()), and nothing else.
func SetUsage(fs *flag.FlagSet, synopsis string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n", synopsis)
		grouped := map[string]bool{}
		for _, g := range flagGroups {
			for _, n := range g.names {
				grouped[n] = true
			}
		}
		var own []*flag.Flag
		fs.VisitAll(func(f *flag.Flag) {
			if !grouped[f.Name] {
				own = append(own, f)
			}
		})
		if len(own) > 0 {
			fmt.Fprintf(w, "\n%s flags:\n", fs.Name())
			for _, f := range own {
				printFlag(w, f)
			}
		}
		groups, ok := commandGroups[fs.Name()]
		if !ok {
			groups = commandGroups["shadowtap"]
		}
		for _, key := range groups {
			g := flagGroups[key]
			header := false
			for _, n := range g.names {
				f := fs.Lookup(n)
				if f == nil {
					continue
				}
				if !header {
					fmt.Fprintf(w, "\n%s:\n", g.title)
					header = true
				}
				printFlag(w, f)
			}
		}
	}
}

func printFlag(w io.Writer, f *flag.Flag) {
	name, usage := flag.UnquoteUsage(f)
	line := "  -" + f.Name
	if name != "" {
		line += " " + name
	}
	fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
	if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "0s" {
		fmt.Fprintf(w, " (default %s)", d)
	}
	fmt.Fprintln(w)
}

// inverse is a boolean flag setting the negation of a field: -correlate
// for Correlate.Off.
type inverse struct{ off *bool }

func (f inverse) String() string {
	if f.off == nil {
		return "true"
	}
	return strconv.FormatBool(!*f.off)
}

func (f inverse) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err == nil {
		*f.off = !v
	}
	return err
}

func (f inverse) IsBoolFlag() bool { return true }
