package localpath

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/berth/berth/internal/cluster/kube"
)

// harness is the controller on a fake clientset; settle copies what the
// API holds into the caches and works the queue until it is empty, the
// way the informers and workers would.
type harness struct {
	t      *testing.T
	client *fake.Clientset
	f      informers.SharedInformerFactory
	c      *Controller
	rec    *record.FakeRecorder
	seq    atomic.Int32
}

func newHarness(t *testing.T, objs ...runtime.Object) *harness {
	h := &harness{t: t, client: fake.NewClientset(objs...), rec: record.NewFakeRecorder(100)}
	h.client.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if m, ok := a.(k8stesting.CreateAction).GetObject().(metav1.Object); ok && m.GetUID() == "" {
			m.SetUID(types.UID(fmt.Sprintf("uid-%d", h.seq.Add(1))))
		}
		return false, nil, nil
	})
	h.f = informers.NewSharedInformerFactory(h.client, 0)
	h.c = New(h.client, h.f, h.rec, nil)
	return h
}

func (h *harness) refresh() {
	h.t.Helper()
	ctx := context.Background()
	fill := func(inf cache.SharedIndexInformer, list runtime.Object, err error) {
		if err != nil {
			h.t.Fatal(err)
		}
		var objs []any
		switch l := list.(type) {
		case *corev1.PersistentVolumeClaimList:
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
		case *corev1.PersistentVolumeList:
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
		case *storagev1.StorageClassList:
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
		case *corev1.PodList:
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
		case *corev1.NodeList:
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
		}
		if err := inf.GetIndexer().Replace(objs, ""); err != nil {
			h.t.Fatal(err)
		}
	}
	cs := h.client
	l1, e1 := cs.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	fill(h.f.Core().V1().PersistentVolumeClaims().Informer(), l1, e1)
	l2, e2 := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	fill(h.f.Core().V1().PersistentVolumes().Informer(), l2, e2)
	l3, e3 := cs.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	fill(h.f.Storage().V1().StorageClasses().Informer(), l3, e3)
	l4, e4 := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	fill(h.f.Core().V1().Pods().Informer(), l4, e4)
	l5, e5 := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	fill(h.f.Core().V1().Nodes().Informer(), l5, e5)
}

// settle syncs keys (and whatever they enqueue) until nothing is left.
func (h *harness) settle(keys ...string) {
	h.t.Helper()
	for _, k := range keys {
		h.c.queue.Add(k)
	}
	for i := 0; h.c.queue.Len() > 0; i++ {
		if i > 100 {
			h.t.Fatal("the queue does not settle")
		}
		h.refresh()
		h.c.processNext(context.Background())
	}
	h.refresh()
}

func (h *harness) claim(ns, name string) *corev1.PersistentVolumeClaim {
	h.t.Helper()
	pvc, err := h.client.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return pvc
}

func (h *harness) volume(name string) (*corev1.PersistentVolume, error) {
	return h.client.CoreV1().PersistentVolumes().Get(context.Background(), name, metav1.GetOptions{})
}

func localClass() *storagev1.StorageClass {
	del, wffc := corev1.PersistentVolumeReclaimDelete, storagev1.VolumeBindingWaitForFirstConsumer
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: kube.LocalPathClass}, Provisioner: kube.LocalPathProvisioner, ReclaimPolicy: &del, VolumeBindingMode: &wffc}
}

func node(name, dir string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
	if dir != "" {
		n.Annotations = map[string]string{kube.AnnVolumesDir: dir}
	}
	return n
}

func newClaim(ns, name, class, size string, ann map[string]string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("c-" + name), Annotations: ann},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
}

