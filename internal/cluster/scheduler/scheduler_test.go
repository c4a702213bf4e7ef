package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/berth/berth/internal/cluster/kube"
)

// fakeClients is a fake clientset whose pods/binding sets spec.nodeName,
// as the API server does.
func fakeClients(t *testing.T, objs ...runtime.Object) (*kube.Clients, *fake.Clientset) {
	cs := fake.NewSimpleClientset(objs...)
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := a.(k8stesting.CreateAction).GetObject().(*corev1.Binding)
		obj, err := cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), b.Namespace, b.Name)
		if err != nil {
			return true, nil, err
		}
		p := obj.(*corev1.Pod).DeepCopy()
		if p.Spec.NodeName != "" {
			return true, nil, fmt.Errorf("pod %s is already assigned to node %q", p.Name, p.Spec.NodeName)
		}
		p.Spec.NodeName = b.Target.Name
		return true, b, cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, p.Namespace)
	})
	c := &kube.Clients{Client: cs, Informers: informers.NewSharedInformerFactory(cs, 0), Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	t.Cleanup(c.Shutdown)
	return c, cs
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func startScheduler(t *testing.T, c *kube.Clients) {
	ctx, cancel := context.WithCancel(context.Background())
	comp := Component(Config{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, RetryInterval: time.Hour})
	if comp.Name != "scheduler" {
		t.Errorf("component named %q, want scheduler", comp.Name)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = comp.Run(ctx, c) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ok, s := f()
		if ok {
			return
		}
		last = s
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last: %s", what, last)
}

func nodeOf(t *testing.T, cs kubernetes.Interface, name string) func() (bool, string) {
	return func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Spec.NodeName != "", fmt.Sprintf("pod %s on %q, conditions %+v", name, p.Spec.NodeName, p.Status.Conditions)
	}
}

func eventFor(cs kubernetes.Interface, pod, reason, message string) func() (bool, string) {
	return func() (bool, string) {
		evs, err := cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == pod && e.Reason == reason && strings.Contains(e.Message, message) {
				return e.Source.Component == DefaultSchedulerName, "source " + e.Source.Component
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, "; ")
	}
}

func TestLoopWithFakeClient(t *testing.T) {
	c, cs := fakeClients(t, mkNode("n1", "1", "2Gi"), mkNode("n2", "1", "2Gi"),
		mkPod("small", "500m", "100Mi"),
		mkPod("other", "500m", "", func(p *corev1.Pod) { p.Spec.SchedulerName = "someone-else" }),
		mkPod("gated", "100m", "", func(p *corev1.Pod) { p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/wait"}} }))
	startScheduler(t, c)
	ctx := context.Background()

	waitFor(t, "small bound", nodeOf(t, cs, "small"))
	waitFor(t, "Scheduled event", eventFor(cs, "small", "Scheduled", "Successfully assigned default/small to n"))

	if _, err := cs.CoreV1().Pods("default").Create(ctx, mkPod("big", "4", "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "FailedScheduling", eventFor(cs, "big", "FailedScheduling", "0/2 nodes are available: 2 Insufficient cpu."))
	waitFor(t, "PodScheduled=False", func() (bool, string) {
		p, _ := cs.CoreV1().Pods("default").Get(ctx, "big", metav1.GetOptions{})
		cond := podCondition(p, corev1.PodScheduled)
		return cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable &&
			cond.Message == "0/2 nodes are available: 2 Insufficient cpu.", fmt.Sprintf("%+v", cond)
	})

	if _, err := cs.CoreV1().Nodes().Create(ctx, mkNode("n3", "8", "16Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "big bound once n3 joins", nodeOf(t, cs, "big"))
	if p, _ := cs.CoreV1().Pods("default").Get(ctx, "big", metav1.GetOptions{}); p.Spec.NodeName != "n3" {
		t.Errorf("big went to %q, want n3", p.Spec.NodeName)
	}
	waitFor(t, "PodScheduled=True", func() (bool, string) {
		p, _ := cs.CoreV1().Pods("default").Get(ctx, "big", metav1.GetOptions{})
		cond := podCondition(p, corev1.PodScheduled)
		return cond != nil && cond.Status == corev1.ConditionTrue, fmt.Sprintf("%+v", cond)
	})

	// The pod of another scheduler is left alone, and so is a gated pod
	// until its gates are removed.
	if p, _ := cs.CoreV1().Pods("default").Get(ctx, "gated", metav1.GetOptions{}); p.Spec.NodeName != "" {
		t.Errorf("gated pod was bound to %q", p.Spec.NodeName)
	}
	g, _ := cs.CoreV1().Pods("default").Get(ctx, "gated", metav1.GetOptions{})
	g = g.DeepCopy()
	g.Spec.SchedulingGates = nil
	if _, err := cs.CoreV1().Pods("default").Update(ctx, g, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gated bound once ungated", nodeOf(t, cs, "gated"))
	if p, _ := cs.CoreV1().Pods("default").Get(ctx, "other", metav1.GetOptions{}); p.Spec.NodeName != "" {
		t.Errorf("pod of another scheduler was bound to %q", p.Spec.NodeName)
	}
}

func TestLoopRetriesWhenPodDeleted(t *testing.T) {
	c, cs := fakeClients(t, mkNode("n1", "1", "2Gi"), mkPod("first", "800m", "", on("n1")))
	startScheduler(t, c)
	ctx := context.Background()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, mkPod("second", "800m", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "FailedScheduling", eventFor(cs, "second", "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu."))
	if err := cs.CoreV1().Pods("default").Delete(ctx, "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second bound after first is deleted", nodeOf(t, cs, "second"))
}

func TestLoopRetriesWhenNodeUncordoned(t *testing.T) {
	c, cs := fakeClients(t, mkNode("n1", "1", "2Gi", func(n *corev1.Node) { n.Spec.Unschedulable = true }))
	startScheduler(t, c)
	ctx := context.Background()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, mkPod("p", "100m", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "FailedScheduling", eventFor(cs, "p", "FailedScheduling", "0/1 nodes are available: 1 node(s) were unschedulable."))
	n, _ := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	n = n.DeepCopy()
	n.Spec.Unschedulable = false
	if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "p bound after uncordon", nodeOf(t, cs, "p"))
}

func TestLoopPreempts(t *testing.T) {
	c, cs := fakeClients(t, mkNode("n1", "1", "2Gi"),
		mkPod("low", "800m", "", on("n1"), priority(10)),
		mkPod("keep", "100m", "", on("n1"), priority(1000)))
	startScheduler(t, c)
	ctx := context.Background()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, mkPod("urgent", "800m", "", priority(100)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "urgent bound after low is preempted", nodeOf(t, cs, "urgent"))
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "low", metav1.GetOptions{}); err == nil {
		t.Error("victim low still exists")
	}
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "keep", metav1.GetOptions{}); err != nil {
		t.Errorf("higher-priority pod keep: %v", err)
	}
	waitFor(t, "Preempted event", eventFor(cs, "low", "Preempted", "Preempted by default/urgent on node n1"))
}
