package lab

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// HTTPClient is an HTTPS client with the server's admin certificate (for
// the harness's own checks; tests drive the cluster with kubectl).
func (l *Lab) HTTPClient() (*http.Client, error) {
	dir := filepath.Join(l.Server.DataDir, "pki")
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}, nil
}

// Get fetches an API path into v (JSON).
func (l *Lab) Get(path string, v any) error {
	c, err := l.HTTPClient()
	if err != nil {
		return err
	}
	resp, err := c.Get(l.URL() + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}

type nodeObj struct {
	Status struct {
		Conditions []struct {
			Type, Status string
		} `json:"conditions"`
	} `json:"status"`
}

// NodeReady returns the status of a Node's Ready condition ("" when the
// Node or the condition does not exist).
func (l *Lab) NodeReady(name string) (string, error) {
	var n nodeObj
	if err := l.Get("/api/v1/nodes/"+name, &n); err != nil {
		return "", err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status, nil
		}
	}
	return "", nil
}

// WaitNodeReady waits until the Node's Ready condition is True.
func (l *Lab) WaitNodeReady(name string, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		st, err := l.NodeReady(name)
		if err == nil && st == "True" {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("Ready=%q", st)
		}
		n, _ := l.Node(name)
		if n.AgentPID != 0 && !alive(n.AgentPID) {
			log := filepath.Join(l.nodeDir(name), "agent.log")
			return fmt.Errorf("node %s: agent exited; %s:\n%s", name, log, tail(readFrom(log, 0), 30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not Ready after %v: %v", name, d, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
