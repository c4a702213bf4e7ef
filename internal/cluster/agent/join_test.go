package agent

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/errdefs"
)

// joinServer serves the node-join endpoint as the control plane does,
// with a serving certificate from ca.
func joinServer(t *testing.T, ca *pki.CA, token string) *httptest.Server {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(pki.ServingRequest("test-server", []string{"127.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != nodeJoinPath || r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"message":"forbidden"}`, 403)
			return
		}
		var req struct{ NodeName, CSR, ServingCSR string }
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &req)
		sign := func(s string, server bool) string {
			blk, _ := pem.Decode([]byte(s))
			csr, err := x509.ParseCertificateRequest(blk.Bytes)
			if err != nil {
				t.Errorf("csr: %v", err)
				return ""
			}
			c, _ := ca.Sign(csr.PublicKey, pki.CertRequest{CommonName: csr.Subject.CommonName, Organization: csr.Subject.Organization, Client: !server, Server: server})
			return string(c)
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"caCert": string(ca.CertPEM), "cert": sign(req.CSR, false), "servingCert": sign(req.ServingCSR, true)})
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestJoin(t *testing.T) {
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(ca.CertPEM)
	token := "K" + hex.EncodeToString(sum[:])[:16] + ".secret"
	srv := joinServer(t, ca, token)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()

	// Bad tokens are refused before any request, naming --token.
	for _, bad := range []string{"", "secret", "Kshort.x"} {
		if _, err := Join(ctx, srv.URL, bad, "n1", t.TempDir(), nil, log); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "--token") {
			t.Errorf("token %q: got %v, want invalid argument naming --token", bad, err)
		}
	}
	// A token whose fingerprint is another CA's is refused.
	wrong := "K0123456789abcdef.secret"
	srvWrong := joinServer(t, ca, wrong)
	if _, err := Join(ctx, srvWrong.URL, wrong, "n1", t.TempDir(), nil, log); !errors.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "fingerprint") {
		t.Errorf("wrong fingerprint: got %v, want unauthorized naming the fingerprint", err)
	}
	// A wrong secret is refused by the server.
	if _, err := Join(ctx, srv.URL, token+"x", "n1", t.TempDir(), nil, log); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("wrong secret: got %v, want unauthorized", err)
	}

	dir := t.TempDir()
	cfg, err := Join(ctx, srv.URL, token, "n1", dir, []string{"192.0.2.10"}, log)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(cfg.TLSClientConfig.CertData)
	if blk == nil {
		t.Fatal("no client certificate in the config")
	}
	cert, _ := x509.ParseCertificate(blk.Bytes)
	if cert.Subject.CommonName != "system:node:n1" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "system:nodes" {
		t.Errorf("client certificate subject: got %v, want CN=system:node:n1 O=system:nodes", cert.Subject)
	}
	kc, caFile, sc, sk := CredentialFiles(dir)
	for _, f := range []string{kc, caFile, sc, sk} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: got %v %v, want a 0600 file", f, st, err)
		}
	}
	// A restart reuses the stored credential: no token needed.
	srv.Close()
	if cfg2, err := Join(ctx, "https://elsewhere:6443", "", "n1", dir, nil, log); err != nil || cfg2.Host != "https://elsewhere:6443" {
		t.Errorf("rejoin from the stored kubeconfig: got %v, %v", cfg2, err)
	}
}
