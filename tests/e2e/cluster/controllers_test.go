package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// These tests play the node agent: they register a Node, renew its Lease
// and post pod status from the test (with a node credential), while the
// real berth-server runs the node lifecycle, DaemonSet and Job controllers
// and kubectl drives them.

func adminClient(t *testing.T, s *server) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// nodeClient is a client with a fresh node token for name.
func nodeClient(t *testing.T, s *server, name string) kubernetes.Interface {
	t.Helper()
	tok, err := runServerCmd("token", "create", "--role", "node", "--name", name, "--data-dir", s.dataDir)
	if err != nil {
		t.Fatalf("token create: %v %s", err, tok)
	}
	ca, err := os.ReadFile(filepath.Join(s.dataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(&rest.Config{Host: s.url(), BearerToken: strings.TrimSpace(tok), TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
}

// fakeNode is a node whose "agent" is the test.
type fakeNode struct {
	name   string
	c      kubernetes.Interface
	cancel context.CancelFunc
	done   chan struct{}
}

// startNode registers node name as Ready with labels and renews its Lease
// every second (leaseDurationSeconds 4), as the agent does.
func startNode(t *testing.T, c kubernetes.Interface, name string, labels map[string]string) *fakeNode {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	fn := &fakeNode{name: name, c: c}
	fn.postReady(t)
	dur := int32(4)
	now := metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &dur, RenewTime: &now}}
	if _, err := c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, l, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create lease %s: %v", name, err)
	}
	fn.renew()
	t.Cleanup(fn.stop)
	return fn
}

func (n *fakeNode) postReady(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	node, err := n.c.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "berth agent is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
	}
	if _, err := n.c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("post node status: %v", err)
	}
}

// renew starts renewing the Lease every second.
func (n *fakeNode) renew() {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			l, err := n.c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				continue
			}
			now := metav1.NewMicroTime(time.Now())
			l.Spec.RenewTime = &now
			_, _ = n.c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(ctx, l, metav1.UpdateOptions{})
		}
	}()
}

// stop stops renewing (the node is lost) and reports when the last renewal
// could have happened.
func (n *fakeNode) stop() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
		n.cancel = nil
	}
}

// setPodPhase plays the kubelet for one pod.
func setPodPhase(ctx context.Context, c kubernetes.Interface, p *corev1.Pod, phase corev1.PodPhase, ready bool) error {
	p = p.DeepCopy()
	now := metav1.Now()
	p.Status.Phase = phase
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: now}}
	var state corev1.ContainerState
	switch phase {
	case corev1.PodRunning:
		state.Running = &corev1.ContainerStateRunning{StartedAt: now}
	case corev1.PodSucceeded:
		state.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", FinishedAt: now}
	case corev1.PodFailed:
		state.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: now}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: p.Spec.Containers[0].Name, Image: p.Spec.Containers[0].Image, State: state, Ready: ready}}
	_, err := c.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

func waitUntil(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if f() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
	return 0
}

const lostPodsYAML = `apiVersion: v1
kind: Pod
metadata: {name: defaulted}
spec:
  nodeName: NODE
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: patient}
spec:
  nodeName: NODE
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 6}
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: loyal}
spec:
  nodeName: NODE
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}
  containers: [{name: c, image: busybox}]
`

