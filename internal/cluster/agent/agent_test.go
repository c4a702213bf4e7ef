package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/berth/berth/internal/engine/api"
)

func testAgent(t *testing.T, eng *fakeEngine, objs ...*corev1.Pod) (*Agent, *fake.Clientset, *record.FakeRecorder) {
	t.Helper()
	cs := fake.NewSimpleClientset()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, p := range objs {
		if _, err := cs.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_ = idx.Add(p)
	}
	rec := record.NewFakeRecorder(1000)
	o := Options{NodeName: "n1", resync: time.Second, MaxPods: 110, LeaseDuration: 4 * time.Second, StreamingPort: 10250, DataDir: t.TempDir(), VolumesDir: t.TempDir()}
	a := &Agent{o: o, node: "n1", eng: eng, cs: cs, rec: rec, log: slog.New(slog.NewTextHandler(io.Discard, nil)), hostIP: "192.0.2.10",
		workers: map[types.UID]*podWorker{}, pods: corelisters.NewPodLister(idx)}
	a.setupPodInputs()
	a.flat = !a.sandboxSupported(context.Background())
	return a, cs, rec
}

func testPod(name string, mod func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: "n1", RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{Name: "main", Image: "busybox:1", ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "1000"}}}},
	}
	if mod != nil {
		mod(p)
	}
	return p
}

// syncOnce runs one sync of the pod with the clientset's current copy (as
// the informer would deliver it) and returns the pod afterwards.
func syncOnce(t *testing.T, a *Agent, cs *fake.Clientset, w *podWorker, name string) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s: %v", name, err)
	}
	w.setPod(p)
	w.sync(context.Background())
	p, err = cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s after sync: %v", name, err)
	}
	return p
}

func current(eng *fakeEngine, pod, container string) *fakeCtr {
	var best *fakeCtr
	bestN := -1
	for _, c := range eng.byName("k8s_" + container + "_" + pod + "_") {
		n := atoiDefault(c.req.Labels[LabelRestartCount], 0)
		if n > bestN {
			best, bestN = c, n
		}
	}
	return best
}

func events(rec *record.FakeRecorder) string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

func cond(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func TestRunPodWithInitContainers(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("web", func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{
			{Name: "i1", Image: "busybox:1", ImagePullPolicy: corev1.PullIfNotPresent},
			{Name: "i2", Image: "busybox:1", ImagePullPolicy: corev1.PullIfNotPresent},
		}
	})
	a, cs, rec := testAgent(t, eng, pod)
	if a.flat {
		t.Fatal("the fake engine supports sandboxes; got flat mode")
	}
	w := newPodWorker(a, pod.UID)
	p := syncOnce(t, a, cs, w, "web")
	if sb := current(eng, "web", "POD"); sb == nil || !sb.j.State.Running {
		t.Fatalf("sandbox: got %v, want a running k8s_POD_web_… container", sb)
	}
	if current(eng, "web", "i1") == nil || current(eng, "web", "i2") != nil || current(eng, "web", "main") != nil {
		t.Fatalf("after the first sync: want only i1 started")
	}
	if p.Status.Phase != corev1.PodPending || cond(p, corev1.PodInitialized) != corev1.ConditionFalse {
		t.Fatalf("phase/initialized: got %s/%s, want Pending/False", p.Status.Phase, cond(p, corev1.PodInitialized))
	}
	if got := p.Status.ContainerStatuses[0].State.Waiting; got == nil || got.Reason != "PodInitializing" {
		t.Fatalf("main container while initializing: got %+v, want waiting PodInitializing", p.Status.ContainerStatuses[0].State)
	}
	eng.exit(current(eng, "web", "i1").id, 0, false)
	syncOnce(t, a, cs, w, "web")
	eng.exit(current(eng, "web", "i2").id, 0, false)
	p = syncOnce(t, a, cs, w, "web")
	m := current(eng, "web", "main")
	if m == nil || !m.j.State.Running {
		t.Fatalf("main: got %v, want running after both init containers", m)
	}
	sb := current(eng, "web", "POD")
	if m.req.HostConfig.NetworkMode != "container:"+sb.id || m.req.HostConfig.IpcMode != "container:"+sb.id {
		t.Errorf("main joins the sandbox: got network %q ipc %q, want container:%s", m.req.HostConfig.NetworkMode, m.req.HostConfig.IpcMode, sb.id)
	}
	if m.name != "k8s_main_web_default_uid-web_0" {
		t.Errorf("name: got %s, want k8s_main_web_default_uid-web_0", m.name)
	}
	if p.Status.Phase != corev1.PodRunning || cond(p, corev1.PodReady) != corev1.ConditionTrue || cond(p, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Fatalf("got phase %s ready %s, want Running True", p.Status.Phase, cond(p, corev1.PodReady))
	}
	cst := p.Status.ContainerStatuses[0]
	if cst.ContainerID != "berth://"+m.id || !cst.Ready || cst.State.Running == nil || *cst.Started != true {
		t.Errorf("container status: got %+v", cst)
	}
	if p.Status.PodIP != sb.j.NetworkSettings.IPAddress || p.Status.HostIP != "192.0.2.10" || p.Status.StartTime == nil || p.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("pod IP/host IP/start/qos: got %s/%s/%v/%s, want %s/192.0.2.10/set/BestEffort", p.Status.PodIP, p.Status.HostIP, p.Status.StartTime, p.Status.QOSClass, sb.j.NetworkSettings.IPAddress)
	}
	for _, st := range p.Status.InitContainerStatuses {
		if st.State.Terminated == nil || st.State.Terminated.Reason != "Completed" {
			t.Errorf("init %s: got %+v, want terminated Completed", st.Name, st.State)
		}
	}
	ev := events(rec)
	for _, want := range []string{"Normal Pulled", "Normal Created Created container main", "Normal Started Started container i1"} {
		if !strings.Contains(ev, want) {
			t.Errorf("events: missing %q in\n%s", want, ev)
		}
	}
}

