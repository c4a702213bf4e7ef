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

// Scenario 14: a stateful app. A StatefulSet of 2 with a volume claim
// template: each pod gets its own provisioned volume and writes its name
// there once. A deleted pod comes back under its name, on its volume's
// node, and finds what it wrote; scaling down keeps the claim (Retain) and
// scaling up again gives the returning pod its old data.
func TestScenario14StatefulVolumes(t *testing.T) {
	ns := namespace(t, "s14")
	start := time.Now()
	apply(t, ns, `apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sh, -c, '[ -f /data/id ] || { hostname > /data/id; date +%s%N >> /data/id; }; exec sleep 100000']
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 8Mi}}
`)
	k(t, "rollout", "status", "-n", ns, "statefulset/db", "--timeout=90s")
	up := time.Since(start)
	read := func(pod string) string {
		t.Helper()
		out, err := kubectl(t, "", "exec", "-n", ns, pod, "--", "cat", "/data/id")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	id0, id1 := read("db-0"), read("db-1")
	if !strings.HasPrefix(id0, "db-0\n") || !strings.HasPrefix(id1, "db-1\n") {
		t.Fatalf("each pod should have written its own name: db-0 has %q, db-1 has %q", id0, id1)
	}
	for _, c := range []string{"data-db-0", "data-db-1"} {
		pvc, err := client.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), c, metav1.GetOptions{})
		if err != nil || pvc.Spec.VolumeName == "" {
			t.Fatalf("claim %s: %v, bound to %q", c, err, pvc.Spec.VolumeName)
		}
	}
	var before struct {
		Metadata struct{ UID string }
		Spec     struct{ NodeName string }
	}
	kjson(t, &before, "-n", ns, "pod/db-0")

	// A deleted pod returns under its name to its volume.
	k(t, "delete", "-n", ns, "pod/db-0", "--wait=false")
	back := waitFor(t, 60*time.Second, "db-0 back and ready", func() (bool, string) {
		for _, p := range pods(t, ns, "app=db") {
			if p.Name == "db-0" && string(p.UID) != before.Metadata.UID && podReady(&p) {
				return true, ""
			}
		}
		return false, describe(pods(t, ns, "app=db"))
	})
	var after struct{ Spec struct{ NodeName string } }
	kjson(t, &after, "-n", ns, "pod/db-0")
	if after.Spec.NodeName != before.Spec.NodeName {
		t.Errorf("db-0 came back on %s, its volume is on %s", after.Spec.NodeName, before.Spec.NodeName)
	}
	if got := read("db-0"); got != id0 {
		t.Errorf("db-0 after its restart reads %q, wrote %q", got, id0)
	}

	// Scale down keeps the claim; scale up gives it back.
	k(t, "scale", "-n", ns, "statefulset/db", "--replicas=1")
	waitFor(t, 60*time.Second, "db-1 gone", func() (bool, string) {
		ps := pods(t, ns, "app=db")
		return len(ps) == 1, describe(ps)
	})
	if _, err := client.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), "data-db-1", metav1.GetOptions{}); err != nil {
		t.Fatalf("claim data-db-1 after scaling down: %v (the default policy retains it)", err)
	}
	k(t, "scale", "-n", ns, "statefulset/db", "--replicas=2")
	k(t, "rollout", "status", "-n", ns, "statefulset/db", "--timeout=90s")
	if got := read("db-1"); got != id1 {
		t.Errorf("db-1 after scaling up again reads %q, wrote %q", got, id1)
	}
	report(t, "14-stateful-volumes", "two_pods_with_volumes", up, "deleted_pod_back_with_data", back, "node", after.Spec.NodeName)
}
