package orch

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// waitFor polls cond every 50ms until it holds and returns how long that
// took; on timeout it fails the test with cond's last explanation.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var why string
	for {
		var ok bool
		ok, why = cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pods lists the pods of ns matching a label selector.
func pods(t *testing.T, ns, selector string) []corev1.Pod {
	t.Helper()
	l, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Logf("listing pods: %v", err)
		return nil
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyPods returns the ready, not terminating pods and, per node, their
// number.
func readyPods(ps []corev1.Pod) ([]corev1.Pod, map[string]int) {
	var out []corev1.Pod
	per := map[string]int{}
	for i := range ps {
		if podReady(&ps[i]) {
			out = append(out, ps[i])
			per[ps[i].Spec.NodeName]++
		}
	}
	return out, per
}

// describe summarises pods for failure messages.
func describe(ps []corev1.Pod) string {
	var b strings.Builder
	for _, p := range ps {
		del := ""
		if p.DeletionTimestamp != nil {
			del = " terminating"
		}
		fmt.Fprintf(&b, "\n  %s node=%q phase=%s ready=%v%s", p.Name, p.Spec.NodeName, p.Status.Phase, podReady(&p), del)
		for _, c := range p.Status.ContainerStatuses {
			st := "?"
			switch {
			case c.State.Running != nil:
				st = "running"
			case c.State.Waiting != nil:
				st = "waiting:" + c.State.Waiting.Reason
			case c.State.Terminated != nil:
				st = fmt.Sprintf("terminated:%s(%d)", c.State.Terminated.Reason, c.State.Terminated.ExitCode)
			}
			fmt.Fprintf(&b, " [%s %s restarts=%d]", c.Name, st, c.RestartCount)
		}
	}
	return b.String()
}

// waitReady waits until exactly n pods of the selector are ready (and
// none other is left, unless extraOK) and returns them.
func waitReady(t *testing.T, ns, selector string, n int, timeout time.Duration) ([]corev1.Pod, time.Duration) {
	t.Helper()
	var ready []corev1.Pod
	d := waitFor(t, timeout, fmt.Sprintf("%d ready pods %s in %s", n, selector, ns), func() (bool, string) {
		ps := pods(t, ns, selector)
		ready, _ = readyPods(ps)
		return len(ready) == n, describe(ps)
	})
	return ready, d
}

// nodeOf maps pod name → node name.
func nodeOf(ps []corev1.Pod) map[string]string {
	m := map[string]string{}
	for _, p := range ps {
		m[p.Name] = p.Spec.NodeName
	}
	return m
}

// events returns the messages of the events about one object.
func events(t *testing.T, ns, name string) []corev1.Event {
	t.Helper()
	l, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Logf("listing events: %v", err)
		return nil
	}
	return l.Items
}

// enginePodContainers lists a node's running containers that belong to
// a pod (per the agent's labels): pod uid → container names.
func enginePodContainers(t *testing.T, node string) map[string][]string {
	t.Helper()
	out, err := theLab.Berth(node, "ps", "--filter", "label=io.kubernetes.pod.uid", "--format",
		`{{.Label "io.kubernetes.pod.uid"}} {{.Label "io.kubernetes.container.name"}} {{.Label "io.kubernetes.pod.name"}}`)
	if err != nil {
		t.Logf("berth ps on %s: %v", node, err)
		return nil
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 {
			m[f[0]] = append(m[f[0]], f[2]+"/"+f[1])
		}
	}
	return m
}
