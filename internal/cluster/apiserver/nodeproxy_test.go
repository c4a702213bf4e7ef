package apiserver

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/berth/berth/internal/cluster/pki"
)

// fakeAgent is a node agent's streaming endpoint: it records what the API
// server forwards, streams logs, and echoes over an upgraded connection.
type fakeAgent struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []*http.Request
}

func (f *fakeAgent) last() *http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		return nil
	}
	return f.got[len(f.got)-1]
}

func (f *fakeAgent) port() int { return f.srv.Listener.Addr().(*net.TCPAddr).Port }

func newFakeAgent(t *testing.T, ca *pki.CA, serving tls.Certificate) *fakeAgent {
	f := &fakeAgent{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.got = append(f.got, r)
		f.mu.Unlock()
		if cn := r.TLS.PeerCertificates[0].Subject.CommonName; cn != pki.KubeletClientCN {
			http.Error(w, "wrong client "+cn, 403)
			return
		}
		if r.Header.Get("Upgrade") != "" {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
			brw.Flush()
			line, _ := brw.ReadString('\n')
			fmt.Fprintf(conn, "echo:%s", line)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "line1\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "line2\n")
	}))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{serving}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// proxyAPI is an API server over the shared store configured with a
// kubelet client certificate, and the pieces of its PKI.
type proxyAPI struct {
	srv *httptest.Server
	ca  *pki.CA
}