func TestRestartBackoffAndAdoption(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("crash", nil)
	a, cs, rec := testAgent(t, eng, pod)
	w := newPodWorker(a, pod.UID)
	syncOnce(t, a, cs, w, "crash")
	first := current(eng, "crash", "main")
	eng.exit(first.id, 1, false)
	p := syncOnce(t, a, cs, w, "crash")
	second := current(eng, "crash", "main")
	if second.id == first.id || !second.j.State.Running || second.req.Labels[LabelRestartCount] != "1" {
		t.Fatalf("first crash: want an immediate restart as attempt 1, got %s %v", second.name, second.j.State)
	}
	cst := p.Status.ContainerStatuses[0]
	if cst.RestartCount != 1 || cst.LastTerminationState.Terminated == nil || cst.LastTerminationState.Terminated.ExitCode != 1 || cst.LastTerminationState.Terminated.Reason != "Error" {
		t.Fatalf("after restart: got %+v, want restartCount 1, lastState terminated Error 1", cst)
	}
	eng.exit(second.id, 2, false)
	p = syncOnce(t, a, cs, w, "crash")
	if c := current(eng, "crash", "main"); c.id != second.id {
		t.Fatalf("second crash: got a new container %s, want back-off", c.name)
	}
	cst = p.Status.ContainerStatuses[0]
	if cst.State.Waiting == nil || cst.State.Waiting.Reason != "CrashLoopBackOff" || !strings.Contains(cst.State.Waiting.Message, "back-off 10s") {
		t.Fatalf("second crash: got %+v, want waiting CrashLoopBackOff back-off 10s", cst.State)
	}
	if p.Status.Phase != corev1.PodRunning || cond(p, corev1.PodReady) != corev1.ConditionFalse {
		t.Errorf("crash-looping pod: got %s ready %s, want Running, not ready", p.Status.Phase, cond(p, corev1.PodReady))
	}
	if ev := events(rec); !strings.Contains(ev, "Warning BackOff") {
		t.Errorf("want a BackOff event, got\n%s", ev)
	}
	// Once the back-off has passed the container restarts, and the next
	// back-off doubles.
	eng.mu.Lock()
	eng.ctrs[second.id].j.State.FinishedAt = time.Now().Add(-11 * time.Second)
	eng.mu.Unlock()
	delete(w.inspected, second.id)
	syncOnce(t, a, cs, w, "crash")
	third := current(eng, "crash", "main")
	if third.req.Labels[LabelRestartCount] != "2" || w.crash["main"].delay != 20*time.Second {
		t.Fatalf("after the back-off: got attempt %s delay %v, want 2 and 20s", third.req.Labels[LabelRestartCount], w.crash["main"].delay)
	}

	// A new agent (restart) adopts the running container untouched.
	a2, _, _ := testAgent(t, eng)
	a2.cs = cs
	w2 := newPodWorker(a2, pod.UID)
	before := len(eng.byName("k8s_"))
	p = syncOnce(t, a2, cs, w2, "crash")
	if after := len(eng.byName("k8s_")); after != before || !current(eng, "crash", "main").j.State.Running || current(eng, "crash", "main").id != third.id {
		t.Fatalf("adoption: containers %d → %d, want the running one kept", before, after)
	}
	if got := p.Status.ContainerStatuses[0]; got.RestartCount != 2 || !got.State.Running.StartedAt.Time.Equal(third.j.State.StartedAt.Truncate(time.Second)) {
		t.Errorf("adopted status: got restarts %d started %v, want 2 and %v", got.RestartCount, got.State.Running, third.j.State.StartedAt)
	}
	// Only the current and the previous instance are kept.
	if n := len(eng.byName("k8s_main_crash_")); n != 2 {
		t.Errorf("instances kept: got %d, want 2 (current and previous)", n)
	}
}

