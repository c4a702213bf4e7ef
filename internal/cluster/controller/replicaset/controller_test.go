package replicaset

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// harness is a controller on a fake clientset whose informer caches the
// test fills by hand (refresh), so that it can make the cache lag the API.
type harness struct {
	t      *testing.T
	client *fake.Clientset
	f      informers.SharedInformerFactory
	c      *Controller
	now    time.Time
	rec    *record.FakeRecorder
	seq    atomic.Int32
}

func newHarness(t *testing.T, objs ...runtime.Object) *harness {
	h := &harness{t: t, client: fake.NewClientset(objs...), now: t0, rec: record.NewFakeRecorder(100)}
	// The fake tracker does not implement generateName.
	h.client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if p.Name == "" {
			p.Name = fmt.Sprintf("%sx%d", p.GenerateName, h.seq.Add(1))
			p.UID = types.UID(p.Name + "-uid")
			p.CreationTimestamp = metav1.NewTime(h.now)
		}
		return false, nil, nil
	})
	h.f = informers.NewSharedInformerFactory(h.client, 0)
	h.c = New(h.client, h.f, h.rec, nil)
	h.c.now = func() time.Time { return h.now }
	h.refresh()
	return h
}

// refresh makes the caches show what the API holds.
func (h *harness) refresh() {
	h.t.Helper()
	ctx := context.Background()
	rs, err := h.client.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var items []any
	for i := range rs.Items {
		items = append(items, &rs.Items[i])
	}
	_ = h.f.Apps().V1().ReplicaSets().Informer().GetIndexer().Replace(items, "")
	pods, err := h.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	items = nil
	for i := range pods.Items {
		items = append(items, &pods.Items[i])
	}
	_ = h.f.Core().V1().Pods().Informer().GetIndexer().Replace(items, "")
}

func (h *harness) sync(key string) error {
	h.t.Helper()
	h.client.ClearActions()
	return h.c.Sync(context.Background(), key)
}

func (h *harness) count(verb, resource string) int {
	n := 0
	for _, a := range h.client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource && a.GetSubresource() == "" {
			n++
		}
	}
	return n
}

func (h *harness) pods() []corev1.Pod {
	l, err := h.client.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return l.Items
}

func (h *harness) rs(name string) *appsv1.ReplicaSet {
	rs, err := h.client.AppsV1().ReplicaSets("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return rs
}

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name + "-uid"), Generation: 1},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

type podOpt func(*corev1.Pod)

func onNode(n string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func running(p *corev1.Pod)  { p.Status.Phase = corev1.PodRunning }
func readyAt(at time.Time) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at)}}
	}
}
func created(at time.Time) podOpt {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(at) }
}
func restarts(n int32) podOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", RestartCount: n}}
	}
}
func cost(n string) podOpt {
	return func(p *corev1.Pod) { p.Annotations = map[string]string{DeletionCostAnnotation: n} }
}

func pod(name string, owner *appsv1.ReplicaSet, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name + "-uid"), CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	if owner != nil {
		p.Labels = map[string]string{"app": owner.Name}
		p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, kindRS)}
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func TestSortForDeletion(t *testing.T) {
	rs := newRS("web", 0)
	now := t0
	// Listed in the expected deletion order.
	want := []*corev1.Pod{
		pod("unscheduled", rs),
		pod("pending", rs, onNode("n1")),
		pod("running-not-ready", rs, onNode("n1"), running),
		pod("cheap", rs, onNode("n2"), readyAt(now.Add(-time.Hour)), cost("-10")),
		pod("doubled-up", rs, onNode("n1"), readyAt(now.Add(-time.Hour))),
		pod("ready-briefly", rs, onNode("n3"), readyAt(now.Add(-3*time.Second))),
		pod("ready-long-many-restarts", rs, onNode("n4"), readyAt(now.Add(-time.Hour)), restarts(5)),
		pod("ready-long-newer", rs, onNode("n5"), readyAt(now.Add(-time.Hour)), created(now.Add(-2*time.Hour))),
		pod("ready-long-oldest", rs, onNode("n6"), readyAt(now.Add(-time.Hour)), created(now.Add(-100*time.Hour))),
		pod("precious", rs, onNode("n7"), readyAt(now.Add(-time.Second)), cost("1000")),
	}
	for seed := range 5 {
		got := slices.Clone(want)
		// Shuffle deterministically.
		for i := range got {
			j := (i*7 + seed*3) % len(got)
			got[i], got[j] = got[j], got[i]
		}
		SortForDeletion(got, nil, now)
		for i := range want {
			if got[i].Name != want[i].Name {
				t.Fatalf("seed %d: position %d: got %s, want %s (full order %v)", seed, i, got[i].Name, want[i].Name, names(got))
			}
		}
	}
}

