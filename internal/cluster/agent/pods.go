package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth/berth/internal/cluster/agent/volumes"
	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/errdefs"
)

// Crash-loop and image-pull back-off, as the kubelet: 10 s doubling to
// 5 min, forgotten once a container ran for 10 min.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
	backoffReset   = 10 * time.Minute
)

// instance is one engine container of a pod, inspected.
type instance struct {
	id      string
	name    string // the pod's container name, "POD" for the sandbox
	kind    string
	attempt int
	j       *api.ContainerJSON
}

func (i *instance) running() bool { return i.j.State != nil && i.j.State.Running }

// exited: it ran and stopped, or could not start.
func (i *instance) exited() bool {
	if i.j.State == nil || i.j.State.Running {
		return false
	}
	switch i.j.State.Status {
	case "exited", "dead":
		return true
	case "created":
		return i.j.State.Error != "" || !i.j.State.FinishedAt.IsZero()
	}
	return false
}

type backoff struct {
	delay time.Duration
}

// podWorker owns one pod: it reconciles the pod's containers in the engine
// with its spec, one sync at a time, when the pod changes, one of its
// containers changes state, or a timer fires.
type podWorker struct {
	a   *Agent
	uid types.UID

	mu   sync.Mutex
	pod  *corev1.Pod // latest seen; nil once gone from the API
	gone bool
	wake chan struct{}

	// Only the worker goroutine touches what follows.
	crash     map[string]*backoff                      // container name →
	pull      map[string]*backoff                      // image →
	pullUntil map[string]time.Time                     // image → end of its back-off
	waiting   map[string]*corev1.ContainerStateWaiting // container name → why it is not running
	inspected map[string]*api.ContainerJSON            // by ID, reused while the listed state is unchanged
	sandboxIP string
	vols      *volumes.PodVolumes
	volsAt    time.Time
	pmu       sync.Mutex
	probes    map[string]*probeSet // container ID →
	mountErr  string
	// sandboxFails counts sandbox creations failed in a row; the next is
	// not tried before sandboxRetry.
	sandboxFails int
	sandboxRetry time.Time
	// failReason and failMessage are why the agent failed the pod
	// (Evicted, DeadlineExceeded), once it did.
	failReason, failMessage string
	lastPush                *corev1.PodStatus
	pushedFrom              string // the pod's resourceVersion when lastPush was written
	// logMessages are the log tails of exited instances whose
	// terminationMessagePolicy is FallbackToLogsOnError, by ID.
	logMessages map[string]string
}

func newPodWorker(a *Agent, uid types.UID) *podWorker {
	return &podWorker{a: a, uid: uid, wake: make(chan struct{}, 1),
		crash: map[string]*backoff{}, pull: map[string]*backoff{}, pullUntil: map[string]time.Time{},
		waiting: map[string]*corev1.ContainerStateWaiting{}, inspected: map[string]*api.ContainerJSON{}, probes: map[string]*probeSet{}, logMessages: map[string]string{}}
}

func (w *podWorker) setPod(p *corev1.Pod) {
	w.mu.Lock()
	if p == nil {
		w.gone = true
	} else if !w.gone {
		w.pod = p
	}
	w.mu.Unlock()
	w.trigger()
}

func (w *podWorker) trigger() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *podWorker) snapshot() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.gone
}

func (w *podWorker) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C:
		}
		next, done := w.safeSync(ctx)
		if done {
			return
		}
		if next <= 0 || next > w.a.o.resync {
			next = w.a.o.resync
		}
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timer.Reset(next)
	}
}

// safeSync is sync that survives a bug: a panic is logged and the pod
// looked at again later, rather than taking the agent (and every other
// pod's status) down.
func (w *podWorker) safeSync(ctx context.Context) (next time.Duration, done bool) {
	defer func() {
		if r := recover(); r != nil {
			w.a.log.Error("pod sync panicked; retrying in 5s", "uid", w.uid, "panic", r, "stack", string(debug.Stack()))
			next, done = 5*time.Second, false
		}
	}()
	return w.sync(ctx)
}

