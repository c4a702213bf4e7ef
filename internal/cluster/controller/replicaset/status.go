package replicaset

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// calculateStatus derives rs's status from the active pods it owns.
// manageErr, when creates or deletes failed, becomes the ReplicaFailure
// condition (FailedCreate/FailedDelete with the API's message, e.g. a
// quota or validation error), which the Deployment controller copies.
func calculateStatus(rs *appsv1.ReplicaSet, owned []*corev1.Pod, manageErr error, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	tmpl := labels.Set(rs.Spec.Template.Labels).AsSelectorPreValidated()
	var full, ready, avail int32
	for _, p := range owned {
		if tmpl.Matches(labels.Set(p.Labels)) {
			full++
		}
		if Ready(p) {
			ready++
			if Available(p, rs.Spec.MinReadySeconds, now) {
				avail++
			}
		}
	}
	st.Replicas = int32(len(owned))
	st.FullyLabeledReplicas = full
	st.ReadyReplicas = ready
	st.AvailableReplicas = avail
	st.ObservedGeneration = rs.Generation

	cond := -1
	for i, c := range st.Conditions {
		if c.Type == appsv1.ReplicaSetReplicaFailure {
			cond = i
		}
	}
	switch {
	case manageErr != nil && cond < 0:
		reason := "FailedCreate"
		if int(st.Replicas) > int(ptrOr(rs.Spec.Replicas, 1)) {
			reason = "FailedDelete"
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now), Reason: reason, Message: manageErr.Error(),
		})
	case manageErr == nil && cond >= 0:
		st.Conditions = append(st.Conditions[:cond:cond], st.Conditions[cond+1:]...)
		if len(st.Conditions) == 0 {
			st.Conditions = nil
		}
	}
	return st
}
