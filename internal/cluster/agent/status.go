package agent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// mt is a time at the API's precision (seconds), so computed statuses
// compare equal to what was stored.
func mt(t time.Time) metav1.Time { return metav1.NewTime(t.Truncate(time.Second)) }

// terminated reports an exited instance, with the message the container
// wrote to its terminationMessagePath.
func (w *podWorker) terminated(pod *corev1.Pod, c *corev1.Container, in *instance) *corev1.ContainerStateTerminated {
	t := terminated(in)
	if t.Message == "" {
		t.Message = w.a.terminationMessage(pod, c.Name, in.attempt)
	}
	if t.Message == "" && t.ExitCode != 0 && c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		if m, ok := w.logMessages[in.id]; ok {
			t.Message = m
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			b, err := w.a.eng.LogTail(ctx, in.id, 80)
			cancel()
			if err == nil {
				if len(b) > maxTerminationMessage {
					b = b[len(b)-maxTerminationMessage:]
				}
				t.Message = string(b)
				w.logMessages[in.id] = t.Message
			}
		}
	}
	return t
}

func terminated(in *instance) *corev1.ContainerStateTerminated {
	st := in.j.State
	t := &corev1.ContainerStateTerminated{ExitCode: int32(st.ExitCode), StartedAt: mt(st.StartedAt), FinishedAt: mt(st.FinishedAt), ContainerID: "berth://" + in.id, Message: st.Error}
	switch {
	case st.OOMKilled:
		t.Reason = "OOMKilled"
	case st.Error != "" && st.StartedAt.IsZero():
		t.Reason = "StartError"
		if t.ExitCode == 0 {
			t.ExitCode = 128
		}
	case st.ExitCode == 0:
		t.Reason = "Completed"
	default:
		t.Reason = "Error"
	}
	if st.StartedAt.IsZero() {
		t.StartedAt = metav1.Time{}
	}
	return t
}

// containerStatus reports one container from its newest instances and the
// worker's record of why it is not running.
func (w *podWorker) containerStatus(pod *corev1.Pod, c *corev1.Container, list []*instance, pendingState string) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	f := false
	cs.Started = &f
	if len(list) > 0 {
		cur := list[0]
		cs.RestartCount = int32(cur.attempt)
		cs.ContainerID = "berth://" + cur.id
		cs.ImageID = cur.j.Image
		switch {
		case cur.running():
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: mt(cur.j.State.StartedAt)}
			ready, started := w.probeState(c, cur.id)
			cs.Started = &started
			cs.Ready = ready
			if len(list) > 1 && list[1].exited() {
				cs.LastTerminationState.Terminated = w.terminated(pod, c, list[1])
			}
		case cur.exited():
			cs.State.Terminated = w.terminated(pod, c, cur)
			if len(list) > 1 && list[1].exited() {
				cs.LastTerminationState.Terminated = w.terminated(pod, c, list[1])
			}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
	} else {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: pendingState}
	}
	if wt := w.waiting[c.Name]; wt != nil && cs.State.Running == nil {
		if cs.State.Terminated != nil {
			cs.LastTerminationState = corev1.ContainerState{Terminated: cs.State.Terminated}
		}
		cs.State = corev1.ContainerState{Waiting: wt.DeepCopy()}
	}
	return cs
}

