package daemonset

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
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

var seq atomic.Int64

func newClientset(objs ...runtime.Object) *fake.Clientset {
	cs := fake.NewClientset(objs...)
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		n := seq.Add(1)
		if p.Name == "" {
			p.Name = fmt.Sprintf("%s%05d", p.GenerateName, n)
		}
		p.UID = types.UID(fmt.Sprintf("pod-uid-%d", n))
		p.CreationTimestamp = metav1.NewTime(time.Now().Add(time.Duration(n) * time.Millisecond))
		return false, nil, nil
	})
	return cs
}

func node(name string, lbl map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl}, Spec: corev1.NodeSpec{Taints: taints}}
}

func daemonSet() *appsv1.DaemonSet {
	one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "default", UID: "ds-uid", Generation: 1},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{NodeSelector: map[string]string{"role": "web"}, Containers: []corev1.Container{{Name: "c", Image: "v1"}}}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &one, MaxSurge: &zero}},
		},
	}
}

func start(t *testing.T, cs *fake.Clientset) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := informers.NewSharedInformerFactory(cs, 0)
	c := New(cs, f.Apps().V1().DaemonSets().Informer(), f.Core().V1().Nodes().Informer(), f.Core().V1().Pods().Informer(), record.NewFakeRecorder(1000), nil)
	f.Start(ctx.Done())
	go func() { _ = c.Run(ctx, 1) }()
}

