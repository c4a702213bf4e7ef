package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCAAndServingCert(t *testing.T) {
	d := Dir{Root: t.TempDir()}
	ca, err := d.EnsureCA()
	if err != nil {
		t.Fatal(err)
	}
	again, err := d.EnsureCA()
	if err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("EnsureCA twice: got a different CA (err %v)", err)
	}
	certFile, _, err := d.EnsureCert(ca, "server", ServingRequest("berth-server", []string{"10.1.2.3", "api.example"}))
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, certFile)
	if err := c.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("serving cert not signed by the CA: %v", err)
	}
	for _, ip := range []string{"127.0.0.1", "10.1.2.3"} {
		found := false
		for _, got := range c.IPAddresses {
			found = found || got.Equal(net.ParseIP(ip))
		}
		if !found {
			t.Errorf("serving cert lacks IP SAN %s: got %v", ip, c.IPAddresses)
		}
	}
	for _, n := range []string{"localhost", "api.example"} {
		if !strings.Contains(strings.Join(c.DNSNames, ","), n) {
			t.Errorf("serving cert lacks DNS SAN %s: got %v", n, c.DNSNames)
		}
	}
	// Same request: kept. A new address: reissued.
	before := c.SerialNumber
	certFile, _, _ = d.EnsureCert(ca, "server", ServingRequest("berth-server", []string{"10.1.2.3"}))
	if parseCert(t, certFile).SerialNumber.Cmp(before) != 0 {
		t.Errorf("certificate reissued although it covers the request")
	}
	certFile, _, _ = d.EnsureCert(ca, "server", ServingRequest("berth-server", []string{"10.9.9.9"}))
	if parseCert(t, certFile).SerialNumber.Cmp(before) == 0 {
		t.Errorf("certificate not reissued for a new advertise address")
	}
	fi, _ := os.Stat(d.Path("pki", "ca.key"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode: got %v, want 0600", fi.Mode().Perm())
	}
}

func TestTokens(t *testing.T) {
	d := Dir{Root: t.TempDir()}
	s := NewTokenStore(d)
	cases := []struct {
		role, name string
		wantErr    error
	}{
		{RoleAdmin, "", nil},
		{RoleViewer, "alice", nil},
		{RoleNode, "node-1", nil},
		{RoleNode, "", errdefs.ErrInvalidArgument},
		{"root", "", errdefs.ErrInvalidArgument},
		{RoleViewer, "a/b", errdefs.ErrInvalidArgument},
	}
	for _, tc := range cases {
		tok, err := d.CreateToken(tc.role, tc.name)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("CreateToken(%q, %q): got err %v, want %v", tc.role, tc.name, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		rec, ok := s.Lookup(tok)
		if !ok || rec.Role != tc.role || rec.Name != tc.name {
			t.Errorf("Lookup of new %s token: got %+v %v", tc.role, rec, ok)
		}
		b, _ := os.ReadFile(d.Path("tokens.json"))
		if strings.Contains(string(b), tok) {
			t.Errorf("token stored in clear")
		}
	}
	if _, ok := s.Lookup("berth-nope"); ok {
		t.Errorf("unknown token accepted")
	}
}

func TestKubeconfig(t *testing.T) {
	kc := string(Kubeconfig("https://127.0.0.1:6443", []byte("CA"), []byte("C"), []byte("K"), ""))
	for _, want := range []string{"server: https://127.0.0.1:6443", "certificate-authority-data: Q0E=", "client-certificate-data: Qw==", "client-key-data: Sw==", "current-context: berth"} {
		if !strings.Contains(kc, want) {
			t.Errorf("kubeconfig lacks %q:\n%s", want, kc)
		}
	}
	if kc := string(Kubeconfig("https://h:1", []byte("CA"), nil, nil, "tok")); !strings.Contains(kc, "token: tok") {
		t.Errorf("token kubeconfig lacks the token:\n%s", kc)
	}
}
