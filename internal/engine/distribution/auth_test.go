package distribution

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/errdefs"
)

const unauthorizedBody = `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`

func TestBasicAuth(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	img := mkImage(t, runtime.GOARCH, mkLayer(t, map[string]string{"f": "basic"}))
	reg.putImage("private/app", "v1", img)
	reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "alice" && p == "s3cret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(unauthorizedBody))
		return true
	})
	s, root := newStore(t)
	c := newClient(t, s, Config{})
	ref := reg.host + "/private/app:v1"

	_, err := c.Pull(ctx, ref, PullOptions{})
	if !errdefs.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "pull access denied for "+reg.host+"/private/app") ||
		!strings.Contains(err.Error(), "unauthorized: authentication required") {
		t.Errorf("anonymous pull from a basic-auth registry: %v; want Docker's pull access denied … unauthorized", err)
	}
	_, err = c.Pull(ctx, ref, PullOptions{Auth: &api.AuthConfig{Username: "alice", Password: "wrong"}})
	if !errdefs.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("pull with a wrong password: %v; want unauthorized", err)
	}
	if left := leftovers(t, s, root); len(left) != 0 {
		t.Errorf("refused pulls left %v", left)
	}
	if _, err := c.Pull(ctx, ref, PullOptions{Auth: &api.AuthConfig{Username: "alice", Password: "s3cret"}}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}

	// login checks the credentials.
	_, err = c.Login(ctx, api.AuthConfig{Username: "alice", Password: "wrong", ServerAddress: "http://" + reg.host + "/"})
	if !errdefs.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "login attempt to http://"+reg.host+"/v2/ failed with status: 401 Unauthorized") {
		t.Errorf("login with a wrong password: %v", err)
	}
	if _, err := c.Login(ctx, api.AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: reg.host}); err != nil {
		t.Errorf("login with the right password: %v", err)
	}
	// The basic "auth" field works as well as username/password.
	if _, err := c.Login(ctx, api.AuthConfig{Auth: "YWxpY2U6czNjcmV0", ServerAddress: reg.host}); err != nil {
		t.Errorf("login with auth=base64(user:pass): %v", err)
	}
}

// tokenRegistry guards a test registry with Docker's token
// authentication: /token issues a token per scope to alice (and a
// pull-only one for public/* to anyone).
type tokenRegistry struct {
	*testRegistry
	mu     sync.Mutex
	scopes []string // asked of the token server
}