func TestTerminalPhases(t *testing.T) {
	cases := []struct {
		name   string
		policy corev1.RestartPolicy
		code   int
		oom    bool
		phase  corev1.PodPhase
		reason string
	}{
		{"never-fail", corev1.RestartPolicyNever, 3, false, corev1.PodFailed, "Error"},
		{"never-oom", corev1.RestartPolicyNever, 137, true, corev1.PodFailed, "OOMKilled"},
		{"onfailure-ok", corev1.RestartPolicyOnFailure, 0, false, corev1.PodSucceeded, "Completed"},
		{"never-ok", corev1.RestartPolicyNever, 0, false, corev1.PodSucceeded, "Completed"},
	}
	for _, tc := range cases {
		eng := newFakeEngine()
		pod := testPod(tc.name, func(p *corev1.Pod) { p.Spec.RestartPolicy = tc.policy })
		a, cs, _ := testAgent(t, eng, pod)
		w := newPodWorker(a, pod.UID)
		syncOnce(t, a, cs, w, tc.name)
		eng.exit(current(eng, tc.name, "main").id, tc.code, tc.oom)
		p := syncOnce(t, a, cs, w, tc.name)
		st := p.Status.ContainerStatuses[0].State.Terminated
		if p.Status.Phase != tc.phase || st == nil || st.Reason != tc.reason || st.ExitCode != int32(tc.code) {
			t.Errorf("%s: got phase %s state %+v, want %s %s exit %d", tc.name, p.Status.Phase, p.Status.ContainerStatuses[0].State, tc.phase, tc.reason, tc.code)
		}
		if len(eng.byName("k8s_main_"+tc.name)) != 1 {
			t.Errorf("%s: the container was restarted", tc.name)
		}
		if cond(p, corev1.PodReady) != corev1.ConditionFalse {
			t.Errorf("%s: a finished pod is not ready", tc.name)
		}
	}
}

func TestImagePullErrors(t *testing.T) {
	eng := newFakeEngine()
	eng.pullable["new:1"] = true
	bad := testPod("bad", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nosuch:1" })
	good := testPod("good", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "new:1" })
	never := testPod("never", func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = "absent:1"
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
	})
	a, cs, rec := testAgent(t, eng, bad, good, never)
	wb := newPodWorker(a, bad.UID)
	p := syncOnce(t, a, cs, wb, "bad")
	wt := p.Status.ContainerStatuses[0].State.Waiting
	if wt == nil || wt.Reason != "ErrImagePull" || !strings.Contains(wt.Message, "repository does not exist") {
		t.Fatalf("bad image: got %+v, want ErrImagePull with the engine's message", p.Status.ContainerStatuses[0].State)
	}
	pulls := eng.pulls
	p = syncOnce(t, a, cs, wb, "bad")
	wt = p.Status.ContainerStatuses[0].State.Waiting
	if wt == nil || wt.Reason != "ImagePullBackOff" || !strings.Contains(wt.Message, "nosuch:1") || eng.pulls != pulls {
		t.Fatalf("bad image, second sync: got %+v after %d pulls, want ImagePullBackOff without a new pull", wt, eng.pulls-pulls)
	}
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("bad image: phase %s, want Pending", p.Status.Phase)
	}
	ev := events(rec)
	if !strings.Contains(ev, `Warning Failed Failed to pull image "nosuch:1"`) || !strings.Contains(ev, "BackOff Back-off pulling image") {
		t.Errorf("events:\n%s", ev)
	}

	p = syncOnce(t, a, cs, newPodWorker(a, good.UID), "good")
	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("pullable image: phase %s, want Running", p.Status.Phase)
	}
	if ev := events(rec); !strings.Contains(ev, `Pulling Pulling image "new:1"`) || !strings.Contains(ev, `Successfully pulled image "new:1"`) {
		t.Errorf("pull events:\n%s", ev)
	}
	p = syncOnce(t, a, cs, newPodWorker(a, never.UID), "never")
	if wt := p.Status.ContainerStatuses[0].State.Waiting; wt == nil || wt.Reason != "ErrImageNeverPull" {
		t.Errorf("pull policy Never: got %+v, want ErrImageNeverPull", p.Status.ContainerStatuses[0].State)
	}
}

