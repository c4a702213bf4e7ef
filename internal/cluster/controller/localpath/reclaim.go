package localpath

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/internal/cluster/kube"
)

// syncVolume keeps a volume's phase (Available without a claim, Bound
// with one) and reclaims it once its claim is gone: Released, then
// deleted if it is one of ours with reclaim policy Delete (the node agent
// then removes its directory), or Failed for a Delete volume berth did
// not make and cannot delete.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	pv, err := c.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pv.DeletionTimestamp != nil {
		return nil
	}
	ref := pv.Spec.ClaimRef
	if ref == nil {
		if pv.Status.Phase != corev1.VolumeAvailable {
			return c.setVolumePhase(ctx, pv, corev1.VolumeAvailable, "", "")
		}
		return nil
	}
	pvc, err := c.claims.PersistentVolumeClaims(ref.Namespace).Get(ref.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err == nil && (ref.UID == "" || ref.UID == pvc.UID) {
		if ref.UID == "" || pvc.Spec.VolumeName == "" || pvc.Spec.VolumeName == pv.Name {
			c.queue.Add(claimPrefix + pvc.Namespace + "/" + pvc.Name) // the claim side finishes the binding
			return nil
		}
	}
	// The cache may lag: only the API server's word that the claim is gone
	// (or is another claim of the same name) releases the volume.
	live, err := c.client.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case err == nil && (ref.UID == "" || live.UID == ref.UID) && (live.Spec.VolumeName == "" || live.Spec.VolumeName == pv.Name):
		c.queue.Add(claimPrefix + live.Namespace + "/" + live.Name)
		return nil
	case err != nil && !apierrors.IsNotFound(err):
		return err
	}
	if pv.Status.Phase != corev1.VolumeReleased && pv.Status.Phase != corev1.VolumeFailed {
		if err := c.setVolumePhase(ctx, pv, corev1.VolumeReleased, "", ""); err != nil {
			return err
		}
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return nil
	}
	if pv.Annotations[kube.AnnProvisionedBy] != kube.LocalPathProvisioner {
		if pv.Status.Phase != corev1.VolumeFailed {
			return c.setVolumePhase(ctx, pv, corev1.VolumeFailed, "VolumeFailedDelete", "berth deletes only the volumes it provisioned ("+kube.LocalPathProvisioner+"); delete this one yourself")
		}
		return nil
	}
	uid := pv.UID
	err = c.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	c.log.Info("deleted released volume", "pv", pv.Name, "claim", ref.Namespace+"/"+ref.Name)
	return nil
}

func (c *Controller) setVolumePhase(ctx context.Context, pv *corev1.PersistentVolume, phase corev1.PersistentVolumePhase, reason, msg string) error {
	pv = pv.DeepCopy()
	pv.Status.Phase, pv.Status.Reason, pv.Status.Message = phase, reason, msg
	_, err := c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{})
	return err
}
