package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/internal/cluster/kube"
)

// TestPersistentVolumeClaimPod: a pod whose claim is not bound waits in
// ContainerCreating with a FailedMount event naming the claim; once bound
// to a local-path volume of this node its container gets the volume's
// directory; the data outlives the pod, and the directory goes when the
// volume object is deleted.
func TestPersistentVolumeClaimPod(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("db", func(p *corev1.Pod) {
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/db"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
	})
	a, cs, rec := testAgent(t, eng, pod)
	ctx := context.Background()
	claims := cs.CoreV1().PersistentVolumeClaims("default")
	pvc, err := claims.Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default", UID: "claim-uid"},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := newPodWorker(a, pod.UID)
	p := syncOnce(t, a, cs, w, "db")
	if current(eng, "db", "main") != nil {
		t.Fatal("the container was created before its claim was bound")
	}
	if wt := p.Status.ContainerStatuses[0].State.Waiting; wt == nil || wt.Reason != "ContainerCreating" {
		t.Errorf("waiting for the claim: got %+v, want ContainerCreating", p.Status.ContainerStatuses[0].State)
	}
	if ev := events(rec); !strings.Contains(ev, "FailedMount") || !strings.Contains(ev, `persistentvolumeclaim "data"`) || !strings.Contains(ev, "not bound") {
		t.Errorf("events: got %q, want FailedMount saying the claim is not bound", ev)
	}

	dir := filepath.Join(a.o.VolumesDir, "pvc-claim-uid")
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-claim-uid", Annotations: map[string]string{kube.AnnProvisionedBy: kube.LocalPathProvisioner}},
		Spec: corev1.PersistentVolumeSpec{ClaimRef: &corev1.ObjectReference{Namespace: "default", Name: "data", UID: "claim-uid"},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}}}}}}
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc.Spec.VolumeName, pvc.Status.Phase = pv.Name, corev1.ClaimBound
	if _, err := claims.Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	syncOnce(t, a, cs, w, "db")
	m := current(eng, "db", "main")
	if m == nil {
		t.Fatal("container not created once the claim was bound")
	}
	found := false
	for _, mt := range m.req.HostConfig.Mounts {
		if mt.Target == "/var/lib/db" {
			found = mt.Source == dir && mt.Type == "bind" && !mt.ReadOnly
		}
	}
	if !found {
		t.Errorf("mounts: got %+v, want %s bound read-write at /var/lib/db", m.req.HostConfig.Mounts, dir)
	}
	if err := os.WriteFile(filepath.Join(dir, "row"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The pod goes; its data stays while the volume exists.
	w.setPod(nil)
	w.sync(ctx)
	a.reapOnce(ctx)
	if _, err := os.Stat(filepath.Join(dir, "row")); err != nil {
		t.Fatalf("after the pod went: %v, want the data kept", err)
	}
	// The volume is deleted: its directory goes.
	if err := cs.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a.reapOnce(ctx)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after the volume was deleted: %v, want its directory gone", err)
	}
}
