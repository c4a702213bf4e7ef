package orch

// The acceptance scenarios of issue 7, in its order; they share one lab
// and run in the order of this file. Each leaves the lab with its three
// first nodes Ready.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/tests/e2e/orch/lab"
)

// deployment renders a Deployment whose pods sleep in lab/app:v1; extra
// is YAML inserted in the pod spec (indented by 6).
func deployment(name string, replicas int, podExtra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: %[2]d
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 1
%[3]s
      containers:
      - name: app
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sleep, "100000"]
`, name, replicas, podExtra)
}

const spreadHostname = `      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {matchLabels: {app: %s}}`

// Scenario 1: a Deployment of 6 replicas with a hostname topology spread
// constraint on 3 nodes lands 2/2/2 and becomes Ready.
func TestScenario1Spread(t *testing.T) {
	ns := namespace(t, "s1")
	start := time.Now()
	apply(t, ns, deployment("spread", 6, fmt.Sprintf(spreadHostname, "spread")))
	k(t, "rollout", "status", "-n", ns, "deployment/spread", "--timeout=90s")
	took := time.Since(start)
	ready, per := readyPods(pods(t, ns, "app=spread"))
	if len(ready) != 6 {
		t.Errorf("got %d ready pods, want 6", len(ready))
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		if per[n] != 2 {
			t.Errorf("node %s has %d pods, want 2 (per node: %v)", n, per[n], per)
		}
	}
	report(t, "1-spread", "apply_to_6_ready", took, "per_node", fmt.Sprint(per))
}

// Scenario 2: killing a container's main process: the agent restarts it
// and restartCount goes up; a crash-looping container backs off.
func TestScenario2ContainerRestart(t *testing.T) {
	ns := namespace(t, "s2")
	apply(t, ns, `apiVersion: v1
