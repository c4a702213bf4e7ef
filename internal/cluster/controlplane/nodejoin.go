package controlplane

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/berth/berth/internal/cluster/apiserver"
	"github.com/berth/berth/internal/cluster/pki"
)

// NodeJoinPath is where a node agent exchanges the join token for its
// node credential.
const NodeJoinPath = "/berth/v1/nodes/join"

// NodeJoinRequest is a node's certificate requests: its name, a PEM CSR
// for its client key and optionally one for its serving key (the
// streaming endpoint) with the addresses (IPs or DNS names) it serves on.
// The keys never leave the node.
type NodeJoinRequest struct {
	NodeName   string   `json:"nodeName"`
	CSR        string   `json:"csr"`
	ServingCSR string   `json:"servingCSR,omitempty"`
	Addresses  []string `json:"addresses,omitempty"`
}

// NodeJoinResponse carries the node's client certificate
// (CN=system:node:NAME, O=system:nodes), its serving certificate if asked
// for, and the cluster CA.
type NodeJoinResponse struct {
	CACert      string `json:"caCert"`
	Cert        string `json:"cert"`
	ServingCert string `json:"servingCert,omitempty"`
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
		pub, err := parseCSR("csr", jr.CSR)
		if err != nil {
			fail(400, err.Error())
			return
		}
		cert, err := ca.Sign(pub, pki.CertRequest{CommonName: "system:node:" + jr.NodeName, Organization: []string{"system:nodes"}, Client: true})
		if err != nil {
			fail(500, fmt.Sprintf("signing the node certificate: %v", err))
			return
		}
		resp := NodeJoinResponse{CACert: string(ca.CertPEM), Cert: string(cert)}
		if jr.ServingCSR != "" {
			spub, err := parseCSR("servingCSR", jr.ServingCSR)
			if err != nil {
				fail(400, err.Error())
				return
			}
			req := pki.CertRequest{CommonName: "system:node:" + jr.NodeName, Organization: []string{"system:nodes"}, Server: true, DNSNames: []string{jr.NodeName}}
			for _, a := range jr.Addresses {
				if ip := net.ParseIP(a); ip != nil {
					req.IPs = append(req.IPs, ip)
				} else if len(validation.IsDNS1123Subdomain(a)) == 0 {
					req.DNSNames = append(req.DNSNames, a)
				} else {
					fail(400, fmt.Sprintf("addresses: %q is neither an IP address nor a DNS name", a))
					return
				}
			}
			sc, err := ca.Sign(spub, req)
			if err != nil {
				fail(500, fmt.Sprintf("signing the node serving certificate: %v", err))
				return
			}
			resp.ServingCert = string(sc)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
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

// parseCSR checks a PEM certificate request's signature and returns its
// public key.
func parseCSR(field, s string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%s: want a PEM \"CERTIFICATE REQUEST\" block", field)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", field, err)
	}
	return csr.PublicKey, nil
}
