package deployment

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

func is(v intstr.IntOrString) *intstr.IntOrString { return &v }

func TestFenceposts(t *testing.T) {
	for _, c := range []struct {
		surge, unavail intstr.IntOrString
		replicas       int32
		wantS, wantU   int32
	}{
		{intstr.FromString("25%"), intstr.FromString("25%"), 10, 3, 2}, // surge rounds up, unavailable down
		{intstr.FromString("25%"), intstr.FromString("25%"), 4, 1, 1},
		{intstr.FromString("25%"), intstr.FromString("25%"), 1, 1, 0},
		{intstr.FromString("25%"), intstr.FromString("25%"), 3, 1, 0},
		{intstr.FromInt32(1), intstr.FromInt32(0), 3, 1, 0},
		{intstr.FromInt32(0), intstr.FromInt32(0), 3, 0, 1}, // never both zero
		{intstr.FromString("0%"), intstr.FromString("0%"), 5, 0, 1},
		{intstr.FromString("50%"), intstr.FromString("50%"), 5, 3, 2},
		{intstr.FromString("100%"), intstr.FromInt32(2), 5, 5, 2},
	} {
		s, u, err := Fenceposts(&c.surge, &c.unavail, c.replicas)
		if err != nil || s != c.wantS || u != c.wantU {
			t.Errorf("Fenceposts(%s, %s, %d): got %d, %d, %v; want %d, %d", c.surge.String(), c.unavail.String(), c.replicas, s, u, err, c.wantS, c.wantU)
		}
	}
	bad := intstr.FromString("lots")
	if _, _, err := Fenceposts(&bad, is(intstr.FromInt32(1)), 3); err == nil || !strings.Contains(err.Error(), "maxSurge") {
		t.Errorf("bad maxSurge: got %v, want an error naming maxSurge", err)
	}
}

func deploy(replicas int32, surge, unavail intstr.IntOrString) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "web-uid", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1"}}},
			},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail}},
			RevisionHistoryLimit:    ptr(int32(10)),
			ProgressDeadlineSeconds: ptr(int32(600)),
		},
	}
}

func ptr[T any](v T) *T { return &v }

func set(name string, spec, avail int32, age time.Duration) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: metav1.NewTime(t0.Add(-age))},
		Spec:       appsv1.ReplicaSetSpec{Replicas: &spec},
		Status:     appsv1.ReplicaSetStatus{Replicas: spec, ReadyReplicas: avail, AvailableReplicas: avail},
	}
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func TestNewRSReplicas(t *testing.T) {
	d := deploy(10, intstr.FromString("25%"), intstr.FromString("25%")) // surge 3
	for _, c := range []struct {
		old, cur, want int32
	}{
		{10, 0, 3},  // room for the surge
		{10, 3, 3},  // at 13 already
		{7, 3, 6},   // old shrank by 3
		{0, 8, 10},  // never above replicas
		{12, 0, 1},  // only 1 under the cap
		{14, 0, 0},  // above the cap (a scale-down mid-rollout)
		{2, 10, 10}, // done growing
	} {
		old, cur := set("old", c.old, c.old, time.Hour), set("new", c.cur, 0, 0)
		got, err := NewRSReplicas(d, []*appsv1.ReplicaSet{old, cur}, cur)
		if err != nil || got != c.want {
			t.Errorf("old %d new %d: got %d (%v), want %d", c.old, c.cur, got, err, c.want)
		}
	}
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if got, _ := NewRSReplicas(d, nil, set("new", 0, 0, 0)); got != 10 {
		t.Errorf("Recreate: got %d, want 10", got)
	}
}

