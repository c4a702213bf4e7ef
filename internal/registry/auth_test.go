package registry

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func writeHtpasswd(t *testing.T, path string, users map[string]string) {
	t.Helper()
	var b strings.Builder
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		// htpasswd -B writes the $2y$ prefix
		b.WriteString(u + ":" + strings.Replace(string(h), "$2a$", "$2y$", 1) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestBasicAuth(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "htpasswd")
	writeHtpasswd(t, pw, map[string]string{"alice": "s3cret"})
	var logs bytes.Buffer
	e := newEnv(t, Options{Htpasswd: pw, Realm: "test", Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	before := e.files()
	data := randBytes(100)
	for _, tc := range []struct{ user, pass string }{{"", ""}, {"alice", "wrong"}, {"bob", "s3cret"}} {
		e.user, e.pass = tc.user, tc.pass
		for _, req := range [][2]string{{"GET", "/v2/"}, {"POST", "/v2/a/blobs/uploads/?digest=" + string(digestOf(data))}, {"GET", "/v2/a/tags/list"}} {
			r := e.do(req[0], req[1], bytes.NewReader(data))
			e.expect(r, 401, "UNAUTHORIZED")
			if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="test"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		}
	}
	e.expectSameFiles(before, "unauthenticated requests")
	e.user, e.pass = "alice", "s3cret"
	e.expect(e.do("GET", "/v2/", nil), 200, "")
	e.pushBlob("a", data)
	if strings.Contains(logs.String(), "Authorization") || strings.Contains(logs.String(), "s3cret") || strings.Contains(logs.String(), "Basic ") {
		t.Errorf("the request log shows credentials:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "user=alice") {
		t.Errorf("the request log does not name the user:\n%s", logs.String())
	}

	// a changed file is picked up: alice's password changes, bob is added
	writeHtpasswd(t, pw, map[string]string{"alice": "new", "bob": "pw"})
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(pw, future, future)
	e.reg.auth.mu.Lock()
	e.reg.auth.checked = time.Time{}
	e.reg.auth.mu.Unlock()
	e.expect(e.do("GET", "/v2/", nil), 401, "UNAUTHORIZED")
	e.user, e.pass = "bob", "pw"
	e.expect(e.do("GET", "/v2/", nil), 200, "")
}

func TestHtpasswdRejectsOtherHashes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "line 1 (user \"alice\"): not a bcrypt hash"},
		{"# comment\n\nbob:$apr1$x$y\n", "line 3 (user \"bob\"): not a bcrypt hash"},
		{"justaname\n", "line 1: want user:hash"},
	} {
		p := filepath.Join(dir, "htpasswd")
		os.WriteFile(p, []byte(tc.content), 0o600)
		_, err := New(Options{Root: t.TempDir(), Htpasswd: p})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("htpasswd %q: got %v, want an error naming %s and %q", tc.content, err, p, tc.want)
		}
	}
	if _, err := New(Options{Root: t.TempDir(), Htpasswd: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing htpasswd file was accepted")
	}
}
