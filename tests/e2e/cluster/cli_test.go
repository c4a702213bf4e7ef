package cluster

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlainHTTPToHTTPSPort: the API is HTTPS only; a plain HTTP request
// to its port gets a 400 that says so, not a hang or a dropped
// connection.
func TestPlainHTTPToHTTPSPort(t *testing.T) {
	res, err := http.Get(strings.Replace(shared.url(), "https://", "http://", 1) + "/version")
	if err != nil {
		t.Fatalf("plain HTTP to the API port: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 400 || !strings.Contains(string(body), "HTTPS") {
		t.Errorf("plain HTTP: got %d %q, want 400 naming HTTPS", res.StatusCode, body)
	}
}

// berthCLI returns a berth binary with berth-server beside it, the way
// `berth server|agent|kubeconfig|token` find it: the repo's bin/ when it
// has both, else a fresh build next to a link to the server under test.
func berthCLI(t *testing.T) string {
	dir := filepath.Dir(serverBin)
	if _, err := os.Stat(filepath.Join(dir, "berth")); err == nil {
		return filepath.Join(dir, "berth")
	}
	tmp := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(tmp, "berth"), "./cmd/berth")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/berth: %v\n%s", err, out)
	}
	if err := os.Symlink(serverBin, filepath.Join(tmp, "berth-server")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(tmp, "berth")
}

// TestBerthCLIForwarding drives the control-plane commands through the
// berth CLI, which hands them to berth-server: the kubeconfig and token
// it prints are the data directory's, and an admin token it creates
// works for writes.
func TestBerthCLIForwarding(t *testing.T) {
	berth := berthCLI(t)
	run := func(args ...string) (string, error) {
		out, err := exec.Command(berth, args...).CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	kc, _ := os.ReadFile(shared.kubeconfig())
	if got := must("kubeconfig", "--data-dir", shared.dataDir); got != string(kc) {
		t.Errorf("berth kubeconfig differs from %s", shared.kubeconfig())
	}
	tok, _ := os.ReadFile(filepath.Join(shared.dataDir, "token"))
	if got := must("token", "--data-dir", shared.dataDir); got != string(tok) || !strings.HasPrefix(got, "K") {
		t.Errorf("berth token: got %q, want the join token %q", got, tok)
	}
	mustContain(t, must("server", "--help"), "usage: berth server", "--data-dir", "--disable-agent")
	if out, err := run("token", "bogus", "--data-dir", shared.dataDir); err == nil || !strings.Contains(out, "bogus") {
		t.Errorf("berth token bogus: want an error naming it, got %v %s", err, out)
	}
	if out, err := run("kubeconfig", "--data-dir", filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(out, "berth server --data-dir") {
		t.Errorf("berth kubeconfig of an empty dir: want an error saying how to fix it, got %v %s", err, out)
	}

	// An admin token made through the CLI writes, reads secrets and
	// deletes; kubectl carries it instead of the kubeconfig's certificate.
	admin := strings.TrimSpace(must("token", "create", "--role", "admin", "--data-dir", shared.dataDir))
	k := newKubectl(t, "/usr/bin/kubectl", shared)
	as := func(args ...string) string {
		t.Helper()
		out, err := k.run(t, "", append([]string{"--token", admin, "-n", "default"}, args...)...)
		if err != nil {
			t.Fatalf("kubectl as admin token %v: %v\n%s", args, err, out)
		}
		return out
	}
	mustContain(t, as("auth", "whoami"), "admin")
	mustContain(t, as("create", "secret", "generic", "cli-admin", "--from-literal=a=b"), "created")
	if got := as("get", "secret", "cli-admin", "-o", "jsonpath={.data.a}"); got != "Yg==" {
		t.Errorf("admin token reads the secret: got %q, want Yg==", got)
	}
	mustContain(t, as("delete", "secret", "cli-admin"), "deleted")
}
