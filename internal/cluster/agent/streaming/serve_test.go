package streaming

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth/berth/internal/cluster/pki"
)

// TestServeClientIdentity checks Serve lets in only the API server's
// kubelet-client certificate from the cluster CA.
func TestServeClientIdentity(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, req pki.CertRequest) tls.Certificate {
		c, k, err := ca.Issue(req)
		if err != nil {
			t.Fatal(err)
		}
		write(name+".crt", c)
		write(name+".key", k)
		kp, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	write("ca.crt", ca.CertPEM)
	issue("node", pki.CertRequest{CommonName: "system:node:n1", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	good := issue("apiserver", pki.CertRequest{CommonName: pki.KubeletClientCN, Organization: []string{pki.KubeletClientOrg}, Client: true})
	admin := issue("admin", pki.CertRequest{CommonName: "admin", Organization: []string{"system:masters"}, Client: true})
	other, err := pki.NewCA("other-ca")
	if err != nil {
		t.Fatal(err)
	}
	oc, ok, _ := other.Issue(pki.CertRequest{CommonName: pki.KubeletClientCN, Client: true})
	foreign, _ := tls.X509KeyPair(oc, ok)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"nodeName":"n1"}`) })
	s := New(Options{CertFile: filepath.Join(dir, "node.crt"), KeyFile: filepath.Join(dir, "node.key"), CAFile: filepath.Join(dir, "ca.crt"), Metrics: metrics})
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	getPath := func(path string, certs []tls.Certificate) (int, string, error) {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		resp, err := cl.Get("https://" + ln.Addr().String() + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	get := func(certs []tls.Certificate) (int, string, error) { return getPath("/healthz", certs) }
	if code, body, err := get([]tls.Certificate{good}); err != nil || code != 200 {
		t.Errorf("API server identity: got %d %q %v, want 200", code, body, err)
	}
	if code, body, err := get([]tls.Certificate{admin}); err != nil || code != 403 || !strings.Contains(body, "admin") {
		t.Errorf("admin identity: got %d %q %v, want 403 naming the client", code, body, err)
	}
	// Resource metrics: the same identity check.
	if code, body, err := getPath("/stats/metrics", []tls.Certificate{good}); err != nil || code != 200 || body != `{"nodeName":"n1"}` {
		t.Errorf("metrics, API server identity: got %d %q %v, want 200 and the collector's answer", code, body, err)
	}
	if code, _, err := getPath("/stats/metrics", []tls.Certificate{admin}); err != nil || code != 403 {
		t.Errorf("metrics, admin identity: got %d %v, want 403", code, err)
	}
	rec := httptest.NewRecorder()
	New(Options{}).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats/metrics", nil))
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), "no resource metrics") {
		t.Errorf("metrics without a collector: got %d %s, want 404 saying so", rec.Code, rec.Body)
	}
	if _, _, err := get(nil); err == nil {
		t.Error("no client certificate: got a response, want a TLS failure")
	}
	if _, _, err := get([]tls.Certificate{foreign}); err == nil {
		t.Error("certificate from another CA: got a response, want a TLS failure")
	}

	if err := New(Options{}).Serve(ctx, ln); err == nil || !strings.Contains(err.Error(), "CertFile") {
		t.Errorf("Serve without certificates: got %v, want an error naming CertFile", err)
	}
}