// list returns the pod's containers in the engine, newest attempt first
// within each container name.
func (w *podWorker) list(ctx context.Context) ([]*instance, error) {
	sums, err := w.a.eng.List(ctx, LabelPodUID, string(w.uid))
	if err != nil {
		return nil, err
	}
	var out []*instance
	seen := map[string]bool{}
	for _, s := range sums {
		in := &instance{id: s.ID, name: s.Labels[LabelContainer], kind: s.Labels[LabelKind], attempt: atoiDefault(s.Labels[LabelRestartCount], 0)}
		// An inspection stays good while the container's state does:
		// only containers that changed are inspected again.
		if j, ok := w.inspected[s.ID]; ok && j.State != nil && j.State.Status == s.State {
			in.j = j
		} else {
			j, err := w.a.eng.Inspect(ctx, s.ID)
			if errors.Is(err, errdefs.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			in.j = j
			w.inspected[s.ID] = j
		}
		seen[s.ID] = true
		out = append(out, in)
	}
	for id := range w.inspected {
		if !seen[id] {
			delete(w.inspected, id)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].name != out[j].name {
			return out[i].name < out[j].name
		}
		if out[i].attempt != out[j].attempt {
			return out[i].attempt > out[j].attempt
		}
		return out[i].j.Created.After(out[j].j.Created)
	})
	return out, nil
}

// of returns the instances of one container name (newest first).
func of(insts []*instance, name, kind string) []*instance {
	var out []*instance
	for _, in := range insts {
		if in.name == name && (in.kind == kind || (kind == KindContainer && in.kind == "")) {
			out = append(out, in)
		}
	}
	return out
}

func refs(insts []*instance) []containerRef {
	out := make([]containerRef, 0, len(insts))
	for _, in := range insts {
		out = append(out, containerRef{id: in.id, labels: map[string]string{LabelKind: in.kind, LabelGrace: "30"}, running: in.running()})
	}
	return out
}

