package controlplane

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/berth/berth/internal/cluster/apiserver"
	"github.com/berth/berth/internal/cluster/pki"
)

// NodeJoinPath is where a node agent exchanges the join token for its
// node credential.
const NodeJoinPath = "/berth/v1/nodes/join"

// NodeJoinRequest is a node's certificate request: its name and a PEM
// CSR for a key that never leaves the node.
type NodeJoinRequest struct {
	NodeName string `json:"nodeName"`
	CSR      string `json:"csr"`
}

// NodeJoinResponse carries the node's client certificate
// (CN=system:node:NAME, O=system:nodes) and the cluster CA.
type NodeJoinResponse struct {
	CACert string `json:"caCert"`
	Cert   string `json:"cert"`
}

// nodeJoinHandler signs node certificates for callers holding the join
// token (or an admin credential). Any server of an HA cluster can answer:
// each holds the CA.
func nodeJoinHandler(ca *pki.CA) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fail := func(code int, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "code": code})
		}
		if req.Method != http.MethodPost {
			fail(405, "node join: use POST")
			return
		}
		u := apiserver.UserFrom(req.Context())
		if u == nil || (u.Role != pki.RoleJoin && u.Role != pki.RoleAdmin) {
			fail(403, "joining a node needs the join token (`berth token` on a server) or an admin credential")
			return
		}
		var jr NodeJoinRequest
		if err := json.NewDecoder(io.LimitReader(req.Body, 1<<16)).Decode(&jr); err != nil {
			fail(400, "node join request: want {\"nodeName\": NAME, \"csr\": PEM certificate request}")
			return
		}
		if errs := validation.IsDNS1123Subdomain(jr.NodeName); len(errs) > 0 {
			fail(400, fmt.Sprintf("nodeName %q: %s", jr.NodeName, strings.Join(errs, "; ")))
			return
		}
		block, _ := pem.Decode([]byte(jr.CSR))
		if block == nil || block.Type != "CERTIFICATE REQUEST" {
			fail(400, "csr: want a PEM \"CERTIFICATE REQUEST\" block")
			return
		}
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err == nil {
			err = csr.CheckSignature()
		}
		if err != nil {
			fail(400, fmt.Sprintf("csr: %v", err))
			return
		}
		cert, err := ca.Sign(csr.PublicKey, pki.CertRequest{CommonName: "system:node:" + jr.NodeName, Organization: []string{"system:nodes"}, Client: true})
		if err != nil {
			fail(500, fmt.Sprintf("signing the node certificate: %v", err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(NodeJoinResponse{CACert: string(ca.CertPEM), Cert: string(cert)})
	})
}

// extraHandler routes the /berth/ endpoints.
func extraHandler(join, nodeJoin http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == NodeJoinPath {
			nodeJoin.ServeHTTP(w, req)
			return
		}
		join.ServeHTTP(w, req)
	})
}
