package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// claimPodYAML is a scheduled pod (no nodeName) that runs command with
// the claim "data" at /data.
func claimPodYAML(name, command string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:e2e
    command: ["sh", "-c", %q]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
`, name, command)
}

// TestPersistentVolume: a claim of the default class (local-path) is
// provisioned on the node of the first pod that uses it; a pod writes a
// file, is deleted, and a new pod on the same node reads it back; deleting
// the claim deletes the volume and the agent removes its directory.
func TestPersistentVolume(t *testing.T) {
	if out := env.kube(t, "get", "storageclass"); !strings.Contains(out, "local-path (default)") || !strings.Contains(out, "berth.dev/local-path") || !strings.Contains(out, "WaitForFirstConsumer") {
		t.Fatalf("storage classes:\n%s\nwant local-path (default), berth.dev/local-path, WaitForFirstConsumer", out)
	}
	env.apply(t, `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
`)
	if out := env.kube(t, "get", "pvc", "data", "-o", "jsonpath={.spec.storageClassName} {.status.phase}"); out != "local-path Pending" {
		t.Errorf("claim before a pod uses it: got %q, want the default class and Pending (WaitForFirstConsumer)", out)
	}
	t0 := time.Now()
	env.apply(t, claimPodYAML("writer", "echo written-by-writer > /data/f && exec sleep 3600"))
	env.waitPod(t, "writer", 60*time.Second, "Running", running)
	t.Logf("pod with a new claim Running %v after create", time.Since(t0).Round(time.Millisecond))
	out := env.kube(t, "get", "pvc", "data", "-o", "jsonpath={.status.phase} {.spec.volumeName} {.metadata.annotations.volume\\.kubernetes\\.io/selected-node}")
	f := strings.Fields(out)
	if len(f) != 3 || f[0] != "Bound" || f[2] != env.node {
		t.Fatalf("claim: got %q, want Bound, a volume, selected node %s", out, env.node)
	}
	pv := f[1]
	out = env.kube(t, "get", "pv", pv, "-o", "jsonpath={.status.phase} {.spec.local.path} {.spec.persistentVolumeReclaimPolicy} {.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}")
	dir := filepath.Join(env.dir, "volumes", pv)
	if want := "Bound " + dir + " Delete " + env.node; out != want {
		t.Errorf("volume: got %q, want %q", out, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "written-by-writer\n" {
		t.Errorf("file on the node: got %q %v", b, err)
	}

	if out, err := env.kubectl("", "delete", "pod", "writer", "--wait=true", "--timeout=30s"); err != nil {
		t.Fatalf("delete writer: %v %s", err, out)
	}
	t1 := time.Now()
	env.apply(t, claimPodYAML("reader", "cat /data/f; exec sleep 3600"))
	env.waitPod(t, "reader", 60*time.Second, "Running", running)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := env.kubectl("", "logs", "reader")
		if out == "written-by-writer\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader logs: got %q, want the file the writer left", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("second pod read the data %v after create", time.Since(t1).Round(time.Millisecond))
	if out, err := env.kubectl("", "delete", "pod", "reader", "--wait=true", "--timeout=30s"); err != nil {
		t.Fatalf("delete reader: %v %s", err, out)
	}

	t2 := time.Now()
	if out, err := env.kubectl("", "delete", "pvc", "data", "--wait=true", "--timeout=30s"); err != nil {
		t.Fatalf("delete claim: %v %s", err, out)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, pvErr := env.kubectl("", "get", "pv", pv)
		_, dirErr := os.Stat(dir)
		if pvErr != nil && errors.Is(dirErr, os.ErrNotExist) {
			t.Logf("volume and directory gone %v after the claim's delete", time.Since(t2).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after deleting the claim: pv lookup error %v, directory %v; want the volume and its directory gone", pvErr, dirErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