// sync makes the engine match the pod once. It returns when to look again
// and whether the worker is finished (the pod is gone and cleaned up).
func (w *podWorker) sync(ctx context.Context) (time.Duration, bool) {
	pod, gone := w.snapshot()
	if pod == nil && !gone {
		// Not handed its pod yet: wait for setPod rather than take the
		// pod for gone.
		return 0, false
	}
	log := w.a.log.With("pod", podKey(pod, w.uid))
	insts, err := w.list(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("listing the pod's containers", "err", err)
		}
		return time.Second, false
	}
	if gone || pod == nil {
		grace := -1
		if pod != nil {
			grace = int(podGrace(pod))
		}
		if len(insts) > 0 {
			log.Info("pod left the API; removing its containers", "containers", len(insts))
			w.killPod(ctx, pod, insts, grace)
		}
		return 0, true
	}
	if pod.DeletionTimestamp != nil {
		grace := podGrace(pod)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		}
		w.killPod(ctx, pod, insts, int(grace))
		zero := int64(0)
		err := w.a.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			log.Warn("deleting the terminated pod", "err", err)
			return time.Second, false
		}
		log.Info("pod terminated and deleted")
		return 0, true
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		// Terminal: nothing runs again; keep the exited containers for logs.
		w.stopProbes()
		for _, in := range insts {
			if in.running() {
				_ = w.a.eng.Stop(ctx, in.id, int(podGrace(pod)))
			}
		}
		return time.Minute, false
	}

	next := w.a.o.resync
	sandboxID := ""
	if !w.a.flat {
		sbs := of(insts, SandboxName, KindSandbox)
		if len(sbs) == 0 || !sbs[0].running() {
			attempt := 0
			if len(sbs) > 0 {
				attempt = sbs[0].attempt + 1
				// The containers lost their namespaces with the sandbox.
				var live []*instance
				for _, in := range insts {
					if in.running() {
						live = append(live, in)
					}
				}
				if len(live) > 0 {
					log.Info("sandbox stopped; stopping the pod's containers to restart them in a new one")
					w.stopAll(ctx, pod, live, int(podGrace(pod)))
				}
			}
			if time.Now().Before(w.sandboxRetry) {
				return time.Until(w.sandboxRetry), false
			}
			id, err := w.startSandbox(ctx, pod, attempt)
			if err != nil {
				// Back off (2 s doubling to 1 min): a host port in use or a
				// broken engine would otherwise be retried at every event.
				w.sandboxFails++
				delay := min(2*time.Second<<min(w.sandboxFails-1, 5), time.Minute)
				w.sandboxRetry = time.Now().Add(delay)
				log.Warn("creating the pod sandbox", "err", err, "retry-in", delay)
				w.a.rec.Eventf(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
				w.pushStatus(ctx, pod, insts)
				return delay, false
			}
			w.sandboxFails = 0
			sandboxID = id
			if insts, err = w.list(ctx); err != nil {
				return time.Second, false
			}
		} else {
			sandboxID = sbs[0].id
			for _, old := range sbs[1:] {
				_ = w.a.eng.Remove(ctx, old.id)
			}
		}
		if w.sandboxIP == "" || len(of(insts, SandboxName, KindSandbox)) > 0 {
			w.sandboxIP = ipOf(of(insts, SandboxName, KindSandbox))
		}
	}

	if err := w.setupVolumes(ctx, pod); err != nil {
		log.Warn("setting up the pod's volumes", "err", err)
		if w.mountErr != err.Error() {
			w.a.rec.Eventf(pod, corev1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed: %v", err)
		}
		w.mountErr = err.Error()
		w.pushStatus(ctx, pod, insts)
		return 2 * time.Second, false
	}
	w.mountErr = ""
	if d := pod.Spec.ActiveDeadlineSeconds; d != nil && w.failReason == "" && pod.Status.StartTime != nil &&
		time.Since(pod.Status.StartTime.Time) >= time.Duration(*d)*time.Second {
		w.failReason, w.failMessage = "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
	}
	if w.failReason != "" {
		w.failPod(ctx, pod, insts)
		if insts, err = w.list(ctx); err != nil {
			return time.Second, false
		}
		w.pushStatus(ctx, pod, insts)
		return time.Second, false
	}

	changed := false
	initDone := true
	mainStarted := mainContainersStarted(pod, insts)
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		list := of(insts, c.Name, KindInit)
		if isSidecar(c) {
			// A sidecar (restartPolicy Always) lets the next init container
			// start once it runs (and passed its startup probe), and is
			// restarted whenever it exits, whatever the pod's policy.
			if len(list) > 0 && list[0].running() {
				if _, started := w.probeState(c, list[0].id); started || mainStarted {
					delete(w.waiting, c.Name)
					w.forgetCrash(c.Name, list[0])
					continue
				}
				initDone = false
				break
			}
			d, started := w.ensure(ctx, pod, c, KindInit, list, sandboxID)
			changed = changed || started
			if d > 0 && d < next {
				next = d
			}
			if mainStarted {
				continue // keep the main containers going meanwhile
			}
			initDone = false
			break
		}
		if len(list) > 0 && list[0].exited() && list[0].j.State.ExitCode == 0 && list[0].j.State.Error == "" {
			continue
		}
		initDone = false
		if len(list) > 0 && list[0].running() {
			break
		}
		if len(list) > 0 && list[0].exited() && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			break // the pod failed
		}
		d, started := w.ensure(ctx, pod, c, KindInit, list, sandboxID)
		changed = changed || started
		if d > 0 && d < next {
			next = d
		}
		break
	}
	if initDone {
		for i := range pod.Spec.Containers {
			c := &pod.Spec.Containers[i]
			list := of(insts, c.Name, KindContainer)
			if len(list) > 0 && list[0].running() {
				delete(w.waiting, c.Name)
				w.forgetCrash(c.Name, list[0])
				continue
			}
			if len(list) > 0 && list[0].exited() && !shouldRestart(pod.Spec.RestartPolicy, list[0]) {
				continue
			}
			d, started := w.ensure(ctx, pod, c, KindContainer, list, sandboxID)
			changed = changed || started
			if d > 0 && d < next {
				next = d
			}
		}
	}
	if changed {
		if insts, err = w.list(ctx); err != nil {
			return time.Second, false
		}
	}
	w.pruneOld(ctx, insts)
	if w.a.flat {
		w.sandboxIP = ipOf(of(insts, pod.Spec.Containers[0].Name, KindContainer))
	}
	w.syncProbes(ctx, pod, insts)
	w.pushStatus(ctx, pod, insts)
	if d := pod.Spec.ActiveDeadlineSeconds; d != nil && pod.Status.StartTime != nil {
		if left := time.Until(pod.Status.StartTime.Add(time.Duration(*d) * time.Second)); left > 0 && left < next {
			next = left
		}
	}
	return next, false
}

func shouldRestart(p corev1.RestartPolicy, in *instance) bool {
	switch p {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return in.j.State.ExitCode != 0 || in.j.State.Error != ""
	}
	return true
}

