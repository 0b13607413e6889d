// Package config is shadowtap's configuration: one typed struct with
// documented defaults, read from a YAML file (strictly: an unknown key is an
// error naming its line), from environment variables and from flags, then
// checked as a whole by Validate.
//
// Precedence, highest first: command-line flags, SHADOWTAP_* environment
// variables, the file given with -config, the defaults. Per-target settings
// live only in the file; the AWS sample's flags (-destination, -percentage,
// -percentage-by, -percentage-by-header, -keep-host-header) set the defaults
// of every target, and -destination adds a target named "default".
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"gopkg.in/yaml.v3"
)

// Config is every setting. Start from Default.
type Config struct {
	Listen       string   `yaml:"listen"`        // UDP address receiving VXLAN
	GeneveListen string   `yaml:"geneve_listen"` // UDP address receiving Geneve (GWLB appliance); "" disables
	VNIs         []uint32 `yaml:"vnis"`          // accepted VNIs; empty: any
	Ports        []uint16 `yaml:"ports"`         // server ports whose requests are replayed
	HealthListen string   `yaml:"health_listen"` // TCP health-check address; "" disables
	AdminListen  string   `yaml:"admin_listen"`  // /healthz and /metrics; "" disables
	// WebConfig is the admin server's TLS and basic auth, in the
	// exporter-toolkit's web configuration format: production's data
	// (/report, /api/report, /api/state) needs its credentials; /healthz
	// never does, /metrics when ProtectMetrics.
	WebConfig      string `yaml:"web_config"`
	ProtectMetrics bool   `yaml:"protect_metrics"`
	ReadBuffer     int    `yaml:"read_buffer"` // UDP receive buffer, bytes
	MaxBody        int64  `yaml:"max_body"`    // larger request bodies are skipped
	MaxFlows       int    `yaml:"max_flows"`   // TCP connections tracked at once (over all shards)
	// Shards is how many engines share the VXLAN traffic, each with its
	// own socket, reader goroutine and flows; the kernel steers both
	// directions of a connection to the same one. 0 (the default): one
	// per CPU the process may use (ShardCount).
	Shards       int           `yaml:"shards"`
	ReorderWait  time.Duration `yaml:"reorder_wait"`  // wait for a missing segment before a gap
	IdleTimeout  time.Duration `yaml:"idle_timeout"`  // forget an idle connection
	DrainTimeout time.Duration `yaml:"drain_timeout"` // on SIGTERM, finish queued replays
	// HandshakeTimeout forgets sooner a connection that has not carried a
	// payload byte (a handshake, a half-open SYN): default 5s, at most
	// idle_timeout. When max_flows are tracked, such connections are the
	// first to make room for a new one, then the least recently active.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// ExtraMethods are request methods accepted besides the standard ones
	// (httpstream.KnownMethods). Requests with any other method are not
	// replayed: parsers in front of a test environment refuse them.
	ExtraMethods []string `yaml:"extra_methods"`
	// Dedup merges the two copies of a connection mirrored from both ends
	// (two sessions, two outer sources): flows are keyed by the inner
	// 5-tuple alone, so each request is replayed once.
	Dedup     bool   `yaml:"dedup"`
	LogLevel  string `yaml:"log_level"`  // debug, info, warn, error
	LogFormat string `yaml:"log_format"` // text, json

	Defaults    Defaults `yaml:"defaults"`    // for every target
	Destination string   `yaml:"destination"` // adds a target named "default"
	Targets     []Target `yaml:"targets"`
	Compare     Compare  `yaml:"compare"` // compare responses; off unless a candidate is named
	// Correlate is the fleet's: where the handlers share what their
	// targets' correlation learned (defaults.correlate is each target's).
	Correlate Fleet `yaml:"correlate"`
	// Recordings are the keys of encrypted recordings. The commands set
	// them from their flags (record -encrypt-to, -identity FILE), never
	// from the file or the environment: a private key stays in its own
	// file, and the configuration names none.
	Recordings RecordingKeys `yaml:"-"`
}