// TestNodeLost stops a node's Lease renewals and measures: Ready=Unknown
// and the unreachable taints within the grace period (4 s), the pod with
// the default toleration (2 s) deleted about 6 s after the last renewal,
// the pod tolerating for 6 s later, the pod tolerating forever kept; the
// taints go when the node comes back, and deleting the node takes its pods.
func TestNodeLost(t *testing.T) {
	ctx := context.Background()
	k := newKubectl(t, "kubectl", shared)
	admin := adminClient(t, shared)
	name := fmt.Sprintf("lost-%d", time.Now().UnixNano()%100000)
	node := nodeClient(t, shared, name)
	fn := startNode(t, node, name, nil)
	ns := "nodelost-" + name
	k.ok(t, "create", "namespace", ns)
	defer k.run(t, "", "delete", "namespace", ns, "--wait=false")
	k.okIn(t, strings.ReplaceAll(lostPodsYAML, "NODE", name), "apply", "-n", ns, "-f", "-")

	// Defaults added at create (the DefaultTolerationSeconds admission).
	tols := k.ok(t, "get", "pod", "defaulted", "-n", ns, "-o", `jsonpath={range .spec.tolerations[*]}{.key}:{.effect}:{.tolerationSeconds}{"\n"}{end}`)
	mustContain(t, tols, "node.kubernetes.io/not-ready:NoExecute:10", "node.kubernetes.io/unreachable:NoExecute:2")
	if tols := k.ok(t, "get", "pod", "patient", "-n", ns, "-o", `jsonpath={.spec.tolerations[*].tolerationSeconds}`); tols != "6 10" {
		t.Errorf("patient tolerations: got seconds %q, want its own 6 and the default not-ready 10", tols)
	}
	// The node's agent reports the pods running and ready.
	for _, p := range []string{"defaulted", "patient", "loyal"} {
		pod, err := node.CoreV1().Pods(ns).Get(ctx, p, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := setPodPhase(ctx, node, pod, corev1.PodRunning, true); err != nil {
			t.Fatalf("node posts pod status: %v", err)
		}
	}
	time.Sleep(2 * time.Second) // a few renewals: the node stays Ready
	if out := k.ok(t, "get", "node", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.taints}`); strings.TrimSpace(out) != "True" {
		t.Fatalf("renewing node: got %q, want Ready True and no taints", out)
	}

	fn.stop()
	lost := time.Now()
	unknown := waitUntil(t, 10*time.Second, "node Ready=Unknown with unreachable taints", func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		have := map[string]bool{}
		for _, tt := range n.Spec.Taints {
			have[tt.ToString()] = true
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionUnknown && have["node.kubernetes.io/unreachable:NoSchedule"] && have["node.kubernetes.io/unreachable:NoExecute"]
			}
		}
		return false
	})
	t.Logf("node Unknown and tainted %.2fs after the last renewal stopped (grace 4s)", unknown.Seconds())
	if unknown < 2500*time.Millisecond || unknown > 6*time.Second {
		t.Errorf("node marked Unknown after %v, want about the 4s grace period (renewals stopped within 1s before)", unknown)
	}
	out := k.ok(t, "get", "node", name, "-o", `jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason};{end}`)
	mustContain(t, out, "Ready=Unknown/NodeStatusUnknown", "MemoryPressure=Unknown/NodeStatusUnknown", "DiskPressure=Unknown", "PIDPressure=Unknown")
	mustContain(t, k.ok(t, "describe", "node", name), "Kubelet stopped posting node status.")

	deleting := func(p string) func() bool {
		return func() bool {
			pod, err := admin.CoreV1().Pods(ns).Get(ctx, p, metav1.GetOptions{})
			return apierrors.IsNotFound(err) || (err == nil && pod.DeletionTimestamp != nil)
		}
	}
	waitUntil(t, 10*time.Second, "pod with the default toleration evicted", deleting("defaulted"))
	evicted := time.Since(lost)
	t.Logf("pod with the default 2s toleration deleted %.2fs after the node was lost", evicted.Seconds())
	if evicted-unknown < 1500*time.Millisecond {
		t.Errorf("default-toleration pod deleted %v after the taint, want its 2s toleration honoured", evicted-unknown)
	}
	if evicted > 8*time.Second {
		t.Errorf("default-toleration pod deleted %v after the node was lost; a replacement could not run within 10s", evicted)
	}
	if deleting("patient")() {
		t.Error("pod tolerating 6s deleted together with the 2s one")
	}
	waitUntil(t, 10*time.Second, "pod tolerating 6s evicted", deleting("patient"))
	patient := time.Since(lost)
	t.Logf("pod tolerating 6s deleted %.2fs after the node was lost", patient.Seconds())
	if patient-evicted < 3*time.Second {
		t.Errorf("6s-tolerating pod went %v after the 2s one, want about 4s", patient-evicted)
	}
	if out := k.ok(t, "get", "pod", "loyal", "-n", ns, "-o", `jsonpath={.metadata.deletionTimestamp}|{.status.conditions[?(@.type=="Ready")].status}`); out != "|False" {
		t.Errorf("pod tolerating forever: got %q, want not deleting and Ready False", out)
	}
	mustContain(t, k.ok(t, "get", "events", "-n", ns), "TaintManagerEviction")

	// The agent comes back: renews and reports Ready; the taints go.
	fn.postReady(t)
	fn.renew()
	back := waitUntil(t, 5*time.Second, "taints removed", func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err == nil && len(n.Spec.Taints) == 0
	})
	t.Logf("taints removed %.2fs after the node reported Ready again", back.Seconds())

	// Deleting the node force-deletes its pods (pod GC).
	fn.stop()
	k.ok(t, "delete", "node", name)
	gc := waitUntil(t, 15*time.Second, "pods of the deleted node gone", func() bool {
		l, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0
	})
	t.Logf("pods of the deleted node force-deleted after %.2fs", gc.Seconds())
}

const dsYAML = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logger}
spec:
  selector:
    matchLabels: {app: logger}
  template:
    metadata:
      labels: {app: logger}
    spec:
      nodeSelector: {LABEL: "yes"}
      containers: [{name: c, image: IMAGE}]
`

// kubeletLoop marks every pending pod in ns Running and Ready (as nodes'
// agents would) until the test ends; f, if set, picks another outcome.
func kubeletLoop(t *testing.T, c kubernetes.Interface, ns string, f func(*corev1.Pod) corev1.PodPhase) *atomic.Int32 {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var peak atomic.Int32
	wg.Add(1)
	t.Cleanup(func() { cancel(); wg.Wait() })
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			active := int32(0)
			for i := range l.Items {
				p := &l.Items[i]
				if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
					continue
				}
				active++
				if f != nil {
					if time.Since(p.CreationTimestamp.Time) > 300*time.Millisecond {
						if ph := f(p); ph != "" {
							_ = setPodPhase(ctx, c, p, ph, false)
						}
					}
					continue
				}
				if p.Status.Phase != corev1.PodRunning {
					_ = setPodPhase(ctx, c, p, corev1.PodRunning, true)
				}
			}
			if active > peak.Load() {
				peak.Store(active)
			}
		}
	}()
	return &peak
}

