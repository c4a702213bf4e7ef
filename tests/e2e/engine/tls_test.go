package engine

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
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeCert writes a certificate (signed by parent, or self-signed when
// parent is nil) and its key as PEM files dir/name.pem and dir/name-key.pem.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

// TestDockerOverTLS: `berth daemon --tcp-addr` serves the API over TLS to
// clients with a certificate from the given CA only; the stock docker CLI
// drives it with DOCKER_TLS_VERIFY; a client without a certificate, or
// with one from another CA, is refused; TCP without TLS is refused at start.
func TestDockerOverTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	ca, caKey := writeCert(t, dir, "ca", caT, nil, nil)
	writeCert(t, dir, "server", &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "berth"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	writeCert(t, dir, "client", &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	other, otherKey := writeCert(t, dir, "otherca", &x509.Certificate{SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	writeCert(t, dir, "stranger", &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "stranger"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, other, otherKey)

	// TCP without TLS: refused, naming the flags.
	out, err := exec.Command(filepath.Join(binDir, "berth"), "daemon", "--root", filepath.Join(dir, "r"), "--exec-root", filepath.Join(dir, "x"),
		"--socket", filepath.Join(dir, "s.sock"), "--config", "/nonexistent", "--tcp-addr", "127.0.0.1:0",
		"--bridge", "bttls0", "--bridge-subnet", "10.197.9.0/24", "--cleanup").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--tlscacert") {
		t.Errorf("daemon with --tcp-addr and no TLS: err %v, output %s; want a refusal naming --tlscacert", err, out)
	}
	if l, err := net.InterfaceByName("bttls0"); err == nil {
		t.Errorf("the refused daemon left its bridge %s behind", l.Name)
		exec.Command("ip", "link", "del", "bttls0").Run()
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	d, err := newDaemon("tls", "--tcp-addr", addr, "--tlscacert", filepath.Join(dir, "ca.pem"),
		"--tlscert", filepath.Join(dir, "server.pem"), "--tlskey", filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer d.stop()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))

	certs := filepath.Join(dir, "docker")
	os.MkdirAll(certs, 0o700)
	for src, dst := range map[string]string{"ca.pem": "ca.pem", "client.pem": "cert.pem", "client-key.pem": "key.pem"} {
		b, _ := os.ReadFile(filepath.Join(dir, src))
		os.WriteFile(filepath.Join(certs, dst), b, 0o600)
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("the docker CLI is not installed")
	}
	dk := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(docker, args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=tcp://"+addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH="+certs, "DOCKER_CONFIG="+t.TempDir())
		cmd.Stdin = strings.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := dk("", "version", "--format", "{{.Server.Os}}"); err != nil || strings.TrimSpace(out) != "linux" {
		t.Fatalf("docker version over TLS: %v %s", err, out)
	}
	if out, err := dk("", "run", "--rm", "busybox", "echo", "over-tls"); err != nil || out != "over-tls\n" {
		t.Errorf("docker run over TLS: %v %q", err, out)
	}
	// Attach with stdin: a hijacked connection inside TLS.
	if out, err := dk("a\nb\n", "run", "--rm", "-i", "busybox", "wc", "-l"); err != nil || strings.TrimSpace(out) != "2" {
		t.Errorf("docker run -i over TLS: %v %q", err, out)
	}

	// The berth CLI, with the same certificates.
	bt := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(binDir, "berth"), append([]string{"-H", "tcp://" + addr}, args...)...)
		cmd.Env = append(os.Environ(), "BERTH_TLS_VERIFY=1", "BERTH_CERT_PATH="+certs)
		cmd.Stdin = strings.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := bt("", "run", "--rm", "busybox", "echo", "berth-over-tls"); err != nil || out != "berth-over-tls\n" {
		t.Errorf("berth run over TLS: %v %q", err, out)
	}
	if out, err := bt("x\ny\nz\n", "run", "--rm", "-i", "busybox", "wc", "-l"); err != nil || strings.TrimSpace(out) != "3" {
		t.Errorf("berth run -i over TLS: %v %q", err, out)
	}
	if out, err := exec.Command(filepath.Join(binDir, "berth"), "-H", "tcp://"+addr, "ps").CombinedOutput(); err == nil {
		t.Errorf("berth ps without --tlsverify to the TLS port succeeded: %s", out)
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for name, certs := range map[string][]tls.Certificate{"no client certificate": nil, "a certificate from another CA": loadPair(t, dir, "stranger")} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: certs})
		if err == nil {
			// TLS 1.3 reports the refusal at the first read.
			c.Write([]byte("GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"))
			buf := make([]byte, 64)
			_, err = c.Read(buf)
			if err == nil {
				t.Errorf("%s: the daemon answered: %q", name, buf)
			}
			c.Close()
		}
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Write([]byte("GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		if strings.Contains(string(buf[:n]), "200 OK") || strings.Contains(string(buf[:n]), "OK") {
			t.Errorf("plain HTTP on the TLS port answered: %q", buf[:n])
		}
		c.Close()
	}
}

func loadPair(t *testing.T, dir, name string) []tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return []tls.Certificate{c}
}
