// Package pki owns the control plane's credentials on disk: the cluster CA,
// the API serving certificate, client certificates, bearer tokens (stored only
// as SHA-256 hashes) and the admin kubeconfig.
//
// Layout under the data directory:
//
//	pki/ca.crt, pki/ca.key          cluster CA (shared by every server of an HA cluster)
//	pki/server.crt, pki/server.key  API serving certificate
//	pki/peer.crt, pki/peer.key      etcd peer certificate
//	pki/admin.crt, pki/admin.key    admin client certificate (used by the kubeconfig)
//	pki/apiserver-kubelet-client.crt/.key  the API server's client certificate for node agents (KubeletClientCN)
//	tokens.json                     token hashes with their role and name
//	token                           the node join token in clear (0600)
//	kubeconfig                      admin kubeconfig (0600)
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/berth/berth/internal/errdefs"
)

// KubeletClientCN is the common name of the API server's client certificate
// towards node agents' streaming servers (logs, exec, attach,
// port-forward); its organization is KubeletClientOrg. Agents accept only
// this identity.
const (
	KubeletClientCN  = "berth-apiserver-kubelet-client"
	KubeletClientOrg = "system:masters"
)

// CA is a certificate authority able to sign certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// ParseCA parses a CA from PEM-encoded certificate and key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		return nil, fmt.Errorf("CA certificate: no PEM block: %w", errdefs.ErrInvalidArgument)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("CA key: no PEM block: %w", errdefs.ErrInvalidArgument)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA key: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// NewCA creates a self-signed CA valid for ten years.
func NewCA(name string) (*CA, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}, nil
}

// CertRequest describes a certificate to issue.
type CertRequest struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Server       bool
	Client       bool
}

// Issue signs a new key pair and returns PEM certificate and key.
func (ca *CA) Issue(req CertRequest) (certPEM, keyPEM []byte, err error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	if certPEM, err = ca.Sign(&key.PublicKey, req); err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// Sign issues a certificate for a public key whose private key stays with
// its owner (a node that sent a certificate request).
func (ca *CA) Sign(pub crypto.PublicKey, req CertRequest) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// Dir is a control-plane data directory's credential store.
type Dir struct{ Root string }

// Path returns a path inside the data directory.
func (d Dir) Path(elem ...string) string { return filepath.Join(append([]string{d.Root}, elem...)...) }

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// LoadCA reads the CA from the data directory.
func (d Dir) LoadCA() (*CA, error) {
	c, err := os.ReadFile(d.Path("pki", "ca.crt"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("CA in %s: %w", d.Root, errdefs.ErrNotFound)
		}
		return nil, err
	}
	k, err := os.ReadFile(d.Path("pki", "ca.key"))
	if err != nil {
		return nil, err
	}
	return ParseCA(c, k)
}

// SaveCA writes the CA into the data directory.
func (d Dir) SaveCA(ca *CA) error {
	if err := writeFile(d.Path("pki", "ca.crt"), ca.CertPEM); err != nil {
		return err
	}
	return writeFile(d.Path("pki", "ca.key"), ca.KeyPEM)
}

// EnsureCA loads the CA or creates it on first start.
func (d Dir) EnsureCA() (*CA, error) {
	ca, err := d.LoadCA()
	if err == nil {
		return ca, nil
	}
	if !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	ca, err = NewCA("berth-ca")
	if err != nil {
		return nil, err
	}
	return ca, d.SaveCA(ca)
}

// EnsureCert issues pki/<name>.crt/.key unless a certificate already exists
// whose DNS names and IPs cover the request. It returns the file paths.
func (d Dir) EnsureCert(ca *CA, name string, req CertRequest) (certFile, keyFile string, err error) {
	certFile, keyFile = d.Path("pki", name+".crt"), d.Path("pki", name+".key")
	if exists(certFile) && exists(keyFile) {
		if b, err := os.ReadFile(certFile); err == nil {
			if blk, _ := pem.Decode(b); blk != nil {
				if c, err := x509.ParseCertificate(blk.Bytes); err == nil && covers(c, req) && c.CheckSignatureFrom(ca.Cert) == nil {
					return certFile, keyFile, nil
				}
			}
		}
	}
	c, k, err := ca.Issue(req)
	if err != nil {
		return "", "", err
	}
	if err := writeFile(keyFile, k); err != nil {
		return "", "", err
	}
	return certFile, keyFile, writeFile(certFile, c)
}

func covers(c *x509.Certificate, req CertRequest) bool {
	for _, n := range req.DNSNames {
		if !slices.Contains(c.DNSNames, n) {
			return false
		}
	}
	for _, ip := range req.IPs {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// ServingRequest returns the SANs of an API or peer certificate for a host.
func ServingRequest(cn string, advertise []string) CertRequest {
	req := CertRequest{CommonName: cn, Server: true, Client: true, DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}}
	if h, err := os.Hostname(); err == nil && h != "" {
		req.DNSNames = append(req.DNSNames, h)
	}
	for _, a := range advertise {
		if a == "" {
			continue
		}
		if ip := net.ParseIP(a); ip != nil {
			if ip.IsUnspecified() {
				continue // 0.0.0.0 is a bind address, not a name to verify
			}
			if !slices.ContainsFunc(req.IPs, ip.Equal) {
				req.IPs = append(req.IPs, ip)
			}
		} else if !slices.Contains(req.DNSNames, a) {
			req.DNSNames = append(req.DNSNames, a)
		}
	}
	return req
}

// HashToken returns the stored form of a token.
func HashToken(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// NewToken returns a random bearer token with a recognisable prefix.
func NewToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "berth-" + hex.EncodeToString(b)
}
