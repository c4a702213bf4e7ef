package replicaset

import (
	"math"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DeletionCostAnnotation lets users rank pods for scale-down (lower goes
// first), as in Kubernetes.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// Active reports whether a pod counts toward a ReplicaSet's replicas: it is
// neither being deleted nor finished. A pod whose node was deleted or lost
// gets a deletionTimestamp, so its replacement starts at once rather than
// after the grace period.
func Active(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// readyCondition returns the pod's Ready condition, or nil.
func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// Ready reports the pod's Ready condition.
func Ready(p *corev1.Pod) bool {
	c := readyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

// Available reports whether the pod has been Ready for at least
// minReadySeconds at now, judged by the Ready condition's
// lastTransitionTime (which the node agent must set when readiness flips).
func Available(p *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	c := readyCondition(p)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	if c.LastTransitionTime.IsZero() {
		return false
	}
	return !c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second).After(now)
}

// availableAt returns when a Ready pod becomes available (zero if it is not
// Ready or has no transition time).
func availableAt(p *corev1.Pod, minReadySeconds int32) time.Time {
	c := readyCondition(p)
	if c == nil || c.Status != corev1.ConditionTrue || c.LastTransitionTime.IsZero() {
		return time.Time{}
	}
	return c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second)
}

// rankedPod is a pod with the number of its relatives (pods of the same
// owner family) on the same node.
type rankedPod struct {
	pod       *corev1.Pod
	colocated int
}

// SortForDeletion orders pods so that the ones to delete first come first,
// in Kubernetes' preference order: unscheduled before scheduled; Pending,
// then Unknown, then Running; not ready before ready; lower
// pod-deletion-cost first; pods doubled up on a node with relatives first;
// recently ready before long ready; more restarts first; newer before
// older. Ready time and age compare on a logarithmic scale (as Kubernetes'
// LogarithmicScaleDown does), so that pods of similar age are not always
// removed in creation order. related are all pods of the same owner
// family (for the doubled-up rank); pods must be a subset of related or
// related may be nil (then pods are their own family).
func SortForDeletion(pods, related []*corev1.Pod, now time.Time) {
	if related == nil {
		related = pods
	}
	perNode := map[string]int{}
	for _, p := range related {
		if p.Spec.NodeName != "" && Active(p) {
			perNode[p.Spec.NodeName]++
		}
	}
	ranked := make([]rankedPod, len(pods))
	for i, p := range pods {
		r := 0
		if p.Spec.NodeName != "" {
			r = perNode[p.Spec.NodeName]
		}
		ranked[i] = rankedPod{pod: p, colocated: r}
	}
	sort.SliceStable(ranked, func(i, j int) bool { return deleteBefore(ranked[i], ranked[j], now) })
	for i := range ranked {
		pods[i] = ranked[i].pod
	}
}

var phaseRank = map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}

func deleteBefore(a, b rankedPod, now time.Time) bool {
	pa, pb := a.pod, b.pod
	// 1. Unscheduled first.
	if (pa.Spec.NodeName == "") != (pb.Spec.NodeName == "") {
		return pa.Spec.NodeName == ""
	}
	// 2. Pending < Unknown < Running.
	if ra, rb := phaseRank[pa.Status.Phase], phaseRank[pb.Status.Phase]; ra != rb {
		return ra < rb
	}
	// 3. Not ready first.
	if Ready(pa) != Ready(pb) {
		return !Ready(pa)
	}
	// 4. Lower deletion cost first.
	if ca, cb := deletionCost(pa), deletionCost(pb); ca != cb {
		return ca < cb
	}
	// 5. Doubled up with relatives first.
	if a.colocated != b.colocated {
		return a.colocated > b.colocated
	}
	// 6. Both ready: ready for less time first.
	if Ready(pa) && Ready(pb) {
		ta, tb := readySince(pa), readySince(pb)
		if !ta.Equal(tb) {
			if ta.IsZero() || tb.IsZero() {
				return ta.IsZero() // unknown ready time counts as newest
			}
			if ba, bb := logBucket(now.Sub(ta)), logBucket(now.Sub(tb)); ba != bb {
				return ba < bb
			}
		}
	}
	// 7. More restarts first.
	if ra, rb := maxRestarts(pa), maxRestarts(pb); ra != rb {
		return ra > rb
	}
	// 8. Newer first.
	ta, tb := pa.CreationTimestamp.Time, pb.CreationTimestamp.Time
	if !ta.Equal(tb) {
		if ta.IsZero() || tb.IsZero() {
			return ta.IsZero()
		}
		if ba, bb := logBucket(now.Sub(ta)), logBucket(now.Sub(tb)); ba != bb {
			return ba < bb
		}
	}
	return false
}

func deletionCost(p *corev1.Pod) int64 {
	v, ok := p.Annotations[DeletionCostAnnotation]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return n
}

func readySince(p *corev1.Pod) time.Time {
	if c := readyCondition(p); c != nil {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}

func maxRestarts(p *corev1.Pod) int32 {
	var m int32
	for _, s := range p.Status.ContainerStatuses {
		m = max(m, s.RestartCount)
	}
	return m
}

// logBucket maps an age to floor(log2(seconds)), so ages within a factor
// of two compare equal.
func logBucket(d time.Duration) int {
	s := d.Seconds()
	if s < 1 {
		return 0
	}
	return int(math.Log2(s)) + 1
}
