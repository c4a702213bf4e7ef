package statefulset

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

var seq atomic.Int64

// fakeCluster is a fake clientset whose pod deletes are graceful, as on a
// real API server: a delete sets deletionTimestamp and the pod disappears
// only when the test's kubelet finishes it. It records the order of
// deletes and creates.
type fakeCluster struct {
	*fake.Clientset
	mu      sync.Mutex
	events  []string // "create web-0", "delete web-2"
	maxTerm int      // most pods terminating at once
}

func newCluster(t *testing.T, objs ...runtime.Object) *fakeCluster {
	f := &fakeCluster{Clientset: fake.NewClientset(objs...)}
	f.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		n := seq.Add(1)
		p.UID = types.UID(fmt.Sprintf("pod-uid-%d", n))
		p.CreationTimestamp = metav1.Now()
		if _, err := f.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), p.Namespace, p.Name); err == nil {
			return false, nil, nil // fails AlreadyExists (a create from a stale cache): not a create
		}
		f.note("create " + p.Name)
		return false, nil, nil
	})
	// Like the real status subresource, a status update leaves the spec
	// alone (the fake would write the whole, possibly stale, object).
	f.PrependReactor("update", "statefulsets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		next := a.(k8stesting.UpdateAction).GetObject().(*appsv1.StatefulSet)
		gvr := appsv1.SchemeGroupVersion.WithResource("statefulsets")
		obj, err := f.Tracker().Get(gvr, next.Namespace, next.Name)
		if err != nil {
			return true, nil, err
		}
		cur := obj.(*appsv1.StatefulSet).DeepCopy()
		cur.Status = next.Status
		return true, cur, f.Tracker().Update(gvr, cur, cur.Namespace)
	})
	f.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteAction)
		obj, err := f.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), d.GetNamespace(), d.GetName())
		if err != nil {
			return true, nil, err
		}
		p := obj.(*corev1.Pod).DeepCopy()
		if p.DeletionTimestamp != nil {
			return true, nil, nil
		}
		now := metav1.Now()
		p.DeletionTimestamp = &now
		f.note("delete " + p.Name)
		return true, nil, f.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, p.Namespace)
	})
	return f
}

func (f *fakeCluster) note(e string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
}

func (f *fakeCluster) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

// kubelet finishes terminating pods after a short while and, when auto is
// set, makes every new pod Running and Ready.
func (f *fakeCluster) kubelet(t *testing.T, auto *atomic.Bool) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			time.Sleep(30 * time.Millisecond)
			list, _ := f.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			term := 0
			for i := range list.Items {
				p := &list.Items[i]
				if p.DeletionTimestamp != nil {
					term++
					if time.Since(p.DeletionTimestamp.Time) > 60*time.Millisecond {
						_ = f.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), p.Namespace, p.Name)
					}
					continue
				}
				if auto != nil && auto.Load() && p.Status.Phase == "" {
					f.markReady(t, p.Name)
				}
			}
			f.mu.Lock()
			f.maxTerm = max(f.maxTerm, term)
			f.mu.Unlock()
		}
	}()
}

func (f *fakeCluster) markReady(t *testing.T, name string) {
	t.Helper()
	f.setPhase(t, name, corev1.PodRunning, corev1.ConditionTrue)
}

func (f *fakeCluster) setPhase(t *testing.T, name string, phase corev1.PodPhase, ready corev1.ConditionStatus) {
	t.Helper()
	ctx := context.Background()
	p, err := f.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Errorf("pod %s: %v", name, err)
		return
	}
	p.Status.Phase = phase
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, LastTransitionTime: metav1.Now()}}
	if _, err := f.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Errorf("pod %s status: %v", name, err)
	}
}

func statefulSet(n int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "sts-uid", Generation: 1},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &n,
			ServiceName: "web",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "v1"}}}},
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
		},
	}
}

func withClaims(s *appsv1.StatefulSet) *appsv1.StatefulSet {
	s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: map[string]string{"tier": "db"}},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}}
	return s
}