func TestDeletionAndOrphans(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("gone", nil)
	keep := testPod("keep", nil)
	a, cs, rec := testAgent(t, eng, pod, keep)
	w := newPodWorker(a, pod.UID)
	syncOnce(t, a, cs, w, "gone")
	syncOnce(t, a, cs, newPodWorker(a, keep.UID), "keep")

	p, _ := cs.CoreV1().Pods("default").Get(context.Background(), "gone", metav1.GetOptions{})
	p = p.DeepCopy()
	now := metav1.Now()
	grace := int64(5)
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &grace
	w.setPod(p)
	if _, done := w.sync(context.Background()); !done {
		t.Fatal("sync of a deleted pod: want the worker done")
	}
	if n := len(eng.byName("k8s_main_gone_")) + len(eng.byName("k8s_POD_gone_")); n != 0 {
		t.Errorf("deleted pod: %d containers left, want 0", n)
	}
	if _, err := cs.CoreV1().Pods("default").Get(context.Background(), "gone", metav1.GetOptions{}); err == nil {
		t.Error("deleted pod: the agent did not delete the pod object")
	}
	if ev := events(rec); !strings.Contains(ev, "Killing Stopping container main") {
		t.Errorf("want a Killing event, got\n%s", ev)
	}

	// Containers of a pod the API no longer has (deleted while the agent
	// was away) are removed; the other pod's stay.
	orphan := testPod("orphan", nil)
	a2, cs2, _ := testAgent(t, eng, orphan)
	syncOnce(t, a2, cs2, newPodWorker(a2, orphan.UID), "orphan")
	if len(eng.byName("k8s_main_orphan_")) != 1 {
		t.Fatal("orphan pod did not start")
	}
	foreign := api.CreateRequest{Config: api.Config{Image: "busybox:1", Labels: map[string]string{LabelPodUID: "someone-else", LabelNode: "other-node"}}}
	if _, err := eng.Create(context.Background(), "k8s_main_foreign_default_x_0", foreign); err != nil {
		t.Fatal(err)
	}
	a.collectOrphans(context.Background())
	if len(eng.byName("k8s_main_foreign_")) != 1 {
		t.Error("orphan collection removed another node's container (an engine shared by two agents)")
	}
	if n := len(eng.byName("k8s_main_orphan_")) + len(eng.byName("k8s_POD_orphan_")); n != 0 {
		t.Errorf("orphans: %d containers left, want 0", n)
	}
	if len(eng.byName("k8s_main_keep_")) != 1 {
		t.Error("orphan collection removed a pod the API still has")
	}
}

// Orphaned pods are stopped side by side: each may wait out its whole grace
// period, and one must not hold up the others.
func TestOrphansStopInParallel(t *testing.T) {
	eng := newFakeEngine()
	var pods []*corev1.Pod
	for _, n := range []string{"o1", "o2", "o3"} {
		pods = append(pods, testPod(n, nil))
	}
	a, cs, _ := testAgent(t, eng, pods...)
	for _, p := range pods {
		syncOnce(t, a, cs, newPodWorker(a, p.UID), p.Name)
	}
	// A fresh agent that knows none of them (they left the API).
	b, _, _ := testAgent(t, eng)
	var mu sync.Mutex
	inflight, peak := 0, 0
	eng.onStop = func(string) {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
	}
	b.collectOrphans(context.Background())
	for _, p := range pods {
		if n := len(eng.byName("k8s_main_"+p.Name+"_")) + len(eng.byName("k8s_POD_"+p.Name+"_")); n != 0 {
			t.Errorf("orphan %s: %d containers left, want 0", p.Name, n)
		}
	}
	if peak < 3 {
		t.Errorf("at most %d orphaned containers were stopping at once, want the 3 pods' app containers together", peak)
	}
}

// A worker that looks before it is handed its pod waits for it: taking
// the pod for gone ended the worker, and the pod stayed Pending until its
// next change (seen once in the lab's scenario 4).
func TestWorkerWaitsForItsPod(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("early", nil)
	a, cs, _ := testAgent(t, eng, pod)
	w := newPodWorker(a, pod.UID)
	if _, done := w.sync(context.Background()); done {
		t.Fatal("a worker without its pod yet ended (took the pod for gone)")
	}
	syncOnce(t, a, cs, w, "early")
	if len(eng.byName("k8s_main_early_")) != 1 {
		t.Fatal("the pod handed over afterwards did not start")
	}
}

func TestFlatModeWithoutSandboxes(t *testing.T) {
	eng := newFakeEngine()
	eng.noSandbox = true
	pod := testPod("flat", nil)
	a, cs, _ := testAgent(t, eng, pod)
	if !a.flat {
		t.Fatal("engine without container: network mode: want flat mode")
	}
	p := syncOnce(t, a, cs, newPodWorker(a, pod.UID), "flat")
	m := current(eng, "flat", "main")
	if current(eng, "flat", "POD") != nil || m == nil || m.req.HostConfig.NetworkMode != "" || m.req.Hostname != "flat" {
		t.Fatalf("flat mode: got sandbox %v, main %+v", current(eng, "flat", "POD"), m)
	}
	if p.Status.PodIP != m.j.NetworkSettings.IPAddress || p.Status.Phase != corev1.PodRunning {
		t.Errorf("flat mode: got IP %s phase %s, want %s Running", p.Status.PodIP, p.Status.Phase, m.j.NetworkSettings.IPAddress)
	}
	if len(eng.byName("berth-agent-probe")) != 0 {
		t.Error("the sandbox probe left containers behind")
	}
}