// RecordingKeys encrypt the recordings written and decrypt those read
// (age, filippo.io/age).
type RecordingKeys struct {
	EncryptTo  []age.Recipient // every file written is encrypted to all of them; none: written in clear
	Identities []age.Identity  // any one of them that was a recipient decrypts a recording read
}

// Fleet says where a fleet of handlers shares its correlation pairs.
type Fleet struct {
	// Store: "memory" (or empty: each handler alone), or redis://,
	// rediss:// (TLS), valkey://, valkeys:// with user, password and
	// database as Redis URLs take them.
	Store string `yaml:"store"`
	// Namespace separates deployments sharing one store; every handler of
	// one deployment has the same. Default "default".
	Namespace string `yaml:"namespace"`
}

// Shared reports whether the handlers share their pairs through a store.
func (f Fleet) Shared() bool { return f.Store != "" && f.Store != "memory" }

// SecretEnv names the variable holding the fleet's secret: it keys the
// hashes under which the store holds production's values and seals the
// targets' values. Every handler of a fleet has the same.
const SecretEnv = "SHADOWTAP_CORRELATE_KEY"

// Secret is the fleet's secret, from SecretEnv; without it, one derived
// from the namespace (a warning says so: anyone who reads the store and
// knows the namespace can then test guesses of short values).
func (f Fleet) Secret() []byte {
	if k := os.Getenv(SecretEnv); k != "" {
		return []byte(k)
	}
	return []byte("shadowtap namespace " + f.Namespace)
}

// StoreSchemes are the schemes a correlation store may have.
var StoreSchemes = []string{"redis", "rediss", "valkey", "valkeys"}

// CheckStore reports whether s names a store (see Fleet.Store).
func CheckStore(s string) error {
	if s == "" || s == "memory" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("correlate.store: %w", err)
	}
	if !slices.Contains(StoreSchemes, u.Scheme) {
		return fmt.Errorf("correlate.store %q: unknown scheme %q (memory, redis://, rediss://, valkey://, valkeys://)", s, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("correlate.store %q: no host", s)
	}
	return nil
}

// Compare configures the comparison of responses: the candidate target
// against production's mirrored answers and, with a baseline target (the
// old version on the same test data), against the baseline.
type Compare struct {
	Candidate         string        `yaml:"candidate"`          // target running the new code
	Baseline          string        `yaml:"baseline"`           // target running the old code, optional
	Secondary         string        `yaml:"secondary"`          // a second baseline, for noise, optional
	AgainstProduction *bool         `yaml:"against_production"` // default true
	IgnoreHeaders     []string      `yaml:"ignore_headers"`     // added to the default list
	Ignore            []IgnoreRule  `yaml:"ignore"`             // fields to leave out, by endpoint
	Always            []IgnoreRule  `yaml:"always"`             // fields never explained as noise, by endpoint
	Endpoints         []string      `yaml:"endpoints"`          // path templates, e.g. /users/{name}/orders
	MaxEndpoints      int           `yaml:"max_endpoints"`
	MaxBody           int64         `yaml:"max_body"` // bytes of a body compared
	Log               string        `yaml:"log"`      // JSON Lines file of differences; "" for none
	LogMaxBody        int           `yaml:"log_max_body"`
	Redact            []string      `yaml:"redact"` // headers never written to the log or page
	Mask              Mask          `yaml:"mask"`   // personal data masked in what is shown
	MinSamples        int           `yaml:"min_samples"`
	Threshold         float64       `yaml:"threshold"`   // minimum difference rate of a regression (it must also be significantly above noise)
	Confidence        float64       `yaml:"confidence"`  // one-sided confidence of "above noise"
	LogSamples        int           `yaml:"log_samples"` // difference-log exchanges per endpoint, comparison and finding
	Wait              time.Duration `yaml:"wait"`        // for all answers of an exchange
	// Writes compares what the targets write to their databases, by
	// target name: the candidate's and the baseline's (and the
	// secondary's, for noise).
	Writes map[string]Writes `yaml:"writes"`
}