func start(t *testing.T, f *fakeCluster) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	i := informers.NewSharedInformerFactory(f, 0)
	c := New(f, i.Apps().V1().StatefulSets().Informer(), i.Core().V1().Pods().Informer(), i.Core().V1().PersistentVolumeClaims().Informer(), record.NewFakeRecorder(10000), slog.New(slog.NewTextHandler(io.Discard, nil)))
	i.Start(ctx.Done())
	go func() { _ = c.Run(ctx, 2) }()
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// live is name → image of pods not terminating.
func live(f *fakeCluster) map[string]string {
	list, _ := f.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	out := map[string]string{}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out[p.Name] = p.Spec.Containers[0].Image
		}
	}
	return out
}

func getSet(f *fakeCluster) *appsv1.StatefulSet {
	s, _ := f.AppsV1().StatefulSets("default").Get(context.Background(), "web", metav1.GetOptions{})
	return s
}

func updateSet(t *testing.T, f *fakeCluster, change func(*appsv1.StatefulSet)) {
	t.Helper()
	s := getSet(f)
	change(s)
	s.Generation++
	if _, err := f.AppsV1().StatefulSets("default").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// OrderedReady creates web-0, and web-1 only once web-0 is Running and
// Ready, and so on; pods carry their identity.
func TestOrderedReadyCreation(t *testing.T) {
	f := newCluster(t, withClaims(statefulSet(3)))
	start(t, f)
	eventually(t, "web-0", func() bool { return len(live(f)) == 1 && live(f)["web-0"] != "" })
	time.Sleep(300 * time.Millisecond)
	if n := len(live(f)); n != 1 {
		t.Fatalf("%d pods while web-0 is not ready, want 1 (ordered)", n)
	}
	ctx := context.Background()
	p, _ := f.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
	if p.Spec.Hostname != "web-0" || p.Spec.Subdomain != "web" {
		t.Errorf("hostname %q subdomain %q, want web-0 and web", p.Spec.Hostname, p.Spec.Subdomain)
	}
	if p.Labels["statefulset.kubernetes.io/pod-name"] != "web-0" || p.Labels["apps.kubernetes.io/pod-index"] != "0" || p.Labels["app"] != "web" {
		t.Errorf("labels %v", p.Labels)
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != "sts-uid" || ref.Kind != "StatefulSet" {
		t.Errorf("controller ref %+v", ref)
	}
	rev := p.Labels[appsv1.ControllerRevisionHashLabelKey]
	if _, err := f.AppsV1().ControllerRevisions("default").Get(ctx, rev, metav1.GetOptions{}); err != nil {
		t.Errorf("controller-revision-hash %q names no ControllerRevision: %v", rev, err)
	}
	// A pod that runs but is not ready still holds the next ordinal back.
	f.setPhase(t, "web-0", corev1.PodRunning, corev1.ConditionFalse)
	time.Sleep(300 * time.Millisecond)
	if n := len(live(f)); n != 1 {
		t.Fatalf("%d pods while web-0 is running but not ready, want 1", n)
	}
	f.markReady(t, "web-0")
	eventually(t, "web-1", func() bool { return live(f)["web-1"] != "" })
	time.Sleep(200 * time.Millisecond)
	if live(f)["web-2"] != "" {
		t.Fatal("web-2 created before web-1 was ready")
	}
	f.markReady(t, "web-1")
	eventually(t, "web-2", func() bool { return live(f)["web-2"] != "" })
	f.markReady(t, "web-2")
	eventually(t, "status 3 ready", func() bool {
		s := getSet(f).Status
		return s.Replicas == 3 && s.ReadyReplicas == 3 && s.AvailableReplicas == 3 && s.UpdatedReplicas == 3 && s.CurrentReplicas == 3 &&
			s.CurrentRevision == rev && s.UpdateRevision == rev && s.ObservedGeneration == 1
	})
	want := []string{"create web-0", "create web-1", "create web-2"}
	if got := f.log(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// Parallel creates all ordinals at once, ready or not, and deletes
// condemned ones at once.
func TestParallel(t *testing.T) {
	s := statefulSet(3)
	s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	f := newCluster(t, s)
	f.kubelet(t, nil)
	start(t, f)
	eventually(t, "3 pods without any ready", func() bool { return len(live(f)) == 3 })
	updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptr(int32(0)) })
	eventually(t, "all gone", func() bool {
		list, _ := f.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
		return len(list.Items) == 0
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxTerm < 2 {
		t.Errorf("at most %d pods terminating at once, want the condemned ones together", f.maxTerm)
	}
}

func ptr[T any](v T) *T { return &v }

// Scaling down (OrderedReady) deletes the highest ordinal first, one at a
// time, each only after the one before is gone.
func TestScaleDownOrder(t *testing.T) {
	f := newCluster(t, statefulSet(4))
	var auto atomic.Bool
	auto.Store(true)
	f.kubelet(t, &auto)
	start(t, f)
	eventually(t, "4 ready", func() bool { return getSet(f).Status.ReadyReplicas == 4 })
	updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptr(int32(1)) })
	eventually(t, "only web-0", func() bool {
		l := live(f)
		list, _ := f.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
		return len(l) == 1 && l["web-0"] != "" && len(list.Items) == 1
	})
	var deletes []string
	for _, e := range f.log() {
		if e[:6] == "delete" {
			deletes = append(deletes, e)
		}
	}
	if fmt.Sprint(deletes) != "[delete web-3 delete web-2 delete web-1]" {
		t.Errorf("deletes %v, want web-3, web-2, web-1", deletes)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxTerm != 1 {
		t.Errorf("%d pods terminating at once, want 1", f.maxTerm)
	}
}

// Scaling down halts while a remaining pod is unhealthy.
func TestScaleDownHaltsOnUnhealthy(t *testing.T) {
	f := newCluster(t, statefulSet(3))
	var auto atomic.Bool
	auto.Store(true)
	f.kubelet(t, &auto)
	start(t, f)
	eventually(t, "3 ready", func() bool { return getSet(f).Status.ReadyReplicas == 3 })
	f.setPhase(t, "web-0", corev1.PodRunning, corev1.ConditionFalse)
	eventually(t, "web-0 seen unready", func() bool { return getSet(f).Status.ReadyReplicas == 2 })
	updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptr(int32(1)) })
	time.Sleep(400 * time.Millisecond)
	if n := len(live(f)); n != 3 {
		t.Fatalf("%d pods left while web-0 is unready, want 3 (halted)", n)
	}
	f.markReady(t, "web-0")
	eventually(t, "scaled to 1", func() bool { return len(live(f)) == 1 })
}

// RollingUpdate replaces from the highest ordinal down, one at a time,
// each once the previous is ready, and stops at the partition.
func TestRollingUpdatePartition(t *testing.T) {
	f := newCluster(t, statefulSet(3))
	var auto atomic.Bool
	auto.Store(true)
	f.kubelet(t, &auto)
	start(t, f)
	eventually(t, "3 ready", func() bool { return getSet(f).Status.ReadyReplicas == 3 })
	oldRev := getSet(f).Status.CurrentRevision
	n0 := len(f.log())
	updateSet(t, f, func(s *appsv1.StatefulSet) {
		s.Spec.Template.Spec.Containers[0].Image = "v2"
		s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr(int32(1))}
	})
	eventually(t, "web-2 and web-1 at v2", func() bool {
		l := live(f)
		s := getSet(f).Status
		return l["web-2"] == "v2" && l["web-1"] == "v2" && s.UpdatedReplicas == 2 && s.ReadyReplicas == 3
	})
	time.Sleep(300 * time.Millisecond)
	if live(f)["web-0"] != "v1" {
		t.Fatal("web-0 (below the partition) was updated")
	}
	s := getSet(f).Status
	if s.CurrentRevision != oldRev || s.UpdateRevision == oldRev || s.CurrentReplicas != 1 {
		t.Errorf("status %+v: want currentRevision %s kept with 1 current replica", s, oldRev)
	}
	want := "[delete web-2 create web-2 delete web-1 create web-1]"
	if got := fmt.Sprint(f.log()[n0:]); got != want {
		t.Errorf("events %s, want %s", got, want)
	}
	// Below the partition, a deleted pod comes back at the old revision.
	_ = f.CoreV1().Pods("default").Delete(context.Background(), "web-0", metav1.DeleteOptions{})
	eventually(t, "web-0 back", func() bool { return live(f)["web-0"] != "" })
	if live(f)["web-0"] != "v1" {
		t.Errorf("web-0 recreated at %s, want v1 (below the partition)", live(f)["web-0"])
	}
	updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.RollingUpdate.Partition = ptr(int32(0)) })
	eventually(t, "rollout complete", func() bool {
		s := getSet(f).Status
		return live(f)["web-0"] == "v2" && s.CurrentRevision == s.UpdateRevision && s.CurrentReplicas == 3 && s.UpdatedReplicas == 3 && s.ReadyReplicas == 3
	})
}

