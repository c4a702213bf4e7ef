package deployment

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// rolloutRolling advances a RollingUpdate one step: grow the new set
// within maxSurge, or shrink old sets within maxUnavailable, judged by the
// sets' availableReplicas (pods Ready for minReadySeconds).
func (c *Controller) rolloutRolling(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet) error {
	newRS, old, err := c.getAllReplicaSets(ctx, d, sets, true)
	if err != nil || newRS == nil {
		return err // nil newRS: the Deployment is gone
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)

	up, newRS, err := c.reconcileNewRS(ctx, d, all, newRS)
	if err != nil {
		return err
	}
	all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	if up {
		return c.syncRolloutStatus(ctx, d, all, newRS)
	}
	down, old, err := c.reconcileOldRSs(ctx, d, old, newRS)
	if err != nil {
		return err
	}
	all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	if down {
		return c.syncRolloutStatus(ctx, d, all, newRS)
	}
	if complete(d, &d.Status) {
		c.cleanup(ctx, d, old)
	}
	return c.syncRolloutStatus(ctx, d, all, newRS)
}

func (c *Controller) reconcileNewRS(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, *appsv1.ReplicaSet, error) {
	switch {
	case rsReplicas(newRS) == replicas(d):
		return false, newRS, nil
	case rsReplicas(newRS) > replicas(d):
		return c.scaleReplicaSet(ctx, newRS, replicas(d), d)
	}
	n, err := NewRSReplicas(d, all, newRS)
	if err != nil {
		return false, newRS, err
	}
	return c.scaleReplicaSet(ctx, newRS, n, d)
}

// OldScaleDown is the plan for old sets in one rolling step: first the
// unhealthy replicas of old sets (they add nothing to availability), then
// available old replicas while availability stays at or above
// spec.replicas-maxUnavailable. It returns the new size of each old set
// that changes.
func OldScaleDown(d *appsv1.Deployment, old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) map[string]int32 {
	sizes := map[string]int32{}
	active := activeSets(old)
	oldPods := totalSpecReplicas(active)
	if oldPods == 0 {
		return sizes
	}
	all := append(append([]*appsv1.ReplicaSet(nil), active...), newRS)
	allPods := totalSpecReplicas(all)
	minAvailable := replicas(d) - MaxUnavailable(d)
	newUnavailable := rsReplicas(newRS) - newRS.Status.AvailableReplicas
	budget := allPods - minAvailable - newUnavailable
	if budget <= 0 {
		return sizes
	}
	sorted := append([]*appsv1.ReplicaSet(nil), active...)
	byCreation(sorted)
	size := func(rs *appsv1.ReplicaSet) int32 {
		if n, ok := sizes[rs.Name]; ok {
			return n
		}
		return rsReplicas(rs)
	}
	// 1. Unhealthy old replicas.
	var cleaned int32
	for _, rs := range sorted {
		if cleaned >= budget {
			break
		}
		unhealthy := rsReplicas(rs) - rs.Status.AvailableReplicas
		if rsReplicas(rs) == 0 || unhealthy <= 0 {
			continue
		}
		n := min(budget-cleaned, unhealthy)
		sizes[rs.Name] = rsReplicas(rs) - n
		cleaned += n
	}
	// 2. Available old replicas, within maxUnavailable.
	available := totalAvailable(all)
	if available <= minAvailable {
		return sizes
	}
	total := available - minAvailable
	var done int32
	for _, rs := range sorted {
		if done >= total {
			break
		}
		if size(rs) == 0 {
			continue
		}
		n := min(size(rs), total-done)
		sizes[rs.Name] = size(rs) - n
		done += n
	}
	return sizes
}

func (c *Controller) reconcileOldRSs(ctx context.Context, d *appsv1.Deployment, old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, []*appsv1.ReplicaSet, error) {
	plan := OldScaleDown(d, old, newRS)
	scaled := false
	out := make([]*appsv1.ReplicaSet, len(old))
	for i, rs := range old {
		out[i] = rs
		n, ok := plan[rs.Name]
		if !ok || n == rsReplicas(rs) {
			continue
		}
		did, updated, err := c.scaleReplicaSet(ctx, rs, n, d)
		if err != nil {
			return scaled, out, err
		}
		out[i] = updated
		scaled = scaled || did
	}
	return scaled, out, nil
}

// rolloutRecreate scales every old set to zero, waits until none of their
// pods runs, then creates (or grows) the new set.
func (c *Controller) rolloutRecreate(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet) error {
	newRS, old, err := c.getAllReplicaSets(ctx, d, sets, false)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	scaled := false
	for i, rs := range old {
		if rsReplicas(rs) == 0 {
			continue
		}
		did, updated, err := c.scaleReplicaSet(ctx, rs, 0, d)
		if err != nil {
			return err
		}
		old[i] = updated
		scaled = scaled || did
	}
	if scaled {
		return c.syncRolloutStatus(ctx, d, append(append([]*appsv1.ReplicaSet(nil), old...), newRS), newRS)
	}
	pods, err := c.podsByReplicaSet(d, nonNil(all))
	if err != nil {
		return err
	}
	if oldPodsRunning(newRS, old, pods) {
		return c.syncRolloutStatus(ctx, d, all, newRS)
	}
	if newRS == nil {
		if newRS, old, err = c.getAllReplicaSets(ctx, d, sets, true); err != nil || newRS == nil {
			return err
		}
		all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	}
	_, newRS, err = c.scaleReplicaSet(ctx, newRS, replicas(d), d)
	if err != nil {
		return err
	}
	all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	if complete(d, &d.Status) {
		c.cleanup(ctx, d, old)
	}
	return c.syncRolloutStatus(ctx, d, all, newRS)
}

// oldPodsRunning: an old set still reports replicas, or one of its pods
// has not finished (terminating pods count: Recreate promises that old
// and new never run together).
func oldPodsRunning(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, pods map[types.UID][]*corev1.Pod) bool {
	if totalStatusReplicas(old) > 0 {
		return true
	}
	for uid, ps := range pods {
		if newRS != nil && uid == newRS.UID {
			continue
		}
		for _, p := range ps {
			if p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
				return true
			}
		}
	}
	return false
}
