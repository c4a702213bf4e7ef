package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth/berth/internal/cluster/agent/envvars"
	"github.com/berth/berth/internal/cluster/agent/lifecycle"
	"github.com/berth/berth/internal/cluster/agent/prober"
	"github.com/berth/berth/internal/engine/api"
)

// This file wires the pod-input packages (envvars, volumes, prober,
// lifecycle) into the pod worker.

const volumeRefreshEvery = 10 * time.Second

// setupVolumes materializes the pod's volumes once, then refreshes their
// content (configMap, secret, downwardAPI) every volumeRefreshEvery.
func (w *podWorker) setupVolumes(ctx context.Context, pod *corev1.Pod) error {
	if len(pod.Spec.Volumes) == 0 || w.a.vols == nil {
		return nil
	}
	if w.vols == nil {
		v, err := w.a.vols.Setup(ctx, pod, w.podIP(pod), w.a.hostIP)
		if err != nil {
			return err
		}
		w.vols, w.volsAt = v, time.Now()
		return nil
	}
	if time.Since(w.volsAt) < volumeRefreshEvery {
		return nil
	}
	w.volsAt = time.Now()
	if over, err := w.a.vols.OverSizeLimit(pod); err == nil && len(over) > 0 {
		w.failReason, w.failMessage = "Evicted", strings.Join(over, "")
	}
	return w.a.vols.Refresh(ctx, pod, w.podIP(pod), w.a.hostIP)
}

// failPod stops a pod the agent gives up on, as the kubelet: one whose
// emptyDir outgrew its sizeLimit (reason Evicted, as the eviction
// manager) or that outlived spec.activeDeadlineSeconds (reason
// DeadlineExceeded). Event with the reason, containers stopped, phase
// Failed with reason and message.
func (w *podWorker) failPod(ctx context.Context, pod *corev1.Pod, insts []*instance) {
	w.a.rec.Eventf(pod, corev1.EventTypeWarning, w.failReason, "%s", w.failMessage)
	w.a.log.Info("failing pod", "pod", podKey(pod, pod.UID), "reason", w.failReason, "message", w.failMessage)
	w.stopProbes()
	w.stopAll(ctx, pod, insts, int(podGrace(pod)))
}

func (w *podWorker) podIP(pod *corev1.Pod) string {
	if pod.Spec.HostNetwork {
		return w.a.hostIP
	}
	return w.sandboxIP
}