func newTokenRegistry(t *testing.T) *tokenRegistry {
	tr := &tokenRegistry{testRegistry: newRegistry(t)}
	realm := "http://" + tr.host + "/token"
	tr.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/token" {
			q := r.URL.Query()
			tr.mu.Lock()
			tr.scopes = append(tr.scopes, q["scope"]...)
			tr.mu.Unlock()
			u, p, ok := r.BasicAuth()
			if ok && (u != "alice" || p != "s3cret") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}`))
				return true
			}
			var granted []string
			for _, sc := range q["scope"] {
				if ok || strings.HasPrefix(sc, "repository:public/") && strings.HasSuffix(sc, ":pull") {
					granted = append(granted, sc)
				}
			}
			json.NewEncoder(w).Encode(map[string]any{"token": "tok " + strings.Join(granted, " "), "expires_in": 300})
			return true
		}
		// The registry: every /v2/ request needs a token with the scope.
		need := ""
		if parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/v2/"), "/", 2); len(parts) == 2 || r.URL.Path != "/v2/" {
			repo := strings.TrimPrefix(r.URL.Path, "/v2/")
			for _, sep := range []string{"/manifests/", "/blobs/"} {
				if i := strings.Index(repo, sep); i >= 0 {
					repo = repo[:i]
				}
			}
			action := "pull"
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				action = "push"
			}
			need = "repository:" + repo + ":" + action
		}
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		okTok := strings.HasPrefix(tok, "tok")
		if need != "" {
			okTok = false
			for _, sc := range strings.Fields(tok)[1:] {
				repo, actions, _ := strings.Cut(strings.TrimPrefix(sc, "repository:"), ":")
				for _, a := range strings.Split(actions, ",") {
					if "repository:"+repo+":"+a == need {
						okTok = true
					}
				}
			}
		}
		if okTok {
			return false
		}
		ch := fmt.Sprintf(`Bearer realm=%q,service="test-registry"`, realm)
		if need != "" {
			ch += fmt.Sprintf(`,scope=%q`, need)
		}
		w.Header().Set("WWW-Authenticate", ch)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(unauthorizedBody))
		return true
	})
	return tr
}

func TestBearerTokenAuth(t *testing.T) {
	needRoot(t)
	reg := newTokenRegistry(t)
	img := mkImage(t, runtime.GOARCH, mkLayer(t, map[string]string{"f": "bearer"}))
	// Seed the registry behind the guard.
	reg.mu.Lock()
	hook := reg.hook
	reg.hook = nil
	reg.mu.Unlock()
	reg.putImage("private/app", "v1", img)
	reg.putImage("public/app", "v1", img)
	reg.setHook(hook)

	s, _ := newStore(t)
	c := newClient(t, s, Config{})
	alice := &api.AuthConfig{Username: "alice", Password: "s3cret"}

	// Anonymous tokens open public repositories only.
	if _, err := c.Pull(ctx, reg.host+"/public/app:v1", PullOptions{}); err != nil {
		t.Fatalf("anonymous pull of a public repository: %v", err)
	}
	_, err := c.Pull(ctx, reg.host+"/private/app:v1", PullOptions{})
	if !errdefs.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "pull access denied") {
		t.Errorf("anonymous pull of a private repository: %v; want pull access denied", err)
	}
	_, err = c.Pull(ctx, reg.host+"/private/app:v1", PullOptions{Auth: &api.AuthConfig{Username: "alice", Password: "nope"}})
	if !errdefs.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "incorrect username or password") {
		t.Errorf("pull with a wrong password: %v; want the token server's unauthorized", err)
	}
	reg.mu.Lock()
	reg.scopes = nil
	reg.mu.Unlock()
	got, err := c.Pull(ctx, reg.host+"/private/app:v1", PullOptions{Auth: alice})
	if err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if got.ID != img.id() {
		t.Errorf("pulled %s, want %s", got.ID, img.id())
	}
	reg.mu.Lock()
	scopes := strings.Join(reg.scopes, " ")
	reg.mu.Unlock()
	if !strings.Contains(scopes, "repository:private/app:pull") {
		t.Errorf("token requests asked for %q; want repository:private/app:pull", scopes)
	}

	// Push needs push scope; the token flow asks for it.
	if err := s.Tag(got.ID, reg.host+"/private/copy:v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, reg.host+"/private/copy:v2", PushOptions{}); !errdefs.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("anonymous push: %v; want unauthorized", err)
	}
	res, err := c.Push(ctx, reg.host+"/private/copy:v2", PushOptions{Auth: alice})
	if err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	if len(res) != 1 || res[0].Digest != img.digest().String() {
		t.Errorf("push result %+v, want digest %s (the pulled manifest, unchanged)", res, img.digest())
	}

	// login
	if _, err := c.Login(ctx, api.AuthConfig{Username: "alice", Password: "nope", ServerAddress: reg.host}); !errdefs.Is(err, errdefs.ErrUnauthorized) ||
		!strings.Contains(err.Error(), "incorrect username or password") {
		t.Errorf("login with a wrong password: %v", err)
	}
	if _, err := c.Login(ctx, *alice); err == nil {
		t.Errorf("login without a server address went to Docker Hub and succeeded offline?")
	}
	alice.ServerAddress = "http://" + reg.host
	if _, err := c.Login(ctx, *alice); err != nil {
		t.Errorf("login: %v", err)
	}
}

func TestTransportSecurity(t *testing.T) {
	needRoot(t)
	img := mkImage(t, runtime.GOARCH, mkLayer(t, map[string]string{"f": "tls"}))
	plain := newRegistry(t)
	plain.putImage("x", "v1", img)
	u, _ := url.Parse(plain.srv.URL)

	// A plain-HTTP registry under a name that is not loopback: refused,
	// with the way out.
	for _, host := range []string{"registry.test:5000", "10.255.0.1:5000"} {
		s, _ := newStore(t)
		c := newClient(t, s, Config{Transport: dialTo(u.Host)})
		_, err := c.Pull(ctx, host+"/x:v1", PullOptions{})
		if err == nil || !strings.Contains(err.Error(), "answers plain HTTP") || !strings.Contains(err.Error(), "--insecure-registry "+host) {
			t.Errorf("pull from plain-HTTP %s: %v; want a refusal naming --insecure-registry", host, err)
		}
		// Listed as insecure (by name or by network), it works.
		for _, entry := range []string{host, "10.0.0.0/8"} {
			if entry == "10.0.0.0/8" && !strings.HasPrefix(host, "10.") {
				continue
			}
			c2 := newClient(t, s, Config{Transport: dialTo(u.Host), InsecureRegistries: []string{entry}})
			if _, err := c2.Pull(ctx, host+"/x:v1", PullOptions{}); err != nil {
				t.Errorf("pull from %s with --insecure-registry %s: %v", host, entry, err)
			}
		}
	}

	// An HTTPS registry with a certificate nobody trusts.
	tlsSrv := httptest.NewTLSServer(plain.srv.Config.Handler)
	defer tlsSrv.Close()
	tu, _ := url.Parse(tlsSrv.URL)
	s, _ := newStore(t)
	c := newClient(t, s, Config{Transport: dialTo(tu.Host)})
	_, err := c.Pull(ctx, "secure.test:443/x:v1", PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "TLS certificate not trusted") {
		t.Errorf("pull from an untrusted HTTPS registry: %v", err)
	}
	c = newClient(t, s, Config{Transport: dialTo(tu.Host), InsecureRegistries: []string{"secure.test:443"}})
	if _, err := c.Pull(ctx, "secure.test:443/x:v1", PullOptions{}); err != nil {
		t.Errorf("pull from an insecure-listed HTTPS registry: %v", err)
	}

	// Unknown host and nothing listening.
	c = newClient(t, s, Config{})
	if _, err := c.Pull(ctx, "nosuch.invalid/x:v1", PullOptions{}); !errdefs.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "unknown host") {
		t.Errorf("pull from an unknown host: %v", err)
	}
	if _, err := c.Pull(ctx, "127.0.0.1:1/x:v1", PullOptions{}); !errdefs.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("pull from a closed port: %v", err)
	}
	if _, err := New(s, Config{InsecureRegistries: []string{"10.0.0.0/99"}}); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad --insecure-registry accepted: %v", err)
	}
}

func TestAllowHTTP(t *testing.T) {
	s, _ := newStore(t)
	c := newClient(t, s, Config{InsecureRegistries: []string{"myreg:5000", "192.168.0.0/16", "http://other.example/"}})
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.1.2.3": true, "[::1]:5000": true, "localhost:5000": true, "localhost": true,
		"myreg:5000": true, "myreg:5001": false, "192.168.4.5:80": true, "10.0.0.1:5000": false,
		"other.example": true, "docker.io": false, "registry-1.docker.io": false,
	} {
		if got := c.AllowHTTP(host); got != want {
			t.Errorf("AllowHTTP(%q) = %v, want %v", host, got, want)
		}
	}
}