// Mask names what is masked in the samples shown (report, JSON, JUnit,
// the difference log), besides what the detectors find: see package mask.
type Mask struct {
	Headers []string `yaml:"headers"`
	Cookies []string `yaml:"cookies"`
	Fields  []string `yaml:"fields"` // body.customer.address, write.insert.public.users[*].phone, or a bare name: email
	// Detect: the detectors (email, card, jwt, iban, bearer: all when
	// absent; [none] for none).
	Detect []string `yaml:"detect"`
}

// Writes is where a target's database writes are read from.
type Writes struct {
	Postgres *PostgresWrites `yaml:"postgres"`
	Debezium *DebeziumWrites `yaml:"debezium"`
	// MarkersOnly attributes only the transactions that carry a request's
	// marker (a fleet's handlers replaying to one database).
	MarkersOnly bool          `yaml:"markers_only"`
	Wait        time.Duration `yaml:"wait"` // for a request's writes after its answer; 0: 5s
}

// PostgresWrites reads a PostgreSQL database's logical replication
// stream. The connection string (with its password) comes from the
// environment or a file, never from the configuration or the command
// line.
type PostgresWrites struct {
	DSNEnv      string `yaml:"dsn_env"`     // an environment variable holding libpq's connection string
	DSNFile     string `yaml:"dsn_file"`    // or a file holding it
	Publication string `yaml:"publication"` // the tables compared; default "shadowtap"
	Slot        string `yaml:"slot"`        // the temporary slot's name; default shadowtap_<target>
	MaxLag      int64  `yaml:"max_lag"`     // bytes of WAL not yet read before the stream is stopped; 0: 64 MiB
}

// DebeziumWrites reads the Kafka topics of a Debezium connector with
// transaction metadata (provide.transaction.metadata=true). Barriers are
// written to a PostgreSQL database the connector captures (its messages
// on), through the connection string in barrier_dsn_env or _file.
type DebeziumWrites struct {
	Brokers        []string `yaml:"brokers"`
	Prefix         string   `yaml:"prefix"` // the connector's topic.prefix
	BarrierDSNEnv  string   `yaml:"barrier_dsn_env"`
	BarrierDSNFile string   `yaml:"barrier_dsn_file"`
}

// DSN reads the connection string from where the configuration says.
func (p *PostgresWrites) DSN() (string, error) { return readDSN("postgres.dsn", p.DSNEnv, p.DSNFile) }

// BarrierDSN reads the barriers' connection string.
func (d *DebeziumWrites) BarrierDSN() (string, error) {
	return readDSN("debezium.barrier_dsn", d.BarrierDSNEnv, d.BarrierDSNFile)
}

