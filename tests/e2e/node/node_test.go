package node

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func podYAML(name, node, image, policy, command string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  nodeName: %s
  restartPolicy: %s
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: %s
    command: ["sh", "-c", %q]
    env: [{name: GREETING, value: hello}]
    resources:
      limits: {memory: 64Mi, cpu: 500m}
`, name, node, policy, image, command)
}

func running(p *podJSON) bool {
	return p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
}

func TestNodeRegistered(t *testing.T) {
	out := env.kube(t, "get", "node", env.node, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status} {.metadata.labels.e2e} {.metadata.labels.kubernetes\\.io/hostname} {.status.nodeInfo.containerRuntimeVersion} {.status.capacity.pods}")
	f := strings.Fields(out)
	if len(f) != 5 || f[0] != "True" || f[1] != "yes" || f[2] != env.node || !strings.HasPrefix(f[3], "berth://") || f[4] != "110" {
		t.Fatalf("node: got %q, want Ready True, label e2e=yes, hostname label, berth:// runtime, 110 pods", out)
	}
	lease := env.kube(t, "get", "lease", "-n", "kube-node-lease", env.node, "-o", "jsonpath={.spec.holderIdentity} {.spec.leaseDurationSeconds} {.spec.renewTime}")
	f = strings.Fields(lease)
	if len(f) != 3 || f[0] != env.node || f[1] != "4" {
		t.Fatalf("lease: got %q", lease)
	}
	// The agent keeps a serving certificate for its streaming endpoint,
	// signed by the cluster CA.
	caPEM, err1 := os.ReadFile(filepath.Join(env.dir, "agent", "pki", "ca.crt"))
	certPEM, err2 := os.ReadFile(filepath.Join(env.dir, "agent", "pki", "serving.crt"))
	if err1 != nil || err2 != nil {
		t.Fatalf("agent credentials: %v %v", err1, err2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: env.node, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving certificate: %v", err)
	}
	time.Sleep(2 * time.Second)
	again := env.kube(t, "get", "lease", "-n", "kube-node-lease", env.node, "-o", "jsonpath={.spec.renewTime}")
	if again == f[2] {
		t.Errorf("lease not renewed within 2s: renewTime still %s", again)
	}
}

func TestPodLifecycle(t *testing.T) {
	t0 := time.Now()
	env.apply(t, podYAML("life", env.node, "busybox:e2e", "Always", "echo $GREETING; exec sleep 3600"))
	p := env.waitPod(t, "life", 30*time.Second, "Running", running)
	t.Logf("pod Running %v after create", time.Since(t0).Round(time.Millisecond))
	if p.Status.PodIP == "" || !p.Status.ContainerStatuses[0].Ready || !strings.HasPrefix(p.Status.ContainerStatuses[0].ContainerID, "berth://") {
		t.Errorf("status: got %+v", p.Status)
	}
	out := env.kube(t, "get", "pod", "life", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
	if out != "True" {
		t.Errorf("Ready condition: got %q, want True", out)
	}
	if ev := env.kube(t, "get", "events", "--field-selector", "involvedObject.name=life"); !strings.Contains(ev, "Started") || !strings.Contains(ev, "Created") {
		t.Errorf("events lack Created/Started:\n%s", ev)
	}

	// Kill the main process: the agent restarts it at once (first restart
	// has no back-off) and restartCount goes up.
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "berth://")
	pid, err := env.berth("inspect", "-f", "{{.State.Pid}}", id)
	if err != nil {
		t.Fatalf("inspect: %v %s", err, pid)
	}
	var n int
	fmt.Sscan(pid, &n)
	t1 := time.Now()
	if err := syscall.Kill(n, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p = env.waitPod(t, "life", 15*time.Second, "restarted", func(p *podJSON) bool {
		return running(p) && p.Status.ContainerStatuses[0].RestartCount == 1
	})
	t.Logf("killed main process restarted, observed via kubectl after %v", time.Since(t1).Round(time.Millisecond))
	started := p.Status.ContainerStatuses[0].State.Running.StartedAt
	cid := p.Status.ContainerStatuses[0].ContainerID

	// SIGKILL the agent and start it again (without the token: the stored
	// credential suffices). The container is adopted, not restarted.
	env.agent.signal(syscall.SIGKILL)
	if err := env.startAgent(false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	p = env.waitPod(t, "life", 10*time.Second, "Running", running)
	if got := p.Status.ContainerStatuses[0]; got.State.Running.StartedAt != started || got.ContainerID != cid || got.RestartCount != 1 {
		t.Errorf("after agent SIGKILL+restart: got started %s id %s restarts %d, want %s %s 1", got.State.Running.StartedAt, got.ContainerID, got.RestartCount, started, cid)
	}

	// Deleting the pod stops its containers and removes the pod object.
	if out, err := env.kubectl("", "delete", "pod", "life", "--wait=true", "--timeout=30s"); err != nil {
		t.Fatalf("delete: %v %s", err, out)
	}
	// The API server removes the object once the grace period is over; the
	// agent removes the containers right after stopping them.
	waitNoContainers(t, "life", 5*time.Second)
}

func waitNoContainers(t *testing.T, pod string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ps, _ := env.berth("ps", "-a", "--filter", "label=io.kubernetes.pod.name="+pod, "-q"); strings.TrimSpace(ps) == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	ps, _ := env.berth("ps", "-a")
	t.Fatalf("containers of the deleted pod %s still there after %v:\n%s", pod, d, ps)
}

func TestCrashLoopAndExitCodes(t *testing.T) {
	env.apply(t, podYAML("crash", env.node, "busybox:e2e", "Always", "exit 3"))
	p := env.waitPod(t, "crash", 30*time.Second, "in CrashLoopBackOff", func(p *podJSON) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil && p.Status.ContainerStatuses[0].State.Waiting.Reason == "CrashLoopBackOff"
	})
	if p.Status.ContainerStatuses[0].RestartCount < 1 {
		t.Errorf("crash loop: restartCount %d, want ≥ 1", p.Status.ContainerStatuses[0].RestartCount)
	}
	if out := env.kube(t, "get", "pod", "crash", "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode} {.status.containerStatuses[0].lastState.terminated.reason}"); out != "3 Error" {
		t.Errorf("lastState: got %q, want \"3 Error\"", out)
	}
	if ev := env.kube(t, "get", "events", "--field-selector", "involvedObject.name=crash"); !strings.Contains(ev, "BackOff") {
		t.Errorf("no BackOff event:\n%s", ev)
	}
	env.apply(t, podYAML("done", env.node, "busybox:e2e", "Never", "exit 0"))
	env.waitPod(t, "done", 30*time.Second, "Succeeded", func(p *podJSON) bool { return p.Status.Phase == "Succeeded" })
	env.apply(t, podYAML("fail", env.node, "busybox:e2e", "Never", "echo out of cheese > /dev/termination-log; exit 7"))
	env.waitPod(t, "fail", 30*time.Second, "Failed", func(p *podJSON) bool {
		return p.Status.Phase == "Failed" && p.Status.ContainerStatuses[0].State.Terminated != nil && p.Status.ContainerStatuses[0].State.Terminated.ExitCode == 7
	})
	if out := env.kube(t, "get", "pod", "fail", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.message}"); out != "out of cheese\n" {
		t.Errorf("termination message: got %q, want \"out of cheese\\n\"", out)
	}
	logYAML := strings.Replace(podYAML("logfail", env.node, "busybox:e2e", "Never", "echo dying words; exit 4"),
		"    image:", "    terminationMessagePolicy: FallbackToLogsOnError\n    image:", 1)
	env.apply(t, logYAML)
	env.waitPod(t, "logfail", 30*time.Second, "Failed", func(p *podJSON) bool { return p.Status.Phase == "Failed" })
	if out := env.kube(t, "get", "pod", "logfail", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.message}"); out != "dying words\n" {
		t.Errorf("termination message from the logs: got %q, want \"dying words\\n\"", out)
	}
	env.kube(t, "delete", "pod", "crash", "done", "fail", "logfail", "--grace-period=1")
}

func TestBadImage(t *testing.T) {
	env.apply(t, podYAML("badimg", env.node, "nosuch.invalid/nothing:1", "Always", "true"))
	p := env.waitPod(t, "badimg", 30*time.Second, "failing its pull", func(p *podJSON) bool {
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil {
			return false
		}
		r := p.Status.ContainerStatuses[0].State.Waiting.Reason
		return r == "ErrImagePull" || r == "ImagePullBackOff"
	})
	if msg := p.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, "nosuch.invalid") {
		t.Errorf("pull error message does not name the image: %q", msg)
	}
	env.waitPod(t, "badimg", 30*time.Second, "in ImagePullBackOff", func(p *podJSON) bool {
		return p.Status.ContainerStatuses[0].State.Waiting != nil && p.Status.ContainerStatuses[0].State.Waiting.Reason == "ImagePullBackOff"
	})
	if ev := env.kube(t, "get", "events", "--field-selector", "involvedObject.name=badimg"); !strings.Contains(ev, "Failed to pull image") {
		t.Errorf("no pull failure event:\n%s", ev)
	}
	env.kube(t, "delete", "pod", "badimg", "--grace-period=1")
}

// A pod deleted while the agent is down has its containers removed when
// the agent comes back.
func TestOrphanRemovedAfterAgentRestart(t *testing.T) {
	env.apply(t, podYAML("orphan", env.node, "busybox:e2e", "Always", "exec sleep 3600"))
	env.waitPod(t, "orphan", 30*time.Second, "Running", running)
	env.agent.signal(syscall.SIGKILL)
	env.kube(t, "delete", "pod", "orphan", "--force", "--grace-period=0")
	if ps, _ := env.berth("ps", "--filter", "label=io.kubernetes.pod.name=orphan", "-q"); strings.TrimSpace(ps) == "" {
		t.Fatal("the pod's container stopped while the agent was down")
	}
	if err := env.startAgent(false); err != nil {
		t.Fatal(err)
	}
	waitNoContainers(t, "orphan", 30*time.Second)
}
