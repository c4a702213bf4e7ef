package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

const rollYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: roll
spec:
  replicas: 3
  selector:
    matchLabels: {app: roll}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: roll}
    spec:
      containers:
      - name: c
        image: busybox:1
`

// TestDeploymentRollout drives the ReplicaSet and Deployment controllers
// of the real berth-server with the real kubectl. No node agent runs here:
// a fake kubelet marks pods Running and Ready after a delay.
func TestDeploymentRollout(t *testing.T) {
	k := newKubectl(t, "/usr/bin/kubectl", shared)
	cs := clientFor(t, shared)
	ns := "e2e-deploy"
	k.ok(t, "create", "namespace", ns)
	t.Cleanup(func() { k.run(t, "", "delete", "namespace", ns, "--wait=false") })
	K := func(args ...string) string { t.Helper(); return k.ok(t, append([]string{"-n", ns}, args...)...) }
	kubelet := startFakeKubelet(t, cs, ns, 200*time.Millisecond)

	start := time.Now()
	mustContain(t, k.okIn(t, rollYAML, "-n", ns, "apply", "-f", "-"), "deployment.apps/roll created")
	mustContain(t, K("rollout", "status", "deploy/roll", "--timeout=60s"), `deployment "roll" successfully rolled out`)
	t.Logf("deployment of 3 available in %v (fake kubelet delay 200ms)", time.Since(start).Round(time.Millisecond))
	K("wait", "--for=condition=Available", "deploy/roll", "--timeout=30s")
	if got := K("get", "deploy", "roll", "-o", "jsonpath={.status.replicas} {.status.updatedReplicas} {.status.readyReplicas} {.status.availableReplicas}"); got != "3 3 3 3" {
		t.Fatalf("status replicas/updated/ready/available: got %q, want 3 3 3 3", got)
	}
	v1RS := rsByImage(t, cs, ns, "busybox:1")
	if !strings.HasPrefix(v1RS, "roll-") {
		t.Fatalf("v1 replicaset %q: want roll-<hash>", v1RS)
	}

	t.Run("deleted pod is replaced", func(t *testing.T) {
		before := podNames(t, cs, ns)
		victim := before[0]
		start := time.Now()
		K("delete", "pod", victim, "--wait=false")
		deadline := time.Now().Add(30 * time.Second)
		for {
			names := podNames(t, cs, ns)
			if !slices.Contains(names, victim) && len(names) == 3 && readyCount(t, cs, ns) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod %s not replaced by a ready pod within 30s: pods %v", victim, names)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("deleted pod replaced by a ready one in %v (fake kubelet delay 200ms)", time.Since(start).Round(time.Millisecond))
		mustContain(t, K("get", "events", "--field-selector", "involvedObject.name="+v1RS), "SuccessfulCreate", "Created pod: "+v1RS+"-")
	})

	t.Run("rolling update keeps ready replicas", func(t *testing.T) {
		kubelet.setDelay(700 * time.Millisecond)
		w := watchReady(t, cs, ns, "app=roll")
		w.arm()
		start := time.Now()
		K("set", "image", "deploy/roll", "c=busybox:2")
		K("annotate", "deploy/roll", "kubernetes.io/change-cause=image busybox:2")
		mustContain(t, K("rollout", "status", "deploy/roll", "--timeout=90s"), `deployment "roll" successfully rolled out`)
		took := time.Since(start)
		time.Sleep(300 * time.Millisecond) // let the watch catch up
		minReady, maxPods, events := w.result()
		t.Logf("rolling update v1→v2 took %v; ready pods never below %d; at most %d pods; %d watch events", took.Round(time.Millisecond), minReady, maxPods, events)
		if minReady < 3 {
			t.Errorf("ready pods dropped to %d during the rollout, want ≥ 3 (maxUnavailable 0)", minReady)
		}
		if maxPods != 4 {
			t.Errorf("at most %d pods at once, want 4 (3 + maxSurge 1)", maxPods)
		}
		if events < 9 {
			t.Errorf("only %d watch events: the watcher did not see the rollout", events)
		}
		if got := K("get", "pods", "-o", "jsonpath={.items[*].spec.containers[0].image}"); strings.Count(got, "busybox:2") != 3 || strings.Contains(got, "busybox:1") {
			t.Errorf("pod images after the rollout: got %q, want three busybox:2", got)
		}
		ev := K("get", "events", "--field-selector", "involvedObject.name=roll")
		mustContain(t, ev, "ScalingReplicaSet", "Scaled up replica set roll-", "Scaled down replica set "+v1RS+" to 2 from 3", "to 0 from 1")
	})
	kubelet.setDelay(100 * time.Millisecond)

	t.Run("history and undo", func(t *testing.T) {
		out := K("rollout", "history", "deploy/roll")
		mustContain(t, out, "REVISION", "CHANGE-CAUSE", "1 ", "2         image busybox:2")
		mustContain(t, K("rollout", "history", "deploy/roll", "--revision=1"), "busybox:1")
		mustContain(t, K("rollout", "undo", "deploy/roll"), "rolled back")
		mustContain(t, K("rollout", "status", "deploy/roll", "--timeout=60s"), "successfully rolled out")
		if got := K("get", "deploy", "roll", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"); got != "busybox:1 3" {
			t.Errorf("after undo: image and revision %q, want busybox:1 3", got)
		}
		// The v1 set came back (no third set) with revision 3.
		if got := K("get", "rs", v1RS, "-o", "jsonpath={.spec.replicas} {.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.metadata.annotations.deployment\\.kubernetes\\.io/revision-history}"); got != "3 3 1" {
			t.Errorf("v1 replicaset after undo: replicas, revision, history %q, want 3 3 1", got)
		}
		out = K("rollout", "history", "deploy/roll")
		if !strings.Contains(out, "2 ") || !strings.Contains(out, "3 ") || strings.Contains(out, "\n1 ") {
			t.Errorf("history after undo lists %q: want revisions 2 and 3", out)
		}
	})

	t.Run("pause stops a rollout", func(t *testing.T) {
		mustContain(t, K("rollout", "pause", "deploy/roll"), "paused")
		K("set", "image", "deploy/roll", "c=busybox:3")
		K("scale", "deploy/roll", "--replicas=4") // scaling still applies while paused
		deadline := time.Now().Add(20 * time.Second)
		for readyCount(t, cs, ns) != 4 {
			if time.Now().After(deadline) {
				t.Fatalf("paused deployment not scaled to 4 ready pods")
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Second)
		if rs := rsByImage(t, cs, ns, "busybox:3"); rs != "" {
			t.Fatalf("a replicaset %s for busybox:3 exists while paused", rs)
		}
		mustContain(t, K("get", "deploy", "roll", "-o", "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"), "DeploymentPaused")
		out, err := k.run(t, "", "-n", ns, "rollout", "undo", "deploy/roll")
		if err == nil || !strings.Contains(out, "paused") {
			t.Errorf("undo of a paused deployment: got %v %s, want kubectl's refusal", err, out)
		}
		mustContain(t, K("rollout", "resume", "deploy/roll"), "resumed")
		mustContain(t, K("rollout", "status", "deploy/roll", "--timeout=60s"), "successfully rolled out")
		if got := K("get", "pods", "-o", "jsonpath={.items[*].spec.containers[0].image}"); strings.Count(got, "busybox:3") != 4 {
			t.Errorf("after resume: pod images %q, want four busybox:3", got)
		}
	})

	t.Run("restart", func(t *testing.T) {
		before := podNames(t, cs, ns)
		mustContain(t, K("rollout", "restart", "deploy/roll"), "restarted")
		mustContain(t, K("rollout", "status", "deploy/roll", "--timeout=60s"), "successfully rolled out")
		after := podNames(t, cs, ns)
		for _, p := range after {
			if slices.Contains(before, p) {
				t.Errorf("pod %s survived a rollout restart", p)
			}
		}
		if len(after) != 4 {
			t.Errorf("after restart: %d pods, want 4", len(after))
		}
	})

	t.Run("progress deadline", func(t *testing.T) {
		// Pods that never become ready: the rollout stalls and, after
		// progressDeadlineSeconds, kubectl rollout status gives up.
		K("patch", "deploy/roll", "-p", `{"spec":{"progressDeadlineSeconds":3,"template":{"metadata":{"labels":{"never-ready":"true"}}}}}`)
		start := time.Now()
		out, err := k.run(t, "", "-n", ns, "rollout", "status", "deploy/roll", "--timeout=60s")
		if err == nil || !strings.Contains(out, `deployment "roll" exceeded its progress deadline`) {
			t.Fatalf("rollout status of a stuck rollout: got %v %s, want the progress-deadline error", err, out)
		}
		t.Logf("ProgressDeadlineExceeded reported %v after the change (deadline 3s)", time.Since(start).Round(time.Millisecond))
		if got := readyCount(t, cs, ns); got != 4 {
			t.Errorf("ready pods of a stuck rollout with maxUnavailable 0: got %d, want 4", got)
		}
		mustContain(t, K("rollout", "undo", "deploy/roll"), "rolled back")
		mustContain(t, K("rollout", "status", "deploy/roll", "--timeout=60s"), "successfully rolled out")
	})

	t.Run("scale and delete", func(t *testing.T) {
		K("scale", "deploy/roll", "--replicas=1")
		waitFor(t, 30*time.Second, func() bool { return len(podNames(t, cs, ns)) == 1 })
		K("delete", "deploy", "roll")
		deadline := time.Now().Add(30 * time.Second)
		for {
			rs, _ := cs.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{})
			if len(rs.Items) == 0 && len(podNames(t, cs, ns)) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("30s after deleting the deployment these remain:\n%s\n%s", K("get", "rs,pods", "-o", "custom-columns=NAME:.metadata.name,OWNER:.metadata.ownerReferences[0].name,OWNERUID:.metadata.ownerReferences[0].uid,DELETING:.metadata.deletionTimestamp,CREATED:.metadata.creationTimestamp"), K("get", "events"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// TestReplicaSetAlone checks a bare ReplicaSet: it adopts a matching
// orphan pod and releases (and replaces) a pod relabelled out of its
// selector.
func TestReplicaSetAlone(t *testing.T) {
	k := newKubectl(t, "/usr/bin/kubectl", shared)
	cs := clientFor(t, shared)
	ns := "e2e-rs"
	k.ok(t, "create", "namespace", ns)
	t.Cleanup(func() { k.run(t, "", "delete", "namespace", ns, "--wait=false") })
	K := func(args ...string) string { t.Helper(); return k.ok(t, append([]string{"-n", ns}, args...)...) }
	K("run", "orphan", "--image=busybox", "--labels=app=solo", "--restart=Always")
	k.okIn(t, `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: solo}
