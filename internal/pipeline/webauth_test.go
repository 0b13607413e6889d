package pipeline

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/testkit/rawserver"
)

// With a web configuration, the admin server's production data needs its
// credentials; /healthz never does, and /metrics only when asked.
func TestAdminNeedsCredentials(t *testing.T) {
	cand, _ := rawserver.Listen("127.0.0.1:0")
	defer cand.Close()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	web := filepath.Join(t.TempDir(), "web.yml")
	os.WriteFile(web, []byte("basic_auth_users:\n  ops: "+string(hash)+"\n"), 0o600)
	cfg := config.Default()
	cfg.Targets = []config.Target{{Name: "candidate", Destination: "http://" + cand.Addr()}}
	cfg.Compare.Candidate = "candidate"
	cfg.WebConfig = web
	h, stop := start(t, cfg)
	defer stop()
	status := func(path string, auth bool) int {
		req, _ := http.NewRequest("GET", "http://"+h.AdminAddr()+path, nil)
		if auth {
			req.SetBasicAuth("ops", "s3cret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, p := range []string{"/report", "/api/report", "/api/state"} {
		if s := status(p, false); s != 401 {
			t.Errorf("%s without credentials: %d", p, s)
		}
		if s := status(p, true); s != 200 {
			t.Errorf("%s with credentials: %d", p, s)
		}
	}
	if status("/healthz", false) != 200 || status("/metrics", false) != 200 {
		t.Error("/healthz or /metrics needs credentials it was not asked to")
	}
}
