package scheduler

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berth/berth/internal/cluster/kube"
)

func withClaim(claim string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: claim, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
	}
}

func pinnedPV(name, host string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{host}}}}}}}}}
}

func pvc(name, class, volume string, ann map[string]string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: ann}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: volume}}
	if class != "-" {
		c.Spec.StorageClassName = &class
	}
	return c
}

func class(name string, mode storagev1.VolumeBindingMode) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: kube.LocalPathProvisioner, VolumeBindingMode: &mode}
}

type volumeListers struct {
	claims  corelisters.PersistentVolumeClaimLister
	pvs     corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
}

func newVolumeListers(t *testing.T, objs ...any) volumeListers {
	ci := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	vi := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	si := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, o := range objs {
		var err error
		switch o.(type) {
		case *corev1.PersistentVolumeClaim:
			err = ci.Add(o)
		case *corev1.PersistentVolume:
			err = vi.Add(o)
		case *storagev1.StorageClass:
			err = si.Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return volumeListers{corelisters.NewPersistentVolumeClaimLister(ci), corelisters.NewPersistentVolumeLister(vi), storagelisters.NewStorageClassLister(si)}
}

// TestVolumeBindingFilter: bound volumes pin the pod to their nodes,
// unbound WaitForFirstConsumer claims leave it free (and are listed for
// the selected-node annotation), a selected node pins it, and unbound
// Immediate or missing claims make it unschedulable with
// kube-scheduler's wording.
func TestVolumeBindingFilter(t *testing.T) {
	l := newVolumeListers(t,
		class("wffc", storagev1.VolumeBindingWaitForFirstConsumer), class("now", storagev1.VolumeBindingImmediate),
		pvc("on-n2", "wffc", "pv-n2", nil), pinnedPV("pv-n2", "n2"),
		pvc("on-gone-node", "wffc", "pv-x", nil), pinnedPV("pv-x", "nx"),
		pvc("fresh", "wffc", "", nil), pvc("fresh2", "wffc", "", nil),
		pvc("picked", "wffc", "", map[string]string{kube.AnnSelectedNode: "n3"}),
		pvc("picked-n1", "wffc", "", map[string]string{kube.AnnSelectedNode: "n1"}),
		pvc("immediate", "now", "", nil), pvc("classless", "-", "", nil),
		pvc("dangling", "wffc", "pv-missing", nil))
	nodes := []*corev1.Node{mkNode("n1", "2", "4Gi"), mkNode("n2", "2", "4Gi"), mkNode("n3", "2", "4Gi")}
	cases := []struct {
		claims   []string
		feasible string // "" for none
		message  string // FailedScheduling, when none
		toSelect string
	}{
		{nil, "n1,n2,n3", "", ""},
		{[]string{"on-n2"}, "n2", "", ""},
		{[]string{"on-gone-node"}, "", "0/3 nodes are available: 3 node(s) had volume node affinity conflict.", ""},
		{[]string{"fresh", "fresh2"}, "n1,n2,n3", "", "fresh,fresh2"},
		{[]string{"fresh", "on-n2"}, "n2", "", "fresh"},
		{[]string{"picked"}, "n3", "", ""},
		{[]string{"picked", "on-n2"}, "", "0/3 nodes are available: 3 node(s) had volume node affinity conflict.", ""},
		{[]string{"picked", "picked-n1"}, "", "different nodes", ""},
		{[]string{"immediate"}, "", "0/3 nodes are available: 3 pod has unbound immediate PersistentVolumeClaims.", ""},
		{[]string{"classless", "fresh"}, "", "pod has unbound immediate PersistentVolumeClaims", "fresh"},
		{[]string{"absent"}, "", `3 persistentvolumeclaim "absent" not found`, ""},
		{[]string{"dangling"}, "", `persistentvolume "pv-missing" not found`, ""},
	}
	for _, tc := range cases {
		c := NewCluster(Options{})
		for _, n := range nodes {
			c.SetNode(n)
		}
		var opts []func(*corev1.Pod)
		for _, cl := range tc.claims {
			opts = append(opts, withClaim(cl))
		}
		pod := mkPod("p", "100m", "64Mi", opts...)
		v := resolveVolumes(pod, l.claims, l.pvs, l.classes)
		if len(tc.claims) == 0 && v != nil {
			t.Errorf("no claims: got constraints %+v, want nil", v)
		}
		var got []string
		c.buildOrder()
		st, err := c.prepare(pod, v)
		if err != nil {
			t.Fatal(err)
		}
		for _, idx := range c.order {
			if st.filter(c, c.nodes[idx]) == 0 {
				got = append(got, c.nodes[idx].name)
			}
		}
		if strings.Join(got, ",") != tc.feasible {
			t.Errorf("claims %v: feasible %v, want %q", tc.claims, got, tc.feasible)
		}
		d := c.PlaceWith(pod, v)
		if tc.feasible == "" && (d.Node != "" || !strings.Contains(d.Message(), tc.message)) {
			t.Errorf("claims %v: got node %q message %q, want none and %q", tc.claims, d.Node, d.Message(), tc.message)
		}
		if tc.feasible != "" && !strings.Contains(tc.feasible, d.Node) {
			t.Errorf("claims %v: placed on %q, want one of %s", tc.claims, d.Node, tc.feasible)
		}
		if v != nil && strings.Join(v.ToSelect, ",") != tc.toSelect {
			t.Errorf("claims %v: to select %v, want %q", tc.claims, v.ToSelect, tc.toSelect)
		}
	}
}

// TestLoopSelectsNodeForClaims: the loop writes the chosen node on the
// pod's unbound WaitForFirstConsumer claim before binding the pod, and
// keeps a pod with an unbound Immediate claim pending with
// FailedScheduling until the claim is bound.
func TestLoopSelectsNodeForClaims(t *testing.T) {
	c, cs := fakeClients(t, mkNode("n1", "2", "4Gi"), class("wffc", storagev1.VolumeBindingWaitForFirstConsumer), class("now", storagev1.VolumeBindingImmediate),
		pvc("data", "wffc", "", nil), pvc("late", "now", "", nil), pinnedPV("pv-late", "n1"),
		mkPod("web", "100m", "64Mi", withClaim("data")), mkPod("db", "100m", "64Mi", withClaim("late")))
	startScheduler(t, c)
	ctx := context.Background()
	waitFor(t, "web bound", nodeOf(t, cs, "web"))
	got, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
	if err != nil || got.Annotations[kube.AnnSelectedNode] != "n1" {
		t.Fatalf("claim data: got %v annotations %v, want selected-node n1", err, got.Annotations)
	}
	waitFor(t, "FailedScheduling of db", eventFor(cs, "db", "FailedScheduling", "pod has unbound immediate PersistentVolumeClaims"))
	late, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "late", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	late.Spec.VolumeName = "pv-late"
	if _, err := cs.CoreV1().PersistentVolumeClaims("default").Update(ctx, late, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "db bound once its claim is", nodeOf(t, cs, "db"))
}