// forgetCrash resets a container's crash back-off once it has run long
// enough.
func (w *podWorker) forgetCrash(name string, in *instance) {
	if w.crash[name] != nil && in.j.State != nil && time.Since(in.j.State.StartedAt) >= backoffReset {
		delete(w.crash, name)
	}
}

// ensure starts container c (its first run or a restart) unless a
// back-off holds it. It returns when to look again.
func (w *podWorker) ensure(ctx context.Context, pod *corev1.Pod, c *corev1.Container, kind string, list []*instance, sandboxID string) (time.Duration, bool) {
	attempt := 0
	if len(list) == 0 {
		// It ran before but the engine lost it (a wiped engine): go on
		// counting from the reported status, as the kubelet does.
		if prev := reportedStatus(pod, c.Name, kind); prev != nil && prev.ContainerID != "" {
			attempt = int(prev.RestartCount) + 1
		}
	}
	if len(list) > 0 {
		attempt = list[0].attempt + 1
		last := list[0]
		if last.exited() {
			if last.j.State != nil && !last.j.State.StartedAt.IsZero() && last.j.State.FinishedAt.Sub(last.j.State.StartedAt) >= backoffReset {
				delete(w.crash, c.Name)
			}
			if b := w.crash[c.Name]; b != nil {
				finished := last.j.State.FinishedAt
				if finished.IsZero() {
					finished = last.j.Created // never started
				}
				until := finished.Add(b.delay)
				if wait := time.Until(until); wait > 0 {
					msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", b.delay, c.Name, pod.Name, pod.Namespace, pod.UID)
					if w.waiting[c.Name] == nil || w.waiting[c.Name].Reason != "CrashLoopBackOff" {
						w.a.rec.Eventf(eventRef(pod, c, kind), corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", c.Name, podKey(pod, pod.UID))
					}
					w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: msg}
					return wait, false
				}
			}
		} else if !last.running() {
			// Created but never started (an agent stopped in between):
			// replace it.
			_ = w.a.eng.Remove(ctx, last.id)
			attempt = last.attempt
		}
	}
	created, err := w.start(ctx, pod, c, kind, attempt, sandboxID)
	if errors.Is(err, errBackoff) {
		return time.Until(w.pullUntil[c.Image]), false
	}
	// A restart, or a container that could not start, counts towards the
	// crash back-off; failures before create (pull, config) have their own.
	if created && (attempt > 0 || err != nil) {
		b := w.crash[c.Name]
		if b == nil {
			w.crash[c.Name] = &backoff{delay: backoffInitial}
		} else if b.delay*2 <= backoffMax {
			b.delay *= 2
		} else {
			b.delay = backoffMax
		}
	}
	if err != nil {
		return 2 * time.Second, created
	}
	return 0, true
}

// start pulls the image as the pull policy says, creates the container
// in the sandbox and starts it, recording why when it cannot.
func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, c *corev1.Container, kind string, attempt int, sandboxID string) (created bool, err error) {
	ref := eventRef(pod, c, kind)
	user, err := w.ensureImage(ctx, pod, c, ref)
	if err != nil {
		return false, err
	}
	fail := func(reason string, err error) error {
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}
		w.a.rec.Eventf(ref, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return err
	}
	if err := checkImageUser(pod, c, user); err != nil {
		return false, fail("CreateContainerConfigError", err)
	}
	cc, env, mounts, err := w.containerEnv(ctx, pod, c)
	if err != nil {
		return false, fail("CreateContainerConfigError", err)
	}
	if tm, err := w.a.terminationMount(pod, c, attempt); err != nil {
		return false, fail("CreateContainerConfigError", fmt.Errorf("termination message file: %w", err))
	} else if tm != nil && !hasTarget(mounts, tm.Target) {
		mounts = append(mounts, *tm)
	}
	req, err := containerRequest(pod, cc, kind, attempt, sandboxID, env, mounts)
	if err == nil && sandboxID == "" && !pod.Spec.HostNetwork {
		// Flat mode: each container has its own resolv.conf.
		var d podDNS
		if d, _, err = w.a.dns.forPod(pod); err == nil {
			req.HostConfig.DNS, req.HostConfig.DNSSearch, req.HostConfig.DNSOptions = d.Nameservers, d.Searches, d.Options
		}
	}
	if err != nil {
		return false, fail("CreateContainerConfigError", err)
	}
	name := containerName(pod, c.Name, attempt)
	id, err := w.a.eng.Create(ctx, name, req)
	if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrAlreadyExists) {
		// A leftover of the same attempt (an agent stopped mid-way).
		_ = w.a.eng.Remove(ctx, name)
		id, err = w.a.eng.Create(ctx, name, req)
	}
	if err != nil {
		return false, fail("CreateContainerError", err)
	}
	w.a.rec.Eventf(ref, corev1.EventTypeNormal, "Created", "Created container %s", c.Name)
	if err := w.a.eng.Start(ctx, id); err != nil {
		return true, fail("RunContainerError", err)
	}
	delete(w.waiting, c.Name)
	w.a.rec.Eventf(ref, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	return true, w.postStart(ctx, pod, c, kind, id)
}

