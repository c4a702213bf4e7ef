package localpath

import (
	"context"
	"errors"
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/internal/cluster/kube"
)

// provision creates the claim's volume on node and binds it.
func (c *Controller) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, node string) error {
	n, err := c.nodes.Get(node)
	if apierrors.IsNotFound(err) {
		c.recorder.Eventf(pvc, corev1.EventTypeWarning, "ProvisioningFailed", "selected node %q not found", node)
		return nil
	}
	if err != nil {
		return err
	}
	pv, err := NewVolume(pvc, class, n)
	if err != nil {
		c.recorder.Eventf(pvc, corev1.EventTypeWarning, "ProvisioningFailed", "%v", err)
		return nil
	}
	created, err := c.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Made by an earlier sync whose binding did not finish.
		if created, err = c.client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{}); err != nil {
			return err
		}
		if ref := created.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID {
			return fmt.Errorf("volume %s exists and is not this claim's", pv.Name)
		}
	} else if err != nil {
		c.recorder.Eventf(pvc, corev1.EventTypeWarning, "ProvisioningFailed", "creating volume %s: %v", pv.Name, err)
		return err
	} else {
		c.log.Info("provisioned volume", "pv", pv.Name, "claim", pvc.Namespace+"/"+pvc.Name, "node", node, "path", pv.Spec.Local.Path)
		c.recorder.Eventf(pvc, corev1.EventTypeNormal, "ProvisioningSucceeded", "Successfully provisioned volume %s on node %s", pv.Name, node)
	}
	return c.bind(ctx, created, pvc)
}

// NewVolume is the local-path volume of pvc on node n: named
// "pvc-<claim uid>" as Kubernetes names provisioned volumes, a directory
// of that name under the node's volumes dir, the claim's request and
// access modes, the class's reclaim policy, and pinned to the node by its
// hostname label.
func NewVolume(pvc *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, n *corev1.Node) (*corev1.PersistentVolume, error) {
	if pvc.UID == "" {
		return nil, errors.New("claim has no uid")
	}
	req, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return nil, fmt.Errorf("claim %s/%s requests no storage", pvc.Namespace, pvc.Name)
	}
	if volumeMode(pvc.Spec.VolumeMode) != corev1.PersistentVolumeFilesystem {
		return nil, fmt.Errorf("%s makes directories: volumeMode %s is not supported", kube.LocalPathProvisioner, *pvc.Spec.VolumeMode)
	}
	dir := n.Annotations[kube.AnnVolumesDir]
	if dir == "" {
		dir = kube.DefaultVolumesDir
	}
	if !path.IsAbs(dir) || path.Clean(dir) != dir || dir == "/" {
		return nil, fmt.Errorf("node %s: annotation %s=%q is not a clean absolute directory", n.Name, kube.AnnVolumesDir, dir)
	}
	host := n.Labels[corev1.LabelHostname]
	if host == "" {
		host = n.Name
	}
	name := "pvc-" + string(pvc.UID)
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	fs := corev1.PersistentVolumeFilesystem
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{kube.AnnProvisionedBy: kube.LocalPathProvisioner, kube.AnnSelectedNode: n.Name}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: req},
			AccessModes:                   append([]corev1.PersistentVolumeAccessMode(nil), pvc.Spec.AccessModes...),
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			VolumeMode:                    &fs,
			ClaimRef:                      claimRef(pvc),
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: path.Join(dir, name)}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{host}}},
			}}}},
		},
	}, nil
}

func claimRef(pvc *corev1.PersistentVolumeClaim) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID, ResourceVersion: pvc.ResourceVersion}
}

// bind completes a binding in Kubernetes' order: the volume's claimRef,
// the volume Bound, the claim's volumeName, the claim Bound with the
// volume's capacity and access modes. Each step is skipped when done, so
// a binding interrupted anywhere is finished by the next sync.
func (c *Controller) bind(ctx context.Context, pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) error {
	pvs := c.client.CoreV1().PersistentVolumes()
	if ref := pv.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID {
		pv = pv.DeepCopy()
		pv.Spec.ClaimRef = claimRef(pvc)
		setAnn(&pv.ObjectMeta, annBoundByController, "yes")
		var err error
		if pv, err = pvs.Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if pv.Status.Phase != corev1.VolumeBound {
		pv = pv.DeepCopy()
		pv.Status.Phase, pv.Status.Reason, pv.Status.Message = corev1.VolumeBound, "", ""
		var err error
		if pv, err = pvs.UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	claims := c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace)
	if pvc.Spec.VolumeName != pv.Name || pvc.Annotations[annBindCompleted] != "yes" {
		pvc = pvc.DeepCopy()
		pvc.Spec.VolumeName = pv.Name
		setAnn(&pvc.ObjectMeta, annBindCompleted, "yes")
		setAnn(&pvc.ObjectMeta, annBoundByController, "yes")
		if pv.Annotations[kube.AnnProvisionedBy] != "" {
			setAnn(&pvc.ObjectMeta, annStorageProvisioner, pv.Annotations[kube.AnnProvisionedBy])
		}
		var err error
		if pvc, err = claims.Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	capacity := pv.Spec.Capacity[corev1.ResourceStorage]
	have := pvc.Status.Capacity[corev1.ResourceStorage]
	if pvc.Status.Phase != corev1.ClaimBound || have.Cmp(capacity) != 0 || !hasModes(pvc.Status.AccessModes, pv.Spec.AccessModes) {
		pvc = pvc.DeepCopy()
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: capacity}
		pvc.Status.AccessModes = append([]corev1.PersistentVolumeAccessMode(nil), pv.Spec.AccessModes...)
		if _, err := claims.UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			return err
		}
		c.log.Info("bound claim", "claim", pvc.Namespace+"/"+pvc.Name, "pv", pv.Name)
	}
	return nil
}

func setAnn(m *metav1.ObjectMeta, k, v string) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[k] = v
}

func (c *Controller) setClaimPhase(ctx context.Context, pvc *corev1.PersistentVolumeClaim, phase corev1.PersistentVolumeClaimPhase) error {
	pvc = pvc.DeepCopy()
	pvc.Status.Phase = phase
	_, err := c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{})
	return err
}
