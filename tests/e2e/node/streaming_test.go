package node

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kubectl logs and exec reach the container through the API server and
// the agent's streaming endpoint (with the serving certificate from the
// join).
func TestKubectlLogsExec(t *testing.T) {
	env.apply(t, podYAML("talk", env.node, "busybox:e2e", "Always", "echo hello from talk; exec sleep 3600"))
	p := env.waitPod(t, "talk", 30*time.Second, "Running", running)
	if out := env.kube(t, "logs", "talk"); out != "hello from talk\n" {
		t.Errorf("kubectl logs: got %q", out)
	}
	if out := env.kube(t, "exec", "talk", "--", "sh", "-c", "echo $GREETING"); out != "hello\n" {
		t.Errorf("kubectl exec: got %q, want hello", out)
	}
	_, err := env.kubectl("", "exec", "talk", "--", "sh", "-c", "exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("kubectl exec exit code: got %v, want 3", err)
	}
	// --previous reads the instance before a restart.
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "berth://")
	pid, _ := env.berth("inspect", "-f", "{{.State.Pid}}", id)
	var n int
	if _, err := fmt.Sscan(pid, &n); err != nil || syscall.Kill(n, syscall.SIGKILL) != nil {
		t.Fatalf("killing %q", pid)
	}
	env.waitPod(t, "talk", 15*time.Second, "restarted", func(p *podJSON) bool {
		return running(p) && p.Status.ContainerStatuses[0].RestartCount == 1
	})
	if out := env.kube(t, "logs", "talk", "--previous"); out != "hello from talk\n" {
		t.Errorf("kubectl logs --previous: got %q", out)
	}
	env.kube(t, "delete", "pod", "talk", "--grace-period=1")
}