// ensureImage makes c's image present as its imagePullPolicy says and
// returns the image's USER.
func (w *podWorker) ensureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container, ref *corev1.ObjectReference) (string, error) {
	policy := c.ImagePullPolicy
	if policy == "" {
		policy = defaultPullPolicy(c.Image)
	}
	_, user, err := w.a.eng.Image(ctx, c.Image)
	present := err == nil
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ErrImageInspect", Message: err.Error()}
		return "", err
	}
	if present && policy != corev1.PullAlways {
		if w.waiting[c.Name] != nil && strings.HasPrefix(w.waiting[c.Name].Reason, "ErrImage") {
			delete(w.waiting, c.Name)
		}
		w.a.rec.Eventf(ref, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
		return user, nil
	}
	if !present && policy == corev1.PullNever {
		err := fmt.Errorf("Container image %q is not present with pull policy of Never", c.Image)
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: err.Error()}
		w.a.rec.Eventf(ref, corev1.EventTypeWarning, "ErrImageNeverPull", "%v", err)
		return "", err
	}
	if until, ok := w.pullUntil[c.Image]; ok && time.Now().Before(until) {
		prev := ""
		if wt := w.waiting[c.Name]; wt != nil {
			prev = wt.Message
			if wt.Reason == "ImagePullBackOff" {
				return "", errBackoff
			}
		}
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: fmt.Sprintf("Back-off pulling image %q: ErrImagePull: %s", c.Image, prev)}
		w.a.rec.Eventf(ref, corev1.EventTypeNormal, "BackOff", "Back-off pulling image %q", c.Image)
		return "", errBackoff
	}
	w.a.rec.Eventf(ref, corev1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
	t0 := time.Now()
	if err := w.a.eng.Pull(ctx, c.Image); err != nil {
		b := w.pull[c.Image]
		if b == nil {
			b = &backoff{delay: backoffInitial}
			w.pull[c.Image] = b
		} else if b.delay*2 <= backoffMax {
			b.delay *= 2
		}
		w.pullUntil[c.Image] = time.Now().Add(b.delay)
		w.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: err.Error()}
		w.a.rec.Eventf(ref, corev1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", c.Image, err)
		w.a.rec.Eventf(ref, corev1.EventTypeWarning, "Failed", "Error: ErrImagePull")
		return "", err
	}
	delete(w.pull, c.Image)
	delete(w.pullUntil, c.Image)
	w.a.rec.Eventf(ref, corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s", c.Image, time.Since(t0).Round(time.Millisecond))
	_, user, _ = w.a.eng.Image(ctx, c.Image)
	return user, nil
}

// defaultPullPolicy is the API's default: Always for :latest or untagged
// images, IfNotPresent otherwise.
func defaultPullPolicy(image string) corev1.PullPolicy {
	if strings.Contains(image, "@") {
		return corev1.PullIfNotPresent
	}
	i := strings.LastIndex(image, ":")
	if i < 0 || i < strings.LastIndex(image, "/") || image[i+1:] == "latest" {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

func (w *podWorker) startSandbox(ctx context.Context, pod *corev1.Pod, attempt int) (string, error) {
	name := containerName(pod, SandboxName, attempt)
	req, err := sandboxRequest(pod, attempt, w.a.dns)
	if err != nil {
		return "", err
	}
	id, err := w.a.eng.Create(ctx, name, req)
	if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrAlreadyExists) {
		_ = w.a.eng.Remove(ctx, name)
		id, err = w.a.eng.Create(ctx, name, req)
	}
	if err != nil {
		return "", err
	}
	if err := w.a.eng.Start(ctx, id); err != nil {
		_ = w.a.eng.Remove(ctx, id)
		return "", err
	}
	return id, nil
}

// stopAll stops running instances in parallel (grace seconds), with a
// Killing event each.
func (w *podWorker) stopAll(ctx context.Context, pod *corev1.Pod, insts []*instance, grace int) {
	var wg sync.WaitGroup
	for _, in := range insts {
		if !in.running() || in.kind == KindSandbox {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := grace
			if pod != nil {
				if c := findContainer(pod, in.name); c != nil {
					w.a.rec.Eventf(eventRef(pod, c, in.kind), corev1.EventTypeNormal, "Killing", "Stopping container %s", in.name)
					g = w.a.preStop(ctx, pod, c, in.kind, in.id, grace)
				}
			}
			if err := w.a.eng.Stop(ctx, in.id, g); err != nil {
				w.a.log.Warn("stopping container", "container", in.name, "err", err)
			}
		}()
	}
	wg.Wait()
}

// killPod stops the pod's containers within grace seconds (-1: the
// grace each container was created with) and removes them all.
func (w *podWorker) killPod(ctx context.Context, pod *corev1.Pod, insts []*instance, grace int) {
	if grace >= 0 {
		w.stopAll(ctx, pod, insts, grace)
	}
	var rs []containerRef
	for _, in := range insts {
		r := containerRef{id: in.id, running: in.running(), labels: map[string]string{LabelKind: in.kind}}
		if in.j.Config != nil {
			r.labels[LabelGrace] = in.j.Config.Labels[LabelGrace]
		}
		rs = append(rs, r)
	}
	removeAll(ctx, w.a.eng, rs, grace)
	w.podRemoved(w.uid)
}

// pruneOld keeps the newest two instances of each container (the current
// one and the previous for `kubectl logs --previous`).
func (w *podWorker) pruneOld(ctx context.Context, insts []*instance) {
	count := map[string]int{}
	for _, in := range insts {
		if in.kind == KindSandbox {
			continue
		}
		k := in.kind + "/" + in.name
		count[k]++
		if count[k] > 2 && !in.running() {
			if err := w.a.eng.Remove(ctx, in.id); err == nil {
				delete(w.inspected, in.id)
				delete(w.logMessages, in.id)
			}
		}
	}
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// containerRef is the object events about a container are recorded on.
func eventRef(pod *corev1.Pod, c *corev1.Container, kind string) *corev1.ObjectReference {
	field := "spec.containers{" + c.Name + "}"
	if kind == KindInit {
		field = "spec.initContainers{" + c.Name + "}"
	}
	return &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion, FieldPath: field}
}

func podGrace(pod *corev1.Pod) int64 {
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return corev1.DefaultTerminationGracePeriodSeconds
}

func podKey(pod *corev1.Pod, uid types.UID) string {
	if pod == nil {
		return string(uid)
	}
	return pod.Namespace + "/" + pod.Name
}

// ipOf returns the IP address of the newest instance in list.
func ipOf(list []*instance) string {
	if len(list) == 0 || list[0].j.NetworkSettings == nil {
		return ""
	}
	ns := list[0].j.NetworkSettings
	if ns.IPAddress != "" {
		return ns.IPAddress
	}
	names := make([]string, 0, len(ns.Networks))
	for n := range ns.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if e := ns.Networks[n]; e != nil && e.IPAddress != "" {
			return e.IPAddress
		}
	}
	return ""
}

// reportedStatus is the container's status as the API has it.
func reportedStatus(pod *corev1.Pod, name, kind string) *corev1.ContainerStatus {
	list := pod.Status.ContainerStatuses
	if kind == KindInit {
		list = pod.Status.InitContainerStatuses
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func hasTarget(ms []api.Mount, target string) bool {
	for _, m := range ms {
		if m.Target == target {
			return true
		}
	}
	return false
}

// isSidecar tells an init container that runs beside the pod's
// containers (restartPolicy Always on the init container).
func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// mainContainersStarted tells whether any of the pod's containers was
// created: the init phase is over.
func mainContainersStarted(pod *corev1.Pod, insts []*instance) bool {
	for i := range pod.Spec.Containers {
		if len(of(insts, pod.Spec.Containers[i].Name, KindContainer)) > 0 {
			return true
		}
	}
	return false
}