// TestDaemonSetNodeJoins: a DaemonSet runs a pod on each labelled node, one
// on a node that joins later, rolls out a new image and reports it to
// `kubectl rollout status`.
func TestDaemonSetNodeJoins(t *testing.T) {
	ctx := context.Background()
	k := newKubectl(t, "kubectl", shared)
	admin := adminClient(t, shared)
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	label := "e2e-ds-" + suffix
	ns := "ds-" + suffix
	k.ok(t, "create", "namespace", ns)
	defer k.run(t, "", "delete", "namespace", ns, "--wait=false")
	first := "ds-a-" + suffix
	startNode(t, nodeClient(t, shared, first), first, map[string]string{label: "yes"})
	other := "ds-x-" + suffix
	startNode(t, nodeClient(t, shared, other), other, nil) // not labelled
	defer k.run(t, "", "delete", "node", first, other, "ds-b-"+suffix)
	kubeletLoop(t, admin, ns, nil)

	yaml := strings.NewReplacer("LABEL", label, "IMAGE", "busybox:1.36").Replace(dsYAML)
	k.okIn(t, yaml, "apply", "-n", ns, "-f", "-")
	podNodes := func() string { // nodes of the pods not being deleted
		l, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		var out []string
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil {
				out = append(out, p.Spec.NodeName)
			}
		}
		return strings.Join(out, " ")
	}
	waitUntil(t, 15*time.Second, "daemon pod on "+first, func() bool { return strings.TrimSpace(podNodes()) == first })
	k.ok(t, "rollout", "status", "daemonset/logger", "-n", ns, "--timeout=30s")

	second := "ds-b-" + suffix
	joined := time.Now()
	startNode(t, nodeClient(t, shared, second), second, map[string]string{label: "yes"})
	waitUntil(t, 15*time.Second, "daemon pod on the node that joined later", func() bool {
		f := strings.Fields(podNodes())
		return len(f) == 2 && (f[0] == second || f[1] == second)
	})
	t.Logf("daemon pod created %.2fs after the node joined", time.Since(joined).Seconds())
	out := k.ok(t, "get", "daemonset", "logger", "-n", ns, "-o", `jsonpath={.status.desiredNumberScheduled}/{.status.currentNumberScheduled}/{.status.numberMisscheduled}`)
	if out != "2/2/0" {
		t.Errorf("status desired/current/misscheduled: got %s, want 2/2/0", out)
	}
	pin := k.ok(t, "get", "pods", "-n", ns, "-o", `jsonpath={.items[0].spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key}`)
	if pin != "metadata.name" {
		t.Errorf("daemon pod affinity key %q, want metadata.name", pin)
	}

	// Roll out a new image.
	k.ok(t, "set", "image", "daemonset/logger", "-n", ns, "c=busybox:1.37")
	k.ok(t, "rollout", "status", "daemonset/logger", "-n", ns, "--timeout=60s")
	waitUntil(t, 10*time.Second, "only new pods", func() bool {
		l, _ := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		n := 0
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil {
				if p.Spec.Containers[0].Image != "busybox:1.37" {
					return false
				}
				n++
			}
		}
		return n == 2
	})
	mustContain(t, k.ok(t, "rollout", "history", "daemonset/logger", "-n", ns), "1 ", "2 ")
	k.ok(t, "rollout", "undo", "daemonset/logger", "-n", ns)
	if img := k.ok(t, "get", "daemonset", "logger", "-n", ns, "-o", `jsonpath={.spec.template.spec.containers[0].image}`); img != "busybox:1.36" {
		t.Errorf("after undo image %q, want busybox:1.36", img)
	}
	k.ok(t, "rollout", "status", "daemonset/logger", "-n", ns, "--timeout=60s")
	mustContain(t, k.ok(t, "describe", "daemonset", "logger", "-n", ns), "Desired Number of Nodes Scheduled: 2", "SuccessfulCreate")

	// A node that stops matching the selector loses its pod.
	k.ok(t, "label", "node", first, label+"-")
	waitUntil(t, 15*time.Second, "daemon pod gone from the unlabelled node", func() bool { return strings.TrimSpace(podNodes()) == second })
}