func TestContainerRequest(t *testing.T) {
	t1000, t2000, yes, no := int64(1000), int64(2000), true, false
	pod := testPod("p", func(p *corev1.Pod) {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &t1000}
		c := &p.Spec.Containers[0]
		c.Args = []string{"-x"}
		c.WorkingDir = "/w"
		c.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		}
		c.SecurityContext = &corev1.SecurityContext{RunAsGroup: &t2000, ReadOnlyRootFilesystem: &yes, Privileged: &yes, AllowPrivilegeEscalation: &no,
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"ALL"}}}
		c.Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
	})
	req, err := containerRequest(pod, &pod.Spec.Containers[0], KindContainer, 3, "SB", []string{"A=b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := req.HostConfig
	checks := []struct {
		what      string
		got, want any
	}{
		{"entrypoint", strings.Join(req.Entrypoint, " "), "sleep 1000"},
		{"cmd", strings.Join(req.Cmd, " "), "-x"},
		{"workdir", req.WorkingDir, "/w"},
		{"env", strings.Join(req.Env, ","), "A=b"},
		{"user", req.User, "1000:2000"},
		{"cpu shares", hc.CPUShares, int64(256)},
		{"cpu quota", hc.CPUQuota, int64(50000)},
		{"cpu period", hc.CPUPeriod, int64(100000)},
		{"memory", hc.Memory, int64(64 << 20)},
		{"read-only", hc.ReadonlyRootfs, true},
		{"privileged", hc.Privileged, true},
		{"cap add", strings.Join(hc.CapAdd, ","), "CAP_NET_ADMIN"},
		{"cap drop", strings.Join(hc.CapDrop, ","), "ALL"},
		{"no new privs", strings.Join(hc.SecurityOpt, ","), "no-new-privileges"},
		{"network", hc.NetworkMode, "container:SB"},
		{"ipc", hc.IpcMode, "container:SB"},
		{"restart label", req.Labels[LabelRestartCount], "3"},
		{"kind label", req.Labels[LabelKind], "container"},
		{"uid label", req.Labels[LabelPodUID], "uid-p"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	sb, _ := sandboxRequest(pod, 0, dnsSettings{})
	if sb.Image != PauseImage || sb.HostConfig.PortBindings["80/tcp"][0].HostPort != "8080" || sb.Labels[LabelContainer] != "POD" || sb.Labels[LabelKind] != "sandbox" {
		t.Errorf("sandbox request: got %+v", sb)
	}
	host := testPod("h", func(p *corev1.Pod) { p.Spec.HostNetwork = true })
	if r, _ := sandboxRequest(host, 0, dnsSettings{}); r.HostConfig.NetworkMode != "host" {
		t.Errorf("hostNetwork sandbox: got network %q, want host", r.HostConfig.NetworkMode)
	}

	bad := []struct {
		name string
		mod  func(*corev1.Container, *corev1.Pod)
		want string
	}{
		{"tiny memory", func(c *corev1.Container, _ *corev1.Pod) {
			c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Mi")}
		}, "resources.limits.memory"},
		{"root with runAsNonRoot", func(c *corev1.Container, p *corev1.Pod) {
			zero := int64(0)
			c.SecurityContext = &corev1.SecurityContext{RunAsUser: &zero, RunAsNonRoot: &yes}
		}, "runAsNonRoot"},
	}
	for _, tc := range bad {
		p := testPod("b", nil)
		tc.mod(&p.Spec.Containers[0], p)
		if _, err := containerRequest(p, &p.Spec.Containers[0], KindContainer, 0, "", nil, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

func TestCheckImageUser(t *testing.T) {
	yes := true
	pod := testPod("u", func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: &yes} })
	c := &pod.Spec.Containers[0]
	for user, ok := range map[string]bool{"": false, "0": false, "root": false, "nobody": false, "1000": true, "1000:1000": true} {
		err := checkImageUser(pod, c, user)
		if (err == nil) != ok {
			t.Errorf("image user %q: got %v, want ok=%v", user, err, ok)
		}
	}
}

func TestRegisterNodeAndLease(t *testing.T) {
	eng := newFakeEngine()
	a, cs, _ := testAgent(t, eng)
	a.o.CPUs, a.o.Memory, a.o.MaxPods = "3", "2Gi", 7
	a.o.Labels = map[string]string{"zone": "a"}
	a.o.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}
	ctx := context.Background()
	if err := a.registerNode(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Status.Capacity.Cpu().String() != "3" || n.Status.Allocatable.Memory().String() != "2Gi" || n.Status.Capacity.Pods().Value() != 7 || n.Status.Capacity.StorageEphemeral().IsZero() {
		t.Errorf("capacity: got %v", n.Status.Capacity)
	}
	for k, v := range map[string]string{"kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux", "beta.kubernetes.io/arch": n.Labels["kubernetes.io/arch"], "zone": "a"} {
		if n.Labels[k] != v || v == "" {
			t.Errorf("label %s: got %q, want %q", k, n.Labels[k], v)
		}
	}
	if len(n.Spec.Taints) != 1 || n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 || !strings.HasPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "berth://") {
		t.Errorf("taints/endpoint/runtime: got %v %d %s", n.Spec.Taints, n.Status.DaemonEndpoints.KubeletEndpoint.Port, n.Status.NodeInfo.ContainerRuntimeVersion)
	}
	types := map[corev1.NodeConditionType]corev1.ConditionStatus{}
	for _, c := range n.Status.Conditions {
		types[c.Type] = c.Status
	}
	if types[corev1.NodeReady] != corev1.ConditionTrue || types[corev1.NodeMemoryPressure] == "" || types[corev1.NodeDiskPressure] == "" || types[corev1.NodePIDPressure] != corev1.ConditionFalse {
		t.Errorf("conditions: got %v", types)
	}
	if len(n.Status.Addresses) != 2 || n.Status.Addresses[0].Address != "192.0.2.10" {
		t.Errorf("addresses: got %v", n.Status.Addresses)
	}
	// An engine that stops answering makes the node not Ready.
	eng.mu.Lock()
	eng.down = errors.New("connection refused")
	eng.mu.Unlock()
	if err := a.updateNodeStatus(ctx); err != nil {
		t.Fatal(err)
	}
	n, _ = cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && (c.Status != corev1.ConditionFalse || !strings.Contains(c.Message, "connection refused")) {
			t.Errorf("engine down: got Ready %s %q, want False naming the error", c.Status, c.Message)
		}
	}
	eng.mu.Lock()
	eng.down = nil
	eng.mu.Unlock()
	// Registering again (an agent restart) keeps the node.
	if err := a.registerNode(ctx); err != nil {
		t.Fatalf("re-register: %v", err)
	}
	l, err := a.renewLease(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *l.Spec.LeaseDurationSeconds != 4 || *l.Spec.HolderIdentity != "n1" || l.Namespace != "kube-node-lease" || len(l.OwnerReferences) != 1 {
		t.Errorf("lease: got %+v", l)
	}
	first := l.Spec.RenewTime.Time
	time.Sleep(5 * time.Millisecond)
	if l, err = a.renewLease(ctx, l); err != nil || !l.Spec.RenewTime.After(first) {
		t.Errorf("renew: got %v %v, want a later renew time", l, err)
	}
}

func TestEnvAndVolumes(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("cfg", func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Command = []string{"echo", "$(GREETING)"}
		c.Env = []corev1.EnvVar{
			{Name: "GREETING", Value: "hi"},
			{Name: "FROM_CM", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "k"}}},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		}
		c.VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	})
	missing := testPod("nosecret", func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "S", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}}}
	})
	a, cs, _ := testAgent(t, eng, pod, missing)
	if _, err := cs.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "default"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := newPodWorker(a, pod.UID)
	p := syncOnce(t, a, cs, w, "cfg")
	m := current(eng, "cfg", "main")
	if m == nil {
		t.Fatalf("container not created: %+v", p.Status)
	}
	env := strings.Join(m.req.Env, " ")
	for _, want := range []string{"GREETING=hi", "FROM_CM=v", "POD=cfg"} {
		if !strings.Contains(env, want) {
			t.Errorf("env: got %q, want %s", env, want)
		}
	}
	if got := strings.Join(m.req.Entrypoint, " "); got != "echo hi" {
		t.Errorf("$(VAR) in command: got %q, want \"echo hi\"", got)
	}
	mounts := m.req.HostConfig.Mounts
	if len(mounts) != 2 || mounts[0].Target != "/scratch" || mounts[0].Type != "bind" || !strings.HasPrefix(mounts[0].Source, a.o.DataDir) || mounts[1].Target != "/dev/termination-log" {
		t.Errorf("mounts: got %+v, want /scratch bound from under the data dir and the termination log", mounts)
	}
	// Removing the pod removes its volume directory.
	w.setPod(nil)
	w.sync(context.Background())
	if _, err := os.Stat(mounts[0].Source); !os.IsNotExist(err) {
		t.Errorf("volume dir after removal: %v, want gone", err)
	}

	p = syncOnce(t, a, cs, newPodWorker(a, missing.UID), "nosecret")
	wt := p.Status.ContainerStatuses[0].State.Waiting
	if wt == nil || wt.Reason != "CreateContainerConfigError" || !strings.Contains(wt.Message, "nope") {
		t.Errorf("missing secret: got %+v, want CreateContainerConfigError naming it", p.Status.ContainerStatuses[0].State)
	}
}

