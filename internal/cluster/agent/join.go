package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/errdefs"
)

// nodeJoinPath is controlplane.NodeJoinPath (not imported: the agent does
// not link the server).
const nodeJoinPath = "/berth/v1/nodes/join"

// CredentialFiles are where a joined agent keeps its credentials under
// dataDir: its kubeconfig (client certificate CN=system:node:NAME), the
// cluster CA, and its serving certificate and key for the streaming
// endpoint (signed by the cluster CA for the node's name and addresses).
func CredentialFiles(dataDir string) (kubeconfig, caFile, servingCert, servingKey string) {
	return filepath.Join(dataDir, "kubeconfig"), filepath.Join(dataDir, "pki", "ca.crt"),
		filepath.Join(dataDir, "pki", "serving.crt"), filepath.Join(dataDir, "pki", "serving.key")
}

// Join returns the node's client config: the kubeconfig stored in dataDir
// by an earlier join, or a new node certificate obtained from server with
// the join token (with a serving certificate for addresses). The token's
// K<fingerprint> prefix pins the cluster CA.
func Join(ctx context.Context, server, token, node, dataDir string, addresses []string, log *slog.Logger) (*rest.Config, error) {
	path, caFile, servingCert, servingKey := CredentialFiles(dataDir)
	if _, err := os.Stat(path); err == nil {
		cfg, err := kube.ConfigFromKubeconfig(path)
		if err != nil {
			return nil, err
		}
		if server != "" && strings.TrimSuffix(cfg.Host, "/") != strings.TrimSuffix(server, "/") {
			log.Info("using the stored node credential with the given server", "kubeconfig", path, "server", server)
			cfg.Host = server
		}
		return cfg, nil
	}
	if token == "" {
		return nil, fmt.Errorf("--token is required to join (no credential in %s yet; get the token with `berth token` on a server): %w", path, errdefs.ErrInvalidArgument)
	}
	fp, _, ok := strings.Cut(strings.TrimPrefix(token, "K"), ".")
	if !strings.HasPrefix(token, "K") || !ok || len(fp) != 16 {
		return nil, fmt.Errorf("--token: want the join token printed by `berth token` on a server (K<16 hex>.<secret>): %w", errdefs.ErrInvalidArgument)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}}, key)
	if err != nil {
		return nil, err
	}
	skey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	scsrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}}, skey)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{"nodeName": node,
		"csr":        string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		"servingCSR": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: scsrDER})),
		"addresses":  addresses})
	var leaf *x509.Certificate
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // verified below against the CA pinned by the token
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				leaf = cs.PeerCertificates[0]
			}
			return nil
		},
	}}}
	var resp struct {
		CACert      string `json:"caCert"`
		Cert        string `json:"cert"`
		ServingCert string `json:"servingCert"`
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		if attempt == 60 {
			return nil, fmt.Errorf("--server %s: %v: %w", server, lastErr, errdefs.ErrUnavailable)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+nodeJoinPath, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		r, err := client.Do(req)
		if err != nil {
			lastErr = err
			log.Warn("joining: server not reachable yet", "server", server, "err", err)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body.Close()
		if r.StatusCode == 401 || r.StatusCode == 403 {
			return nil, fmt.Errorf("--token: the server at %s refused it (HTTP %d: %s): %w", server, r.StatusCode, strings.TrimSpace(string(b)), errdefs.ErrUnauthorized)
		}
		if r.StatusCode != 200 {
			lastErr = fmt.Errorf("HTTP %d: %s", r.StatusCode, strings.TrimSpace(string(b)))
			if r.StatusCode == 400 || r.StatusCode == 404 {
				return nil, fmt.Errorf("joining %s: %v: %w", server, lastErr, errdefs.ErrInvalidArgument)
			}
			continue
		}
		if err := json.Unmarshal(b, &resp); err != nil {
			return nil, fmt.Errorf("joining %s: bad answer: %w", server, err)
		}
		break
	}
	sum := sha256.Sum256([]byte(resp.CACert))
	if hex.EncodeToString(sum[:])[:16] != fp {
		return nil, fmt.Errorf("joining %s: the server's CA does not match the token's fingerprint %s: %w", server, fp, errdefs.ErrUnauthorized)
	}
	caBlock, _ := pem.Decode([]byte(resp.CACert))
	if caBlock == nil {
		return nil, errors.New("joining: the server sent no CA certificate")
	}
	caCert, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("joining: CA certificate: %w", err)
	}
	if leaf == nil || leaf.CheckSignatureFrom(caCert) != nil {
		return nil, fmt.Errorf("joining %s: the server's certificate is not signed by the pinned CA: %w", server, errdefs.ErrUnauthorized)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.MkdirAll(filepath.Join(dataDir, "pki"), 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	if err := writeFile(caFile, []byte(resp.CACert)); err != nil {
		return nil, err
	}
	if resp.ServingCert != "" {
		skeyDER, err := x509.MarshalECPrivateKey(skey)
		if err != nil {
			return nil, err
		}
		if err := writeFile(servingKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: skeyDER})); err != nil {
			return nil, err
		}
		if err := writeFile(servingCert, []byte(resp.ServingCert)); err != nil {
			return nil, err
		}
	}
	// The kubeconfig last: its presence means the join is complete.
	if err := writeFile(path, pki.Kubeconfig(server, []byte(resp.CACert), []byte(resp.Cert), keyPEM, "")); err != nil {
		return nil, err
	}
	log.Info("joined the cluster; node credential stored", "server", server, "kubeconfig", path)
	return kube.ConfigFromKubeconfig(path)
}

// writeFile writes a private file atomically (0600).
func writeFile(path string, data []byte) error {
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
