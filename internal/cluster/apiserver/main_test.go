package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/cluster/store"
)

// One embedded etcd and API server for the whole package (real etcd, no fakes).
var (
	testSrv    *httptest.Server
	testAPI    *Server
	testStore  *store.Store
	adminToken = "admin-token"
)

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "apiserver-test")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, store.Config{DataDir: dir, Name: "t", ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort()), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", freePort())})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start etcd:", err)
		os.Exit(1)
	}
	testStore = st
	testAPI = New(Config{Client: st.Client, Auth: &CredentialAuth{Static: map[string]User{
		adminToken:     {Name: "admin", Role: pki.RoleAdmin},
		"viewer-token": {Name: "viewer", Role: pki.RoleViewer},
		"node1-token":  {Name: "system:node:node1", Role: pki.RoleNode, Node: "node1"},
	}}})
	if err := testAPI.Bootstrap(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bootstrap:", err)
		os.Exit(1)
	}
	go testAPI.Run(ctx)
	testSrv = httptest.NewServer(testAPI.Handler())
	code := m.Run()
	testSrv.Close()
	cancel()
	st.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

type resp struct {
	code int
	body []byte
	obj  map[string]any
	hdr  http.Header
}

func (r resp) str(path string) string { return fieldValue(r.obj, path) }

type reqOpt func(*http.Request)

func withToken(tok string) reqOpt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}
func withCT(ct string) reqOpt    { return func(r *http.Request) { r.Header.Set("Content-Type", ct) } }
func withAccept(a string) reqOpt { return func(r *http.Request) { r.Header.Set("Accept", a) } }

func do(t testing.TB, method, path string, body any, opts ...reqOpt) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, testSrv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := resp{code: res.StatusCode, body: b, hdr: res.Header}
	_ = json.Unmarshal(b, &out.obj)
	return out
}

func mustCode(t testing.TB, r resp, want int) {
	t.Helper()
	if r.code != want {
		t.Fatalf("got HTTP %d, want %d; body: %s", r.code, want, r.body)
	}
}

// newNS creates a fresh namespace for one test.
func newNS(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + "-" + randSuffix()
	mustCode(t, do(t, "POST", "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}), 201)
	return name
}

func cm(name string, data map[string]string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": name}, "data": data}
}

func deployment(name string, replicas int) map[string]any {
	return map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": name, "labels": map[string]any{"app": name}},
		"spec": map[string]any{"replicas": replicas, "selector": map[string]any{"matchLabels": map[string]any{"app": name}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": name}}, "spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "nginx:1.25"}}}}}}
}

func eventually(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