func TestEvictionOnEmptyDirSizeLimit(t *testing.T) {
	eng := newFakeEngine()
	limit := resource.MustParse("1Ki")
	pod := testPod("big", func(p *corev1.Pod) {
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "d", MountPath: "/d"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &limit}}}}
	})
	a, cs, rec := testAgent(t, eng, pod)
	w := newPodWorker(a, pod.UID)
	syncOnce(t, a, cs, w, "big")
	m := current(eng, "big", "main")
	if err := os.WriteFile(m.req.HostConfig.Mounts[0].Source+"/fill", make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	w.volsAt = time.Time{}
	p := syncOnce(t, a, cs, w, "big")
	if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "Evicted" || !strings.Contains(p.Status.Message, "exceeds the limit") {
		t.Fatalf("got phase %s reason %q message %q, want Failed Evicted", p.Status.Phase, p.Status.Reason, p.Status.Message)
	}
	if current(eng, "big", "main").j.State.Running {
		t.Error("the evicted pod's container still runs")
	}
	if ev := events(rec); !strings.Contains(ev, "Warning Evicted") {
		t.Errorf("no Evicted event:\n%s", ev)
	}
}

// A container that cannot start (command not found) is retried with the
// crash back-off, not at every sync.
func TestStartErrorBacksOff(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("broken", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "broken:1" })
	a, cs, _ := testAgent(t, eng, pod)
	w := newPodWorker(a, pod.UID)
	p := syncOnce(t, a, cs, w, "broken")
	if wt := p.Status.ContainerStatuses[0].State.Waiting; wt == nil || wt.Reason != "RunContainerError" || !strings.Contains(wt.Message, "executable file not found") {
		t.Fatalf("first sync: got %+v, want RunContainerError with the engine's message", p.Status.ContainerStatuses[0].State)
	}
	for i := 0; i < 5; i++ {
		p = syncOnce(t, a, cs, w, "broken")
	}
	if n := len(eng.byName("k8s_main_broken_")); n != 1 {
		t.Errorf("after 6 quick syncs: %d containers created, want 1 (then back-off)", n)
	}
	cst := p.Status.ContainerStatuses[0]
	if cst.State.Waiting == nil || cst.State.Waiting.Reason != "CrashLoopBackOff" || cst.LastTerminationState.Terminated == nil || cst.LastTerminationState.Terminated.Reason != "StartError" {
		t.Errorf("got %+v, want CrashLoopBackOff with lastState StartError", cst)
	}
}

