package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/berth/berth/internal/cluster/apiserver"
	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/cluster/store"
	"github.com/berth/berth/internal/errdefs"
)

// JoinRequest asks an existing server to add an etcd member.
type JoinRequest struct {
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
}

// JoinResponse carries what the new member needs: the initial-cluster
// string and the cluster CA (certificate and key, so it can issue its own
// serving and peer certificates).
type JoinResponse struct {
	InitialCluster string `json:"initialCluster"`
	CACert         string `json:"caCert"`
	CAKey          string `json:"caKey"`
}

func joinHandler(st *store.Store, ca *pki.CA) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fail := func(code int, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "code": code})
		}
		if req.URL.Path != "/berth/v1/join" || req.Method != http.MethodPost {
			fail(404, "the server could not find the requested resource")
			return
		}
		u := apiserver.UserFrom(req.Context())
		if u == nil || (u.Role != pki.RoleJoin && u.Role != pki.RoleAdmin) {
			fail(403, "joining the cluster needs the join token or an admin credential")
			return
		}
		if !st.Embedded() {
			fail(400, "this server uses external etcd: point the new server at the same --etcd-endpoints instead of --join")
			return
		}
		var jr JoinRequest
		if err := json.NewDecoder(io.LimitReader(req.Body, 1<<16)).Decode(&jr); err != nil || jr.Name == "" || !strings.HasPrefix(jr.PeerURL, "https://") {
			fail(400, "join request: want {\"name\": member name, \"peerURL\": \"https://HOST:PORT\"}")
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), 15*time.Second)
		defer cancel()
		ic, err := st.MemberAdd(ctx, jr.Name, jr.PeerURL)
		if err != nil {
			fail(503, fmt.Sprintf("adding etcd member %s: %v", jr.Name, err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(JoinResponse{InitialCluster: ic, CACert: string(ca.CertPEM), CAKey: string(ca.KeyPEM)})
	})
}

// joinCluster asks the server at url to add this member. The token's
// "K<fingerprint>." prefix pins the cluster CA: the answer's CA must match
// it and must have signed the server's certificate.
func joinCluster(ctx context.Context, url, token, name, peerURL string) (*JoinResponse, error) {
	fp, _, ok := strings.Cut(strings.TrimPrefix(token, "K"), ".")
	if !strings.HasPrefix(token, "K") || !ok || len(fp) != 16 {
		return nil, fmt.Errorf("--token: want the join token printed by `berth token` on the first server (K<16 hex>.<secret>): %w", errdefs.ErrInvalidArgument)
	}
	var leaf *x509.Certificate
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // verified below against the pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				leaf = cs.PeerCertificates[0]
			}
			return nil
		},
	}}}
	body, _ := json.Marshal(JoinRequest{Name: name, PeerURL: peerURL})
	var lastErr error
	for attempt := 0; attempt < 30; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(url, "/")+"/berth/v1/join", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			lastErr = err
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != 200 {
			lastErr = fmt.Errorf("join %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
			if resp.StatusCode == 401 || resp.StatusCode == 403 || resp.StatusCode == 400 {
				return nil, fmt.Errorf("%v: %w", lastErr, errdefs.ErrUnauthorized)
			}
			time.Sleep(time.Second)
			continue
		}
		var jr JoinResponse
		if err := json.Unmarshal(b, &jr); err != nil {
			return nil, fmt.Errorf("join %s: bad answer: %w", url, err)
		}
		if caFingerprint([]byte(jr.CACert)) != fp {
			return nil, fmt.Errorf("join %s: the server's CA does not match the token's fingerprint: %w", url, errdefs.ErrUnauthorized)
		}
		ca, err := pki.ParseCA([]byte(jr.CACert), []byte(jr.CAKey))
		if err != nil {
			return nil, err
		}
		if leaf == nil || leaf.CheckSignatureFrom(ca.Cert) != nil {
			return nil, fmt.Errorf("join %s: the server's certificate is not signed by the pinned CA: %w", url, errdefs.ErrUnauthorized)
		}
		return &jr, nil
	}
	return nil, fmt.Errorf("join %s: %v: %w", url, lastErr, errdefs.ErrUnavailable)
}