// An update waits for each replaced pod to be ready before the next.
func TestRollingUpdateWaitsForReady(t *testing.T) {
	f := newCluster(t, statefulSet(3))
	var auto atomic.Bool
	auto.Store(true)
	f.kubelet(t, &auto)
	start(t, f)
	eventually(t, "3 ready", func() bool { return getSet(f).Status.ReadyReplicas == 3 })
	auto.Store(false)
	updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "v2" })
	eventually(t, "web-2 at v2", func() bool { return live(f)["web-2"] == "v2" })
	time.Sleep(300 * time.Millisecond)
	if l := live(f); l["web-1"] != "v1" || l["web-0"] != "v1" {
		t.Fatalf("pods %v: web-1 replaced before web-2 was ready", l)
	}
	f.markReady(t, "web-2")
	eventually(t, "web-1 at v2", func() bool { return live(f)["web-1"] == "v2" })
}

// OnDelete changes nothing until a pod is deleted; the replacement runs
// the new template.
func TestOnDelete(t *testing.T) {
	s := statefulSet(2)
	s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	f := newCluster(t, s)
	var auto atomic.Bool
	auto.Store(true)
	f.kubelet(t, &auto)
	start(t, f)
	eventually(t, "2 ready", func() bool { return getSet(f).Status.ReadyReplicas == 2 })
	updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "v2" })
	eventually(t, "updateRevision moves", func() bool {
		s := getSet(f).Status
		return s.UpdateRevision != s.CurrentRevision && s.UpdatedReplicas == 0
	})
	time.Sleep(300 * time.Millisecond)
	if l := live(f); l["web-0"] != "v1" || l["web-1"] != "v1" {
		t.Fatalf("OnDelete replaced pods by itself: %v", l)
	}
	_ = f.CoreV1().Pods("default").Delete(context.Background(), "web-0", metav1.DeleteOptions{})
	eventually(t, "web-0 recreated at v2", func() bool { return live(f)["web-0"] == "v2" })
	if live(f)["web-1"] != "v1" {
		t.Error("web-1 changed")
	}
}

