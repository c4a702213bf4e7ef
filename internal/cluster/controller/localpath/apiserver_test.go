package localpath_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/internal/cluster/apiserver/apiservertest"
	"github.com/berth/berth/internal/cluster/controller/localpath"
	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/internal/cluster/scheduler"
)

func waitFor(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, s := f()
		if ok {
			return
		}
		last = s
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last: %s", what, last)
}

// TestWithSchedulerAndAPIServer runs the provisioner and the scheduler
// against the real API server: the default class appears; a claim
// without a class gets it; a pod using the claim is placed, the claim
// gets the pod's node as selected node, a volume is provisioned on that
// node (its volumes-dir annotation) and both are Bound; a second pod of
// the same claim goes to the same node; the claim is kept while pods use
// it; once they are gone, it and its volume are deleted.
func TestWithSchedulerAndAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, c := apiservertest.StartClients(t, ctx)
	cs := c.Client
	for _, comp := range []kube.Component{localpath.Component(), scheduler.Component(scheduler.Config{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})} {
		go func() { _ = comp.Run(ctx, c) }()
	}
	for i, dir := range []string{"/srv/a", "/srv/b"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i+1), Labels: map[string]string{corev1.LabelHostname: fmt.Sprintf("n%d", i+1)},
			Annotations: map[string]string{kube.AnnVolumesDir: dir}}}
		got, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got.Status = corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the default class", func() (bool, string) {
		sc, err := cs.StorageV1().StorageClasses().Get(ctx, kube.LocalPathClass, metav1.GetOptions{})
		return err == nil && sc.Annotations["storageclass.kubernetes.io/is-default-class"] == "true", fmt.Sprint(err)
	})
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	claim, err := cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName != kube.LocalPathClass {
		t.Fatalf("claim class: got %v, want the default %s", claim.Spec.StorageClassName, kube.LocalPathClass)
	}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: "busybox:1"}},
			Volumes:    []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}}
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("p1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var node string
	waitFor(t, "p1 bound", func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "p1", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		node = p.Spec.NodeName
		return node != "", fmt.Sprint(p.Status.Conditions)
	})
	var pvName string
	waitFor(t, "claim bound", func() (bool, string) {
		got, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pvName = got.Spec.VolumeName
		return got.Status.Phase == corev1.ClaimBound && got.Annotations[kube.AnnSelectedNode] == node, fmt.Sprintf("phase %s annotations %v", got.Status.Phase, got.Annotations)
	})
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantDir := map[string]string{"n1": "/srv/a", "n2": "/srv/b"}[node]
	if pv.Status.Phase != corev1.VolumeBound || pv.Spec.Local == nil || pv.Spec.Local.Path != wantDir+"/"+pvName {
		t.Errorf("volume: got phase %s source %+v, want Bound at %s/%s", pv.Status.Phase, pv.Spec.PersistentVolumeSource, wantDir, pvName)
	}

	// The second pod of the claim follows the volume.
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("p2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "p2 on the volume's node", func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "p2", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Spec.NodeName == node, "on " + p.Spec.NodeName
	})

	// The claim is protected while pods use it.
	if err := cs.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	got, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp == nil || got.Finalizers[0] != localpath.ProtectionFinalizer {
		t.Fatalf("claim deleted while pods use it: got %v, want it kept Terminating with %s", err, localpath.ProtectionFinalizer)
	}
	if _, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{}); err != nil {
		t.Fatalf("volume of a claim in use: %v", err)
	}
	zero := int64(0)
	for _, p := range []string{"p1", "p2"} {
		if err := cs.CoreV1().Pods("default").Delete(ctx, p, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the volume deleted with its claim", func() (bool, string) {
		_, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}
