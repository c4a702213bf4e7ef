package node

import (
	"strings"
	"testing"
	"time"
)

const securityYAML = `apiVersion: v1
kind: Pod
metadata: {name: sec}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 1000, runAsGroup: 3000}
  containers:
  - name: main
    image: busybox:e2e
    command: ["sh", "-c", "id -u; id -g; touch /x 2>/dev/null || echo read-only; cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; exec sleep 3600"]
    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    resources: {limits: {memory: 32Mi, cpu: 250m}}
---
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  nodeName: NODE
  restartPolicy: Never
  containers:
  - name: main
    image: busybox:e2e
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]
    resources: {limits: {memory: 16Mi}}
`

// securityContext and limits reach the container: the user and group,
// a read-only root, the memory limit; going over it is OOMKilled.
func TestSecurityAndLimits(t *testing.T) {
	env.apply(t, strings.ReplaceAll(securityYAML, "NODE", env.node))
	env.waitPod(t, "sec", 30*time.Second, "Running", running)
	var out string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if out, _ = env.kubectl("", "logs", "sec"); strings.Count(out, "\n") >= 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out != "1000\n3000\nread-only\n33554432\n" {
		t.Errorf("uid, gid, read-only root, memory limit: got %q", out)
	}
	p := env.waitPod(t, "oom", 60*time.Second, "Failed", func(p *podJSON) bool { return p.Status.Phase == "Failed" })
	if st := p.Status.ContainerStatuses[0].State.Terminated; st == nil || st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("over its memory limit: got %+v, want terminated OOMKilled 137", p.Status.ContainerStatuses[0].State)
	}
	env.kube(t, "delete", "pod", "sec", "oom", "--grace-period=1")
}