func TestOptionsValidation(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no server", func(o *Options) { o.Server = "" }, "--server"},
		{"http server", func(o *Options) { o.Server = "http://a:1" }, "--server"},
		{"bad node name", func(o *Options) { o.NodeName = "Bad_Name" }, "--node-name"},
		{"bad node ip", func(o *Options) { o.NodeIP = "here" }, "--node-ip"},
		{"bad cpus", func(o *Options) { o.CPUs = "lots" }, "--cpus"},
		{"zero memory", func(o *Options) { o.Memory = "0" }, "--memory"},
		{"negative max pods", func(o *Options) { o.MaxPods = -1 }, "--max-pods"},
		{"cluster DNS not an address", func(o *Options) { o.ClusterDNS = "dns.local" }, "--cluster-dns"},
		{"cluster DNS IPv6", func(o *Options) { o.ClusterDNS = "fd00::10" }, "--cluster-dns"},
		{"bad cluster domain", func(o *Options) { o.ClusterDomain = "cluster..local" }, "--cluster-domain"},
	}
	for _, tc := range cases {
		o := Options{Server: "https://a:1", NodeName: "n1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		tc.mod(&o)
		if err := o.defaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	o := Options{Server: "https://a:1", NodeName: "n1"}
	if err := o.defaults(); err != nil || o.MaxPods != 110 || o.LeaseDuration != 4*time.Second || o.StreamingPort != 10250 || o.DataDir != "/var/lib/berth/agent" || o.NodeIP == "" ||
		o.ClusterDNS != "" || o.ClusterDomain != "cluster.local" || o.ClusterDNSLink != "berth-dns" || o.ResolvConf != "/etc/resolv.conf" {
		t.Errorf("defaults: got %v %+v", err, o)
	}
}

// Containers the engine lost (a wiped engine) come back with the restart
// count going on from the reported status.
func TestRestartCountSurvivesALostContainer(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("lost", nil)
	a, cs, _ := testAgent(t, eng, pod)
	w := newPodWorker(a, pod.UID)
	syncOnce(t, a, cs, w, "lost")
	eng.exit(current(eng, "lost", "main").id, 1, false)
	syncOnce(t, a, cs, w, "lost") // restart: attempt 1
	for _, c := range eng.byName("k8s_") {
		_ = eng.Remove(context.Background(), c.id)
	}
	p := syncOnce(t, a, cs, newPodWorker(a, pod.UID), "lost")
	if got := p.Status.ContainerStatuses[0].RestartCount; got != 2 {
		t.Errorf("restartCount after the engine lost the containers: got %d, want 2", got)
	}
}

func TestTerminationMessage(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("msg", func(p *corev1.Pod) {
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		p.Spec.Containers[0].TerminationMessagePath = "/tmp/why"
	})
	a, cs, _ := testAgent(t, eng, pod)
	w := newPodWorker(a, pod.UID)
	syncOnce(t, a, cs, w, "msg")
	m := current(eng, "msg", "main")
	var host string
	for _, mt := range m.req.HostConfig.Mounts {
		if mt.Target == "/tmp/why" {
			host = mt.Source
		}
	}
	if host == "" {
		t.Fatalf("no bind at the terminationMessagePath: %+v", m.req.HostConfig.Mounts)
	}
	if err := os.WriteFile(host, []byte("disk full"), 0o644); err != nil {
		t.Fatal(err)
	}
	eng.exit(m.id, 2, false)
	p := syncOnce(t, a, cs, w, "msg")
	if st := p.Status.ContainerStatuses[0].State.Terminated; st == nil || st.Message != "disk full" {
		t.Errorf("got %+v, want terminated with message \"disk full\"", p.Status.ContainerStatuses[0].State)
	}
}

func TestTerminationMessageFromLogs(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("logmsg", func(p *corev1.Pod) {
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		p.Spec.Containers[0].TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	})
	a, cs, _ := testAgent(t, eng, pod)
	w := newPodWorker(a, pod.UID)
	syncOnce(t, a, cs, w, "logmsg")
	eng.exit(current(eng, "logmsg", "main").id, 1, false)
	p := syncOnce(t, a, cs, w, "logmsg")
	if st := p.Status.ContainerStatuses[0].State.Terminated; st == nil || st.Message != "last words\n" {
		t.Errorf("got %+v, want the log tail as message", p.Status.ContainerStatuses[0].State)
	}
}

func TestActiveDeadline(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("deadline", func(p *corev1.Pod) {
		d := int64(2)
		p.Spec.ActiveDeadlineSeconds = &d
	})
	a, cs, rec := testAgent(t, eng, pod)
	w := newPodWorker(a, pod.UID)
	p := syncOnce(t, a, cs, w, "deadline")
	if p.Status.Phase != corev1.PodRunning {
		t.Fatalf("got %s, want Running before the deadline", p.Status.Phase)
	}
	p = p.DeepCopy()
	past := metav1.NewTime(time.Now().Add(-3 * time.Second))
	p.Status.StartTime = &past
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p = syncOnce(t, a, cs, w, "deadline")
	if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "DeadlineExceeded" {
		t.Fatalf("after the deadline: got %s/%s, want Failed/DeadlineExceeded", p.Status.Phase, p.Status.Reason)
	}
	if current(eng, "deadline", "main").j.State.Running {
		t.Error("the container still runs after the deadline")
	}
	if ev := events(rec); !strings.Contains(ev, "Warning DeadlineExceeded") {
		t.Errorf("no DeadlineExceeded event:\n%s", ev)
	}
}

func TestSandboxFailureBacksOff(t *testing.T) {
	eng := newFakeEngine()
	pod := testPod("nosb", nil)
	a, cs, rec := testAgent(t, eng, pod)
	eng.sandboxFail = "port 8080 is already in use"
	w := newPodWorker(a, pod.UID)
	for i := 0; i < 4; i++ {
		syncOnce(t, a, cs, w, "nosb")
	}
	if eng.sandboxCreates != 1 {
		t.Errorf("sandbox creations in 4 quick syncs: got %d, want 1 (then back-off)", eng.sandboxCreates)
	}
	if ev := events(rec); strings.Count(ev, "FailedCreatePodSandBox") != 1 || !strings.Contains(ev, "already in use") {
		t.Errorf("events:\n%s", ev)
	}
	p, _ := cs.CoreV1().Pods("default").Get(context.Background(), "nosb", metav1.GetOptions{})
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("phase: got %s, want Pending", p.Status.Phase)
	}
}

