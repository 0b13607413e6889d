package webauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func hash(t *testing.T, pass string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// With basic_auth_users, a guarded path answers 401 without the
// credentials, or with wrong ones, and serves with them; a reload puts a
// new password in force, and a broken file leaves the old one.
func TestBasicAuth(t *testing.T) {
	dir := t.TempDir()
	p := writeConfig(t, dir, "basic_auth_users:\n  ops: "+hash(t, "s3cret")+"\n")
	g, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	h := g.Protect(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("samples")) }))
	status := func(user, pass string) int {
		r := httptest.NewRequest("GET", "/api/report", nil)
		if user != "" {
			r.SetBasicAuth(user, pass)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if s := status("", ""); s != 401 {
		t.Errorf("no credentials: %d", s)
	}
	if s := status("ops", "wrong"); s != 401 {
		t.Errorf("a wrong password: %d", s)
	}
	if s := status("nobody", "s3cret"); s != 401 {
		t.Errorf("an unknown user: %d", s)
	}
	if s := status("ops", "s3cret"); s != 200 {
		t.Errorf("credentials: %d", s)
	}
	writeConfig(t, dir, "basic_auth_users:\n  ops: "+hash(t, "n3w")+"\n")
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if status("ops", "s3cret") != 401 || status("ops", "n3w") != 200 {
		t.Error("the reload's password not in force")
	}
	writeConfig(t, dir, "basic_auth_users: [oops\n")
	if err := g.Reload(); err == nil || status("ops", "n3w") != 200 {
		t.Errorf("a broken file: %v; the old configuration must stay", err)
	}
	if _, err := Load(writeConfig(t, dir, "no_such_key: 1\n")); err == nil {
		t.Error("an unknown key accepted")
	}
}

// With tls_server_config, the admin server speaks TLS with the
// configuration's certificate.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shadowtap"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	g, err := Load(writeConfig(t, dir, "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g.Protect(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })), TLSConfig: g.TLS()}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	resp, err := c.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("%d %v", resp.StatusCode, resp.TLS)
	}
}