kind: Pod
metadata: {name: victim, labels: {app: victim}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: lab/app:v1
    imagePullPolicy: IfNotPresent
    command: [sleep, "100000"]
---
apiVersion: v1
kind: Pod
metadata: {name: crasher, labels: {app: crasher}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: lab/app:v1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo crashing; exit 3"]
`)
	ready, _ := waitReady(t, ns, "app=victim", 1, 60*time.Second)
	p := ready[0]
	node := p.Spec.NodeName
	// The main process's PID in the node, from the node's engine.
	id, err := theLab.Berth(node, "ps", "-q", "--no-trunc", "--filter", "label=io.kubernetes.pod.uid="+string(p.UID), "--filter", "label=io.kubernetes.container.name=app")
	if err != nil || strings.TrimSpace(id) == "" {
		t.Fatalf("finding the container of %s on %s: %v %q", p.Name, node, err, id)
	}
	id = strings.Fields(id)[0]
	pid, err := theLab.Berth(node, "inspect", "-f", "{{.State.Pid}}", id)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := theLab.Exec(node, "kill", "-KILL", strings.TrimSpace(pid)); err != nil {
		t.Fatalf("kill: %v %s", err, out)
	}
	var restarted corev1.Pod
	back := waitFor(t, 60*time.Second, "victim restarted", func() (bool, string) {
		ps := pods(t, ns, "app=victim")
		if len(ps) != 1 {
			return false, describe(ps)
		}
		restarted = ps[0]
		cs := restarted.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 1 && podReady(&restarted), describe(ps)
	})
	cs := restarted.Status.ContainerStatuses[0]
	if cs.RestartCount != 1 {
		t.Errorf("restartCount %d, want 1", cs.RestartCount)
	}
	if cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 137 {
		t.Errorf("lastState %+v, want terminated with exit code 137", cs.LastTerminationState)
	}
	if restarted.UID != p.UID || restarted.Spec.NodeName != node {
		t.Errorf("the pod was replaced (uid %s→%s), not restarted in place", p.UID, restarted.UID)
	}

	// The crash-looping container: restarts with growing delays, in
	// CrashLoopBackOff between them.
	// It was created with the victim, so it has been crashing for a while.
	var sawBackOff bool
	var backOffMsg string
	var restartsAt []time.Time
	last := int32(-1)
	crashStart := time.Now()
	waitFor(t, 60*time.Second, "crasher restarted twice with a CrashLoopBackOff wait", func() (bool, string) {
		ps := pods(t, ns, "app=crasher")
		if len(ps) != 1 || len(ps[0].Status.ContainerStatuses) != 1 {
			return false, describe(ps)
		}
		c := ps[0].Status.ContainerStatuses[0]
		if c.State.Waiting != nil && c.State.Waiting.Reason == "CrashLoopBackOff" {
			sawBackOff = true
			backOffMsg = c.State.Waiting.Message
		}
		if last >= 0 && c.RestartCount > last {
			restartsAt = append(restartsAt, time.Now())
		}
		last = c.RestartCount
		return sawBackOff && c.RestartCount >= 2 && len(restartsAt) >= 1, describe(ps)
	})
	var gaps []string
	for i := 1; i < len(restartsAt); i++ {
		gaps = append(gaps, restartsAt[i].Sub(restartsAt[i-1]).Round(100*time.Millisecond).String())
	}
	if !strings.Contains(backOffMsg, "back-off") {
		t.Errorf("CrashLoopBackOff message %q does not give the back-off delay", backOffMsg)
	}
	ev := events(t, ns, "crasher")
	var backoffEvent bool
	for _, e := range ev {
		if e.Reason == "BackOff" {
			backoffEvent = true
		}
	}
	if !backoffEvent {
		t.Errorf("no BackOff event for the crash-looping pod (events: %d)", len(ev))
	}
	report(t, "2-restart", "kill_to_ready_again", back, "restartCount", cs.RestartCount,
		"crashloop_wait", time.Since(crashStart), "restart_gaps", strings.Join(gaps, ","), "backoff", fmt.Sprintf("%q", backOffMsg))
}

// Scenario 3: deleting a pod: its ReplicaSet replaces it.
func TestScenario3DeletePod(t *testing.T) {
	ns := namespace(t, "s3")
	apply(t, ns, deployment("web", 3, ""))
	ready, _ := waitReady(t, ns, "app=web", 3, 90*time.Second)
	victim := ready[0].Name
	k(t, "delete", "pod", "-n", ns, victim, "--wait=false")
	var repl string
	d := waitFor(t, 60*time.Second, "replacement ready", func() (bool, string) {
		ps := pods(t, ns, "app=web")
		r, _ := readyPods(ps)
		if len(r) != 3 {
			return false, describe(ps)
		}
		for _, p := range r {
			if p.Name == victim {
				return false, describe(ps)
			}
			if p.Name != ready[1].Name && p.Name != ready[2].Name {
				repl = p.Name
			}
		}
		return true, ""
	})
	var owner string
	for _, p := range pods(t, ns, "app=web") {
		if p.Name == repl && len(p.OwnerReferences) > 0 {
			owner = p.OwnerReferences[0].Kind
		}
	}
	if owner != "ReplicaSet" {
		t.Errorf("replacement %s owned by %q, want a ReplicaSet", repl, owner)
	}
	report(t, "3-delete-pod", "delete_to_replacement_ready", d, "replacement", repl)
}

// Scenario 4: killing a whole node: its pods are Running on the others
// within 10 s of the kill.
func TestScenario4KillNode(t *testing.T) {
	ns := namespace(t, "s4")
	apply(t, ns, deployment("ha", 6, fmt.Sprintf(strings.Replace(spreadHostname, "DoNotSchedule", "ScheduleAnyway", 1), "ha")))
	ready, _ := waitReady(t, ns, "app=ha", 6, 90*time.Second)
	victim := "node2"
	var lost []string
	for _, p := range ready {
		if p.Spec.NodeName == victim {
			lost = append(lost, p.Name)
		}
	}
	if len(lost) == 0 {
		t.Fatalf("no pod on %s to lose: %s", victim, describe(ready))
	}
	killAt := time.Now()
	if err := theLab.Kill(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s (%d pods on it) in %v", victim, len(lost), time.Since(killAt).Round(time.Millisecond))
	var notReadyAt, goneAt time.Duration
	d := waitFor(t, 60*time.Second, "6 ready pods off the killed node", func() (bool, string) {
		if notReadyAt == 0 {
			if st, _ := theLab.NodeReady(victim); st != "" && st != "True" {
				notReadyAt = time.Since(killAt)
			}
		}
		ps := pods(t, ns, "app=ha")
		if goneAt == 0 {
			left := 0
			for _, p := range ps {
				if p.Spec.NodeName == victim && p.DeletionTimestamp == nil {
					left++
				}
			}
			if left == 0 {
				goneAt = time.Since(killAt)
			}
		}
		r, per := readyPods(ps)
		return len(r) == 6 && per[victim] == 0, describe(ps)
	})
	took := time.Since(killAt)
	if took > 10*time.Second {
		t.Errorf("pods of the killed node ready elsewhere after %v, want ≤ 10s", took.Round(time.Millisecond))
	}
	t.Logf("node NotReady/Unknown seen after %v, its pods deleted after %v, all ready elsewhere after %v", notReadyAt, goneAt, d)
	report(t, "4-kill-node", "kill_to_running_elsewhere", took, "node_notready", notReadyAt, "pods_deleted", goneAt, "target", "10s")

	// Power the node on again: it rejoins, and the containers of its
	// old pods (dead with the power loss) are not started again.
	bootAt := time.Now()
	if err := theLab.Boot(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s rebooted and Ready in %v", victim, time.Since(bootAt).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	current := map[string]bool{}
	for _, p := range pods(t, ns, "app=ha") {
		current[string(p.UID)] = true
	}
	for uid, cs := range enginePodContainers(t, victim) {
		for _, c := range cs {
			if strings.HasPrefix(c, "ha-") && !current[uid] {
				t.Errorf("rebooted %s runs %s of deleted pod %s", victim, c, uid)
			}
		}
	}
}

// Scenario 5: partitioning a node, then healing: the replica count is
// right and no duplicate pod survives.
func TestScenario5Partition(t *testing.T) {
	ns := namespace(t, "s5")
	apply(t, ns, deployment("part", 6, fmt.Sprintf(strings.Replace(spreadHostname, "DoNotSchedule", "ScheduleAnyway", 1), "part")))
	ready, _ := waitReady(t, ns, "app=part", 6, 90*time.Second)
	victim := "node3"
	var cut []string
	for _, p := range ready {
		if p.Spec.NodeName == victim {
			cut = append(cut, string(p.UID))
		}
	}
	if len(cut) == 0 {
		t.Fatalf("no pod on %s: %s", victim, describe(ready))
	}
	if err := theLab.Partition(victim); err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			_ = theLab.Heal(victim)
		}
	}()
	replaced := waitFor(t, 60*time.Second, "6 ready pods off the partitioned node", func() (bool, string) {
		ps := pods(t, ns, "app=part")
		r, per := readyPods(ps)
		return len(r) == 6 && per[victim] == 0, describe(ps)
	})
	// While cut off, the node's old containers still run (it cannot know).
	still := 0
	for uid := range enginePodContainers(t, victim) {
		for _, c := range cut {
			if uid == c {
				still++
			}
		}
	}
	t.Logf("partitioned %s: replacements ready after %v; %d of its %d pods still running there", victim, replaced.Round(time.Millisecond), still, len(cut))
	healAt := time.Now()
	if err := theLab.Heal(victim); err != nil {
		t.Fatal(err)
	}
	healed = true
	if err := theLab.WaitNodeReady(victim, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	rejoined := time.Since(healAt)
	// The stale copies stop; the count stays 6 with no duplicates.
	waitFor(t, 60*time.Second, "stale pods stopped on the healed node", func() (bool, string) {
		running := enginePodContainers(t, victim)
		for _, c := range cut {
			if len(running[c]) > 0 {
				return false, fmt.Sprintf("pod %s still has %v on %s", c, running[c], victim)
			}
		}
		return true, ""
	})
	staleStopped := time.Since(healAt)
	// And nothing else happens for a while: exactly 6 pods, all ready,
	// each running once.
	time.Sleep(2 * time.Second)
	ps := pods(t, ns, "app=part")
	r, per := readyPods(ps)
	if len(ps) != 6 || len(r) != 6 {
		t.Errorf("after healing: %d pods, %d ready, want 6 and 6: %s", len(ps), len(r), describe(ps))
	}
	copies := map[string]int{}
	for _, n := range theLab.NodeNames() {
		if nd, _ := theLab.Node(n); nd.Killed {
			continue
		}
		for uid, cs := range enginePodContainers(t, n) {
			for _, c := range cs {
				if strings.HasPrefix(c, "part-") && strings.HasSuffix(c, "/app") {
					copies[uid]++
				}
			}
		}
	}
	for _, p := range r {
		if copies[string(p.UID)] != 1 {
			t.Errorf("pod %s runs %d copies of its container, want 1", p.Name, copies[string(p.UID)])
		}
	}
	if len(copies) != 6 {
		t.Errorf("%d pods of the deployment run containers across the engines, want 6", len(copies))
	}
	report(t, "5-partition", "partition_to_replaced", replaced, "heal_to_node_ready", rejoined, "heal_to_stale_stopped", staleStopped, "per_node", fmt.Sprint(per))
}

// Scenario 6: rolling update v1→v2 with maxUnavailable 0: a watcher
// confirms ready replicas never drop below the desired count; `rollout
// status` completes; `rollout undo` returns to v1.
func TestScenario6RollingUpdate(t *testing.T) {
	ns := namespace(t, "s6")
	const want = 4
	apply(t, ns, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: roll}
spec:
  replicas: %d
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
  selector: {matchLabels: {app: roll}}
  template:
    metadata: {labels: {app: roll}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sleep, "100000"]
        readinessProbe:
          exec: {command: [cat, /etc/hostname]}
          periodSeconds: 1
`, want))
	k(t, "rollout", "status", "-n", ns, "deployment/roll", "--timeout=90s")
	w := startReadyWatcher(t, ns, "app=roll", "roll")
	defer w.stop()
	start := time.Now()
	k(t, "set", "image", "-n", ns, "deployment/roll", "app=lab/app:v2")
	k(t, "rollout", "status", "-n", ns, "deployment/roll", "--timeout=120s")
	rolled := time.Since(start)
	checkImages(t, ns, "app=roll", "lab/app:v2", want)
	undoStart := time.Now()
	k(t, "rollout", "undo", "-n", ns, "deployment/roll")
	k(t, "rollout", "status", "-n", ns, "deployment/roll", "--timeout=120s")
	undone := time.Since(undoStart)
	checkImages(t, ns, "app=roll", "lab/app:v1", want)
	hist := k(t, "rollout", "history", "-n", ns, "deployment/roll")
	w.stop()
	minPods, minStatus, n := w.result()
	if minPods < want {
		t.Errorf("ready pods dropped to %d during the rollouts, want never below %d", minPods, want)
	}
	if minStatus < want {
		t.Errorf("deployment status.readyReplicas dropped to %d, want never below %d", minStatus, want)
	}
	if n == 0 {
		t.Errorf("the watcher saw no event")
	}
	if m := w.maxPods(); m > want+1 {
		t.Errorf("%d pods (not terminating) at once, want at most %d (maxSurge 1)", m, want+1)
	}
	t.Logf("rollout history:\n%s", hist)
	report(t, "6-rolling-update", "v1_to_v2", rolled, "undo_to_v1", undone, "min_ready_pods", minPods, "min_status_ready", minStatus, "max_pods", w.maxPods(), "watch_events", n)
}

func checkImages(t *testing.T, ns, sel, image string, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, "old pods gone", func() (bool, string) {
		ps := pods(t, ns, sel)
		r, _ := readyPods(ps)
		if len(ps) != n || len(r) != n {
			return false, describe(ps)
		}
		for _, p := range ps {
			if p.Spec.Containers[0].Image != image {
				return false, fmt.Sprintf("%s runs %s, want %s", p.Name, p.Spec.Containers[0].Image, image)
			}
		}
		return true, ""
	})
}

// Scenario 7: a pod too big for any node stays Pending with a
// FailedScheduling event naming the reason, and schedules when a big
// enough node joins.
func TestScenario7Pending(t *testing.T) {
	ns := namespace(t, "s7")
	apply(t, ns, `apiVersion: v1
kind: Pod
metadata: {name: big, labels: {app: big}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: lab/app:v1
    imagePullPolicy: IfNotPresent
    command: [sleep, "100000"]
    resources:
      requests: {cpu: "6", memory: 1Gi}
`)
	var msg string
	waitFor(t, 30*time.Second, "FailedScheduling event", func() (bool, string) {
		for _, e := range events(t, ns, "big") {
			if e.Reason == "FailedScheduling" {
				msg = e.Message
				return true, ""
			}
		}
		return false, "no FailedScheduling event yet"
	})
	if !strings.Contains(msg, "Insufficient cpu") {
		t.Errorf("FailedScheduling message %q does not name the reason (Insufficient cpu)", msg)
	}
	time.Sleep(time.Second)
	var p corev1.Pod
	kjson(t, &p, "pod", "-n", ns, "big")
	if p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
		t.Errorf("too big pod: phase %s node %q, want Pending and unbound", p.Status.Phase, p.Spec.NodeName)
	}
	joinAt := time.Now()
	if err := theLab.AddNode(labNode("big", "8", "16Gi")); err != nil {
		t.Fatal(err)
	}
	joined := time.Since(joinAt)
	ready, d := waitReady(t, ns, "app=big", 1, 60*time.Second)
	if ready[0].Spec.NodeName != "big" {
		t.Errorf("big pod on %s, want the big node", ready[0].Spec.NodeName)
	}
	report(t, "7-pending", "failed_scheduling", fmt.Sprintf("%q", msg), "node_join", joined, "join_ready_to_pod_ready", d)
}

// Scenario 8: a Job runs to completion; a DaemonSet gets a pod on a node
// that joins later.
func TestScenario8JobDaemonSet(t *testing.T) {
	ns := namespace(t, "s8")
	start := time.Now()
	apply(t, ns, `apiVersion: batch/v1
kind: Job
metadata: {name: count}
spec:
  completions: 3
  parallelism: 2
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: work
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sh, -c, "sleep 1; echo done"]
`)
	k(t, "wait", "-n", ns, "--for=condition=complete", "job/count", "--timeout=90s")
	jobTook := time.Since(start)
	var job struct {
		Status struct{ Succeeded int }
	}
	kjson(t, &job, "job", "-n", ns, "count")
	if job.Status.Succeeded != 3 {
		t.Errorf("job succeeded %d, want 3", job.Status.Succeeded)
	}
	if logs, err := kubectl(t, "", "logs", "-n", ns, "job/count"); err != nil || !strings.Contains(logs, "done") {
		t.Errorf("kubectl logs job/count: %v %q", err, logs)
	}

	apply(t, ns, `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agentd}
spec:
  selector: {matchLabels: {app: agentd}}
  template:
    metadata: {labels: {app: agentd}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: d
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sleep, "100000"]
`)
	nodes := readyNodes(t)
	_, dsFirst := waitReady(t, ns, "app=agentd", len(nodes), 60*time.Second)
	joinAt := time.Now()
	if err := theLab.AddNode(labNode("late", "", "")); err != nil {
		t.Fatal(err)
	}
	joined := time.Since(joinAt)
	onLate := waitFor(t, 60*time.Second, "DaemonSet pod on the late node", func() (bool, string) {
		ps := pods(t, ns, "app=agentd")
		_, per := readyPods(ps)
		return per["late"] == 1, describe(ps)
	})
	ps := pods(t, ns, "app=agentd")
	_, per := readyPods(ps)
	for n, c := range per {
		if c != 1 {
			t.Errorf("node %s has %d DaemonSet pods, want 1", n, c)
		}
	}
	report(t, "8-job-daemonset", "job_complete", jobTook, "ds_initial_ready", dsFirst, "late_node_join", joined, "join_ready_to_ds_pod_ready", onLate)
}

func labNode(name, cpus, mem string) lab.NodeSpec {
	return lab.NodeSpec{Name: name, CPUs: cpus, Memory: mem}
}

func readyNodes(t *testing.T) []string {
	t.Helper()
	l, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range l.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				out = append(out, n.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Scenario 9: an agent SIGKILL and restart leaves every pod with an
// unchanged container start time.
func TestScenario9AgentRestart(t *testing.T) {
	type seen struct {
		startedAt string
		id        string
		restarts  int32
	}
	const ns = "s9"
	snapshot := func() map[string]seen {
		l, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]seen{}
		for _, p := range l.Items {
			if !podReady(&p) {
				continue
			}
			for _, c := range p.Status.ContainerStatuses {
				if c.State.Running != nil {
					m[p.Namespace+"/"+p.Name+"/"+c.Name] = seen{c.State.Running.StartedAt.UTC().Format(time.RFC3339), c.ContainerID, c.RestartCount}
				}
			}
		}
		return m
	}
	engineStarts := func() map[string]string {
		m := map[string]string{}
		for _, n := range theLab.NodeNames() {
			if nd, _ := theLab.Node(n); nd.Killed {
				continue
			}
			out, err := theLab.Berth(n, "ps", "-q", "--no-trunc", "--filter", "label=io.kubernetes.pod.namespace="+ns)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range strings.Fields(out) {
				st, err := theLab.Berth(n, "inspect", "-f", "{{.State.StartedAt}}", id)
				if err == nil {
					m[n+"/"+id] = strings.TrimSpace(st)
				}
			}
		}
		return m
	}
	namespace(t, ns)
	apply(t, ns, deployment("keep", 6, fmt.Sprintf(strings.Replace(spreadHostname, "DoNotSchedule", "ScheduleAnyway", 1), "keep")))
	apply(t, ns, `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: d
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sleep, "100000"]
`)
	waitReady(t, ns, "app=keep", 6, 90*time.Second)
	waitReady(t, ns, "app=everywhere", len(readyNodes(t)), 90*time.Second)
	// Every container has been up for a second: a restart would show.
	time.Sleep(time.Second)
	before, engBefore := snapshot(), engineStarts()
	if len(before) < 6 {
		t.Fatalf("only %d running containers to watch", len(before))
	}
	nodes := theLab.NodeNames()
	var agentDown []time.Duration
	start := time.Now()
	for _, n := range nodes {
		if nd, _ := theLab.Node(n); nd.Killed {
			continue
		}
		killAt := time.Now()
		if err := theLab.StopAgent(n, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := theLab.StartAgent(n); err != nil {
			t.Fatal(err)
		}
		if err := theLab.WaitNodeReady(n, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		agentDown = append(agentDown, time.Since(killAt))
	}
	// Give the new agents a few sync rounds to (wrongly) restart anything.
	time.Sleep(5 * time.Second)
	after, engAfter := snapshot(), engineStarts()
	changed := 0
	for key, b := range before {
		a, ok := after[key]
		if !ok {
			t.Errorf("%s: no longer running after the agent restarts", key)
			changed++
			continue
		}
		if a != b {
			t.Errorf("%s: before %+v, after %+v", key, b, a)
			changed++
		}
	}
	for key, b := range engBefore {
		if a := engAfter[key]; a != b {
			t.Errorf("engine container %s: started at %s, now %q", key, b, a)
			changed++
		}
	}
	var ds []string
	for _, d := range agentDown {
		ds = append(ds, d.Round(time.Millisecond).String())
	}
	report(t, "9-agent-restart", "containers", len(before), "engine_containers", len(engBefore), "changed", changed,
		"kill_to_node_ready_per_node", strings.Join(ds, ","), "total", time.Since(start))
}

// Not one of the nine scenarios, but their glue: kubectl logs and exec
// reach a container on a lab node through the API server and that
// node's agent.
func TestStreamingThroughAgents(t *testing.T) {
	ns := namespace(t, "s10")
	apply(t, ns, `apiVersion: v1
kind: Pod
metadata: {name: talk, labels: {app: talk}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: lab/app:v1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo hello-from-talk; sleep 100000"]
`)
	ready, _ := waitReady(t, ns, "app=talk", 1, 60*time.Second)
	start := time.Now()
	logs, err := kubectl(t, "", "logs", "-n", ns, "talk")
	logsTook := time.Since(start)
	if err != nil || !strings.Contains(logs, "hello-from-talk") {
		t.Errorf("kubectl logs on %s: %v %q", ready[0].Spec.NodeName, err, logs)
	}
	start = time.Now()
	out, err := kubectl(t, "", "exec", "-n", ns, "talk", "--", "cat", "/etc/hostname")
	execTook := time.Since(start)
	if err != nil || strings.TrimSpace(out) != "talk" {
		t.Errorf("kubectl exec cat /etc/hostname: %v %q, want talk", err, out)
	}
	out, err = kubectl(t, "some stdin\n", "exec", "-i", "-n", ns, "talk", "--", "cat")
	if err != nil || out != "some stdin\n" {
		t.Errorf("kubectl exec -i cat: %v %q", err, out)
	}
	pf := portForwardEcho(t, ns)
	report(t, "x-streaming", "node", ready[0].Spec.NodeName, "kubectl_logs", logsTook, "kubectl_exec", execTook, "port_forward_echo", pf)
}

// portForwardEcho runs the echo server of lab/app:v2 in a pod, forwards a
// local port to it with kubectl port-forward and checks a line comes
// back; it returns the time from starting kubectl to the echo.
func portForwardEcho(t *testing.T, ns string) time.Duration {
	t.Helper()
	apply(t, ns, `apiVersion: v1
kind: Pod
metadata: {name: echo, labels: {app: echo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: lab/app:v2
    imagePullPolicy: IfNotPresent
    command: [echoserver, "7777"]
    readinessProbe:
      tcpSocket: {port: 7777}
      periodSeconds: 1
`)
	waitReady(t, ns, "app=echo", 1, 60*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cache := filepath.Join(theLab.Dir(), "kubectl-cache")
	start := time.Now()
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", theLab.Kubeconfig(), "--cache-dir", cache, "port-forward", "-n", ns, "pod/echo", fmt.Sprintf("%d:7777", port))
	cmd.Env = append(os.Environ(), "HOME="+cache, "KUBECONFIG=")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	waitFor(t, 30*time.Second, "an echo through kubectl port-forward", func() (bool, string) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return false, fmt.Sprintf("%v; kubectl: %s", err, out.String())
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping through the agent\n")); err != nil {
			return false, err.Error()
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && line == "ping through the agent\n", fmt.Sprintf("read %q: %v; kubectl: %s", line, err, out.String())
	})
	return time.Since(start)
}

// lockedBuffer is a bytes.Buffer written by a process and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
