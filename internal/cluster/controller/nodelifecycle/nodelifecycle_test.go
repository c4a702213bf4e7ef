package nodelifecycle

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
)

func readyNode(name string) *corev1.Node {
	now := metav1.Now()
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: now, LastTransitionTime: now},
	}}}
}

func lease(name string) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	d := int32(1)
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: LeaseNamespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &d, RenewTime: &now}}
}

func pod(name, node string, tol ...corev1.Toleration) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), CreationTimestamp: metav1.Now()},
		Spec:   corev1.PodSpec{NodeName: node, Tolerations: tol},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
}

func seconds(n int64) *int64 { return &n }

func unreachable(secs *int64) corev1.Toleration {
	return corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}
}

func startController(t *testing.T, cs *fake.Clientset, o Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := informers.NewSharedInformerFactory(cs, 0)
	c := New(o, cs, f.Core().V1().Nodes().Informer(), f.Coordination().V1().Leases().Informer(), f.Core().V1().Pods().Informer(), record.NewFakeRecorder(100), nil)
	f.Start(ctx.Done())
	go func() { _ = c.Run(ctx) }()
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
	return 0
}

func hasTaint(n *corev1.Node, key string, e corev1.TaintEffect) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == e {
			return true
		}
	}
	return false
}

func TestLostNode(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(readyNode("n1"), lease("n1"),
		pod("intolerant", "n1"),
		pod("brief", "n1", unreachable(seconds(1))),
		pod("forever", "n1", unreachable(nil)),
		pod("elsewhere", "n2"))
	_, _ = cs.CoreV1().Nodes().Create(ctx, readyNode("n2"), metav1.CreateOptions{})
	_, _ = cs.CoordinationV1().Leases(LeaseNamespace).Create(ctx, lease("n2"), metav1.CreateOptions{})
	startController(t, cs, Options{GracePeriod: 400 * time.Millisecond, MonitorPeriod: 50 * time.Millisecond})

	// n2 keeps renewing; n1 stops at once.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			l, err := cs.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "n2", metav1.GetOptions{})
			if err != nil {
				continue
			}
			now := metav1.NewMicroTime(time.Now())
			l.Spec.RenewTime = &now
			_, _ = cs.CoordinationV1().Leases(LeaseNamespace).Update(ctx, l, metav1.UpdateOptions{})
		}
	}()
	start := time.Now()
	getNode := func(name string) *corev1.Node {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, 3*time.Second, "n1 Unknown and tainted unreachable", func() bool {
		n := getNode("n1")
		rc := condition(n, corev1.NodeReady)
		return rc.Status == corev1.ConditionUnknown && hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute) && hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule)
	})
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Errorf("n1 marked Unknown after %v, before its grace period of 400ms", el)
	}
	n1 := getNode("n1")
	for _, ct := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		c := condition(n1, ct)
		if c == nil || c.Status != corev1.ConditionUnknown {
			t.Errorf("condition %s: got %+v, want Unknown", ct, c)
		}
	}
	if c := condition(n1, corev1.NodeReady); c.Reason != "NodeStatusUnknown" || c.Message != "Kubelet stopped posting node status." {
		t.Errorf("Ready reason/message: got %q %q", c.Reason, c.Message)
	}
	for _, tt := range n1.Spec.Taints {
		if tt.Effect == corev1.TaintEffectNoExecute && tt.TimeAdded == nil {
			t.Errorf("NoExecute taint %s without timeAdded", tt.ToString())
		}
	}
	podGone := func(name string) func() bool {
		return func() bool {
			_, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}
	}
	waitFor(t, time.Second, "intolerant pod deleted", podGone("intolerant"))
	// The pod tolerating for 1 s goes about 1 s after the taint.
	el := waitFor(t, 3*time.Second, "pod tolerating 1s deleted", podGone("brief"))
	if el < 500*time.Millisecond {
		t.Errorf("pod with tolerationSeconds 1 deleted %v after the taint, want about 1s", el)
	}
	waitFor(t, time.Second, "forever pod Ready=False", func() bool {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "forever", metav1.GetOptions{})
		return err == nil && p.Status.Conditions[podCondition(p, corev1.PodReady)].Status == corev1.ConditionFalse
	})
	time.Sleep(300 * time.Millisecond)
	if podGone("forever")() {
		t.Error("pod tolerating unreachable forever was deleted")
	}
	if n2 := getNode("n2"); condition(n2, corev1.NodeReady).Status != corev1.ConditionTrue || len(n2.Spec.Taints) > 0 {
		t.Errorf("renewing node n2 changed: %+v %v", n2.Status.Conditions, n2.Spec.Taints)
	}
	if p, err := cs.CoreV1().Pods("default").Get(ctx, "elsewhere", metav1.GetOptions{}); err != nil || p.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Errorf("pod on healthy node touched: %v %+v", err, p)
	}

	// The agent comes back: renews its lease and reports Ready again.
	n1 = getNode("n1")
	now := metav1.Now()
	for i := range n1.Status.Conditions {
		c := &n1.Status.Conditions[i]
		c.Status, c.LastHeartbeatTime, c.Reason = corev1.ConditionFalse, now, ""
		if c.Type == corev1.NodeReady {
			c.Status = corev1.ConditionTrue
		}
	}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "n1 untainted", func() bool { return len(getNode("n1").Spec.Taints) == 0 })
}

