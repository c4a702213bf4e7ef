package statefulset

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var kindPod = corev1.SchemeGroupVersion.WithKind("Pod")

// claimName is Kubernetes' <template>-<set>-<ordinal>.
func claimName(set *appsv1.StatefulSet, template string, ord int) string {
	return fmt.Sprintf("%s-%s-%d", template, set.Name, ord)
}

// claimsFor is ordinal ord's claims, made from the templates: the
// template's labels plus the set's selector labels, in the set's
// namespace.
func claimsFor(set *appsv1.StatefulSet, ord int) []*corev1.PersistentVolumeClaim {
	var out []*corev1.PersistentVolumeClaim
	for i := range set.Spec.VolumeClaimTemplates {
		t := &set.Spec.VolumeClaimTemplates[i]
		c := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: claimName(set, t.Name, ord), Namespace: set.Namespace,
				Labels: map[string]string{}, Annotations: t.Annotations},
			Spec: *t.Spec.DeepCopy(),
		}
		for k, v := range t.Labels {
			c.Labels[k] = v
		}
		if set.Spec.Selector != nil {
			for k, v := range set.Spec.Selector.MatchLabels {
				c.Labels[k] = v
			}
		}
		out = append(out, c)
	}
	return out
}

func retention(set *appsv1.StatefulSet) (whenDeleted, whenScaled appsv1.PersistentVolumeClaimRetentionPolicyType) {
	whenDeleted, whenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	if p := set.Spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		if p.WhenDeleted != "" {
			whenDeleted = p.WhenDeleted
		}
		if p.WhenScaled != "" {
			whenScaled = p.WhenScaled
		}
	}
	return whenDeleted, whenScaled
}

// wantSetOwner says whether a claim should be owned by the set (deleted
// with it): whenDeleted Delete, except for the claims of a condemned pod
// under whenScaled Delete, which only their pod owns so that they go
// with it (the garbage collector deletes a dependent only once all its
// owners are gone).
func wantSetOwner(set *appsv1.StatefulSet, condemned bool) bool {
	d, s := retention(set)
	return d == appsv1.DeletePersistentVolumeClaimRetentionPolicyType && !(condemned && s == appsv1.DeletePersistentVolumeClaimRetentionPolicyType)
}

func wantPodOwner(set *appsv1.StatefulSet, condemned bool) bool {
	_, s := retention(set)
	return condemned && s == appsv1.DeletePersistentVolumeClaimRetentionPolicyType
}

// setClaimOwners sets or removes the set's and the pod's ownerReferences
// on claim, leaving others alone; it reports whether it changed anything.
func setClaimOwners(claim *corev1.PersistentVolumeClaim, set *appsv1.StatefulSet, pod *corev1.Pod, setOwner, podOwner bool) bool {
	changed := false
	apply := func(uid types.UID, want bool, ref func() metav1.OwnerReference) {
		var refs []metav1.OwnerReference
		have := false
		for _, r := range claim.OwnerReferences {
			if r.UID == uid {
				have = true
				if !want {
					changed = true
					continue
				}
			}
			refs = append(refs, r)
		}
		if want && !have {
			refs = append(refs, ref())
			changed = true
		}
		claim.OwnerReferences = refs
	}
	apply(set.UID, setOwner, func() metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: kindSet.GroupVersion().String(), Kind: kindSet.Kind, Name: set.Name, UID: set.UID}
	})
	if pod != nil {
		apply(pod.UID, podOwner, func() metav1.OwnerReference {
			return metav1.OwnerReference{APIVersion: kindPod.GroupVersion().String(), Kind: kindPod.Kind, Name: pod.Name, UID: pod.UID}
		})
	}
	return changed
}

// reconcileClaimOwners brings the ownerReferences of the claims of every
// pod the set has in line with its retention policy (which may change at
// any time), before any condemned pod is deleted.
func (c *Controller) reconcileClaimOwners(ctx context.Context, set *appsv1.StatefulSet, v *view) error {
	if len(set.Spec.VolumeClaimTemplates) == 0 {
		return nil
	}
	for _, p := range v.pods() {
		ord := ordinalOf(set, p)
		condemned := ord-v.start < 0 || ord-v.start >= len(v.slots)
		for _, t := range set.Spec.VolumeClaimTemplates {
			have, err := c.claims.PersistentVolumeClaims(set.Namespace).Get(claimName(set, t.Name, ord))
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			claim := have.DeepCopy()
			if !setClaimOwners(claim, set, p, wantSetOwner(set, condemned), wantPodOwner(set, condemned)) {
				continue
			}
			if _, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, claim, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("claim %s owners: %w", claim.Name, err)
			}
		}
	}
	return nil
}
