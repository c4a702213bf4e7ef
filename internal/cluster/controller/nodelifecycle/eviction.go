package nodelifecycle

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Taint-based eviction: a pod on a node with NoExecute taints is deleted at
// once if it does not tolerate one of them, after tolerationSeconds if its
// tolerations are bounded, never if they are not.
//
// Eviction time of a pod is the earliest over the node's NoExecute taints of
// max(taint.timeAdded, pod creation) + the longest tolerationSeconds among
// the pod's tolerations of that taint. Taking timeAdded from the taint
// (rather than when this process noticed it, as Kubernetes does) keeps the
// deadline across a leader change.

func (c *Controller) enqueuePod(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
		return
	}
	key, _ := cache.MetaNamespaceKeyFunc(p)
	c.evictions.Add(key)
}

func (c *Controller) enqueueNodePods(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok || len(noExecute(n.Spec.Taints)) == 0 {
		return
	}
	objs, _ := c.pods.ByIndex(nodeNameIndex, n.Name)
	for _, o := range objs {
		c.enqueuePod(o)
	}
}

func (c *Controller) processEviction(ctx context.Context) bool {
	key, quit := c.evictions.Get()
	if quit {
		return false
	}
	defer c.evictions.Done(key)
	if wait := c.evict(ctx, key, time.Now()); wait > 0 {
		c.evictions.AddAfter(key, wait)
	}
	return true
}

// evict deletes the pod if its time has come, or returns how long to wait.
func (c *Controller) evict(ctx context.Context, key string, now time.Time) time.Duration {
	obj, ok, _ := c.pods.GetByKey(key)
	if !ok {
		return 0
	}
	p := obj.(*corev1.Pod)
	if p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
		return 0
	}
	n, err := c.nodes.Get(p.Spec.NodeName)
	if err != nil {
		return 0
	}
	at, ok := c.evictionTime(p, n, now)
	if !ok {
		return 0
	}
	if wait := at.Sub(now); wait > 0 {
		return wait
	}
	if !c.markEvicted(p.UID, now) {
		return 0
	}
	c.log.Info("evicting pod from tainted node", "pod", key, "node", n.Name, "taints", taintStrings(noExecute(n.Spec.Taints)))
	c.recorder.Eventf(p, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s", key)
	c.markDisruption(ctx, p)
	err = c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
		c.log.Warn("evict pod", "pod", key, "err", err)
		c.mu.Lock()
		delete(c.evicted, p.UID)
		c.mu.Unlock()
		return time.Second
	}
	return 0
}

// markEvicted records an eviction; false if p was evicted moments ago.
func (c *Controller) markEvicted(uid types.UID, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for u, t := range c.evicted {
		if now.Sub(t) > time.Minute {
			delete(c.evicted, u)
		}
	}
	if t, ok := c.evicted[uid]; ok && now.Sub(t) < 10*time.Second {
		return false
	}
	c.evicted[uid] = now
	return true
}

// markDisruption adds the DisruptionTarget condition Kubernetes sets before
// a taint eviction (Jobs' pod failure policies read it).
func (c *Controller) markDisruption(ctx context.Context, p *corev1.Pod) {
	if podCondition(p, corev1.DisruptionTarget) >= 0 {
		return
	}
	p = p.DeepCopy()
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
		Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager",
		Message: "Taint manager: deleting due to NoExecute taint", LastTransitionTime: metav1.Now(),
	})
	_, _ = c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
}

// evictionTime reports when p must leave n; ok is false if never.
func (c *Controller) evictionTime(p *corev1.Pod, n *corev1.Node, now time.Time) (at time.Time, ok bool) {
	logger := klog.Background()
	for _, t := range noExecute(n.Spec.Taints) {
		forever, longest, tolerated := false, int64(0), false
		for i := range p.Spec.Tolerations {
			tol := &p.Spec.Tolerations[i]
			if !tol.ToleratesTaint(logger, &t, false) {
				continue
			}
			tolerated = true
			if tol.TolerationSeconds == nil {
				forever = true
			} else if s := *tol.TolerationSeconds; s > longest {
				longest = s
			}
		}
		if !tolerated {
			return now, true
		}
		if forever {
			continue
		}
		start := p.CreationTimestamp.Time
		if t.TimeAdded != nil {
			if ta := c.taintAdded(n.Name, t); ta.After(start) {
				start = ta
			}
		} else if seen := c.taintSeen(n.Name, t.Key, now); seen.After(start) {
			start = seen
		}
		deadline := start.Add(time.Duration(longest) * time.Second)
		if !ok || deadline.Before(at) {
			at, ok = deadline, true
		}
	}
	return at, ok
}

// taintAdded is when taint t was put on node: the precise time if this
// process added it, else its timeAdded.
func (c *Controller) taintAdded(node string, t corev1.Taint) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if precise, ok := c.added[node+"\x00"+t.Key]; ok && precise.Truncate(time.Second).Equal(t.TimeAdded.Truncate(time.Second)) {
		return precise
	}
	return t.TimeAdded.Time
}

// taintSeen is when this process first saw a NoExecute taint without
// timeAdded (set by hand) on a node.
func (c *Controller) taintSeen(node, key string, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := node + "\x00" + key
	if t, ok := c.firstSeen[k]; ok {
		return t
	}
	c.firstSeen[k] = now
	return now
}

func noExecute(ts []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range ts {
		if t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
}

func equalTaints(a, b []corev1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].MatchTaint(&b[i]) || a[i].Value != b[i].Value {
			return false
		}
	}
	return true
}
