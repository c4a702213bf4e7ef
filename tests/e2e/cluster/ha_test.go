package cluster

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// apiClient talks to a server with the admin client certificate of dataDir.
func apiClient(t *testing.T, dataDir string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dataDir, "pki", "admin.crt"), filepath.Join(dataDir, "pki", "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
}

func createCM(c *http.Client, base, ns, name string) error {
	body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q},"data":{"k":"v"}}`, name)
	resp, err := c.Post(base+"/api/v1/namespaces/"+ns+"/configmaps", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

func listNames(t *testing.T, c *http.Client, base, ns string) map[string]bool {
	t.Helper()
	var last error
	for i := 0; i < 50; i++ {
		resp, err := c.Get(base + "/api/v1/namespaces/" + ns + "/configmaps")
		if err == nil && resp.StatusCode == 200 {
			var l struct {
				Items []struct {
					Metadata struct{ Name string } `json:"metadata"`
				} `json:"items"`
			}
			err = json.NewDecoder(resp.Body).Decode(&l)
			resp.Body.Close()
			if err == nil {
				out := map[string]bool{}
				for _, it := range l.Items {
					out[it.Metadata.Name] = true
				}
				return out
			}
		}
		if resp != nil {
			resp.Body.Close()
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("list %s: %v", base, last)
	return nil
}

// writeLoop creates configmaps round-robin over servers until stop is
// closed and returns the names whose creation was acknowledged (201).
func writeLoop(clients []*http.Client, bases []string, ns string, stop <-chan struct{}) (*sync.Map, *atomic.Int64, func()) {
	var acked sync.Map
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				j := (w + i) % len(bases)
				name := fmt.Sprintf("w%d-%d", w, i)
				if createCM(clients[j], bases[j], ns, name) == nil {
					acked.Store(name, true)
					n.Add(1)
				}
			}
		}(w)
	}
	return &acked, &n, wg.Wait
}

func TestHAKillMember(t *testing.T) {
	if testing.Short() {
		t.Skip("HA test skipped in -short mode")
	}
	dir := t.TempDir()
	s1 := newServer(filepath.Join(dir, "s1"), "--cluster-init", "--name", "s1")
	if err := s1.start(); err != nil {
		t.Fatal(err)
	}
	defer s1.stop()
	tok, err := os.ReadFile(filepath.Join(s1.dataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	s2 := newServer(filepath.Join(dir, "s2"), "--join", s1.url(), "--token", token, "--name", "s2")
	if err := s2.start(); err != nil {
		t.Fatal(err)
	}
	defer s2.stop()
	s3 := newServer(filepath.Join(dir, "s3"), "--join", s1.url(), "--token", token, "--name", "s3")
	if err := s3.start(); err != nil {
		t.Fatal(err)
	}
	defer s3.stop()
	// A wrong token is refused.
	bad := newServer(filepath.Join(dir, "bad"), "--join", s1.url(), "--token", token[:18]+"x"+token[19:], "--name", "bad")
	if err := bad.start(); err == nil {
		bad.stop()
		t.Errorf("join with a wrong token succeeded")
	}

	servers := []*server{s1, s2, s3}
	var clients []*http.Client
	var bases []string
	for _, s := range servers {
		clients = append(clients, apiClient(t, s.dataDir))
		bases = append(bases, s.url())
	}
	// Every server serves the API over the shared store.
	if err := createCM(clients[0], bases[0], "default", "hello"); err != nil {
		t.Fatal(err)
	}
	for i := range servers {
		if !listNames(t, clients[i], bases[i], "default")["hello"] {
			t.Errorf("server %d does not see the object written through server 1", i+1)
		}
	}

	stop := make(chan struct{})
	acked, n, wait := writeLoop(clients, bases, "default", stop)
	time.Sleep(1500 * time.Millisecond)
	// Kill the first server: the joined members must have been promoted
	// to voters for the other two to keep a quorum.
	s1.kill()
	killedAt := n.Load()
	// Keep writing until the survivors acknowledge some writes (a new
	// leader election takes longer on a busy machine), then a little more.
	for deadline := time.Now().Add(20 * time.Second); n.Load() <= killedAt && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	wait()
	if n.Load() <= killedAt {
		t.Errorf("no writes acknowledged after the kill (%d before, %d after)", killedAt, n.Load())
	}
	check := func(i int) {
		got := listNames(t, clients[i], bases[i], "default")
		missing := 0
		acked.Range(func(k, _ any) bool {
			if !got[k.(string)] {
				missing++
			}
			return true
		})
		if missing > 0 {
			t.Errorf("server %d: %d of %d acknowledged writes missing", i+1, missing, n.Load())
		}
	}
	check(1)
	check(2)
	// The killed member restarts from its data and catches up.
	if err := s1.start(); err != nil {
		t.Fatal(err)
	}
	check(0)
	t.Logf("%d acknowledged writes (%d before the kill) all present on every member", n.Load(), killedAt)
}

func TestRestartAfterKill(t *testing.T) {
	dir := t.TempDir()
	s := newServer(filepath.Join(dir, "s"))
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	c := apiClient(t, s.dataDir)
	stop := make(chan struct{})
	acked, n, wait := writeLoop([]*http.Client{c}, []string{s.url()}, "default", stop)
	time.Sleep(1500 * time.Millisecond)
	s.kill()
	close(stop)
	wait()
	if n.Load() == 0 {
		t.Fatal("no write acknowledged before the kill")
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	got := listNames(t, c, s.url(), "default")
	missing := 0
	acked.Range(func(k, _ any) bool {
		if !got[k.(string)] {
			missing++
		}
		return true
	})
	if missing > 0 {
		t.Errorf("%d of %d acknowledged writes lost across SIGKILL", missing, n.Load())
	}
	// Credentials survive the restart: the same kubeconfig still works.
	k := newKubectl(t, "/usr/bin/kubectl", s)
	mustContain(t, k.ok(t, "get", "ns", "default"), "default")
	_ = bytes.MinRead
}

func TestCredentialsAndRoles(t *testing.T) {
	k := newKubectl(t, "/usr/bin/kubectl", shared)
	run := func(args ...string) string {
		t.Helper()
		out, err := runServerCmd(args...)
		if err != nil {
			t.Fatalf("berth-server %v: %v\n%s", args, err, out)
		}
		return out
	}
	kc := run("kubeconfig", "--data-dir", shared.dataDir)
	mustContain(t, kc, "apiVersion: v1", "kind: Config", shared.url(), "client-certificate-data")
	if tok := run("token", "--data-dir", shared.dataDir); !strings.HasPrefix(tok, "K") {
		t.Errorf("join token: got %q, want K<fingerprint>.<secret>", tok)
	}
	for _, f := range []string{"kubeconfig", "token", "tokens.json", "pki/ca.key"} {
		fi, err := os.Stat(filepath.Join(shared.dataDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (err %v), want 0600", f, fi.Mode().Perm(), err)
		}
	}
	viewer := strings.TrimSpace(run("token", "create", "--role", "viewer", "--data-dir", shared.dataDir))
	node := strings.TrimSpace(run("token", "create", "--role", "node", "--name", "n1", "--data-dir", shared.dataDir))
	if out, err := runServerCmd("token", "create", "--role", "root", "--data-dir", shared.dataDir); err == nil || !strings.Contains(out, "role") {
		t.Errorf("bad role: got %v %s", err, out)
	}
	as := func(tok string, args ...string) (string, error) {
		return k.run(t, "", append([]string{"--token", tok}, args...)...)
	}
	if out, err := as(viewer, "get", "ns"); err != nil {
		t.Errorf("viewer get ns: %v %s", err, out)
	}
	if out, err := as(viewer, "create", "configmap", "nope", "-n", "default"); err == nil || !strings.Contains(out, "cannot create") {
		t.Errorf("viewer create: want Forbidden, got %v %s", err, out)
	}
	out, err := k.run(t, `{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}`, "--token", node, "create", "-f", "-")
	if err != nil {
		t.Errorf("node creates its Node: %v %s", err, out)
	}
	out, err = k.run(t, `{"apiVersion":"v1","kind":"Node","metadata":{"name":"n2"}}`, "--token", node, "create", "-f", "-")
	if err == nil || !strings.Contains(out, "Forbidden") {
		t.Errorf("node creates another Node: want Forbidden, got %v %s", err, out)
	}
	// kubectl auth can-i / whoami go through the real authorizer.
	if out, _ := as(viewer, "auth", "can-i", "create", "configmaps", "-n", "default"); !strings.HasPrefix(out, "no") {
		t.Errorf("viewer can-i create configmaps: got %q, want no", out)
	}
	if out, _ := as(viewer, "auth", "can-i", "list", "pods", "-n", "default"); strings.TrimSpace(out) != "yes" {
		t.Errorf("viewer can-i list pods: got %q, want yes", out)
	}
	if out := k.ok(t, "auth", "can-i", "delete", "nodes"); !strings.HasSuffix(strings.TrimSpace(out), "yes") {
		t.Errorf("admin can-i delete nodes: got %q, want yes", out)
	}
	if out, err := as(node, "auth", "whoami"); err != nil || !strings.Contains(out, "system:node:n1") {
		t.Errorf("node whoami: got %v %s", err, out)
	}
	if out, err := as("berth-bogus", "get", "ns"); err == nil || !strings.Contains(out, "Unauthorized") {
		t.Errorf("bogus token: want Unauthorized, got %v %s", err, out)
	}
	// Tokens are never written in clear to the token database or the log.
	db, _ := os.ReadFile(filepath.Join(shared.dataDir, "tokens.json"))
	if strings.Contains(string(db), viewer) || strings.Contains(shared.log.String(), viewer) {
		t.Errorf("a token appears in clear in tokens.json or the server log")
	}
}

func runServerCmd(args ...string) (string, error) {
	cmd := execCommand(serverBin, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestExternalEtcd runs a second API server on the first server's etcd
// (--etcd-endpoints) and checks that the etcd client port refuses clients
// without a certificate from the cluster CA.
func TestExternalEtcd(t *testing.T) {
	etcdURL := fmt.Sprintf("https://127.0.0.1:%d", shared.etcdPort)
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", shared.etcdPort), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Errorf("etcd client port accepted a TLS client without a certificate")
	}
	pkiDir := filepath.Join(shared.dataDir, "pki")
	b := newServer(filepath.Join(t.TempDir(), "b"), "--etcd-endpoints", etcdURL,
		"--etcd-cafile", filepath.Join(pkiDir, "ca.crt"), "--etcd-certfile", filepath.Join(pkiDir, "admin.crt"), "--etcd-keyfile", filepath.Join(pkiDir, "admin.key"))
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	defer b.stop()
	ka := newKubectl(t, "/usr/bin/kubectl", shared)
	kb := newKubectl(t, "/usr/bin/kubectl", b)
	ka.ok(t, "create", "configmap", "shared-ext", "-n", "default", "--from-literal=a=b")
	if got := kb.ok(t, "get", "configmap", "shared-ext", "-n", "default", "-o", "jsonpath={.data.a}"); got != "b" {
		t.Errorf("second server on external etcd: got %q, want b", got)
	}
	ka.ok(t, "delete", "configmap", "shared-ext", "-n", "default")
}
