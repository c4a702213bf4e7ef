package node

import (
	"strings"
	"testing"
	"time"
)

const sidecarYAML = `apiVersion: v1
kind: Pod
metadata: {name: side}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  initContainers:
  - {name: proxy, image: busybox:e2e, restartPolicy: Always, command: ["sh", "-c", "echo up > /shared/up; exec sleep 3600"], volumeMounts: [{name: shared, mountPath: /shared}]}
  containers:
  - {name: main, image: busybox:e2e, command: ["sh", "-c", "cat /shared/up; sleep 2"], volumeMounts: [{name: shared, mountPath: /shared}]}
  volumes:
  - {name: shared, emptyDir: {}}
`

// A sidecar (init container with restartPolicy Always) runs beside the
// main container, which starts after it; the pod completes with the main
// container and the sidecar is stopped.
func TestSidecar(t *testing.T) {
	env.apply(t, strings.ReplaceAll(sidecarYAML, "NODE", env.node))
	env.waitPod(t, "side", 30*time.Second, "Running", func(p *podJSON) bool { return p.Status.Phase == "Running" })
	if out := env.kube(t, "get", "pod", "side", "-o", "jsonpath={.status.initContainerStatuses[0].state.running.startedAt}"); out == "" {
		t.Errorf("the sidecar is not running beside the main container")
	}
	env.waitPod(t, "side", 30*time.Second, "Succeeded", func(p *podJSON) bool { return p.Status.Phase == "Succeeded" })
	if out := env.kube(t, "logs", "side", "-c", "main"); out != "up\n" {
		t.Errorf("main saw the sidecar's file: got %q, want up", out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps, _ := env.berth("ps", "-q", "--filter", "label=io.kubernetes.pod.name=side", "--filter", "label=io.kubernetes.container.name=proxy")
		if strings.TrimSpace(ps) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sidecar still runs after the pod completed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	env.kube(t, "delete", "pod", "side", "--grace-period=1")
}
