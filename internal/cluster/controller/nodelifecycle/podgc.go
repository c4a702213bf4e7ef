package nodelifecycle

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// collectPods is the pod garbage collector: pods bound to a node that no
// longer exists can never be confirmed stopped by an agent, so they are
// force-deleted (grace 0). So are terminating pods on a node tainted
// node.kubernetes.io/out-of-service (an operator's statement that the node
// is down for good). A node missing from the cache is confirmed with a GET
// first, so a node created a moment ago is not mistaken for a deleted one.
func (c *Controller) collectPods(ctx context.Context) {
	missing := map[string]bool{}
	for _, o := range c.pods.List() {
		p := o.(*corev1.Pod)
		if p.Spec.NodeName == "" {
			continue
		}
		gone, known := missing[p.Spec.NodeName]
		if !known {
			gone = c.nodeGone(ctx, p.Spec.NodeName)
			missing[p.Spec.NodeName] = gone
		}
		reason := ""
		switch {
		case gone:
			reason = "node " + p.Spec.NodeName + " no longer exists"
		case p.DeletionTimestamp != nil && c.outOfService(p.Spec.NodeName):
			reason = "node " + p.Spec.NodeName + " is out of service"
		default:
			continue
		}
		zero := int64(0)
		err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err == nil {
			c.log.Info("pod GC: force-deleted pod", "pod", p.Namespace+"/"+p.Name, "why", reason)
		} else if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
			c.log.Warn("pod GC", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
	}
}

func (c *Controller) nodeGone(ctx context.Context, name string) bool {
	if _, err := c.nodes.Get(name); err == nil {
		return false
	}
	_, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func (c *Controller) outOfService(name string) bool {
	n, err := c.nodes.Get(name)
	if err != nil {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeOutOfService && t.Effect == corev1.TaintEffectNoExecute {
			return true
		}
	}
	return false
}