// computeStatus derives the pod's status from its containers, as the
// kubelet: phase, conditions, container statuses, IPs, start time, QoS.
func (w *podWorker) computeStatus(pod *corev1.Pod, insts []*instance) corev1.PodStatus {
	old := pod.Status
	st := corev1.PodStatus{
		Phase:             corev1.PodPending,
		HostIP:            w.a.hostIP,
		HostIPs:           []corev1.HostIP{{IP: w.a.hostIP}},
		StartTime:         old.StartTime,
		QOSClass:          qosClass(pod),
		NominatedNodeName: old.NominatedNodeName,
	}
	if st.StartTime == nil {
		t := mt(time.Now())
		st.StartTime = &t
	}
	ip := w.sandboxIP
	if pod.Spec.HostNetwork {
		ip = w.a.hostIP
	}
	if ip != "" {
		st.PodIP = ip
		st.PodIPs = []corev1.PodIP{{IP: ip}}
	}

	initDone, initFailed := true, false
	mainStarted := mainContainersStarted(pod, insts)
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		list := of(insts, c.Name, KindInit)
		cs := w.containerStatus(pod, c, list, "PodInitializing")
		if isSidecar(c) {
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			if !mainStarted && (cs.State.Running == nil || cs.Started == nil || !*cs.Started) {
				initDone = false
			}
			continue
		}
		cs.Ready = cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
			continue
		}
		initDone = false
		if cs.State.Terminated != nil && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			initFailed = true
		}
	}
	pending := "PodInitializing"
	if initDone {
		pending = "ContainerCreating"
	}
	running, waiting, stopped, succeeded := 0, 0, 0, 0
	allReady := len(pod.Spec.Containers) > 0
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cs := w.containerStatus(pod, c, of(insts, c.Name, KindContainer), pending)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		allReady = allReady && cs.Ready
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			stopped++
		default:
			waiting++
		}
	}
	switch {
	case initFailed:
		st.Phase = corev1.PodFailed
	case !initDone, waiting > 0:
		st.Phase = corev1.PodPending
	case running > 0:
		st.Phase = corev1.PodRunning
	case stopped > 0:
		switch {
		case pod.Spec.RestartPolicy == corev1.RestartPolicyAlways:
			st.Phase = corev1.PodRunning
		case stopped == succeeded:
			st.Phase = corev1.PodSucceeded
		case pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
			st.Phase = corev1.PodFailed
		default:
			st.Phase = corev1.PodRunning
		}
	}
	if w.failReason != "" {
		st.Phase, st.Reason, st.Message = corev1.PodFailed, w.failReason, w.failMessage
	}
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		for i := range st.ContainerStatuses {
			st.ContainerStatuses[i].Ready = false
		}
		allReady = false
	}

	cond := func(t corev1.PodConditionType, ok bool, reason string) {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
			reason = ""
		}
		c := corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: mt(time.Now())}
		for _, o := range old.Conditions {
			if o.Type == t && o.Status == s {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	cond(corev1.PodInitialized, initDone || terminal && !initFailed, "ContainersNotInitialized")
	notReady := "ContainersNotReady"
	if terminal {
		notReady = "PodCompleted"
	}
	cond(corev1.ContainersReady, allReady, notReady)
	ready := allReady
	for _, g := range pod.Spec.ReadinessGates {
		found := false
		for _, o := range old.Conditions {
			if o.Type == g.ConditionType && o.Status == corev1.ConditionTrue {
				found = true
			}
		}
		ready = ready && found
	}
	cond(corev1.PodReady, ready, notReady)
	scheduled := false
	for _, o := range old.Conditions {
		switch o.Type {
		case corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady:
		default:
			st.Conditions = append(st.Conditions, o) // PodScheduled and others' conditions
			scheduled = scheduled || o.Type == corev1.PodScheduled
		}
	}
	if !scheduled {
		cond(corev1.PodScheduled, true, "")
	}
	return st
}

// pushStatus writes the pod's status when it changed, retrying on
// conflicts with a fresh copy (the agent owns status only).
func (w *podWorker) pushStatus(ctx context.Context, pod *corev1.Pod, insts []*instance) {
	st := w.computeStatus(pod, insts)
	if equality.Semantic.DeepEqual(st, pod.Status) {
		return
	}
	// Our last write has not reached the informer yet.
	if w.lastPush != nil && pod.ResourceVersion == w.pushedFrom && equality.Semantic.DeepEqual(st, *w.lastPush) {
		return
	}
	cur := pod
	for attempt := 0; attempt < 3; attempt++ {
		p := cur.DeepCopy()
		p.Status = st
		_, err := w.a.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if err == nil {
			w.lastPush, w.pushedFrom = &st, pod.ResourceVersion
			return
		}
		if !apierrors.IsConflict(err) {
			if !apierrors.IsNotFound(err) && ctx.Err() == nil {
				w.a.log.Warn("updating pod status", "pod", podKey(pod, pod.UID), "err", err)
			}
			return
		}
		fresh, err := w.a.cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || fresh.UID != pod.UID {
			return
		}
		cur = fresh
	}
}

// qosClass is the pod's quality of service class, from its requests and
// limits.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	any, guaranteed := false, true
	for _, c := range all {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq || hasLim {
				any = true
			}
			if !hasLim || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