// TestProvisionBindDelete: a claim of the local-path class waits for a
// node, is provisioned on the node the scheduler selected (under that
// node's volumes dir, pinned to it), both sides are bound, and deleting
// the claim deletes the volume.
func TestProvisionBindDelete(t *testing.T) {
	h := newHarness(t, localClass(), node("n1", ""), node("n2", "/srv/vols"),
		newClaim("db", "data", kube.LocalPathClass, "2Gi", nil))
	h.settle(claimPrefix + "db/data")
	if pvc := h.claim("db", "data"); pvc.Spec.VolumeName != "" || pvc.Status.Phase != corev1.ClaimPending {
		t.Fatalf("without a selected node: got volume %q phase %s, want the claim left Pending", pvc.Spec.VolumeName, pvc.Status.Phase)
	}

	// The scheduler picks n2.
	pvc := h.claim("db", "data")
	pvc.Annotations = map[string]string{kube.AnnSelectedNode: "n2"}
	if _, err := h.client.CoreV1().PersistentVolumeClaims("db").Update(context.Background(), pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.settle(claimPrefix + "db/data")

	pv, err := h.volume("pvc-c-data")
	if err != nil {
		t.Fatalf("provisioned volume: %v", err)
	}
	if got := pv.Spec.Local; got == nil || got.Path != "/srv/vols/pvc-c-data" {
		t.Errorf("local path: got %+v, want /srv/vols/pvc-c-data (the node's volumes dir)", got)
	}
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Key != corev1.LabelHostname || terms[0].MatchExpressions[0].Values[0] != "n2" {
		t.Errorf("node affinity: got %+v, want hostname In [n2]", terms)
	}
	if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.String() != "2Gi" || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		pv.Spec.StorageClassName != kube.LocalPathClass || pv.Annotations[kube.AnnProvisionedBy] != kube.LocalPathProvisioner {
		t.Errorf("volume spec: got capacity %s reclaim %s class %q annotations %v", q.String(), pv.Spec.PersistentVolumeReclaimPolicy, pv.Spec.StorageClassName, pv.Annotations)
	}
	if pv.Status.Phase != corev1.VolumeBound || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != "c-data" {
		t.Errorf("volume binding: got phase %s claimRef %+v, want Bound to c-data", pv.Status.Phase, pv.Spec.ClaimRef)
	}
	pvc = h.claim("db", "data")
	if q := pvc.Status.Capacity[corev1.ResourceStorage]; pvc.Spec.VolumeName != pv.Name || pvc.Status.Phase != corev1.ClaimBound || q.String() != "2Gi" ||
		len(pvc.Status.AccessModes) != 1 || pvc.Annotations["pv.kubernetes.io/bind-completed"] != "yes" {
		t.Errorf("claim binding: got volume %q phase %s capacity %s modes %v annotations %v", pvc.Spec.VolumeName, pvc.Status.Phase, q.String(), pvc.Status.AccessModes, pvc.Annotations)
	}

	// A second sync changes nothing.
	rv := pv.ResourceVersion
	h.settle(claimPrefix+"db/data", volumePrefix+pv.Name)
	if again, _ := h.volume(pv.Name); again.ResourceVersion != rv {
		t.Errorf("a repeated sync rewrote the volume")
	}

	// The claim goes: the volume is released and deleted.
	if err := h.client.CoreV1().PersistentVolumeClaims("db").Delete(context.Background(), "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.settle(volumePrefix + pv.Name)
	if _, err := h.volume(pv.Name); !apierrors.IsNotFound(err) {
		t.Errorf("after the claim was deleted: got %v, want the volume deleted", err)
	}
}

// TestProvisionForPodWithNodeName: a pod bound by spec.nodeName (never
// scheduled) still gets its claim provisioned on its node.
func TestProvisionForPodWithNodeName(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "p"}, Spec: corev1.PodSpec{NodeName: "n1",
		Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}}
	h := newHarness(t, localClass(), node("n1", ""), newClaim("db", "data", kube.LocalPathClass, "1Gi", nil), pod)
	h.settle(claimPrefix + "db/data")
	pv, err := h.volume("pvc-c-data")
	if err != nil {
		t.Fatalf("volume: %v", err)
	}
	if pv.Spec.Local.Path != kube.DefaultVolumesDir+"/pvc-c-data" {
		t.Errorf("path: got %s, want the default volumes dir", pv.Spec.Local.Path)
	}
}