func names(ps []*corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestAvailable(t *testing.T) {
	p := pod("p", nil, readyAt(t0))
	for _, c := range []struct {
		min  int32
		now  time.Time
		want bool
	}{
		{0, t0, true},
		{5, t0.Add(4 * time.Second), false},
		{5, t0.Add(5 * time.Second), true},
	} {
		if got := Available(p, c.min, c.now); got != c.want {
			t.Errorf("Available(min=%d, +%v): got %v, want %v", c.min, c.now.Sub(t0), got, c.want)
		}
	}
	if Available(pod("q", nil, running), 0, t0) {
		t.Errorf("a running pod without Ready=True counted as available")
	}
}

func TestCreatesFromTemplateAndWaitsForTheCache(t *testing.T) {
	rs := newRS("web", 3)
	h := newHarness(t, rs)
	if err := h.sync("ns/web"); err != nil {
		t.Fatal(err)
	}
	if n := h.count("create", "pods"); n != 3 {
		t.Fatalf("first sync: got %d pod creates, want 3", n)
	}
	for _, p := range h.pods() {
		ref := metav1.GetControllerOf(&p)
		if p.GenerateName != "web-" || ref == nil || ref.UID != rs.UID || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion || p.Labels["app"] != "web" {
			t.Errorf("pod %s: generateName %q, controller %+v, labels %v: want web-, controller web with blockOwnerDeletion, app=web", p.Name, p.GenerateName, ref, p.Labels)
		}
	}
	// The cache has not seen the pods yet: a second sync must not create more.
	if err := h.sync("ns/web"); err != nil {
		t.Fatal(err)
	}
	if n := h.count("create", "pods"); n != 0 {
		t.Fatalf("sync with a lagging cache: got %d creates, want 0", n)
	}
	// The watch delivers the pods; now the count is right and nothing changes.
	h.refresh()
	for _, p := range h.pods() {
		h.c.podAdded(&p)
	}
	if !h.c.exp.satisfied("ns/web") {
		t.Fatalf("expectations not satisfied after the 3 creations were observed")
	}
	if err := h.sync("ns/web"); err != nil {
		t.Fatal(err)
	}
	if n := h.count("create", "pods") + h.count("delete", "pods"); n != 0 {
		t.Errorf("steady state: got %d creates/deletes, want 0", n)
	}
	if got := h.rs("web").Status.Replicas; got != 3 {
		t.Errorf("status.replicas: got %d, want 3", got)
	}
}

func TestExpectationsExpire(t *testing.T) {
	now := t0
	e := newExpectations(func() time.Time { return now })
	e.expectCreations("k", 2)
	e.creationObserved("k")
	if e.satisfied("k") {
		t.Fatal("satisfied with one creation outstanding")
	}
	now = now.Add(expectationTTL + time.Second)
	if !e.satisfied("k") {
		t.Fatal("not satisfied after the TTL")
	}
	e.expectDeletions("k", []string{"ns/a"})
	if e.satisfied("k") {
		t.Fatal("satisfied with a deletion outstanding")
	}
	e.deletionObserved("k", "ns/a")
	if !e.satisfied("k") {
		t.Fatal("not satisfied after the deletion was observed")
	}
}

func TestDeletesSurplusInPreferenceOrder(t *testing.T) {
	rs := newRS("web", 1)
	h := newHarness(t, rs,
		pod("ready", rs, onNode("n1"), readyAt(t0.Add(-time.Hour))),
		pod("unscheduled", rs),
		pod("not-ready", rs, onNode("n2"), running),
	)
	if err := h.sync("ns/web"); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, p := range h.pods() {
		left = append(left, p.Name)
	}
	if !slices.Equal(left, []string{"ready"}) {
		t.Errorf("pods left: got %v, want [ready]", left)
	}
}

func TestInactivePodsAreReplaced(t *testing.T) {
	rs := newRS("web", 2)
	gone := pod("terminating", rs, onNode("lost"), readyAt(t0.Add(-time.Hour)))
	gone.DeletionTimestamp = &metav1.Time{Time: t0}
	failed := pod("failed", rs, onNode("n1"))
	failed.Status.Phase = corev1.PodFailed
	h := newHarness(t, rs, gone, failed, pod("ok", rs, onNode("n1"), readyAt(t0.Add(-time.Hour))))
	if err := h.sync("ns/web"); err != nil {
		t.Fatal(err)
	}
	if n := h.count("create", "pods"); n != 1 {
		t.Errorf("got %d creates, want 1 (a terminating and a failed pod do not count)", n)
	}
	if st := h.rs("web").Status; st.Replicas != 1 || st.ReadyReplicas != 1 {
		t.Errorf("status: got replicas %d ready %d, want 1 and 1 (before the replacement is seen)", st.Replicas, st.ReadyReplicas)
	}
}

func TestAdoptsOrphansAndReleasesMismatches(t *testing.T) {
	rs := newRS("web", 2)
	orphan := pod("orphan", nil, onNode("n1"))
	orphan.Labels = map[string]string{"app": "web"}
	stray := pod("stray", rs, onNode("n1"))
	stray.Labels = map[string]string{"app": "other"}
	h := newHarness(t, rs, orphan, stray, pod("mine", rs, onNode("n1")))
	if err := h.sync("ns/web"); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.pods() {
		ref := metav1.GetControllerOf(&p)
		switch p.Name {
		case "orphan", "mine":
			if ref == nil || ref.UID != rs.UID {
				t.Errorf("%s: controller %+v, want web", p.Name, ref)
			}
		case "stray":
			if ref != nil {
				t.Errorf("stray (labels no longer match): controller %+v, want none", ref)
			}
		}
	}
	if n := h.count("create", "pods"); n != 0 {
		t.Errorf("got %d creates, want 0: the adopted orphan makes 2", n)
	}
}

func TestAvailabilityWaitsForMinReadySeconds(t *testing.T) {
	rs := newRS("web", 2)
	rs.Spec.MinReadySeconds = 10
	h := newHarness(t, rs,
		pod("old", rs, onNode("n1"), readyAt(t0.Add(-time.Minute))),
		pod("new", rs, onNode("n1"), readyAt(t0.Add(-2*time.Second))),
	)
	if err := h.sync("ns/web"); err != nil {
		t.Fatal(err)
	}
	st := h.rs("web").Status
	if st.ReadyReplicas != 2 || st.AvailableReplicas != 1 || st.ObservedGeneration != 1 || st.FullyLabeledReplicas != 2 {
		t.Errorf("status: got %+v, want ready 2, available 1, fullyLabeled 2, observedGeneration 1", st)
	}
	h.now = t0.Add(9 * time.Second)
	h.refresh()
	if err := h.sync("ns/web"); err != nil {
		t.Fatal(err)
	}
	if got := h.rs("web").Status.AvailableReplicas; got != 2 {
		t.Errorf("after minReadySeconds: available %d, want 2", got)
	}
}

func TestReplicaFailureCondition(t *testing.T) {
	rs := newRS("web", 2)
	h := newHarness(t, rs)
	quota := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", fmt.Errorf("exceeded quota: q, requested: pods=1, used: pods=5, limited: pods=5"))
	fail := true
	h.client.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fail {
			return true, nil, quota
		}
		return false, nil, nil
	})
	if err := h.sync("ns/web"); err == nil {
		t.Fatal("sync: want the create error, got nil")
	}
	if n := h.count("create", "pods"); n != 1 {
		t.Errorf("slow start: got %d create attempts, want 1 after the first failure", n)
	}
	conds := h.rs("web").Status.Conditions
	if len(conds) != 1 || conds[0].Type != appsv1.ReplicaSetReplicaFailure || conds[0].Reason != "FailedCreate" || conds[0].Status != corev1.ConditionTrue {
		t.Fatalf("conditions: got %+v, want ReplicaFailure True FailedCreate", conds)
	}
	// The quota frees up: pods get created and the condition goes.
	fail = false
	h.refresh()
	if err := h.sync("ns/web"); err != nil {
		t.Fatal(err)
	}
	if conds := h.rs("web").Status.Conditions; len(conds) != 0 {
		t.Errorf("conditions after success: got %+v, want none", conds)
	}
	var sawFailed bool
	for len(h.rec.Events) > 0 {
		if e := <-h.rec.Events; e == "Warning FailedCreate Error creating: "+quota.Error() {
			sawFailed = true
		}
	}
	if !sawFailed {
		t.Errorf("no FailedCreate event")
	}
}

// The garbage collector deletes the pods of a deleted set; if the cache
// still shows the set, those deletions must not be "repaired".
func TestNoCreatesForASetGoneFromTheAPI(t *testing.T) {
	rs := newRS("web", 3)
	h := newHarness(t, rs)
	if err := h.client.AppsV1().ReplicaSets("ns").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = h.sync("ns/web") // the cache still has it
	if n := h.count("create", "pods"); n != 0 {
		t.Errorf("got %d creates for a deleted set, want 0", n)
	}
}