// A failed pod is deleted and recreated under its name.
func TestFailedPodReplaced(t *testing.T) {
	f := newCluster(t, statefulSet(2))
	var auto atomic.Bool
	auto.Store(true)
	f.kubelet(t, &auto)
	start(t, f)
	eventually(t, "2 ready", func() bool { return getSet(f).Status.ReadyReplicas == 2 })
	ctx := context.Background()
	old, _ := f.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{})
	f.setPhase(t, "web-1", corev1.PodFailed, corev1.ConditionFalse)
	eventually(t, "a new web-1", func() bool {
		p, err := f.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{})
		return err == nil && p.UID != old.UID && p.DeletionTimestamp == nil
	})
}

func claim(t *testing.T, f *fakeCluster, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	c, err := f.CoreV1().PersistentVolumeClaims("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("claim %s: %v", name, err)
	}
	return c
}

func ownerKinds(c *corev1.PersistentVolumeClaim) []string {
	var out []string
	for _, r := range c.OwnerReferences {
		out = append(out, r.Kind+"/"+r.Name)
	}
	sort.Strings(out)
	return out
}

// Claims are named <template>-<set>-<ordinal>, made before the pod and
// mounted by it; the retention policy decides their ownerReferences.
func TestClaims(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		policy               *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy
		wantLive, wantScaled string
	}{
		{"default Retain", nil, "[]", "[]"},
		{"whenDeleted Delete", &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Delete", WhenScaled: "Retain"}, "[StatefulSet/web]", "[StatefulSet/web]"},
		{"whenScaled Delete", &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Retain", WhenScaled: "Delete"}, "[]", "[Pod/web-1]"},
		{"both Delete", &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Delete", WhenScaled: "Delete"}, "[StatefulSet/web]", "[Pod/web-1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := withClaims(statefulSet(2))
			s.Spec.PersistentVolumeClaimRetentionPolicy = tc.policy
			f := newCluster(t, s)
			var auto atomic.Bool
			auto.Store(true)
			f.kubelet(t, &auto)
			start(t, f)
			eventually(t, "2 ready", func() bool { return getSet(f).Status.ReadyReplicas == 2 })
			ctx := context.Background()
			for _, ord := range []string{"0", "1"} {
				c := claim(t, f, "data-web-"+ord)
				if c.Labels["tier"] != "db" || c.Labels["app"] != "web" {
					t.Errorf("claim labels %v, want the template's and the selector's", c.Labels)
				}
				if got := fmt.Sprint(ownerKinds(c)); got != tc.wantLive {
					t.Errorf("claim %s owners %s, want %s", c.Name, got, tc.wantLive)
				}
				p, _ := f.CoreV1().Pods("default").Get(ctx, "web-"+ord, metav1.GetOptions{})
				found := false
				for _, v := range p.Spec.Volumes {
					if v.Name == "data" && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "data-web-"+ord {
						found = true
					}
				}
				if !found {
					t.Errorf("pod web-%s volumes %+v: no data volume on claim data-web-%s", ord, p.Spec.Volumes, ord)
				}
			}
			// The claim came before the pod.
			acts := f.Actions()
			ci, pi := -1, -1
			for i, a := range acts {
				if a.GetVerb() == "create" && a.GetResource().Resource == "persistentvolumeclaims" && ci < 0 {
					ci = i
				}
				if a.GetVerb() == "create" && a.GetResource().Resource == "pods" && pi < 0 {
					pi = i
				}
			}
			if ci < 0 || ci > pi {
				t.Errorf("claim created at action %d, pod at %d: want the claim first", ci, pi)
			}
			web1, _ := f.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{})
			updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptr(int32(1)) })
			eventually(t, "web-1 gone", func() bool { return live(f)["web-1"] == "" })
			c := claim(t, f, "data-web-1") // the fake has no garbage collector: the claim stays
			if got := fmt.Sprint(ownerKinds(c)); got != tc.wantScaled {
				t.Errorf("condemned claim owners %s, want %s", got, tc.wantScaled)
			}
			for _, r := range c.OwnerReferences {
				if r.Kind == "Pod" && r.UID != web1.UID {
					t.Errorf("claim owned by pod uid %s, want web-1's %s", r.UID, web1.UID)
				}
			}
			if got := fmt.Sprint(ownerKinds(claim(t, f, "data-web-0"))); got != tc.wantLive {
				t.Errorf("live claim owners %s, want %s", got, tc.wantLive)
			}
		})
	}
}