func TestNotReadyTaints(t *testing.T) {
	n := readyNode("n")
	n.Status.Conditions[0].Status = corev1.ConditionFalse
	n.Status.Conditions[1].Status = corev1.ConditionTrue
	n.Spec.Unschedulable = true
	n.Spec.Taints = []corev1.Taint{{Key: "user", Effect: corev1.TaintEffectNoSchedule}, {Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}}
	got, changed := nextTaints(n.Spec.Taints, wantTaints(n), time.Now())
	if !changed {
		t.Fatal("no change reported")
	}
	want := map[string]bool{"user:NoSchedule": true, corev1.TaintNodeNotReady + ":NoSchedule": true, corev1.TaintNodeNotReady + ":NoExecute": true,
		corev1.TaintNodeMemoryPressure + ":NoSchedule": true, corev1.TaintNodeUnschedulable + ":NoSchedule": true}
	if len(got) != len(want) {
		t.Errorf("got taints %v, want %v", taintStrings(got), want)
	}
	for _, s := range taintStrings(got) {
		if !want[s] {
			t.Errorf("unexpected taint %s", s)
		}
	}
	if _, changed := nextTaints(got, wantTaints(n), time.Now()); changed {
		t.Error("second pass changed taints again")
	}
}

func TestEvictionTime(t *testing.T) {
	c := &Controller{firstSeen: map[string]time.Time{}}
	now := time.Now()
	added := metav1.NewTime(now.Add(-10 * time.Second))
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Spec: corev1.NodeSpec{Taints: []corev1.Taint{
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added},
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule},
	}}}
	old := pod("p", "n")
	old.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	young := old.DeepCopy()
	young.CreationTimestamp = metav1.NewTime(now.Add(-time.Second))
	for _, tc := range []struct {
		name  string
		p     *corev1.Pod
		tol   []corev1.Toleration
		want  time.Duration // from now
		never bool
	}{
		{"untolerated", old, nil, 0, false},
		{"forever", old, []corev1.Toleration{unreachable(nil)}, 0, true},
		{"expired", old, []corev1.Toleration{unreachable(seconds(5))}, -5 * time.Second, false},
		{"pending", old, []corev1.Toleration{unreachable(seconds(30))}, 20 * time.Second, false},
		{"young pod counts from creation", young, []corev1.Toleration{unreachable(seconds(30))}, 29 * time.Second, false},
		{"wildcard toleration", old, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, 0, true},
		{"longest toleration wins", old, []corev1.Toleration{unreachable(seconds(5)), unreachable(seconds(40))}, 30 * time.Second, false},
		{"NoSchedule toleration only", old, []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, 0, false},
	} {
		p := tc.p.DeepCopy()
		p.Spec.Tolerations = tc.tol
		at, ok := c.evictionTime(p, n, now)
		switch {
		case tc.never && ok:
			t.Errorf("%s: evicted at %v, want never", tc.name, at.Sub(now))
		case !tc.never && !ok:
			t.Errorf("%s: never evicted, want in %v", tc.name, tc.want)
		case ok && at.Sub(now).Round(time.Second) != tc.want.Round(time.Second):
			t.Errorf("%s: evicted in %v, want %v", tc.name, at.Sub(now), tc.want)
		}
	}
}

func TestPodGC(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(readyNode("n1"), lease("n1"), pod("orphan", "gone"), pod("kept", "n1"), pod("unbound", ""))
	startController(t, cs, Options{PodGCPeriod: 50 * time.Millisecond})
	waitFor(t, 2*time.Second, "orphan force-deleted", func() bool {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "orphan", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	for _, name := range []string{"kept", "unbound"} {
		if _, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("pod %s: %v", name, err)
		}
	}
	// Deleting the node takes its pods.
	if err := cs.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "pod of deleted node force-deleted", func() bool {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "kept", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}