func TestSidecarInitContainer(t *testing.T) {
	eng := newFakeEngine()
	always := corev1.ContainerRestartPolicyAlways
	pod := testPod("side", func(p *corev1.Pod) {
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		p.Spec.InitContainers = []corev1.Container{
			{Name: "proxy", Image: "busybox:1", ImagePullPolicy: corev1.PullIfNotPresent, RestartPolicy: &always},
			{Name: "setup", Image: "busybox:1", ImagePullPolicy: corev1.PullIfNotPresent},
		}
	})
	a, cs, _ := testAgent(t, eng, pod)
	w := newPodWorker(a, pod.UID)
	syncOnce(t, a, cs, w, "side") // the sidecar starts
	syncOnce(t, a, cs, w, "side") // it runs: the next init container starts
	if current(eng, "side", "proxy") == nil || current(eng, "side", "setup") == nil || current(eng, "side", "main") != nil {
		t.Fatal("first sync: want the sidecar running and the next init container started, no main container yet")
	}
	eng.exit(current(eng, "side", "setup").id, 0, false)
	p := syncOnce(t, a, cs, w, "side")
	if m := current(eng, "side", "main"); m == nil || !m.j.State.Running {
		t.Fatal("main container not started after the init containers")
	}
	if p.Status.Phase != corev1.PodRunning || cond(p, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Errorf("got phase %s initialized %s, want Running True", p.Status.Phase, cond(p, corev1.PodInitialized))
	}
	if st := p.Status.InitContainerStatuses[0]; st.State.Running == nil || !st.Ready {
		t.Errorf("sidecar status: got %+v, want running and ready", st)
	}
	// The sidecar restarts when it exits, even with restartPolicy Never.
	first := current(eng, "side", "proxy")
	eng.exit(first.id, 1, false)
	syncOnce(t, a, cs, w, "side")
	if c := current(eng, "side", "proxy"); c.id == first.id || !c.j.State.Running {
		t.Error("the sidecar was not restarted")
	}
	// The pod completes with its main container; the sidecar is stopped.
	eng.exit(current(eng, "side", "main").id, 0, false)
	p = syncOnce(t, a, cs, w, "side")
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("got %s, want Succeeded once the main container exited 0", p.Status.Phase)
	}
	syncOnce(t, a, cs, w, "side")
	if current(eng, "side", "proxy").j.State.Running {
		t.Error("the sidecar still runs after the pod completed")
	}
}