// Every template gets a ControllerRevision; old ones beyond
// revisionHistoryLimit go; going back to an earlier template reuses its
// revision under a new number.
func TestRevisionHistory(t *testing.T) {
	s := statefulSet(1)
	s.Spec.RevisionHistoryLimit = ptr(int32(2))
	f := newCluster(t, s)
	var auto atomic.Bool
	auto.Store(true)
	f.kubelet(t, &auto)
	start(t, f)
	ctx := context.Background()
	revs := func() map[string]int64 {
		list, _ := f.AppsV1().ControllerRevisions("default").List(ctx, metav1.ListOptions{})
		out := map[string]int64{}
		for _, r := range list.Items {
			tmpl, _ := templateOf(&r)
			out[tmpl.Spec.Containers[0].Image] = r.Revision
		}
		return out
	}
	for _, img := range []string{"v1", "v2", "v3", "v4", "v5"} {
		if img != "v1" {
			updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = img })
		}
		eventually(t, "rolled to "+img, func() bool {
			s := getSet(f).Status
			return live(f)["web-0"] == img && s.CurrentRevision == s.UpdateRevision && s.ReadyReplicas == 1
		})
	}
	eventually(t, "history pruned to 2 + the live one", func() bool { return len(revs()) == 3 })
	if r := revs(); r["v5"] != 5 || r["v4"] != 4 || r["v3"] != 3 {
		t.Fatalf("revisions %v, want v3:3 v4:4 v5:5", r)
	}
	updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "v3" })
	eventually(t, "back to v3 as revision 6", func() bool { r := revs(); return r["v3"] == 6 && live(f)["web-0"] == "v3" })
}