// podsByNode lists live pods: node → images.
func podsByNode(cs *fake.Clientset) map[string][]string {
	list, _ := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	out := map[string][]string{}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p.Spec.Containers[0].Image)
		}
	}
	return out
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestPlacement(t *testing.T) {
	ctx := context.Background()
	cs := newClientset(daemonSet(),
		node("n1", map[string]string{"role": "web"}),
		node("n2", map[string]string{"role": "web"}, corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}),
		node("n3", nil),
		node("n4", map[string]string{"role": "web"}, corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}),
		node("n5", map[string]string{"role": "web"}, corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}))
	start(t, cs)
	eventually(t, "pods on n1, n4 (default toleration), n5 (cordoned)", func() bool {
		m := podsByNode(cs)
		return len(m) == 3 && len(m["n1"]) == 1 && len(m["n4"]) == 1 && len(m["n5"]) == 1
	})
	list, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	p := list.Items[0]
	terms := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchFields[0].Key != "metadata.name" || terms[0].MatchFields[0].Values[0] != p.Spec.NodeName {
		t.Errorf("pod %s not pinned to its node by affinity: %+v", p.Name, terms)
	}
	if p.Labels[appsv1.ControllerRevisionHashLabelKey] == "" || p.Labels[templateGenerationLabel] != "1" {
		t.Errorf("pod labels %v", p.Labels)
	}
	if len(p.Spec.Tolerations) != 6 {
		t.Errorf("daemon tolerations %+v, want the 6 defaults", p.Spec.Tolerations)
	}
	eventually(t, "status", func() bool {
		ds, _ := cs.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
		s := ds.Status
		return s.DesiredNumberScheduled == 3 && s.CurrentNumberScheduled == 3 && s.UpdatedNumberScheduled == 3 && s.NumberReady == 0 && s.NumberUnavailable == 3 && s.ObservedGeneration == 1
	})

	// A node that joins later gets a pod; one that loses the label loses it.
	if _, err := cs.CoreV1().Nodes().Create(ctx, node("n6", map[string]string{"role": "web"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod on the new node n6", func() bool { return len(podsByNode(cs)["n6"]) == 1 })
	n1, _ := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	n1.Labels = nil
	if _, err := cs.CoreV1().Nodes().Update(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod gone from n1", func() bool { return len(podsByNode(cs)["n1"]) == 0 })
	// A NoExecute taint the pods do not tolerate evicts; NoSchedule would not.
	n5, _ := cs.CoreV1().Nodes().Get(ctx, "n5", metav1.GetOptions{})
	n5.Spec.Taints = append(n5.Spec.Taints, corev1.Taint{Key: "drain", Effect: corev1.TaintEffectNoExecute})
	_, _ = cs.CoreV1().Nodes().Update(ctx, n5, metav1.UpdateOptions{})
	eventually(t, "pod gone from n5", func() bool { return len(podsByNode(cs)["n5"]) == 0 })
	n6, _ := cs.CoreV1().Nodes().Get(ctx, "n6", metav1.GetOptions{})
	n6.Spec.Taints = append(n6.Spec.Taints, corev1.Taint{Key: "later", Effect: corev1.TaintEffectNoSchedule})
	_, _ = cs.CoreV1().Nodes().Update(ctx, n6, metav1.UpdateOptions{})
	time.Sleep(300 * time.Millisecond)
	if len(podsByNode(cs)["n6"]) != 1 {
		t.Error("NoSchedule taint added later removed the running daemon pod")
	}
}

// kubelet marks every live pod Ready.
func kubelet(t *testing.T, cs *fake.Clientset) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
			list, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			for i := range list.Items {
				p := &list.Items[i]
				if len(p.Status.Conditions) == 0 {
					p.Status.Phase = corev1.PodRunning
					p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
					_, _ = cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
		}
	}()
}

func TestRollingUpdate(t *testing.T) {
	for _, tc := range []struct {
		name                string
		maxUnavail, maxSurg int32
	}{{"maxUnavailable 1", 1, 0}, {"maxSurge 1", 0, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ds := daemonSet()
			u, s := intstr.FromInt32(tc.maxUnavail), intstr.FromInt32(tc.maxSurg)
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &u, MaxSurge: &s}
			web := map[string]string{"role": "web"}
			cs := newClientset(ds, node("a", web), node("b", web), node("c", web))
			start(t, cs)
			kubelet(t, cs)
			eventually(t, "3 ready v1 pods", func() bool {
				d, _ := cs.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
				return d.Status.NumberAvailable == 3
			})
			// Watch availability during the update.
			var minAvail, maxPods atomic.Int32
			minAvail.Store(3)
			stop := make(chan struct{})
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
					list, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
					avail, n := int32(0), int32(0)
					for _, p := range list.Items {
						if p.DeletionTimestamp == nil {
							n++
							if len(p.Status.Conditions) > 0 {
								avail++
							}
						}
					}
					if avail < minAvail.Load() {
						minAvail.Store(avail)
					}
					if n > maxPods.Load() {
						maxPods.Store(n)
					}
				}
			}()
			d, _ := cs.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
			d.Spec.Template.Spec.Containers[0].Image = "v2"
			d.Generation = 2
			if _, err := cs.AppsV1().DaemonSets("default").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "all pods v2 and available", func() bool {
				m := podsByNode(cs)
				for _, n := range []string{"a", "b", "c"} {
					if len(m[n]) != 1 || m[n][0] != "v2" {
						return false
					}
				}
				d, _ := cs.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
				return d.Status.UpdatedNumberScheduled == 3 && d.Status.NumberAvailable == 3 && d.Status.ObservedGeneration == 2
			})
			close(stop)
			if tc.maxSurg == 0 && (minAvail.Load() < 2 || maxPods.Load() > 3) {
				t.Errorf("maxUnavailable 1: available dropped to %d (want ≥ 2), pods rose to %d (want ≤ 3)", minAvail.Load(), maxPods.Load())
			}
			if tc.maxSurg == 1 && (minAvail.Load() < 3 || maxPods.Load() > 4) {
				t.Errorf("maxSurge 1: available dropped to %d (want 3), pods rose to %d (want ≤ 4)", minAvail.Load(), maxPods.Load())
			}
			revs, _ := cs.AppsV1().ControllerRevisions("default").List(ctx, metav1.ListOptions{})
			var nums []int64
			for _, r := range revs.Items {
				nums = append(nums, r.Revision)
			}
			sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
			if fmt.Sprint(nums) != "[1 2]" {
				t.Errorf("controller revisions %v, want [1 2]", nums)
			}
		})
	}
}