spec:
  replicas: 2
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      containers: [{name: c, image: busybox}]
`, "-n", ns, "apply", "-f", "-")
	waitFor(t, 20*time.Second, func() bool { return len(podNames(t, cs, ns)) == 2 })
	if got := K("get", "pod", "orphan", "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller}"); got != "ReplicaSet/solo/true" {
		t.Errorf("orphan pod owner: got %q, want ReplicaSet/solo/true", got)
	}
	// Relabel the orphan: the set releases it and makes another.
	K("label", "pod", "orphan", "app=gone", "--overwrite")
	waitFor(t, 20*time.Second, func() bool {
		return len(podNames(t, cs, ns)) == 3 && K("get", "pod", "orphan", "-o", "jsonpath={.metadata.ownerReferences}") == ""
	})
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func podNames(t *testing.T, cs kubernetes.Interface, ns string) []string {
	t.Helper()
	l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	return out
}

func readyCount(t *testing.T, cs kubernetes.Interface, ns string) int {
	t.Helper()
	l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range l.Items {
		if podReady(&l.Items[i]) && l.Items[i].DeletionTimestamp == nil {
			n++
		}
	}
	return n
}

// rsByImage returns the name of the ReplicaSet whose template runs image.
func rsByImage(t *testing.T, cs kubernetes.Interface, ns, image string) string {
	t.Helper()
	l, err := cs.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range l.Items {
		if rs.Spec.Template.Spec.Containers[0].Image == image {
			return rs.Name
		}
	}
	return ""
}

const recreateYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: once
spec:
  replicas: 2
  minReadySeconds: 2
  strategy: {type: Recreate}
  selector:
    matchLabels: {app: once}
  template:
    metadata:
      labels: {app: once}
    spec:
      containers:
      - name: c
        image: IMAGE
`

