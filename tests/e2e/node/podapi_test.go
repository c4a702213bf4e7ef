package node

import (
	"strings"
	"testing"
	"time"
)

const probesYAML = `apiVersion: v1
kind: ConfigMap
metadata: {name: greeting}
data: {greeting: hello-from-cm}
---
apiVersion: v1
kind: Pod
metadata: {name: inputs}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 2
  volumes:
  - {name: cfg, configMap: {name: greeting}}
  - {name: scratch, emptyDir: {}}
  containers:
  - name: main
    image: busybox:e2e
    command: ["sh", "-c", "echo $(GREETING) > /scratch/env; exec sleep 3600"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: greeting, key: greeting}}
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: scratch, mountPath: /scratch}
    lifecycle:
      postStart: {exec: {command: ["touch", "/tmp/ready"]}}
    readinessProbe:
      exec: {command: ["cat", "/tmp/ready"]}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: liveness}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:e2e
    command: ["sleep", "3600"]
    livenessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
      failureThreshold: 2
`

func TestEnvVolumesProbesHooks(t *testing.T) {
	env.apply(t, strings.ReplaceAll(probesYAML, "NODE", env.node))
	p := env.waitPod(t, "inputs", 30*time.Second, "Ready", func(p *podJSON) bool {
		return running(p) && p.Status.ContainerStatuses[0].Ready
	})
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "berth://")
	if out, err := env.berth("exec", id, "cat", "/scratch/env", "/cfg/greeting"); err != nil || out != "hello-from-cm\nhello-from-cm" {
		t.Errorf("env and configMap volume: got %q (%v), want hello-from-cm twice", out, err)
	}
	// Readiness follows the probe.
	if out, err := env.berth("exec", id, "rm", "/tmp/ready"); err != nil {
		t.Fatalf("rm: %v %s", err, out)
	}
	env.waitPod(t, "inputs", 10*time.Second, "not ready", func(p *podJSON) bool {
		return running(p) && !p.Status.ContainerStatuses[0].Ready
	})
	if out := env.kube(t, "get", "pod", "inputs", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"); out != "False" {
		t.Errorf("Ready condition: got %q, want False", out)
	}

	// A liveness probe on a port nobody listens on fails visibly and
	// restarts the container.
	env.waitPod(t, "liveness", 30*time.Second, "restarted by its liveness probe", func(p *podJSON) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	ev := env.kube(t, "get", "events", "--field-selector", "involvedObject.name=liveness")
	if !strings.Contains(ev, "Unhealthy") || !strings.Contains(ev, "Liveness probe failed") || !strings.Contains(ev, "failed liveness probe, will be restarted") {
		t.Errorf("liveness events:\n%s", ev)
	}
	env.kube(t, "delete", "pod", "inputs", "liveness", "--grace-period=1")
	env.kube(t, "delete", "configmap", "greeting")
}
