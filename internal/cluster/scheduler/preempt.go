package scheduler

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// PodPriority is spec.priority, 0 when unset.
func PodPriority(p *corev1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

// What removing pods cannot fix: a node rejected for one of these is no
// candidate for preemption.
const codesPreemptionCannotFix = rUnschedulable | rNotReady | rNodeName | rTaint | rNodeAffinity | rSpreadLabel | rPodAffinity | rVolumeUnresolvable | rVolumeConflict

// Preempt looks for a node where pod would fit if some placed pods of lower
// priority were removed, as kube-scheduler's default preemption does: on
// each candidate node all lower-priority pods are set aside, then given
// back from the most important down while the pod still fits; what cannot
// be given back are the victims. The node chosen has the least important
// most-important victim, then the fewest victims. It returns "" when no
// node would do (or the pod's preemptionPolicy is Never). The view is left
// as it was.
func (c *Cluster) Preempt(pod *corev1.Pod) (node string, victims []*corev1.Pod) {
	return c.PreemptWith(pod, nil)
}

// PreemptWith is Preempt for a pod whose claims constrain its node.
func (c *Cluster) PreemptWith(pod *corev1.Pod, v *VolumeConstraints) (node string, victims []*corev1.Pod) {
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == corev1.PreemptNever {
		return "", nil
	}
	c.buildOrder()
	st, err := c.prepare(pod, v)
	if err != nil {
		return "", nil
	}
	prio := PodPriority(pod)
	bestPrio := int32(0)
	for _, idx := range c.order {
		ni := c.nodes[idx]
		if code := st.filter(c, ni); code == 0 || code&codesPreemptionCannotFix != 0 {
			continue // fits already (nothing to preempt) or cannot be helped
		}
		var lower []*podInfo
		for _, pi := range ni.pods {
			if PodPriority(pi.pod) < prio && !pi.terminating {
				lower = append(lower, pi)
			}
		}
		if len(lower) == 0 {
			continue
		}
		vs := c.victimsOn(pod, v, ni, lower)
		if vs == nil {
			continue
		}
		top := PodPriority(vs[0])
		if node == "" || top < bestPrio || top == bestPrio && len(vs) < len(victims) {
			node, victims, bestPrio = ni.name, vs, top
		}
	}
	return node, victims
}

// victimsOn is the smallest set (by the reprieve rule) of lower whose
// removal lets pod onto ni, most important first; nil if removing them all
// is not enough. The view is restored before it returns.
func (c *Cluster) victimsOn(pod *corev1.Pod, v *VolumeConstraints, ni *nodeInfo, lower []*podInfo) []*corev1.Pod {
	// Most important first, older first among equals, as reprieve order.
	sort.Slice(lower, func(i, j int) bool {
		pi, pj := PodPriority(lower[i].pod), PodPriority(lower[j].pod)
		if pi != pj {
			return pi > pj
		}
		return lower[i].pod.CreationTimestamp.Before(&lower[j].pod.CreationTimestamp)
	})
	removed := make([]*corev1.Pod, 0, len(lower))
	for _, pi := range lower {
		removed = append(removed, pi.pod)
		c.removePod(pi)
	}
	defer func() {
		for _, p := range removed {
			c.SetPod(p)
		}
	}()
	fits := func() bool {
		st, err := c.prepare(pod, v)
		return err == nil && st.filter(c, ni) == 0
	}
	if !fits() {
		return nil
	}
	var victims []*corev1.Pod
	for _, p := range removed {
		c.SetPod(p)
		if !fits() {
			c.RemovePod(p)
			victims = append(victims, p)
		}
	}
	// The deferred restore re-adds every removed pod; those given back
	// are added again, which SetPod treats as an update.
	return victims
}