// TestDeploymentRecreate: old and new pods never run together, and pods
// count as available only minReadySeconds after they became Ready.
func TestDeploymentRecreate(t *testing.T) {
	k := newKubectl(t, "/usr/bin/kubectl", shared)
	cs := clientFor(t, shared)
	ns := "e2e-recreate"
	k.ok(t, "create", "namespace", ns)
	t.Cleanup(func() { k.run(t, "", "delete", "namespace", ns, "--wait=false") })
	K := func(args ...string) string { t.Helper(); return k.ok(t, append([]string{"-n", ns}, args...)...) }
	startFakeKubelet(t, cs, ns, 100*time.Millisecond)

	start := time.Now()
	k.okIn(t, strings.Replace(recreateYAML, "IMAGE", "busybox:1", 1), "-n", ns, "apply", "-f", "-")
	waitFor(t, 20*time.Second, func() bool { return readyCount(t, cs, ns) == 2 })
	readyAt := time.Now()
	if got := K("get", "deploy", "once", "-o", "jsonpath={.status.availableReplicas}"); got != "" && got != "0" {
		t.Errorf("available right after the pods became ready: got %s, want 0 (minReadySeconds 2)", got)
	}
	mustContain(t, K("rollout", "status", "deploy/once", "--timeout=30s"), "successfully rolled out")
	// Condition times have whole seconds, so "Ready for 2s" can be met
	// up to 1s early, as in Kubernetes.
	if d := time.Since(readyAt); d < 900*time.Millisecond {
		t.Errorf("rollout complete %v after the pods became ready, want ≥ minReadySeconds (2s) less the 1s timestamp precision", d)
	}
	t.Logf("Recreate deployment with minReadySeconds 2 available after %v", time.Since(start).Round(time.Millisecond))

	// Watch images of live pods through the update.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wi, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	mixed := make(chan string, 1)
	go func() {
		images := map[string]string{}
		for _, p := range l.Items {
			images[p.Name] = p.Spec.Containers[0].Image
		}
		for ev := range wi.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted || p.DeletionTimestamp != nil {
				delete(images, p.Name)
			} else {
				images[p.Name] = p.Spec.Containers[0].Image
			}
			seen := map[string]bool{}
			for _, img := range images {
				seen[img] = true
			}
			if len(seen) > 1 {
				select {
				case mixed <- fmt.Sprint(images):
				default:
				}
			}
		}
	}()
	K("set", "image", "deploy/once", "c=busybox:2")
	mustContain(t, K("rollout", "status", "deploy/once", "--timeout=30s"), "successfully rolled out")
	wi.Stop()
	select {
	case m := <-mixed:
		t.Errorf("old and new pods ran together during a Recreate rollout: %s", m)
	default:
	}
	if got := K("get", "pods", "-o", "jsonpath={.items[*].spec.containers[0].image}"); got != "busybox:2 busybox:2" {
		t.Errorf("pods after the rollout: %q, want two busybox:2", got)
	}
}