func newProxyAPI(t *testing.T) *proxyAPI {
	dir := t.TempDir()
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	d := pki.Dir{Root: dir}
	if err := d.SaveCA(ca); err != nil {
		t.Fatal(err)
	}
	cert, key, err := d.EnsureCert(ca, "apiserver-kubelet-client", pki.CertRequest{CommonName: pki.KubeletClientCN, Organization: []string{pki.KubeletClientOrg}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	api := New(Config{Client: testStore.Client, Auth: testAPI.cfg.Auth, KubeletClientCertFile: cert, KubeletClientKeyFile: key, KubeletCAFile: d.Path("pki", "ca.crt")})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &proxyAPI{srv: srv, ca: ca}
}

func (p *proxyAPI) serving(t *testing.T, ca *pki.CA) tls.Certificate {
	c, k, err := ca.Issue(pki.CertRequest{CommonName: "system:node:n", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func (p *proxyAPI) get(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", p.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// upgrade sends an upgrade request and one line over the upgraded
// connection; it returns the status line and the line echoed back.
func (p *proxyAPI) upgrade(t *testing.T, path, token string) (string, string) {
	t.Helper()
	u, _ := url.Parse(p.srv.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\n\r\n", path, token)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		b, _ := io.ReadAll(resp.Body)
		return resp.Status, string(b)
	}
	io.WriteString(conn, "ping\n")
	line, _ := br.ReadString('\n')
	return resp.Status, line
}

func createNode(t *testing.T, name, addr string, port int) {
	t.Helper()
	do(t, "DELETE", "/api/v1/nodes/"+name, nil)
	mustCode(t, do(t, "POST", "/api/v1/nodes", map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": name}}), 201)
	status := map[string]any{"daemonEndpoints": map[string]any{"kubeletEndpoint": map[string]any{"Port": port}}}
	if addr != "" {
		status["addresses"] = []any{map[string]any{"type": "InternalIP", "address": addr}}
	}
	mustCode(t, do(t, "PATCH", "/api/v1/nodes/"+name+"/status", map[string]any{"status": status}, withCT("application/merge-patch+json")), 200)
}

func createPod(t *testing.T, ns, name, node string, containers ...string) {
	t.Helper()
	var cs []any
	for _, c := range containers {
		cs = append(cs, map[string]any{"name": c, "image": "busybox"})
	}
	spec := map[string]any{"containers": cs}
	if node != "" {
		spec["nodeName"] = node
	}
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/pods", map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": name}, "spec": spec}), 201)
}

func TestPodStreamProxy(t *testing.T) {
	p := newProxyAPI(t)
	agent := newFakeAgent(t, p.ca, p.serving(t, p.ca))
	ns := newNS(t)
	node := "stream-" + ns
	createNode(t, node, "127.0.0.1", agent.port())
	createPod(t, ns, "p", node, "c")
	createPod(t, ns, "two", node, "a", "b")
	createPod(t, ns, "unbound", "", "c")

	// Logs stream through, with the parameters the agent understands and
	// without the user's credentials.
	code, body := p.get(t, "/api/v1/namespaces/"+ns+"/pods/p/log?follow=true&tailLines=2&timestamps=true", adminToken)
	if code != 200 || body != "line1\nline2\n" {
		t.Fatalf("logs: got %d %q, want 200 \"line1\\nline2\\n\"", code, body)
	}
	r := agent.last()
	if r.URL.Path != "/containerLogs/"+ns+"/p/c" || r.URL.Query().Get("tailLines") != "2" || r.URL.Query().Get("follow") != "true" || r.URL.Query().Get("timestamps") != "true" {
		t.Errorf("agent got %s, want /containerLogs/%s/p/c with follow, tailLines and timestamps", r.URL, ns)
	}
	if r.Header.Get("Authorization") != "" {
		t.Error("the user's Authorization header reached the agent")
	}
	// A viewer may read logs but not exec.
	if code, body := p.get(t, "/api/v1/namespaces/"+ns+"/pods/p/log", "viewer-token"); code != 200 {
		t.Errorf("viewer logs: got %d %s, want 200", code, body)
	}
	if status, body := p.upgrade(t, "/api/v1/namespaces/"+ns+"/pods/p/exec?command=sh&stdout=true", "viewer-token"); !strings.Contains(status, "403") {
		t.Errorf("viewer exec: got %s %s, want 403", status, body)
	}
	// exec, attach and portforward upgrade through to the agent.
	for _, c := range []struct{ path, agentPath string }{
		{"/exec?command=sh&command=-c&command=true&stdin=true&stdout=true&tty=true", "/exec/" + ns + "/p/"},
		{"/attach?stdout=true", "/attach/" + ns + "/p/"},
		{"/portforward", "/portForward/" + ns + "/p/"},
	} {
		status, line := p.upgrade(t, "/api/v1/namespaces/"+ns+"/pods/p"+c.path, adminToken)
		if !strings.HasPrefix(status, "101") || line != "echo:ping\n" {
			t.Errorf("%s: got %s %q, want 101 and the echo", c.path, status, line)
			continue
		}
		if r := agent.last(); !strings.HasPrefix(r.URL.Path, c.agentPath) {
			t.Errorf("%s: agent got %s, want %s…", c.path, r.URL.Path, c.agentPath)
		}
	}

	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/namespaces/" + ns + "/pods/unbound/log", 400, "does not have a host assigned"},
		{"/api/v1/namespaces/" + ns + "/pods/two/log", 400, "choose one of: [a b]"},
		{"/api/v1/namespaces/" + ns + "/pods/p/log?container=zz", 400, "container zz is not valid"},
		{"/api/v1/namespaces/" + ns + "/pods/p/log?tailLines=x", 400, "tailLines"},
		{"/api/v1/namespaces/" + ns + "/pods/nope/log", 404, "nope"},
	} {
		if code, body := p.get(t, c.path, adminToken); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: got %d %s, want %d with %q", c.path, code, body, c.code, c.want)
		}
	}
	// The test API server has no kubelet client certificate.
	if r := do(t, "GET", "/api/v1/namespaces/"+ns+"/pods/p/log", nil); r.code != 503 || !strings.Contains(string(r.body), "client certificate") {
		t.Errorf("no client certificate: got %d %s, want 503 saying so", r.code, r.body)
	}
}

func TestPodStreamNodeErrors(t *testing.T) {
	p := newProxyAPI(t)
	ns := newNS(t)
	// A node without an address.
	createNode(t, "noaddr-"+ns, "", 10250)
	createPod(t, ns, "a", "noaddr-"+ns, "c")
	if code, body := p.get(t, "/api/v1/namespaces/"+ns+"/pods/a/log", adminToken); code != 503 || !strings.Contains(body, "noaddr-"+ns) || !strings.Contains(body, "no address") {
		t.Errorf("no address: got %d %s, want 503 naming the node", code, body)
	}
	// A node whose agent does not listen.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	createNode(t, "down-"+ns, "127.0.0.1", port)
	createPod(t, ns, "b", "down-"+ns, "c")
	if code, body := p.get(t, "/api/v1/namespaces/"+ns+"/pods/b/log", adminToken); code != 503 || !strings.Contains(body, "down-"+ns) {
		t.Errorf("agent down: got %d %s, want 503 naming the node", code, body)
	}
	// A pod bound to a node that does not exist.
	createPod(t, ns, "c", "ghost-"+ns, "c")
	if code, body := p.get(t, "/api/v1/namespaces/"+ns+"/pods/c/log", adminToken); code != 503 || !strings.Contains(body, "ghost-"+ns) {
		t.Errorf("no node: got %d %s, want 503 naming the node", code, body)
	}
	// An agent whose certificate is not from the cluster CA.
	other, _ := pki.NewCA("other")
	agent := newFakeAgent(t, p.ca, p.serving(t, other))
	createNode(t, "rogue-"+ns, "127.0.0.1", agent.port())
	createPod(t, ns, "d", "rogue-"+ns, "c")
	if code, body := p.get(t, "/api/v1/namespaces/"+ns+"/pods/d/log", adminToken); code != 502 || !strings.Contains(body, "not from the cluster CA") {
		t.Errorf("rogue agent: got %d %s, want 502 about the CA", code, body)
	}
}

// FuzzStreamQuery feeds arbitrary query strings to the parameter checks of
// the node proxy: they answer or refuse, never panic.
func FuzzStreamQuery(f *testing.F) {
	for _, s := range []string{"follow=true&tailLines=10", "sinceTime=2024-01-02T15:04:05Z&sinceSeconds=3", "command=sh&command=-c&stdin", "tty=1&stdout=&limitBytes=-1", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		for _, sub := range []string{"log", "exec", "attach", "portforward"} {
			out, err := streamQuery(sub, q)
			if err == nil && sub == "exec" && len(out["command"]) == 0 {
				t.Errorf("exec accepted without a command: %q", raw)
			}
		}
	})
}
