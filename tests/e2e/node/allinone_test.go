package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `berth server` without --disable-agent runs its own node agent with a
// node credential it issues itself, on the engine at --engine. It shares
// the test engine with the joined agent: each collects only its own
// node's orphans.
func TestAllInOne(t *testing.T) {
	dir := t.TempDir()
	node := env.node + "-aio"
	port := freePort()
	srv, err := start("berth-server", "server", "--data-dir", filepath.Join(dir, "server"), "--bind-address", "127.0.0.1",
		"--port", fmt.Sprint(port), "--etcd-client-port", fmt.Sprint(freePort()), "--etcd-peer-port", fmt.Sprint(freePort()),
		"--engine", "unix://"+env.sock, "--agent-data-dir", filepath.Join(dir, "agent"), "--node-name", node, "--streaming-port", fmt.Sprint(freePort()),
		"--cluster-dns", "", // the joined agent serves the host's cluster DNS address
		// The joined agent's proxy owns this host's service table.
		"--proxy-mode", "none")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.signal(syscall.SIGTERM)
	if err := srv.waitLog("node agent ready", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(dir, "server", "kubeconfig")
	k := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kc}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "KUBECONFIG=")
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s\nserver log:\n%s", strings.Join(args, " "), err, out, tail(srv.log.String(), 30))
		}
		return string(out)
	}
	if out := k("", "get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"); out != "True" {
		t.Fatalf("all-in-one node Ready: got %q", out)
	}
	k(podYAML("aio", node, "busybox:e2e", "Always", "exec sleep 3600"), "apply", "-f", "-")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out := k("", "get", "pod", "aio", "-o", "jsonpath={.status.phase}"); out == "Running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("all-in-one pod not Running:\n%s", k("", "get", "pod", "aio", "-o", "yaml"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The joined agent of the other cluster leaves this pod alone.
	time.Sleep(6 * time.Second)
	if out := k("", "get", "pod", "aio", "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].restartCount}"); out != "Running 0" {
		t.Errorf("all-in-one pod beside another agent: got %q, want \"Running 0\"", out)
	}
	k("", "delete", "pod", "aio", "--grace-period=1")
	waitNoContainers(t, "aio", 10*time.Second)
}
