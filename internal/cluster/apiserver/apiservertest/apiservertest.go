// Package apiservertest runs berth's API server on an embedded etcd member
// inside a test process, without controllers, so that a control loop's
// tests can drive it against the real API (validation, defaults, watch,
// subresources, the garbage collector).
package apiservertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/berth/berth/internal/cluster/apiserver"
	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/cluster/store"
)

// AdminToken is the bearer token of the admin user Start configures.
const AdminToken = "admin-token"

// Start runs etcd and the API server until the test ends (or ctx is done)
// and returns an admin client config (HTTPS with a self-signed
// certificate, not verified). users adds bearer tokens of other
// users (nodes, viewers).
func Start(t testing.TB, ctx context.Context, users map[string]apiserver.User) *rest.Config {
	t.Helper()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir(), Name: "t",
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	static := map[string]apiserver.User{AdminToken: {Name: "admin", Role: pki.RoleAdmin}}
	for tok, u := range users {
		static[tok] = u
	}
	api := apiserver.New(apiserver.Config{Client: st.Client, Auth: &apiserver.CredentialAuth{Static: static}})
	if err := api.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	go api.Run(ctx)
	// TLS, because kubectl sends a bearer token only over HTTPS.
	srv := httptest.NewTLSServer(api.Handler())
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL, BearerToken: AdminToken, QPS: 500, Burst: 1000, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartClients is Start with admin clients for a control loop (client-go
// and an informer factory, quiet logs), shut down when the test ends.
func StartClients(t testing.TB, ctx context.Context) (*rest.Config, *kube.Clients) {
	t.Helper()
	cfg := Start(t, ctx, nil)
	c, err := kube.NewClients(cfg, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return cfg, c
}