const jobYAML = `apiVersion: batch/v1
kind: Job
metadata: {name: NAME}
spec:
  completions: 3
  parallelism: 2
  backoffLimit: BACKOFF
  ttlSecondsAfterFinished: 3
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox, command: ["true"]}]
`

// TestJob: completions 3 / parallelism 2 completes when the fake kubelet
// succeeds its pods (kubectl wait --for=condition=complete), is deleted
// after ttlSecondsAfterFinished; a Job whose pods fail stops at backoffLimit.
func TestJob(t *testing.T) {
	k := newKubectl(t, "kubectl", shared)
	admin := adminClient(t, shared)
	ns := fmt.Sprintf("job-%d", time.Now().UnixNano()%100000)
	k.ok(t, "create", "namespace", ns)
	defer k.run(t, "", "delete", "namespace", ns, "--wait=false")
	var release atomic.Bool
	peak := kubeletLoop(t, admin, ns, func(p *corev1.Pod) corev1.PodPhase {
		switch {
		case strings.HasPrefix(p.Name, "fails-"):
			return corev1.PodFailed
		case strings.HasPrefix(p.Name, "held-") && !release.Load(), strings.HasPrefix(p.Name, "dropped-"):
			return "" // keeps running
		}
		return corev1.PodSucceeded
	})
	start := time.Now()
	k.okIn(t, strings.NewReplacer("NAME", "works", "BACKOFF", "6").Replace(jobYAML), "apply", "-n", ns, "-f", "-")
	k.ok(t, "wait", "--for=condition=complete", "job/works", "-n", ns, "--timeout=60s")
	t.Logf("job of 3 completions, parallelism 2 complete after %.2fs", time.Since(start).Seconds())
	out := k.ok(t, "get", "job", "works", "-n", ns, "-o", `jsonpath={.status.succeeded}/{.status.failed}/{.status.active} {.status.conditions[*].type}`)
	if out != "3// SuccessCriteriaMet Complete" { // zero failed/active are omitted
		t.Errorf("status: got %q, want 3// SuccessCriteriaMet Complete", out)
	}
	if p := peak.Load(); p > 2 {
		t.Errorf("%d pods active at once, want at most 2", p)
	}
	mustContain(t, k.ok(t, "get", "job", "works", "-n", ns), "3/3", "Complete")
	mustContain(t, k.ok(t, "describe", "job", "works", "-n", ns), "3 Succeeded", "SuccessfulCreate", "Completed")
	k.ok(t, "wait", "--for=delete", "job/works", "-n", ns, "--timeout=30s")
	waitUntil(t, 30*time.Second, "pods of the expired job collected", func() bool {
		return strings.TrimSpace(k.ok(t, "get", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=works", "-o", "name")) == ""
	})

	k.okIn(t, strings.NewReplacer("NAME", "fails", "BACKOFF", "1", "ttlSecondsAfterFinished: 3", "").Replace(jobYAML), "apply", "-n", ns, "-f", "-")
	k.ok(t, "wait", "--for=condition=failed", "job/fails", "-n", ns, "--timeout=60s")
	out = k.ok(t, "get", "job", "fails", "-n", ns, "-o", `jsonpath={.status.failed} {.status.conditions[?(@.type=="Failed")].reason}`)
	// backoffLimit 1 fails the Job at its second failure. With parallelism
	// 2 a replacement may already run when that happens; it is deleted and,
	// as in Kubernetes, counted as failed too: 2 or 3, never more.
	if out != "2 BackoffLimitExceeded" && out != "3 BackoffLimitExceeded" {
		t.Errorf("failed job: got %q, want 2 or 3 failed and BackoffLimitExceeded", out)
	}

	// A running pod deleted by hand counts as one failure, exactly once: the
	// tracking finalizer holds it until it is counted, then it goes and a
	// replacement runs.
	single := strings.NewReplacer("NAME", "held", "BACKOFF", "3", "ttlSecondsAfterFinished: 3", "", "completions: 3", "completions: 1", "parallelism: 2", "parallelism: 1")
	k.okIn(t, single.Replace(jobYAML), "apply", "-n", ns, "-f", "-")
	var first string
	waitUntil(t, 15*time.Second, "the held job's pod", func() bool {
		first = strings.TrimSpace(k.ok(t, "get", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=held", "-o", "name"))
		return first != ""
	})
	mustContain(t, k.ok(t, "get", first, "-n", ns, "-o", "jsonpath={.metadata.finalizers}"), "batch.kubernetes.io/job-tracking")
	k.ok(t, "delete", first, "-n", ns, "--wait=false")
	waitUntil(t, 15*time.Second, "deleted pod counted, released and replaced", func() bool {
		pods := strings.Fields(k.ok(t, "get", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=held", "-o", "name"))
		failed := k.ok(t, "get", "job", "held", "-n", ns, "-o", "jsonpath={.status.failed}")
		return failed == "1" && len(pods) == 1 && pods[0] != first
	})
	release.Store(true)
	k.ok(t, "wait", "--for=condition=complete", "job/held", "-n", ns, "--timeout=30s")
	if out := k.ok(t, "get", "job", "held", "-n", ns, "-o", `jsonpath={.status.succeeded}/{.status.failed}`); out != "1/1" {
		t.Errorf("held job succeeded/failed: got %s, want 1/1", out)
	}

	// Deleting a Job with a running pod: the pod is released and collected.
	k.okIn(t, strings.NewReplacer("NAME", "dropped", "BACKOFF", "3", "ttlSecondsAfterFinished: 3", "").Replace(jobYAML), "apply", "-n", ns, "-f", "-")
	waitUntil(t, 15*time.Second, "the dropped job's pods", func() bool {
		return len(strings.Fields(k.ok(t, "get", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=dropped", "-o", "name"))) == 2
	})
	k.ok(t, "delete", "job", "dropped", "-n", ns)
	waitUntil(t, 20*time.Second, "pods of the deleted job gone", func() bool {
		return strings.TrimSpace(k.ok(t, "get", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=dropped", "-o", "name")) == ""
	})
}