// containerEnv resolves a container's environment, its $(VAR)-expanded
// command and args, and its volume mounts. An error wrapping
// envvars.ErrConfig is the user's to fix (CreateContainerConfigError).
func (w *podWorker) containerEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (*corev1.Container, []string, []api.Mount, error) {
	var alloc corev1.ResourceList
	if w.a.vols != nil {
		alloc = w.a.vols.Allocatable
	}
	env, err := envvars.Resolve(ctx, w.a.envSrc, pod, c, w.podIP(pod), w.a.hostIP, alloc)
	if err != nil {
		return nil, nil, nil, err
	}
	cc := c.DeepCopy()
	cc.Command, cc.Args = envvars.ExpandCommand(c.Command, c.Args, env)
	if len(c.VolumeMounts) == 0 {
		return cc, env, nil, nil
	}
	if w.vols == nil {
		return nil, nil, nil, errors.New("volumes of the pod are not set up yet")
	}
	ms, err := w.vols.MountsWithEnv(c, env)
	if err != nil {
		return nil, nil, nil, err
	}
	out := make([]api.Mount, 0, len(ms))
	for _, m := range ms {
		am := api.Mount{Type: "bind", Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
		if m.Propagation != "" {
			am.BindOptions = &api.BindOptions{Propagation: m.Propagation}
		}
		out = append(out, am)
	}
	return cc, env, out, nil
}

func (a *Agent) execIn(id string) prober.ExecFunc {
	return func(ctx context.Context, cmd []string) (int, []byte, error) { return a.eng.Exec(ctx, id, cmd) }
}

// postStart runs the container's postStart hook; on failure it records
// the event and stops the container, which then restarts as its restart
// policy says.
func (w *podWorker) postStart(ctx context.Context, pod *corev1.Pod, c *corev1.Container, kind, id string) error {
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	msg, err := lifecycle.Run(hctx, c.Lifecycle.PostStart, c, w.podIP(pod), w.a.execIn(id))
	if err == nil {
		return nil
	}
	ref := eventRef(pod, c, kind)
	w.a.rec.Eventf(ref, corev1.EventTypeWarning, lifecycle.FailedPostStartHook, "%s", firstNonEmpty(msg, err.Error()))
	w.a.rec.Eventf(ref, corev1.EventTypeNormal, "Killing", "FailedPostStartHook")
	_ = w.a.eng.Stop(ctx, id, int(podGrace(pod)))
	return err
}

// preStop runs the container's preStop hook within grace seconds and
// returns the seconds left for the stop signal (at least 2, as the
// kubelet grants).
func (a *Agent) preStop(ctx context.Context, pod *corev1.Pod, c *corev1.Container, kind, id string, grace int) int {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || grace <= 0 {
		return grace
	}
	t0 := time.Now()
	hctx, cancel := context.WithTimeout(ctx, time.Duration(grace)*time.Second)
	defer cancel()
	ip := ""
	if pod.Status.PodIP != "" {
		ip = pod.Status.PodIP
	}
	if msg, err := lifecycle.Run(hctx, c.Lifecycle.PreStop, c, ip, a.execIn(id)); err != nil {
		a.rec.Eventf(eventRef(pod, c, kind), corev1.EventTypeWarning, lifecycle.FailedPreStopHook, "%s", firstNonEmpty(msg, err.Error()))
	}
	left := grace - int(time.Since(t0).Seconds())
	if left < 2 {
		left = 2
	}
	return left
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// probeSet is the probe workers of one running container instance.
type probeSet struct {
	cancel  context.CancelFunc
	ready   bool // readiness (true without a readiness probe, once started)
	started bool // startup probe passed (true without one)
}

// syncProbes starts probe workers for running containers that have
// probes and stops those of instances no longer running.
func (w *podWorker) syncProbes(ctx context.Context, pod *corev1.Pod, insts []*instance) {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	live := map[string]bool{}
	type probed struct {
		c    *corev1.Container
		kind string
	}
	var cs []probed
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			cs = append(cs, probed{&pod.Spec.InitContainers[i], KindInit})
		}
	}
	for i := range pod.Spec.Containers {
		cs = append(cs, probed{&pod.Spec.Containers[i], KindContainer})
	}
	for _, pc := range cs {
		c := pc.c
		list := of(insts, c.Name, pc.kind)
		if len(list) == 0 || !list[0].running() {
			continue
		}
		in := list[0]
		live[in.id] = true
		if w.probes[in.id] != nil {
			continue
		}
		ps := &probeSet{ready: c.ReadinessProbe == nil, started: c.StartupProbe == nil}
		pctx, cancel := context.WithCancel(ctx)
		ps.cancel = cancel
		w.probes[in.id] = ps
		w.startProbes(pctx, pod, c, pc.kind, in, ps)
	}
	for id, ps := range w.probes {
		if !live[id] {
			ps.cancel()
			delete(w.probes, id)
		}
	}
}

