package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/shadowtap/shadowtap/internal/mask"
	"github.com/shadowtap/shadowtap/internal/replay"
)

// Resolved is a target with every default applied.
type Resolved struct {
	Name               string
	Destination        string
	KeepHostHeader     bool
	InsecureSkipVerify bool
	Workers, Queue     int
	QueueBytes         int64
	RateLimit          float64
	DialTimeout        time.Duration
	ResponseTimeout    time.Duration
	IdleConnTimeout    time.Duration
	Sampling           Sampling
	Filters            Filters
	Rewrite            Rewrite
	Credentials        Credentials
	MarkerName         string // "" when the marker is off
	// Block makes the target wait rather than drop when its queue or rate
	// limit is full: set by `shadowtap replay`, never from a file.
	Block bool
	// KeepBody keeps this many bytes of each response body, for the
	// comparison: set for the targets it compares.
	KeepBody int64
	// Correlate: the translation of the values the target created.
	Correlate Correlate
	// Fleet: where its pairs are shared with the fleet's other handlers.
	Fleet Fleet
	// Writes: where what it writes to its database is read, when the
	// comparison compares it (nil: not).
	Writes *Writes
}

// DefaultTargetName is the target -destination defines.
const DefaultTargetName = "default"

// Resolve returns the targets with defaults applied, "default" first when
// Destination is set.
func (c *Config) Resolve() []Resolved {
	targets := c.Targets
	if c.Destination != "" {
		i := slices.IndexFunc(targets, func(t Target) bool { return t.Name == DefaultTargetName })
		if i >= 0 {
			targets = slices.Clone(targets)
			targets[i].Destination = c.Destination
		} else {
			targets = append([]Target{{Name: DefaultTargetName, Destination: c.Destination}}, targets...)
		}
	}
	out := make([]Resolved, 0, len(targets))
	d := c.Defaults
	for _, t := range targets {
		r := Resolved{
			Name: t.Name, Destination: t.Destination,
			KeepHostHeader: d.KeepHostHeader, InsecureSkipVerify: d.InsecureSkipVerify,
			Workers: or(t.Workers, d.Workers), Queue: or(t.Queue, d.Queue), QueueBytes: or(t.QueueBytes, d.QueueBytes), RateLimit: d.RateLimit,
			DialTimeout: or(t.DialTimeout, d.DialTimeout), ResponseTimeout: or(t.ResponseTimeout, d.ResponseTimeout),
			IdleConnTimeout: or(t.IdleConnTimeout, d.IdleConnTimeout),
			Sampling:        d.Sampling, Filters: t.Filters, Rewrite: t.Rewrite, Credentials: t.Credentials,
			Correlate: d.Correlate, Fleet: c.Correlate,
		}
		if w, ok := c.Compare.Writes[t.Name]; ok && c.Comparing() {
			r.Writes = &w
		}
		if t.KeepHostHeader != nil {
			r.KeepHostHeader = *t.KeepHostHeader
		}
		if t.InsecureSkipVerify != nil {
			r.InsecureSkipVerify = *t.InsecureSkipVerify
		}
		if t.RateLimit != nil {
			r.RateLimit = *t.RateLimit
		}
		if t.Sampling != nil {
			r.Sampling = *t.Sampling
		}
		m := d.Marker
		if t.Marker != nil {
			if t.Marker.Enabled != nil {
				m.Enabled = t.Marker.Enabled
			}
			if t.Marker.Name != "" {
				m.Name = t.Marker.Name
			}
		}
		if m.Enabled == nil || *m.Enabled {
			r.MarkerName = or(m.Name, DefaultMarkerName)
		}
		out = append(out, r)
	}
	return out
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// SafeMethods are the methods safe_methods_only allows: they do not change
// state on a well-behaved server.
var SafeMethods = []string{"GET", "HEAD", "OPTIONS"}

// UnsafeMethods are the methods the start-up warning names.
var UnsafeMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

var tokenRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// Validate checks the whole configuration and reports every problem.
func (c *Config) Validate() error {
	var webErr error
	if c.WebConfig != "" {
		if err := web.Validate(c.WebConfig); err != nil {
			webErr = fmt.Errorf("web_config %s: %w", c.WebConfig, err)
		}
	}
	return errors.Join(c.ValidateCapture(), c.validateTargets(), CheckStore(c.Correlate.Store), webErr)
}

// ValidateCapture checks the settings of capture alone (no targets), as
// record and inspect need.
func (c *Config) ValidateCapture() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Listen == "" {
		add("listen: required")
	}
	if len(c.Ports) == 0 {
		add("ports: at least one port")
	}
	for _, p := range c.Ports {
		if p == 0 {
			add("ports: 0 is not a port")
		}
	}
	for _, v := range c.VNIs {
		if v >= 1<<24 {
			add("vnis: %d is not a VNI (0-16777215)", v)
		}
	}
	for _, v := range []struct {
		name string
		n    int64
	}{{"read_buffer", int64(c.ReadBuffer)}, {"max_body", c.MaxBody}, {"max_flows", int64(c.MaxFlows)},
		{"reorder_wait", int64(c.ReorderWait)}, {"idle_timeout", int64(c.IdleTimeout)}, {"handshake_timeout", int64(c.HandshakeTimeout)},
		{"drain_timeout", int64(c.DrainTimeout)}} {
		if v.n <= 0 {
			add("%s: must be positive", v.name)
		}
	}
	if c.Shards < 0 || c.Shards > 256 {
		add("shards: %d is not between 0 (one per CPU) and 256", c.Shards)
	}
	if c.ReorderWait >= c.IdleTimeout {
		add("reorder_wait: must be shorter than idle_timeout")
	}
	if c.HandshakeTimeout > c.IdleTimeout {
		add("handshake_timeout: must not be longer than idle_timeout")
	}
	for _, m := range c.ExtraMethods {
		if !isMethodToken(m) {
			add("extra_methods: %q is not an upper-case method name", m)
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		add("log_level: %q is not debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("log_format: %q is not text or json", c.LogFormat)
	}
	return errors.Join(errs...)
}

func (c *Config) validateTargets() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := validateSampling(c.Defaults.Sampling); err != nil {
		add("defaults.sampling: %v", err)
	}
	targets := c.Resolve()
	if len(targets) == 0 {
		add("no target: set -destination (or destination:) or add targets")
	}
	errs = append(errs, c.validateCompare(targets)...)
	seen := map[string]bool{}
	for i, t := range targets {
		where := fmt.Sprintf("target %q", t.Name)
		if t.Name == "" {
			where = fmt.Sprintf("targets[%d]", i)
			add("%s: name is required", where)
		} else if seen[t.Name] {
			add("%s: name used twice", where)
		}
		seen[t.Name] = true
		for _, err := range validateTarget(t) {
			add("%s: %v", where, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Config) validateCompare(targets []Resolved) []error {
	cm := c.Compare
	if cm.Candidate == "" {
		if cm.Baseline != "" || cm.Secondary != "" {
			return []error{errors.New("compare: baseline and secondary need a candidate")}
		}
		return nil
	}
	var errs []error
	names := map[string]bool{}
	for _, t := range targets {
		names[t.Name] = true
	}
	for _, n := range []struct{ role, name string }{{"candidate", cm.Candidate}, {"baseline", cm.Baseline}, {"secondary", cm.Secondary}} {
		if n.name != "" && !names[n.name] {
			errs = append(errs, fmt.Errorf("compare.%s: no target named %q", n.role, n.name))
		}
	}
	if cm.Secondary != "" && cm.Baseline == "" {
		errs = append(errs, errors.New("compare.secondary: needs a baseline"))
	}
	if cm.Baseline == "" && !cm.VsProduction() {
		errs = append(errs, errors.New("compare: with against_production off, a baseline is needed"))
	}
	// !(x > lo && x < hi) rather than x <= lo || x >= hi: NaN fails it.
	if !(cm.Threshold > 0 && cm.Threshold < 1) {
		errs = append(errs, fmt.Errorf("compare.threshold: %v is not between 0 and 1", cm.Threshold))
	}
	if !(cm.Confidence > 0.5 && cm.Confidence < 1) {
		errs = append(errs, fmt.Errorf("compare.confidence: %v is not between 0.5 and 1", cm.Confidence))
	}
	if cm.LogSamples <= 0 {
		errs = append(errs, fmt.Errorf("compare.log_samples: %d is not positive", cm.LogSamples))
	}
	if cm.MinSamples < 1 || cm.MaxEndpoints < 1 || cm.MaxBody < 1 || cm.Wait <= 0 {
		errs = append(errs, errors.New("compare: min_samples, max_endpoints, max_body and wait must be positive"))
	}
	for _, d := range cm.Mask.Detect {
		if !mask.Known(d) {
			errs = append(errs, fmt.Errorf("compare.mask.detect: %q: want email, card, jwt, iban, bearer or none", d))
		}
	}
	return append(errs, cm.validateWrites()...)
}

// validateWrites checks compare.writes: only the compared targets, the
// candidate's and the baseline's together, one source each.
func (cm *Compare) validateWrites() []error {
	if len(cm.Writes) == 0 {
		return nil
	}
	var errs []error
	_, cand := cm.Writes[cm.Candidate]
	_, base := cm.Writes[cm.Baseline]
	if !cand || cm.Baseline == "" || !base {
		errs = append(errs, errors.New("compare.writes: the candidate's and the baseline's are compared with each other: name both"))
	}
	for _, name := range slices.Sorted(maps.Keys(cm.Writes)) {
		w := cm.Writes[name]
		where := "compare.writes." + name
		if name != cm.Candidate && name != cm.Baseline && name != cm.Secondary {
			errs = append(errs, fmt.Errorf("%s: not a compared target (candidate, baseline or secondary): its database is never read", where))
		}
		if (w.Postgres == nil) == (w.Debezium == nil) {
			errs = append(errs, fmt.Errorf("%s: one of postgres and debezium is needed", where))
			continue
		}
		if d := w.Debezium; d != nil {
			if len(d.Brokers) == 0 || d.Prefix == "" {
				errs = append(errs, fmt.Errorf("%s.debezium: brokers and prefix are needed", where))
			}
			if (d.BarrierDSNEnv == "") == (d.BarrierDSNFile == "") {
				errs = append(errs, fmt.Errorf("%s.debezium: one of barrier_dsn_env and barrier_dsn_file", where))
			}
			continue
		}
		p := w.Postgres
		if (p.DSNEnv == "") == (p.DSNFile == "") {
			errs = append(errs, fmt.Errorf("%s.postgres: one of dsn_env and dsn_file (the connection string never goes in the configuration)", where))
		}
		for _, n := range []struct{ key, v string }{{"publication", p.Publication}, {"slot", p.Slot}} {
			if n.v != "" && !pgName.MatchString(n.v) {
				errs = append(errs, fmt.Errorf("%s.postgres.%s: %q is not a lower-case name", where, n.key, n.v))
			}
		}
		if p.MaxLag < 0 || w.Wait < 0 {
			errs = append(errs, fmt.Errorf("%s: max_lag and wait must not be negative", where))
		}
	}
	return errs
}

// pgName is a PostgreSQL name shadowtap creates or reads unquoted.
var pgName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateDestination checks an http(s)://host[:port][/prefix] URL, by
// the rule the replayer parses it with.
func ValidateDestination(s string) error {
	_, err := replay.ParseDestination(s)
	return err
}

func validateTarget(t Resolved) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if t.Destination == "" {
		add("destination: required")
	} else if err := ValidateDestination(t.Destination); err != nil {
		add("%v", err) // it names the destination
	}
	if t.Workers <= 0 {
		add("workers: must be positive")
	}
	if t.QueueBytes <= 0 {
		add("queue_bytes: must be positive")
	}
	if t.Queue <= 0 {
		add("queue: must be positive")
	}
	if !(t.RateLimit >= 0 && !math.IsInf(t.RateLimit, 1)) { // NaN and infinity too
		add("rate_limit: must be a number, not negative")
	}
	if t.DialTimeout <= 0 || t.ResponseTimeout <= 0 || t.IdleConnTimeout <= 0 {
		add("dial_timeout, response_timeout and idle_conn_timeout: must be positive")
	}
	if err := validateSampling(t.Sampling); err != nil {
		add("sampling: %v", err)
	}
	f := t.Filters
	for _, m := range append(slices.Clone(f.Methods), f.DenyMethods...) {
		if !tokenRe.MatchString(m) {
			add("filters: %q is not a method", m)
		}
	}
	if f.SafeMethodsOnly && len(f.Methods) > 0 {
		add("filters: methods and safe_methods_only exclude each other")
	}
	for _, re := range []struct{ name, expr string }{{"filters.path", f.Path}, {"filters.path_not", f.PathNot}, {"filters.host", f.Host}} {
		if _, err := regexp.Compile(re.expr); err != nil {
			add("%s: %v", re.name, err)
		}
	}
	for _, h := range keys(f.HeadersMatch) {
		if _, err := regexp.Compile(f.HeadersMatch[h]); err != nil {
			add("filters.headers_match[%s]: %v", h, err)
		}
	}
	if f.MaxSize < 0 {
		add("filters.max_size: must not be negative")
	}
	if p := t.Rewrite.Path; p != nil {
		if p.Match == "" {
			add("rewrite.path.match: required")
		} else if _, err := regexp.Compile(p.Match); err != nil {
			add("rewrite.path.match: %v", err)
		}
		if p.Replace == "" || !strings.HasPrefix(p.Replace, "/") && !strings.HasPrefix(p.Replace, "$") {
			add("rewrite.path.replace: must give a path starting with / (or a group)")
		}
	}
	headerSets := []struct {
		where  string
		names  []string
		values map[string]string
	}{
		{"rewrite.set_headers", keys(t.Rewrite.SetHeaders), t.Rewrite.SetHeaders},
		{"rewrite.add_headers", keys(t.Rewrite.AddHeaders), t.Rewrite.AddHeaders},
		{"rewrite.remove_headers", t.Rewrite.RemoveHeaders, nil},
		{"credentials.remove", t.Credentials.Remove, nil},
		{"credentials.replace", keys(t.Credentials.Replace), t.Credentials.Replace},
	}
	for _, set := range headerSets {
		for _, h := range set.names {
			if !tokenRe.MatchString(h) {
				add("%s: %q is not a header name", set.where, h)
			}
			if strings.EqualFold(h, "Host") || strings.EqualFold(h, "Content-Length") || strings.EqualFold(h, "Transfer-Encoding") {
				add("%s: %s cannot be changed here (Host: use rewrite.host)", set.where, h)
			}
			if strings.ContainsAny(set.values[h], "\r\n\x00") {
				add("%s[%s]: value must be one line", set.where, h)
			}
		}
	}
	if t.MarkerName != "" && !tokenRe.MatchString(t.MarkerName) {
		add("marker.name: %q is not a header name", t.MarkerName)
	}
	return errs
}

func validateSampling(s Sampling) error {
	var errs []error
	if s.Percentage < 0 || s.Percentage > 100 || s.Percentage != s.Percentage {
		errs = append(errs, fmt.Errorf("percentage %v is not between 0 and 100", s.Percentage))
	}
	switch s.By {
	case "", "remoteaddr", "xff":
	case "header", "cookie", "query":
		if s.Key == "" {
			errs = append(errs, fmt.Errorf("by %s needs key (the %s name)", s.By, s.By))
		}
	default:
		errs = append(errs, fmt.Errorf("by %q is not one of \"\", header, cookie, query, remoteaddr, xff", s.By))
	}
	for i, r := range s.Routes {
		if _, err := regexp.Compile(r.Path); err != nil || r.Path == "" {
			errs = append(errs, fmt.Errorf("routes[%d].path: %q is not a regular expression", i, r.Path))
		}
		if !(r.Percentage >= 0 && r.Percentage <= 100) { // NaN too
			errs = append(errs, fmt.Errorf("routes[%d].percentage %v is not between 0 and 100", i, r.Percentage))
		}
	}
	return errors.Join(errs...)
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Warnings returns what a careful operator should know about a valid
// configuration: targets that receive state-changing methods, and targets
// that receive production's credentials.
func (c *Config) Warnings() []string {
	var out []string
	for _, t := range c.Resolve() {
		if m := t.unsafeMethods(); len(m) > 0 {
			out = append(out, fmt.Sprintf("target %q receives %s requests: side effects (payments, orders, e-mails) run again in the test environment unless it is isolated from real providers; set filters.safe_methods_only: true to replay only GET, HEAD and OPTIONS",
				t.Name, strings.Join(m, ", ")))
		}
		if kept := t.keptCredentials(); len(kept) > 0 {
			out = append(out, fmt.Sprintf("target %q receives production's %s headers unchanged; remove or replace them under credentials",
				t.Name, strings.Join(kept, " and ")))
		}
	}
	if c.Correlate.Shared() && os.Getenv(SecretEnv) == "" {
		out = append(out, "correlate.store is set without "+SecretEnv+": the store's keys are hashes keyed by the namespace alone; give every handler of the fleet the same secret in "+SecretEnv)
	}
	return out
}

// unsafeMethods lists the unsafe methods t's filters let through.
func (t Resolved) unsafeMethods() []string {
	f := t.Filters
	if f.SafeMethodsOnly {
		return nil
	}
	var out []string
	for _, m := range UnsafeMethods {
		allowed := len(f.Methods) == 0 || slices.ContainsFunc(f.Methods, func(x string) bool { return strings.EqualFold(x, m) })
		denied := slices.ContainsFunc(f.DenyMethods, func(x string) bool { return strings.EqualFold(x, m) })
		if allowed && !denied {
			out = append(out, m)
		}
	}
	return out
}

func (t Resolved) keptCredentials() []string {
	var out []string
	for _, h := range []string{"Authorization", "Cookie"} {
		handled := slices.ContainsFunc(append(slices.Clone(t.Credentials.Remove), t.Rewrite.RemoveHeaders...), func(x string) bool { return strings.EqualFold(x, h) })
		for k := range t.Credentials.Replace {
			handled = handled || strings.EqualFold(k, h)
		}
		if !handled {
			out = append(out, h)
		}
	}
	return out
}

// isMethodToken reports whether m can be a method: a token (RFC 9110
// §5.6.2) in upper case, as llhttp matches methods case-sensitively.
func isMethodToken(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}