func TestOldScaleDown(t *testing.T) {
	for _, c := range []struct {
		name          string
		d             *appsv1.Deployment
		old           []*appsv1.ReplicaSet
		newSpec, newA int32
		want          map[string]int32
	}{
		{"maxUnavailable 0: the new pod is not available yet", deploy(3, intstr.FromInt32(1), intstr.FromInt32(0)),
			[]*appsv1.ReplicaSet{set("a", 3, 3, time.Hour)}, 1, 0, map[string]int32{}},
		{"maxUnavailable 0: one new available, one old goes", deploy(3, intstr.FromInt32(1), intstr.FromInt32(0)),
			[]*appsv1.ReplicaSet{set("a", 3, 3, time.Hour)}, 1, 1, map[string]int32{"a": 2}},
		{"maxUnavailable 1 lets one go before any new is available", deploy(3, intstr.FromInt32(1), intstr.FromInt32(1)),
			[]*appsv1.ReplicaSet{set("a", 3, 3, time.Hour)}, 1, 0, map[string]int32{"a": 2}},
		{"unhealthy old replicas go first, whatever availability", deploy(4, intstr.FromInt32(1), intstr.FromInt32(0)),
			[]*appsv1.ReplicaSet{set("a", 2, 0, 2*time.Hour), set("b", 3, 3, time.Hour)}, 0, 0, map[string]int32{"a": 1}},
		{"oldest set shrinks first", deploy(4, intstr.FromInt32(0), intstr.FromInt32(2)),
			[]*appsv1.ReplicaSet{set("b", 2, 2, time.Hour), set("a", 2, 2, 2*time.Hour)}, 0, 0, map[string]int32{"a": 0}},
	} {
		newRS := set("new", c.newSpec, c.newA, 0)
		got := OldScaleDown(c.d, c.old, newRS)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestProportionalSizes(t *testing.T) {
	// Mid-rollout at 10 replicas (surge 3): old 8, new 5 = 13. Scaled to
	// 20 (surge 5, cap 25): 12 more, shared 8:5 of 13.
	d := deploy(20, intstr.FromString("25%"), intstr.FromString("25%"))
	old, cur := set("old", 8, 8, time.Hour), set("new", 5, 0, 0)
	for _, rs := range []*appsv1.ReplicaSet{old, cur} {
		setReplicasAnnotations(rs, 10, 13)
	}
	got := ProportionalSizes(d, []*appsv1.ReplicaSet{old, cur})
	if got["old"]+got["new"] != 25 || got["old"] != 15 || got["new"] != 10 {
		t.Errorf("scale up: got %v, want old 15 new 10 (total 25)", got)
	}
	// Scaled down to 5 (surge 2, cap 7): 6 fewer.
	d = deploy(5, intstr.FromString("25%"), intstr.FromString("25%"))
	got = ProportionalSizes(d, []*appsv1.ReplicaSet{old, cur})
	if got["old"]+got["new"] != 7 || got["old"] < got["new"] {
		t.Errorf("scale down: got %v, want a total of 7 with old ≥ new", got)
	}
}

func TestTemplateHash(t *testing.T) {
	d := deploy(1, intstr.FromInt32(1), intstr.FromInt32(0))
	a := TemplateHash(&d.Spec.Template, nil)
	if a != TemplateHash(d.Spec.Template.DeepCopy(), nil) {
		t.Fatal("hash not stable")
	}
	if len(a) == 0 || len(a) > 10 || strings.ContainsAny(a, "aeiou013") {
		t.Errorf("hash %q: want 1-10 characters of the safe alphabet", a)
	}
	if a == TemplateHash(&d.Spec.Template, ptr(int32(1))) {
		t.Error("collisionCount does not change the hash")
	}
	d.Spec.Template.Spec.Containers[0].Image = "busybox:2"
	if a == TemplateHash(&d.Spec.Template, nil) {
		t.Error("a new image gives the same hash")
	}
}

// world is a Deployment controller on a fake clientset plus a stand-in for
// the ReplicaSet controller and the kubelet: each step it sets every
// set's status from its spec, making new pods available only as fast as
// the test says (readyPerStep), and it records the worst availability
// and the most pods seen.
type world struct {
	t      *testing.T
	client *fake.Clientset
	f      informers.SharedInformerFactory
	c      *Controller
	now    time.Time
	rec    *record.FakeRecorder
	// avail[name] is how many of a set's pods are ready.
	avail        map[string]int32
	readyPerStep int32
}

func newWorld(t *testing.T, d *appsv1.Deployment) *world {
	w := &world{t: t, client: fake.NewClientset(d), now: t0, rec: record.NewFakeRecorder(1000), avail: map[string]int32{}, readyPerStep: 1}
	n := 0
	w.client.PrependReactor("create", "replicasets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rs := a.(k8stesting.CreateAction).GetObject().(*appsv1.ReplicaSet)
		n++
		rs.UID = types.UID(rs.Name + "-uid")
		rs.CreationTimestamp = metav1.NewTime(w.now.Add(time.Duration(n) * time.Millisecond))
		rs.Generation = 1
		return false, nil, nil
	})
	w.f = informers.NewSharedInformerFactory(w.client, 0)
	w.c = New(w.client, w.f, w.rec, nil)
	w.c.now = func() time.Time { return w.now }
	w.refresh()
	return w
}

func (w *world) refresh() {
	ctx := context.Background()
	ds, _ := w.client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	var items []any
	for i := range ds.Items {
		items = append(items, &ds.Items[i])
	}
	_ = w.f.Apps().V1().Deployments().Informer().GetIndexer().Replace(items, "")
	rs, _ := w.client.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	items = nil
	for i := range rs.Items {
		items = append(items, &rs.Items[i])
	}
	_ = w.f.Apps().V1().ReplicaSets().Informer().GetIndexer().Replace(items, "")
}

func (w *world) sets() []appsv1.ReplicaSet {
	l, err := w.client.AppsV1().ReplicaSets("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return l.Items
}

func (w *world) deployment() *appsv1.Deployment {
	d, err := w.client.AppsV1().Deployments("ns").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

// kubelet plays the ReplicaSet controller and kubelet for one step: a
// shrunk set loses pods at once (ready ones last); a grown set's new pods
// become ready readyPerStep at a time. It returns the ready pods in all.
func (w *world) kubelet() int32 {
	var total int32
	for _, rs := range w.sets() {
		spec := *rs.Spec.Replicas
		a := min(w.avail[rs.Name], spec)
		if a < spec {
			a = min(a+w.readyPerStep, spec)
		}
		w.avail[rs.Name] = a
		rs.Status = appsv1.ReplicaSetStatus{Replicas: spec, FullyLabeledReplicas: spec, ReadyReplicas: a, AvailableReplicas: a, ObservedGeneration: rs.Generation}
		if _, err := w.client.AppsV1().ReplicaSets("ns").UpdateStatus(context.Background(), &rs, metav1.UpdateOptions{}); err != nil {
			w.t.Fatal(err)
		}
		total += a
	}
	return total
}

// run syncs until the rollout completes, checking after every step that
// ready pods stay at or above minReady and pods at or below maxPods.
func (w *world) run(minReady, maxPods int32) int {
	for step := 1; step <= 100; step++ {
		w.refresh()
		if err := w.c.Sync(context.Background(), "ns/web"); err != nil {
			w.t.Fatalf("step %d: %v", step, err)
		}
		var pods int32
		for _, rs := range w.sets() {
			pods += *rs.Spec.Replicas
		}
		if pods > maxPods {
			w.t.Fatalf("step %d: %d pods, above the %d maxSurge allows", step, pods, maxPods)
		}
		ready := w.kubelet()
		if ready < minReady {
			w.t.Fatalf("step %d: %d ready, below the %d maxUnavailable allows", step, ready, minReady)
		}
		w.now = w.now.Add(time.Second)
		if d := w.deployment(); complete(d, &d.Status) && len(activeSets(ptrs(w.sets()))) == 1 {
			return step
		}
	}
	w.t.Fatal("rollout did not complete in 100 steps")
	return 0
}

func ptrs(sets []appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	out := make([]*appsv1.ReplicaSet, len(sets))
	for i := range sets {
		out[i] = &sets[i]
	}
	return out
}

func (w *world) setImage(img string) {
	d := w.deployment()
	d.Spec.Template.Spec.Containers[0].Image = img
	d.Generation++
	if _, err := w.client.AppsV1().Deployments("ns").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

func TestRollingUpdateKeepsAvailability(t *testing.T) {
	for _, c := range []struct {
		name              string
		surge, unavail    intstr.IntOrString
		minReady, maxPods int32
		readyPerStep      int32
	}{
		{"maxUnavailable 0", intstr.FromInt32(1), intstr.FromInt32(0), 3, 4, 1},
		{"defaults 25%", intstr.FromString("25%"), intstr.FromString("25%"), 3, 4, 1},
		{"maxUnavailable 1 maxSurge 0", intstr.FromInt32(0), intstr.FromInt32(1), 2, 3, 1},
		{"percent surge 100%", intstr.FromString("100%"), intstr.FromInt32(0), 3, 6, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, deploy(3, c.surge, c.unavail))
			w.readyPerStep = 3
			w.run(0, 3+3) // the first rollout starts from nothing
			w.readyPerStep = c.readyPerStep
			w.setImage("busybox:2")
			w.run(c.minReady, c.maxPods)
			d := w.deployment()
			if d.Annotations[RevisionAnnotation] != "2" {
				t.Errorf("deployment revision: got %q, want 2", d.Annotations[RevisionAnnotation])
			}
			var newName string
			for _, rs := range w.sets() {
				if rs.Spec.Template.Spec.Containers[0].Image == "busybox:2" {
					newName = rs.Name
					hash := rs.Labels[HashLabel]
					if rs.Name != "web-"+hash || rs.Spec.Selector.MatchLabels[HashLabel] != hash || rs.Spec.Template.Labels[HashLabel] != hash || rs.Annotations[RevisionAnnotation] != "2" {
						t.Errorf("new set %s: labels %v selector %v revision %q: want web-<hash>, hash on labels, selector and template, revision 2",
							rs.Name, rs.Labels, rs.Spec.Selector.MatchLabels, rs.Annotations[RevisionAnnotation])
					}
				}
			}
			st := d.Status
			if st.Replicas != 3 || st.UpdatedReplicas != 3 || st.AvailableReplicas != 3 || st.ReadyReplicas != 3 || st.UnavailableReplicas != 0 || st.ObservedGeneration != d.Generation {
				t.Errorf("status: got %+v, want 3/3/3/3, 0 unavailable, observedGeneration %d", st, d.Generation)
			}
			p := getCondition(&st, appsv1.DeploymentProgressing)
			if p == nil || p.Reason != ReasonNewRSAvailable || p.Message != fmt.Sprintf("ReplicaSet %q has successfully progressed.", newName) {
				t.Errorf("Progressing: got %+v, want NewReplicaSetAvailable for %s", p, newName)
			}
			if a := getCondition(&st, appsv1.DeploymentAvailable); a == nil || a.Status != corev1.ConditionTrue || a.Reason != ReasonMinAvailable {
				t.Errorf("Available: got %+v, want True MinimumReplicasAvailable", a)
			}
		})
	}
}

func TestScalingEventMessages(t *testing.T) {
	w := newWorld(t, deploy(3, intstr.FromInt32(1), intstr.FromInt32(0)))
	w.readyPerStep = 3
	w.run(0, 6)
	w.setImage("busybox:2")
	w.readyPerStep = 1
	w.run(3, 4)
	var got []string
	for len(w.rec.Events) > 0 {
		got = append(got, <-w.rec.Events)
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"Normal ScalingReplicaSet Scaled up replica set web-",
		" to 3\n",
		" to 1\n",
		"Normal ScalingReplicaSet Scaled down replica set web-",
		" to 2 from 3",
		" to 0 from 1",
	} {
		if !strings.Contains(all+"\n", want) {
			t.Errorf("events lack %q:\n%s", want, all)
		}
	}
}

func TestRecreate(t *testing.T) {
	d := deploy(3, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	w := newWorld(t, d)
	w.readyPerStep = 3
	w.run(0, 3)
	w.setImage("busybox:2")
	w.refresh()
	if err := w.c.Sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	if n := len(w.sets()); n != 1 {
		t.Fatalf("after the first Recreate step: %d sets, want 1 (no new set before the old pods are gone)", n)
	}
	if got := *w.sets()[0].Spec.Replicas; got != 0 {
		t.Fatalf("old set: %d replicas, want 0", got)
	}
	w.run(0, 3) // never more than 3 pods, old and new never together
}

func TestPausedDoesNotRollButScales(t *testing.T) {
	w := newWorld(t, deploy(3, intstr.FromInt32(1), intstr.FromInt32(0)))
	w.readyPerStep = 3
	w.run(0, 6)
	d := w.deployment()
	d.Spec.Paused = true
	d.Spec.Template.Spec.Containers[0].Image = "busybox:2"
	d.Spec.Replicas = ptr(int32(5))
	d.Generation++
	if _, err := w.client.AppsV1().Deployments("ns").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.refresh()
		if err := w.c.Sync(context.Background(), "ns/web"); err != nil {
			t.Fatal(err)
		}
		w.kubelet()
	}
	sets := w.sets()
	if len(sets) != 1 || *sets[0].Spec.Replicas != 5 {
		t.Fatalf("paused: got %d sets (first has %d replicas), want the one old set scaled to 5", len(sets), *sets[0].Spec.Replicas)
	}
	if p := getCondition(&w.deployment().Status, appsv1.DeploymentProgressing); p == nil || p.Reason != ReasonPaused {
		t.Errorf("Progressing while paused: got %+v, want DeploymentPaused", p)
	}
	d = w.deployment()
	d.Spec.Paused = false
	if _, err := w.client.AppsV1().Deployments("ns").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.run(5, 6) // maxSurge 1 over 5, maxUnavailable 0
	if n := len(w.sets()); n != 2 {
		t.Errorf("after resume: %d sets, want 2", n)
	}
}

func TestProgressDeadline(t *testing.T) {
	d := deploy(3, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Spec.ProgressDeadlineSeconds = ptr(int32(30))
	w := newWorld(t, d)
	w.readyPerStep = 0 // nothing ever becomes ready
	for range 3 {
		w.refresh()
		if err := w.c.Sync(context.Background(), "ns/web"); err != nil {
			t.Fatal(err)
		}
		w.kubelet()
	}
	if p := getCondition(&w.deployment().Status, appsv1.DeploymentProgressing); p == nil || p.Status != corev1.ConditionTrue {
		t.Fatalf("before the deadline: Progressing %+v, want True", p)
	}
	w.now = w.now.Add(31 * time.Second)
	w.refresh()
	if err := w.c.Sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	p := getCondition(&w.deployment().Status, appsv1.DeploymentProgressing)
	if p == nil || p.Status != corev1.ConditionFalse || p.Reason != ReasonTimedOut || !strings.Contains(p.Message, "has timed out progressing") {
		t.Errorf("after the deadline: Progressing %+v, want False ProgressDeadlineExceeded", p)
	}
}

func TestRevisionHistoryLimitAndRollback(t *testing.T) {
	d := deploy(2, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Spec.RevisionHistoryLimit = ptr(int32(2))
	w := newWorld(t, d)
	w.readyPerStep = 2
	w.run(0, 4)
	for i := 2; i <= 5; i++ {
		w.setImage(fmt.Sprintf("busybox:%d", i))
		w.run(2, 3)
	}
	// 5 revisions made: the newest set plus 2 old ones remain. (The
	// cleanup runs on the sync after completion.)
	w.refresh()
	_ = w.c.Sync(context.Background(), "ns/web")
	if n := len(w.sets()); n != 3 {
		t.Errorf("sets after 5 revisions with revisionHistoryLimit 2: got %d, want 3", n)
	}
	// kubectl rollout undo: copy an old set's template (minus the hash)
	// back into the Deployment.
	var old *appsv1.ReplicaSet
	for _, rs := range w.sets() {
		if Revision(&rs) == 4 {
			old = rs.DeepCopy()
		}
	}
	if old == nil {
		t.Fatal("no set with revision 4")
	}
	dep := w.deployment()
	dep.Spec.Template = *old.Spec.Template.DeepCopy()
	delete(dep.Spec.Template.Labels, HashLabel)
	dep.Generation++
	if _, err := w.client.AppsV1().Deployments("ns").Update(context.Background(), dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.run(2, 3)
	for _, rs := range w.sets() {
		if rs.Name == old.Name {
			if rs.Annotations[RevisionAnnotation] != "6" || rs.Annotations[RevisionHistoryAnnotation] != "4" || *rs.Spec.Replicas != 2 {
				t.Errorf("rolled-back set: revision %q history %q replicas %d, want 6, 4, 2", rs.Annotations[RevisionAnnotation], rs.Annotations[RevisionHistoryAnnotation], *rs.Spec.Replicas)
			}
		}
	}
	if got := w.deployment().Annotations[RevisionAnnotation]; got != "6" {
		t.Errorf("deployment revision after undo: got %q, want 6", got)
	}
}

func TestNoReplicaSetForADeploymentGoneFromTheAPI(t *testing.T) {
	w := newWorld(t, deploy(3, intstr.FromInt32(1), intstr.FromInt32(0)))
	if err := w.client.AppsV1().Deployments("ns").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := w.c.Sync(context.Background(), "ns/web"); err != nil { // the cache still has it
		t.Fatal(err)
	}
	if n := len(w.sets()); n != 0 {
		t.Errorf("got %d replicasets for a deleted deployment, want 0", n)
	}
}
