package orch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// claimPod is a pod of role that runs command with the claim "data" at
// /data.
func claimPod(name, role, command string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, labels: {role: %s}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: lab/app:v1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, %q]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
---
`, name, role, command)
}

// Scenario 13: persistent volumes. A claim of the default class
// (local-path) is provisioned on the node its first pod is scheduled to;
// once that pod is deleted, three new pods of the claim all land on that
// node (the volume's node affinity) and read what the first one wrote;
// deleting the claim deletes the volume and its directory on the node.
func TestScenario13PersistentVolume(t *testing.T) {
	ns := namespace(t, "s13")
	ctx := context.Background()
	apply(t, ns, `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
`)
	start := time.Now()
	apply(t, ns, claimPod("writer", "writer", "echo from-writer > /data/f && exec sleep 100000"))
	ready, _ := waitReady(t, ns, "role=writer", 1, 90*time.Second)
	provisioned := time.Since(start)
	node := ready[0].Spec.NodeName
	pvc, err := client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Status.Phase != "Bound" || pvc.Annotations["volume.kubernetes.io/selected-node"] != node || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "local-path" {
		t.Fatalf("claim: got phase %s class %v annotations %v, want Bound, local-path, selected node %s", pvc.Status.Phase, pvc.Spec.StorageClassName, pvc.Annotations, node)
	}
	pv, err := client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.Local == nil || !strings.HasPrefix(pv.Spec.Local.Path, theLab.Dir()+"/nodes/"+node+"/volumes/") {
		t.Fatalf("volume source: got %+v, want a local path under %s's --volumes-dir", pv.Spec.PersistentVolumeSource, node)
	}
	dir := pv.Spec.Local.Path

	k(t, "delete", "pod", "-n", ns, "writer", "--wait=true", "--timeout=60s")
	var readers strings.Builder
	for i := 1; i <= 3; i++ {
		readers.WriteString(claimPod(fmt.Sprintf("reader%d", i), "reader", "cat /data/f; exec sleep 100000"))
	}
	apply(t, ns, readers.String())
	ps, _ := waitReady(t, ns, "role=reader", 3, 90*time.Second)
	for _, p := range ps {
		if p.Spec.NodeName != node {
			t.Errorf("pod %s on %s, want %s (where its volume is)", p.Name, p.Spec.NodeName, node)
		}
		waitFor(t, 10*time.Second, p.Name+" logs", func() (bool, string) {
			out, _ := kubectl(t, "", "logs", "-n", ns, p.Name)
			return out == "from-writer\n", out
		})
	}

	k(t, "delete", "pod", "-n", ns, "-l", "role=reader", "--wait=true", "--timeout=60s")
	start = time.Now()
	k(t, "delete", "pvc", "-n", ns, "data", "--wait=true", "--timeout=60s")
	gone := waitFor(t, 60*time.Second, "volume and directory removed", func() (bool, string) {
		_, err := client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		_, statErr := os.Stat(dir)
		return apierrors.IsNotFound(err) && errors.Is(statErr, os.ErrNotExist), fmt.Sprintf("pv: %v, dir: %v", err, statErr)
	})
	report(t, "13-persistent-volume", "first_pod_ready", provisioned, "claim_delete_to_dir_gone", gone, "node", node)
}
