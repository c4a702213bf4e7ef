package statefulset

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// updateStatus writes the counts kubectl reads (`get`, `rollout status`)
// and the revisions. Once every pod runs the update revision and is
// ready, a RollingUpdate is complete: the update revision becomes the
// current one. It returns how soon a pod becomes available
// (minReadySeconds), 0 if none is pending.
func (c *Controller) updateStatus(ctx context.Context, cached *appsv1.StatefulSet, v *view, revs *revisions, now time.Time) time.Duration {
	set := cached.DeepCopy()
	minReady := time.Duration(set.Spec.MinReadySeconds) * time.Second
	s := appsv1.StatefulSetStatus{
		ObservedGeneration: set.Generation,
		CurrentRevision:    revs.current.Name,
		UpdateRevision:     revs.update.Name,
		CollisionCount:     &revs.collisionCount,
		Conditions:         set.Status.Conditions,
	}
	var after time.Duration
	for _, p := range v.pods() {
		if terminating(p) {
			continue
		}
		s.Replicas++
		if runningAndReady(p) {
			s.ReadyReplicas++
		}
		if ok, wait := available(p, minReady, now); ok {
			s.AvailableReplicas++
		} else if wait > 0 && (after == 0 || wait < after) {
			after = wait
		}
		if revisionOf(p) == revs.current.Name {
			s.CurrentReplicas++
		}
		if revisionOf(p) == revs.update.Name {
			s.UpdatedReplicas++
		}
	}
	if set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType &&
		s.UpdatedReplicas == s.Replicas && s.ReadyReplicas == s.Replicas && int(s.Replicas) == len(v.slots) {
		s.CurrentRevision, s.CurrentReplicas = s.UpdateRevision, s.UpdatedReplicas
	}
	if revs.collisionCount == 0 && set.Status.CollisionCount == nil {
		s.CollisionCount = nil
	}
	set.Status = s
	if !apiequality.Semantic.DeepEqual(cached.Status, set.Status) {
		if _, err := c.client.AppsV1().StatefulSets(set.Namespace).UpdateStatus(ctx, set, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
			c.queue.AddRateLimited(set.Namespace + "/" + set.Name)
		}
	}
	return after
}