// An orphan that matches the selector and carries one of the set's names
// is adopted, not replaced (under OnDelete: a RollingUpdate would then
// replace it, its revision being unknown); spec.ordinals.start shifts the
// names.
func TestAdoptionAndStartOrdinal(t *testing.T) {
	s := statefulSet(2)
	s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 5}
	orphan := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-5", Namespace: "default", UID: "orphan-uid", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "v1"}}}}
	f := newCluster(t, s, orphan)
	var auto atomic.Bool
	auto.Store(true)
	f.kubelet(t, &auto)
	start(t, f)
	eventually(t, "web-5 and web-6 ready", func() bool { return getSet(f).Status.ReadyReplicas == 2 && live(f)["web-6"] != "" })
	p, _ := f.CoreV1().Pods("default").Get(context.Background(), "web-5", metav1.GetOptions{})
	if p.UID != "orphan-uid" {
		t.Errorf("web-5 was replaced (uid %s), want the orphan adopted", p.UID)
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != "sts-uid" {
		t.Errorf("web-5 controller %+v, want the set", ref)
	}
	if l := live(f); len(l) != 2 {
		t.Errorf("pods %v, want web-5 and web-6", l)
	}
}

// With maxUnavailable 2, the update takes two pods at a time, from the
// top, and never more.
func TestRollingUpdateMaxUnavailable(t *testing.T) {
	s := statefulSet(4)
	two := intstr.FromInt32(2)
	s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: &two}
	f := newCluster(t, s)
	var auto atomic.Bool
	auto.Store(true)
	f.kubelet(t, &auto)
	start(t, f)
	eventually(t, "4 ready", func() bool { return getSet(f).Status.ReadyReplicas == 4 })
	f.mu.Lock()
	f.maxTerm = 0
	f.mu.Unlock()
	n0 := len(f.log())
	updateSet(t, f, func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "v2" })
	eventually(t, "all at v2", func() bool {
		l := live(f)
		s := getSet(f).Status
		return len(l) == 4 && l["web-0"] == "v2" && l["web-1"] == "v2" && l["web-2"] == "v2" && l["web-3"] == "v2" && s.CurrentRevision == s.UpdateRevision
	})
	evs := f.log()[n0:]
	if len(evs) < 2 || evs[0] != "delete web-3" || evs[1] != "delete web-2" {
		t.Errorf("events %v: want web-3 and web-2 deleted together first", evs)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxTerm > 2 {
		t.Errorf("%d pods terminating at once, want at most 2", f.maxTerm)
	}
}
