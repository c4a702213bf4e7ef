package scheduler

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/berth/berth/internal/cluster/kube"
)

// The volume binding filter, as kube-scheduler's VolumeBinding plugin in
// its simplest correct form:
//   - a claim bound to a volume with a required nodeAffinity keeps the
//     pod on the nodes that affinity admits ("node(s) had volume node
//     affinity conflict");
//   - an unbound claim of a WaitForFirstConsumer class lets the pod go
//     to any node that passes the other filters; before binding the pod
//     the scheduler writes that node on the claim
//     (volume.kubernetes.io/selected-node) and the provisioner makes the
//     volume there (the agent waits for the binding meanwhile);
//   - a claim already carrying a selected node keeps the pod on that node
//     (its volume may already exist there);
//   - an unbound claim of an Immediate class (or of none) must first be
//     bound by the binder: the pod is unschedulable ("pod has unbound
//     immediate PersistentVolumeClaims"); a missing claim likewise.
// Unlike kube-scheduler, berth does not wait in a PreBind step for the
// volume to be provisioned: the pod is bound at once and its agent keeps
// it in ContainerCreating until the claim is bound.

// VolumeConstraints is what a pod's claims demand of its node, resolved by
// the scheduling loop from its caches (see resolveVolumes).
type VolumeConstraints struct {
	// Unresolvable, when set, keeps the pod off every node; it is the
	// FailedScheduling reason.
	Unresolvable string
	// SelectedNode is the node a claim of the pod was already given; ""
	// when none was.
	SelectedNode string
	// Affinity are the required node affinities of the bound volumes.
	Affinity []*nodeaffinity.NodeSelector
	// ToSelect are the unbound WaitForFirstConsumer claims (names in the
	// pod's namespace) that get the chosen node as selected node.
	ToSelect []string
}

func (v *VolumeConstraints) filter(ni *nodeInfo) uint32 {
	if v.Unresolvable != "" {
		return rVolumeUnresolvable
	}
	if v.SelectedNode != "" && v.SelectedNode != ni.name {
		return rVolumeConflict
	}
	for _, s := range v.Affinity {
		if ni.node == nil || !s.Match(ni.node) {
			return rVolumeConflict
		}
	}
	return 0
}

// unboundImmediate is kube-scheduler's message for claims the binder has
// yet to bind.
const unboundImmediate = "pod has unbound immediate PersistentVolumeClaims"

// classOf is a claim's class: the beta annotation wins over the field.
func classOf(ann map[string]string, field *string) string {
	if c, ok := ann[corev1.BetaStorageClassAnnotation]; ok {
		return c
	}
	if field != nil {
		return *field
	}
	return ""
}

// resolveVolumes reads the pod's claims, their volumes and classes from
// the caches; nil when the pod uses no claim.
func resolveVolumes(pod *corev1.Pod, claims corelisters.PersistentVolumeClaimLister, pvs corelisters.PersistentVolumeLister, classes storagelisters.StorageClassLister) *VolumeConstraints {
	var v *VolumeConstraints
	immediate := false
	seen := map[string]bool{}
	for _, vol := range pod.Spec.Volumes {
		src := vol.PersistentVolumeClaim
		if src == nil || seen[src.ClaimName] {
			continue
		}
		seen[src.ClaimName] = true
		if v == nil {
			v = &VolumeConstraints{}
		}
		pvc, err := claims.PersistentVolumeClaims(pod.Namespace).Get(src.ClaimName)
		if err != nil {
			v.Unresolvable = fmt.Sprintf("persistentvolumeclaim %q not found", src.ClaimName)
			return v
		}
		if pvc.DeletionTimestamp != nil {
			v.Unresolvable = fmt.Sprintf("persistentvolumeclaim %q is being deleted", src.ClaimName)
			return v
		}
		if pvc.Spec.VolumeName != "" {
			pv, err := pvs.Get(pvc.Spec.VolumeName)
			if err != nil {
				v.Unresolvable = fmt.Sprintf("persistentvolumeclaim %q: persistentvolume %q not found", src.ClaimName, pvc.Spec.VolumeName)
				return v
			}
			if na := pv.Spec.NodeAffinity; na != nil && na.Required != nil {
				sel, err := nodeaffinity.NewNodeSelector(na.Required)
				if err != nil {
					v.Unresolvable = fmt.Sprintf("persistentvolume %q: nodeAffinity: %v", pv.Name, err)
					return v
				}
				v.Affinity = append(v.Affinity, sel)
			}
			continue
		}
		var class *storagev1.StorageClass
		if name := classOf(pvc.Annotations, pvc.Spec.StorageClassName); name != "" {
			class, _ = classes.Get(name)
		}
		if class == nil || class.VolumeBindingMode == nil || *class.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
			immediate = true
			continue
		}
		if n := pvc.Annotations[kube.AnnSelectedNode]; n != "" {
			if v.SelectedNode != "" && v.SelectedNode != n {
				v.Unresolvable = fmt.Sprintf("the pod's claims were given different nodes (%s, %s)", v.SelectedNode, n)
				return v
			}
			v.SelectedNode = n
			continue
		}
		v.ToSelect = append(v.ToSelect, pvc.Name)
	}
	if immediate {
		v.Unresolvable = unboundImmediate
	}
	if v != nil {
		sort.Strings(v.ToSelect)
	}
	return v
}

// selectNode writes node as the selected node of the pod's unbound
// WaitForFirstConsumer claims, unless another node was selected meanwhile
// (then the pod is tried again and goes there).
func (s *Scheduler) selectNode(ctx context.Context, pod *corev1.Pod, claims []string, node string) error {
	api := s.client.CoreV1().PersistentVolumeClaims(pod.Namespace)
	for _, name := range claims {
		// The provisioner writes the claim too (its finalizer): retry a
		// conflict with a fresh copy rather than back off.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			pvc, err := api.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pvc.Spec.VolumeName != "" {
				return nil // bound meanwhile
			}
			switch cur := pvc.Annotations[kube.AnnSelectedNode]; cur {
			case node:
				return nil
			case "":
			default:
				return fmt.Errorf("claim %s: node %s was selected for it meanwhile", name, cur)
			}
			pvc = pvc.DeepCopy()
			if pvc.Annotations == nil {
				pvc.Annotations = map[string]string{}
			}
			pvc.Annotations[kube.AnnSelectedNode] = node
			_, err = api.Update(ctx, pvc, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