func readDSN(key, env, file string) (string, error) {
	switch {
	case env != "":
		v := os.Getenv(env)
		if v == "" {
			return "", fmt.Errorf("%s_env: %s is not set", key, env)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", key, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", fmt.Errorf("%s_env or %s_file is needed", key, key)
}

// IgnoreRule leaves a field out of the comparison; "*" matches any run.
type IgnoreRule struct {
	Endpoint string `yaml:"endpoint"` // e.g. "GET /api/*"
	Field    string `yaml:"field"`    // e.g. "body.items[*].updatedAt", "header.X-Build"
}

// Defaults apply to every target that does not set its own.
type Defaults struct {
	Sampling           Sampling      `yaml:"sampling"`
	KeepHostHeader     bool          `yaml:"keep_host_header"`
	InsecureSkipVerify bool          `yaml:"insecure_skip_verify"`
	Workers            int           `yaml:"workers"`     // concurrent replays per target
	Queue              int           `yaml:"queue"`       // requests waiting per target
	QueueBytes         int64         `yaml:"queue_bytes"` // bytes of the requests waiting per target
	RateLimit          float64       `yaml:"rate_limit"`  // requests per second per target; 0: none
	DialTimeout        time.Duration `yaml:"dial_timeout"`
	ResponseTimeout    time.Duration `yaml:"response_timeout"`
	// IdleConnTimeout retires a kept-alive connection to a target idle
	// this long; keep it below the target's own keep-alive timeout (Node:
	// 5 s), so that a request never crosses the server's close on the wire.
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout"`
	Marker          Marker        `yaml:"marker"`
	Correlate       Correlate     `yaml:"correlate"`
}

// Correlate keeps each target in step with production: the values it
// created for production's (session cookies, tokens, ids, order numbers)
// are learned from the two answers to one request and translated in later
// requests. On unless Off.
type Correlate struct {
	Off      bool          `yaml:"off"`
	Wait     time.Duration `yaml:"wait"`      // a request naming a value being learned waits this long at most; 0: 2s
	MaxPairs int           `yaml:"max_pairs"` // per target; 0: 100000
	TTL      time.Duration `yaml:"ttl"`       // a pair unused this long is forgotten; 0: 30m
	// Exclude: cookies, headers, JSON keys, query and form names never
	// learned nor translated (a tracking cookie both sides must see as
	// production's, a client-made request id).
	Exclude []string `yaml:"exclude"`
}

// Target is one test environment and what it receives.
type Target struct {
	Name               string        `yaml:"name"`
	Destination        string        `yaml:"destination"` // http(s)://host[:port][/prefix]
	KeepHostHeader     *bool         `yaml:"keep_host_header"`
	InsecureSkipVerify *bool         `yaml:"insecure_skip_verify"`
	Workers            int           `yaml:"workers"`
	Queue              int           `yaml:"queue"`
	QueueBytes         int64         `yaml:"queue_bytes"`
	RateLimit          *float64      `yaml:"rate_limit"`
	DialTimeout        time.Duration `yaml:"dial_timeout"`
	ResponseTimeout    time.Duration `yaml:"response_timeout"`
	IdleConnTimeout    time.Duration `yaml:"idle_conn_timeout"`
	Sampling           *Sampling     `yaml:"sampling"`
	Filters            Filters       `yaml:"filters"`
	Rewrite            Rewrite       `yaml:"rewrite"`
	Credentials        Credentials   `yaml:"credentials"`
	Marker             *Marker       `yaml:"marker"`
}

// Sampling selects a share of requests, consistently per key.
type Sampling struct {
	Percentage float64 `yaml:"percentage"` // 0-100
	// By is what a decision is keyed on: "" (each request at random),
	// header, cookie, query (a query parameter), remoteaddr (the TCP peer)
	// or xff (the client address in X-Forwarded-For: the real user behind a
	// load balancer).
	By     string  `yaml:"by"`
	Key    string  `yaml:"key"`    // header, cookie or query parameter name
	Routes []Route `yaml:"routes"` // per-route percentages; the first match wins
}

// Route gives requests whose path matches Path their own percentage.
type Route struct {
	Path       string  `yaml:"path"` // regular expression on the path
	Percentage float64 `yaml:"percentage"`
}

// Filters decide which requests reach a target; all that are set must pass.
type Filters struct {
	Methods         []string          `yaml:"methods"`           // allowed; empty: all
	DenyMethods     []string          `yaml:"deny_methods"`      // refused
	SafeMethodsOnly bool              `yaml:"safe_methods_only"` // only GET, HEAD, OPTIONS
	Path            string            `yaml:"path"`              // regexp the path must match
	PathNot         string            `yaml:"path_not"`          // regexp the path must not match
	Host            string            `yaml:"host"`              // regexp the Host must match
	HeadersPresent  []string          `yaml:"headers_present"`   // headers that must be there
	HeadersMatch    map[string]string `yaml:"headers_match"`     // header -> regexp its value must match
	MaxSize         int64             `yaml:"max_size"`          // largest request (head and body), bytes; 0: any
}

// Rewrite changes requests for a target, beyond the core's permitted edits.
type Rewrite struct {
	SetHeaders    map[string]string `yaml:"set_headers"`    // replace (or add) these headers
	AddHeaders    map[string]string `yaml:"add_headers"`    // add these header lines
	RemoveHeaders []string          `yaml:"remove_headers"` // remove these headers
	Path          *PathRewrite      `yaml:"path"`           // rewrite the request-target
	Host          string            `yaml:"host"`           // a fixed Host header
}

// PathRewrite replaces the request-target (path and query) matching Match
// with Replace, in which $1 ... name the groups.
type PathRewrite struct {
	Match   string `yaml:"match"`
	Replace string `yaml:"replace"`
}

// Credentials says what happens to production's credentials. By default
// they reach the target unchanged.
type Credentials struct {
	Remove  []string          `yaml:"remove"`  // headers removed, e.g. Authorization, Cookie
	Replace map[string]string `yaml:"replace"` // headers whose value is replaced where present
}

// Marker is a header added to every replayed request so the test
// environment can tell replayed traffic; its value is the target's name.
type Marker struct {
	Enabled *bool  `yaml:"enabled"`
	Name    string `yaml:"name"`
}

// DefaultMarkerName is the marker header's name unless configured.
const DefaultMarkerName = "X-Shadowtap-Replay"

// Default returns the documented defaults.
func Default() Config {
	return Config{
		Listen:       ":4789",
		Ports:        []uint16{80},
		HealthListen: ":4789",
		AdminListen:  ":4790",
		ReadBuffer:   64 << 20,
		MaxBody:      10 << 20,
		MaxFlows:     100_000,
		ReorderWait:  200 * time.Millisecond,
		IdleTimeout:  2 * time.Minute,
		DrainTimeout: 10 * time.Second,
		LogLevel:     "info",
		LogFormat:    "text",
		// Connections that carried no data go first, and sooner.
		HandshakeTimeout: 5 * time.Second,
		Defaults: Defaults{
			Sampling:        Sampling{Percentage: 100},
			Workers:         64,
			Queue:           10_000,
			QueueBytes:      256 << 20,
			DialTimeout:     3 * time.Second,
			ResponseTimeout: 10 * time.Second,
			IdleConnTimeout: 4 * time.Second,
			Marker:          Marker{Name: DefaultMarkerName},
		},
		Compare: Compare{
			MaxEndpoints: 500, MaxBody: 1 << 20, LogMaxBody: 16 << 10, MinSamples: 5, Threshold: 0.01, Confidence: 0.99, LogSamples: 5,
			Wait:   30 * time.Second,
			Redact: []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"},
		},
	}
}

// Comparing reports whether responses are compared.
func (c *Config) Comparing() bool { return c.Compare.Candidate != "" }

// AgainstProduction reports whether the candidate is compared with
// production's mirrored answers.
func (c *Compare) VsProduction() bool { return c.AgainstProduction == nil || *c.AgainstProduction }

// LoadFile decodes the YAML file at path over c. Unknown keys are errors.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return c.Load(b, path)
}

// Load decodes YAML over c; name is used in errors.
func (c *Config) Load(b []byte, name string) error {
	// A null key ("~:") names no setting, yet the strict decoder passes
	// over it: refuse it as any other unknown key (found by FuzzLoad).
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) == nil {
		if line := nullKey(&doc); line > 0 {
			return fmt.Errorf("config %s: line %d: a null key names no setting", name, line)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty document decodes to io.EOF: it changes nothing.
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", name, err)
	}
	// A second document would be ignored, typos and all: refuse it.
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: more than one YAML document", name)
	}
	if err := CheckStore(c.Correlate.Store); err != nil {
		return fmt.Errorf("config %s: line %d: %w", name, lineOf(&doc, "correlate", "store"), err)
	}
	return nil
}

// lineOf is the line of the value at path (mapping keys) in doc, or 0.
func lineOf(n *yaml.Node, path ...string) int {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return 0
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return 0
		}
		n = next
	}
	return n.Line
}

// nullKey returns the line of the first mapping key in n that is null, or 0.
func nullKey(n *yaml.Node) int {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Tag == "!!null" {
				return max(k.Line, 1)
			}
		}
	}
	for _, c := range n.Content {
		if line := nullKey(c); line > 0 {
			return line
		}
	}
	return 0
}

// ShardCount is the number of engines: Shards, or one per CPU the process
// may use when Shards is 0.
func (c Config) ShardCount() int {
	if c.Shards > 0 {
		return c.Shards
	}
	return min(max(1, runtime.GOMAXPROCS(0)), 256) // the most -shards takes
}