func (w *podWorker) startProbes(ctx context.Context, pod *corev1.Pod, c *corev1.Container, kind string, in *instance, ps *probeSet) {
	ref := eventRef(pod, c, kind)
	exec := w.a.execIn(in.id)
	ip := w.podIP(pod)
	var gate chan struct{}
	if c.StartupProbe != nil {
		gate = make(chan struct{})
	}
	run := func(kind prober.Kind, p *corev1.Probe) {
		wk := prober.NewWorker(kind, p, c, ip, exec, func(r prober.Result, msg string) {
			w.probeResult(ctx, pod, c, in.id, kind, r, msg, gate)
		})
		wk.StartedAt = in.j.State.StartedAt
		if kind != prober.Startup && gate != nil {
			wk.Gate = gate
		}
		wk.OnAttempt = func(r prober.Result, msg string) {
			if r == prober.Failure {
				w.a.rec.Eventf(ref, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", kind, msg)
			} else if r == prober.Unknown {
				w.a.rec.Eventf(ref, corev1.EventTypeWarning, "Unhealthy", "%s probe errored: %s", kind, msg)
			}
		}
		go wk.Run(ctx)
	}
	if c.StartupProbe != nil {
		run(prober.Startup, c.StartupProbe)
	}
	if c.LivenessProbe != nil {
		run(prober.Liveness, c.LivenessProbe)
	}
	if c.ReadinessProbe != nil {
		run(prober.Readiness, c.ReadinessProbe)
	}
}

// probeResult records a probe's thresholded result: readiness feeds the
// Ready condition; a failed liveness or startup probe restarts the
// container.
func (w *podWorker) probeResult(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, kind prober.Kind, r prober.Result, msg string, gate chan struct{}) {
	w.pmu.Lock()
	ps := w.probes[id]
	if ps == nil {
		w.pmu.Unlock()
		return
	}
	switch kind {
	case prober.Readiness:
		ps.ready = r == prober.Success
	case prober.Startup:
		if r == prober.Success && !ps.started {
			ps.started = true
			if gate != nil {
				close(gate)
			}
		}
	}
	w.pmu.Unlock()
	if (kind == prober.Liveness || kind == prober.Startup) && r == prober.Failure {
		w.a.rec.Eventf(eventRef(pod, c, KindContainer), corev1.EventTypeNormal, "Killing", "Container %s failed %s probe, will be restarted", c.Name, map[prober.Kind]string{prober.Liveness: "liveness", prober.Startup: "startup"}[kind])
		grace := int(podGrace(pod))
		if p := c.LivenessProbe; kind == prober.Liveness && p.TerminationGracePeriodSeconds != nil {
			grace = int(*p.TerminationGracePeriodSeconds)
		}
		_ = w.a.eng.Stop(ctx, id, grace)
	}
	w.trigger()
}

// probeState tells whether a running container is ready and started.
func (w *podWorker) probeState(c *corev1.Container, id string) (ready, started bool) {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	ps := w.probes[id]
	if ps == nil {
		return c.ReadinessProbe == nil && c.StartupProbe == nil, c.StartupProbe == nil
	}
	return ps.ready && ps.started, ps.started
}

func (w *podWorker) stopProbes() {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	for id, ps := range w.probes {
		ps.cancel()
		delete(w.probes, id)
	}
}

// podRemoved releases what the agent holds for a removed pod: probe
// workers and volume directories.
func (w *podWorker) podRemoved(uid types.UID) {
	w.stopProbes()
	if w.a.vols != nil {
		if err := w.a.vols.Teardown(string(uid)); err != nil {
			w.a.log.Warn("removing the pod's volumes", "uid", uid, "err", err)
		}
		w.a.kickReaper() // it may have been the last user of a deleted volume
	}
}

// maxTerminationMessage is what the kubelet keeps of a termination message.
const maxTerminationMessage = 4096

// terminationLog is the host file bound at a container instance's
// terminationMessagePath; it lives in the pod's directory, so it goes with
// the pod's volumes.
func (a *Agent) terminationLog(pod *corev1.Pod, container string, attempt int) string {
	if a.vols == nil {
		return ""
	}
	return filepath.Join(a.vols.Root, string(pod.UID), "containers", container, strconv.Itoa(attempt)+".termination-log")
}

// terminationMount creates the instance's termination log and returns the
// bind mount for it, or nil when the container has no message path.
func (a *Agent) terminationMount(pod *corev1.Pod, c *corev1.Container, attempt int) (*api.Mount, error) {
	target := c.TerminationMessagePath
	if target == "" {
		target = corev1.TerminationMessagePathDefault
	}
	host := a.terminationLog(pod, c.Name, attempt)
	if host == "" || !filepath.IsAbs(target) {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(host, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o666)
	if err != nil {
		return nil, err
	}
	f.Close()
	_ = os.Chmod(host, 0o666) // any container user may write it
	return &api.Mount{Type: "bind", Source: host, Target: target}, nil
}

// terminationMessage reads what the instance wrote to its termination log.
func (a *Agent) terminationMessage(pod *corev1.Pod, container string, attempt int) string {
	host := a.terminationLog(pod, container, attempt)
	if host == "" {
		return ""
	}
	f, err := os.Open(host)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxTerminationMessage))
	return string(b)
}
