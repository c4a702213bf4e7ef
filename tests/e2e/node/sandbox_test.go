package node

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

const twoContainersYAML = `apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: prep, image: busybox:e2e, command: ["sh", "-c", "echo from-init > /shared/i"], volumeMounts: [{name: shared, mountPath: /shared}]}
  containers:
  - name: web
    image: busybox:e2e
    command: ["busybox", "httpd", "-f", "-p", "8080", "-h", "/shared"]
    volumeMounts: [{name: shared, mountPath: /shared}]
    readinessProbe: {httpGet: {port: 8080, path: /i}, periodSeconds: 1}
  - name: client
    image: busybox:e2e
    command: ["sleep", "3600"]
  volumes:
  - {name: shared, emptyDir: {}}
`

// The containers of a pod share the sandbox's network, IPC and UTS
// namespaces: one IP, localhost between them, the pod's hostname.
func TestPodSharesNamespaces(t *testing.T) {
	env.apply(t, strings.ReplaceAll(twoContainersYAML, "NODE", env.node))
	p := env.waitPod(t, "duo", 30*time.Second, "Running and ready", func(p *podJSON) bool {
		if p.Status.Phase != "Running" || len(p.Status.ContainerStatuses) != 2 {
			return false
		}
		for _, c := range p.Status.ContainerStatuses {
			if !c.Ready {
				return false
			}
		}
		return true
	})
	sb, err := env.berth("ps", "-q", "--no-trunc", "--filter", "label=io.kubernetes.pod.name=duo", "--filter", "label=io.berth.kind=sandbox")
	sb = strings.TrimSpace(sb)
	if err != nil || sb == "" || strings.Contains(sb, "\n") {
		t.Fatalf("want one running sandbox for the pod, got %q (%v)", sb, err)
	}
	if ip, _ := env.berth("inspect", "-f", "{{.NetworkSettings.IPAddress}}", sb); strings.TrimSpace(ip) != p.Status.PodIP {
		t.Errorf("pod IP %s, sandbox IP %s: want the sandbox's", p.Status.PodIP, ip)
	}
	var client string
	for _, c := range p.Status.ContainerStatuses {
		id := strings.TrimPrefix(c.ContainerID, "berth://")
		mode, _ := env.berth("inspect", "-f", "{{.HostConfig.NetworkMode}} {{.HostConfig.IpcMode}}", id)
		if want := "container:" + sb + " container:" + sb; strings.TrimSpace(mode) != want {
			t.Errorf("%s: network/ipc mode %q, want %q", c.Name, strings.TrimSpace(mode), want)
		}
		if c.Name == "client" {
			client = id
		}
	}
	if out, err := env.berth("exec", client, "busybox", "wget", "-qO-", "http://127.0.0.1:8080/i"); err != nil || strings.TrimSpace(out) != "from-init" {
		t.Errorf("client → web over localhost: got %q (%v), want from-init", out, err)
	}
	if out, _ := env.berth("exec", client, "hostname"); strings.TrimSpace(out) != "duo" {
		t.Errorf("hostname: got %q, want duo", out)
	}

	// When the sandbox dies the containers lost their namespaces: the
	// agent starts a new sandbox and restarts them in it.
	pid, _ := env.berth("inspect", "-f", "{{.State.Pid}}", sb)
	var n int
	fmt.Sscan(pid, &n)
	if n <= 0 || syscall.Kill(n, syscall.SIGKILL) != nil {
		t.Fatalf("killing the sandbox's pause process %q", pid)
	}
	p = env.waitPod(t, "duo", 30*time.Second, "restarted in a new sandbox", func(p *podJSON) bool {
		if p.Status.Phase != "Running" || len(p.Status.ContainerStatuses) != 2 {
			return false
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.RestartCount < 1 || c.State.Running == nil {
				return false
			}
		}
		return true
	})
	sb2, _ := env.berth("ps", "-q", "--no-trunc", "--filter", "label=io.kubernetes.pod.name=duo", "--filter", "label=io.berth.kind=sandbox")
	if sb2 = strings.TrimSpace(sb2); sb2 == "" || sb2 == sb {
		t.Errorf("sandbox after the kill: got %q, want a new one (old %s)", sb2, sb)
	}
	if ip, _ := env.berth("inspect", "-f", "{{.NetworkSettings.IPAddress}}", sb2); strings.TrimSpace(ip) != p.Status.PodIP {
		t.Errorf("pod IP %s after the new sandbox, sandbox IP %s", p.Status.PodIP, ip)
	}
	env.kube(t, "delete", "pod", "duo", "--grace-period=1")
	waitNoContainers(t, "duo", 10*time.Second)
}
