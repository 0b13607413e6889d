// Package webauth guards the admin server, which serves production's
// data (the report's samples, /api/state), with a web configuration in
// the Prometheus ecosystem's format (github.com/prometheus/exporter-toolkit:
// tls_server_config with cert, key and client CA; basic_auth_users with
// bcrypt hashes), read and checked with that library. The library wraps
// a whole server; here each path chooses: /healthz stays open for the
// load balancer, /metrics is guarded only when asked.
package webauth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
)

// Guard is one web configuration in force; Reload reads it again (the
// handler's SIGHUP).
type Guard struct {
	path string

	mu    sync.RWMutex
	users map[string]string // name → bcrypt hash
	tls   *tls.Config       // nil: plain HTTP
	seen  map[string]bool   // name+password pairs already checked good: bcrypt is slow on purpose
}

// Load reads and checks the web configuration at path.
func Load(path string) (*Guard, error) {
	g := &Guard{path: path}
	return g, g.Reload()
}

// Reload reads the configuration again; a bad one leaves the old in force.
func (g *Guard) Reload() error {
	if err := web.Validate(g.path); err != nil {
		return fmt.Errorf("web config %s: %w", g.path, err)
	}
	b, err := os.ReadFile(g.path)
	if err != nil {
		return fmt.Errorf("web config: %w", err)
	}
	c := web.Config{TLSConfig: web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}}
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return fmt.Errorf("web config %s: %w", g.path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(g.path))
	var tc *tls.Config
	if c.TLSConfig.TLSCertPath != "" || c.TLSConfig.TLSCert != "" {
		if tc, err = web.ConfigToTLSConfig(&c.TLSConfig); err != nil {
			return fmt.Errorf("web config %s: %w", g.path, err)
		}
	}
	users := map[string]string{}
	for name, hash := range c.Users {
		users[name] = string(hash)
	}
	g.mu.Lock()
	g.users, g.tls, g.seen = users, tc, map[string]bool{}
	g.mu.Unlock()
	return nil
}

// TLS is the server's TLS configuration, nil for plain HTTP; its
// certificates are those of the configuration in force at each
// connection.
func (g *Guard) TLS() *tls.Config {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.tls == nil {
		return nil
	}
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		g.mu.RLock()
		defer g.mu.RUnlock()
		if g.tls == nil {
			return nil, errors.New("webauth: TLS turned off by a reload: restart to serve plain HTTP")
		}
		return g.tls.Clone(), nil
	}}
}

// Protect serves h to those the configuration names (basic auth), and
// everyone when it names no user.
func (g *Guard) Protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.allowed(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="shadowtap"`)
			http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// notAUser's hash is compared for an unknown name, so that a name's
// existence does not show in the time an answer takes.
var notAUser, _ = bcrypt.GenerateFromPassword([]byte("not a user"), bcrypt.MinCost)

func (g *Guard) allowed(r *http.Request) bool {
	g.mu.RLock()
	users := g.users
	g.mu.RUnlock()
	if len(users) == 0 {
		return true
	}
	name, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	key := name + "\x00" + pass
	g.mu.RLock()
	good := g.seen[key]
	g.mu.RUnlock()
	if good {
		return true
	}
	hash, known := users[name]
	if !known {
		hash = string(notAUser)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) != nil || !known {
		return false
	}
	g.mu.Lock()
	if len(g.seen) < 1024 {
		g.seen[key] = true
	}
	g.mu.Unlock()
	return true
}