// TestBindPrecreatedVolume: an Immediate claim binds the smallest
// available volume of its class that is large enough and has its access
// modes; a Retain volume whose claim goes is Released and kept.
func TestBindPrecreatedVolume(t *testing.T) {
	mk := func(name, size string, modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("u-" + name)},
			Spec: corev1.PersistentVolumeSpec{StorageClassName: "manual", AccessModes: modes, PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
				PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/data/" + name}}},
			Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable}}
	}
	rwo, rox := corev1.ReadWriteOnce, corev1.ReadOnlyMany
	h := newHarness(t, mk("small", "1Gi", rwo), mk("big", "10Gi", rwo), mk("fit", "5Gi", rwo, rox), mk("romany", "3Gi", rox),
		newClaim("app", "c", "manual", "2Gi", nil))
	h.settle(claimPrefix + "app/c")
	if pvc := h.claim("app", "c"); pvc.Spec.VolumeName != "fit" || pvc.Status.Phase != corev1.ClaimBound {
		t.Fatalf("got volume %q phase %s, want fit (5Gi, the smallest that is big enough with RWO)", pvc.Spec.VolumeName, pvc.Status.Phase)
	}
	if err := h.client.CoreV1().PersistentVolumeClaims("app").Delete(context.Background(), "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.settle(volumePrefix + "fit")
	pv, err := h.volume("fit")
	if err != nil || pv.Status.Phase != corev1.VolumeReleased {
		t.Errorf("Retain volume after its claim went: got %v phase %v, want it kept Released", err, pv.Status.Phase)
	}
}

// TestClassNotLocalPath: claims the controller cannot serve are left
// Pending with an event saying why.
func TestClassNotLocalPath(t *testing.T) {
	imm := storagev1.VolumeBindingImmediate
	h := newHarness(t, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "lp-now"}, Provisioner: kube.LocalPathProvisioner, VolumeBindingMode: &imm},
		newClaim("a", "x", "lp-now", "1Gi", nil), newClaim("a", "y", "missing", "1Gi", nil))
	h.settle(claimPrefix+"a/x", claimPrefix+"a/y")
	var events []string
	for len(h.rec.Events) > 0 {
		events = append(events, <-h.rec.Events)
	}
	all := strings.Join(events, "\n")
	for _, want := range []string{"volumeBindingMode WaitForFirstConsumer", `storageclass.storage.k8s.io "missing" not found`} {
		if !strings.Contains(all, want) {
			t.Errorf("events: got %q, want one containing %q", all, want)
		}
	}
	if vols, _ := h.client.CoreV1().PersistentVolumes().List(context.Background(), metav1.ListOptions{}); len(vols.Items) != 0 {
		t.Errorf("got %d volumes, want none", len(vols.Items))
	}
}

// TestEnsureClass creates the default class once and keeps a user's.
func TestEnsureClass(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.c.EnsureClass(ctx); err != nil {
		t.Fatal(err)
	}
	sc, err := h.client.StorageV1().StorageClasses().Get(ctx, kube.LocalPathClass, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Provisioner != kube.LocalPathProvisioner || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer ||
		*sc.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete || sc.Annotations[annDefaultClass] != "true" {
		t.Errorf("class: got %+v", sc)
	}
	sc.Annotations = nil // the user makes another class the default
	if _, err := h.client.StorageV1().StorageClasses().Update(ctx, sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.c.EnsureClass(ctx); err != nil {
		t.Fatal(err)
	}
	if sc, _ := h.client.StorageV1().StorageClasses().Get(ctx, kube.LocalPathClass, metav1.GetOptions{}); sc.Annotations[annDefaultClass] == "true" {
		t.Errorf("EnsureClass overwrote the user's class")
	}
}

// TestClaimProtection: new claims get the pvc-protection finalizer; a
// deleted claim keeps it while a pod that has not finished uses it.
func TestClaimProtection(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "p"}, Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}}
	h := newHarness(t, newClaim("db", "data", "", "1Gi", nil), pod)
	h.settle(claimPrefix + "db/data")
	pvc := h.claim("db", "data")
	if len(pvc.Finalizers) != 1 || pvc.Finalizers[0] != ProtectionFinalizer {
		t.Fatalf("finalizers: got %v, want [%s]", pvc.Finalizers, ProtectionFinalizer)
	}
	now := metav1.Now()
	pvc.DeletionTimestamp = &now // as the API server marks a claim with finalizers
	if _, err := h.client.CoreV1().PersistentVolumeClaims("db").Update(context.Background(), pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.settle(claimPrefix + "db/data")
	if got := h.claim("db", "data"); len(got.Finalizers) != 1 {
		t.Fatalf("claim in use: finalizers %v, want kept", got.Finalizers)
	}
	pod.Status.Phase = corev1.PodSucceeded // a finished pod no longer uses it
	if _, err := h.client.CoreV1().Pods("db").Update(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.settle(claimPrefix + "db/data")
	if got := h.claim("db", "data"); len(got.Finalizers) != 0 {
		t.Errorf("claim no longer used: finalizers %v, want none", got.Finalizers)
	}
}
