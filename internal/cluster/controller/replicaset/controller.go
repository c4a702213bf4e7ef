// Package replicaset is the ReplicaSet controller: it keeps
// spec.replicas active pods for every ReplicaSet, adopting orphans that
// match the selector and releasing pods that stop matching, and reports
// replicas, readiness and availability in the ReplicaSet's status. It
// follows Kubernetes' ReplicaSet semantics so that kubectl and the
// Deployment controller (internal/cluster/controller/deployment) see what
// they expect.
package replicaset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/berth/berth/internal/cluster/kube"
)

// Name is the controller's event source and component name.
const Name = "replicaset-controller"

// burstReplicas caps the creates or deletes of one sync, as Kubernetes
// does, so that one huge scale does not starve the other sets.
const burstReplicas = 500

var kindRS = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

// Component runs the controller on the leading server.
func Component() kube.Component {
	return kube.Component{Name: Name, Run: func(ctx context.Context, c *kube.Clients) error {
		ctl := New(c.Client, c.Informers, c.Recorder(Name, ""), c.Logger.With("component", Name))
		c.Informers.Start(ctx.Done())
		return ctl.Run(ctx, 4)
	}}
}

// Controller reconciles ReplicaSets. Build it with New.
type Controller struct {
	client    kubernetes.Interface
	rsLister  appslisters.ReplicaSetLister
	podLister corelisters.PodLister
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
	exp       *expectations
	recorder  record.EventRecorder
	log       *slog.Logger
	// now is the clock (tests replace it).
	now func() time.Time
}

// New registers the controller's informers on f (start f afterwards).
func New(client kubernetes.Interface, f informers.SharedInformerFactory, rec record.EventRecorder, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	rsInf := f.Apps().V1().ReplicaSets()
	podInf := f.Core().V1().Pods()
	c := &Controller{
		client:    client,
		rsLister:  rsInf.Lister(),
		podLister: podInf.Lister(),
		synced:    []cache.InformerSynced{rsInf.Informer().HasSynced, podInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "replicaset"}),
		recorder: rec,
		log:      log,
		now:      time.Now,
	}
	c.exp = newExpectations(func() time.Time { return c.now() })
	rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, cur any) { c.enqueue(cur) },
		DeleteFunc: func(obj any) {
			if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.exp.forget(k)
				c.queue.Add(k)
			}
		},
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.podAdded,
		UpdateFunc: c.podUpdated,
		DeleteFunc: c.podDeleted,
	})
	return c
}

// Run processes the queue with workers goroutines until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	return kube.RunQueue(ctx, c.queue, c.synced, workers, c.log, "replicaset", func(ctx context.Context, key string) (time.Duration, error) {
		return 0, c.Sync(ctx, key)
	})
}

func (c *Controller) enqueue(obj any) {
	if k, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(k)
	}
}

// ownerKey returns the key of the ReplicaSet that controls pod, or "".
func (c *Controller) ownerKey(p *corev1.Pod) string {
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return ""
	}
	rs, err := c.rsLister.ReplicaSets(p.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return ""
	}
	return p.Namespace + "/" + rs.Name
}

// enqueueMatching queues every ReplicaSet whose selector matches an
// orphan pod, so one of them may adopt it.
func (c *Controller) enqueueMatching(p *corev1.Pod) {
	sets, err := c.rsLister.ReplicaSets(p.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, rs := range sets {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		c.queue.Add(p.Namespace + "/" + rs.Name)
	}
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func (c *Controller) podAdded(obj any) {
	p := obj.(*corev1.Pod)
	if p.DeletionTimestamp != nil {
		// Seen for the first time already being deleted (a restart of
		// the informer): it counts as a deletion.
		c.podDeleted(p)
		return
	}
	if k := c.ownerKey(p); k != "" {
		c.exp.creationObserved(k)
		c.queue.Add(k)
		return
	}
	if metav1.GetControllerOf(p) == nil {
		c.enqueueMatching(p)
	}
}

func (c *Controller) podUpdated(oldObj, curObj any) {
	old, cur := oldObj.(*corev1.Pod), curObj.(*corev1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	labelsChanged := !maps.Equal(old.Labels, cur.Labels)
	if cur.DeletionTimestamp != nil && old.DeletionTimestamp == nil {
		// A graceful delete: the pod stops counting now, not when the
		// kubelet finishes, so the replacement starts at once.
		if k := c.ownerKey(cur); k != "" {
			c.exp.deletionObserved(k, podKey(cur))
			c.queue.Add(k)
		}
		if labelsChanged {
			c.enqueueMatching(old)
		}
		return
	}
	oldRef, curRef := metav1.GetControllerOf(old), metav1.GetControllerOf(cur)
	if oldRef != nil && (curRef == nil || oldRef.UID != curRef.UID) {
		if k := c.ownerKey(old); k != "" {
			c.queue.Add(k)
		}
	}
	if k := c.ownerKey(cur); k != "" {
		c.queue.Add(k)
		// A pod that just became ready becomes available minReadySeconds
		// later; look again then.
		if !Ready(old) && Ready(cur) {
			ns, name, _ := cache.SplitMetaNamespaceKey(k)
			if rs, err := c.rsLister.ReplicaSets(ns).Get(name); err == nil && rs.Spec.MinReadySeconds > 0 {
				c.queue.AddAfter(k, time.Duration(rs.Spec.MinReadySeconds)*time.Second+100*time.Millisecond)
			}
		}
		return
	}
	if curRef == nil && (labelsChanged || oldRef != nil) {
		c.enqueueMatching(cur)
	}
}

func (c *Controller) podDeleted(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if p, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	if k := c.ownerKey(p); k != "" {
		c.exp.deletionObserved(k, podKey(p))
		c.queue.Add(k)
	}
}

// Sync reconciles one ReplicaSet by key ("ns/name").
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	rs, err := c.rsLister.ReplicaSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || sel.Empty() {
		// The API rejects these; an old object could still carry one.
		c.recorder.Eventf(rs, corev1.EventTypeWarning, "InvalidSelector", "invalid selector %v: the ReplicaSet needs a non-empty, valid spec.selector", rs.Spec.Selector)
		return nil
	}
	// Whether to act is decided before listing: a pod event that lands
	// between the two must not be counted twice.
	needsSync := c.exp.satisfied(key)
	all, err := c.podLister.Pods(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var active []*corev1.Pod
	for _, p := range all {
		if Active(p) {
			active = append(active, p)
		}
	}
	owned, err := c.claimPods(ctx, rs, sel, active)
	if err != nil {
		return err
	}
	var manageErr error
	if needsSync && rs.DeletionTimestamp == nil {
		manageErr = c.manageReplicas(ctx, key, rs, owned, all)
	}
	st := calculateStatus(rs, owned, manageErr, c.now())
	updated, err := c.updateStatus(ctx, rs, st)
	if err != nil {
		return err
	}
	if manageErr == nil && updated.Spec.MinReadySeconds > 0 {
		// Look again when the next ready pod becomes available.
		var next time.Time
		now := c.now()
		for _, p := range owned {
			if at := availableAt(p, updated.Spec.MinReadySeconds); at.After(now) && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
		if !next.IsZero() {
			c.queue.AddAfter(key, next.Sub(now)+100*time.Millisecond)
		}
	}
	return manageErr
}

// claimPods returns the active pods rs controls after adopting orphans
// that match its selector and releasing owned pods that no longer match.
func (c *Controller) claimPods(ctx context.Context, rs *appsv1.ReplicaSet, sel labels.Selector, pods []*corev1.Pod) ([]*corev1.Pod, error) {
	var owned []*corev1.Pod
	var adoptable *bool // checked once, lazily, against the API
	var errs []error
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		matches := sel.Matches(labels.Set(p.Labels))
		switch {
		case ref != nil && ref.UID == rs.UID:
			if matches {
				owned = append(owned, p)
				continue
			}
			if rs.DeletionTimestamp != nil {
				continue
			}
			if err := c.release(ctx, rs, p); err != nil {
				errs = append(errs, err)
			}
		case ref == nil && matches && rs.DeletionTimestamp == nil && p.DeletionTimestamp == nil:
			if adoptable == nil {
				ok, err := c.canAdopt(ctx, rs)
				if err != nil {
					return nil, err
				}
				adoptable = &ok
			}
			if !*adoptable {
				continue
			}
			q, err := c.adopt(ctx, rs, p)
			if err != nil {
				if !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
				continue
			}
			owned = append(owned, q)
		}
	}
	return owned, errors.Join(errs...)
}

// canAdopt re-reads the ReplicaSet from the API: the cache may still hold
// a set that was deleted, or deleted and re-created under the same name.
// Adoptions and creates are only made for a live set.
func (c *Controller) canAdopt(ctx context.Context, rs *appsv1.ReplicaSet) (bool, error) {
	fresh, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return fresh.UID == rs.UID && fresh.DeletionTimestamp == nil, nil
}

func controllerRef(rs *appsv1.ReplicaSet) metav1.OwnerReference {
	return *metav1.NewControllerRef(rs, kindRS)
}

// adopt adds rs as the pod's controller. The patch carries the pod's
// resourceVersion, so a pod that changed since the cache saw it (another
// controller adopted it) makes the patch fail instead of being stolen.
func (c *Controller) adopt(ctx context.Context, rs *appsv1.ReplicaSet, p *corev1.Pod) (*corev1.Pod, error) {
	refs := append(append([]metav1.OwnerReference(nil), p.OwnerReferences...), controllerRef(rs))
	q, err := c.patchOwners(ctx, p, refs)
	if err == nil {
		c.log.Info("adopted pod", "replicaset", rs.Namespace+"/"+rs.Name, "pod", p.Name)
	}
	return q, err
}

func (c *Controller) release(ctx context.Context, rs *appsv1.ReplicaSet, p *corev1.Pod) error {
	var refs []metav1.OwnerReference
	for _, r := range p.OwnerReferences {
		if r.UID != rs.UID {
			refs = append(refs, r)
		}
	}
	_, err := c.patchOwners(ctx, p, refs)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone or changed: the next event brings us back
	}
	if err == nil {
		c.log.Info("released pod that no longer matches the selector", "replicaset", rs.Namespace+"/"+rs.Name, "pod", p.Name)
	}
	return err
}

func (c *Controller) patchOwners(ctx context.Context, p *corev1.Pod, refs []metav1.OwnerReference) (*corev1.Pod, error) {
	var v any = refs
	if len(refs) == 0 {
		v = nil
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": v, "resourceVersion": p.ResourceVersion}})
	if err != nil {
		return nil, err
	}
	return c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, body, metav1.PatchOptions{})
}

// manageReplicas creates or deletes pods to reach spec.replicas.
func (c *Controller) manageReplicas(ctx context.Context, key string, rs *appsv1.ReplicaSet, owned, all []*corev1.Pod) error {
	want := int(ptrOr(rs.Spec.Replicas, 1))
	diff := len(owned) - want
	switch {
	case diff < 0:
		// The cache may still hold a set that was just deleted (the
		// garbage collector is removing its pods, which looks like pods
		// to replace): ask the API once before creating.
		if ok, err := c.canAdopt(ctx, rs); err != nil || !ok {
			return err
		}
		n := min(-diff, burstReplicas)
		c.exp.expectCreations(key, n)
		done, err := slowStartBatch(n, func() error { return c.createPod(ctx, rs) })
		for range n - done {
			// Never attempted or failed: no event will come for them.
			c.exp.creationObserved(key)
		}
		return err
	case diff > 0:
		n := min(diff, burstReplicas)
		victims := append([]*corev1.Pod(nil), owned...)
		SortForDeletion(victims, c.relatedPods(rs, all), c.now())
		victims = victims[:n]
		keys := make([]string, len(victims))
		for i, p := range victims {
			keys[i] = podKey(p)
		}
		c.exp.expectDeletions(key, keys)
		var mu sync.Mutex
		var errs []error
		var wg sync.WaitGroup
		for _, p := range victims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
				if err != nil {
					c.exp.deletionObserved(key, podKey(p))
					if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
						return // already gone (or replaced by a namesake)
					}
					c.recorder.Eventf(rs, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
					mu.Lock()
					errs = append(errs, fmt.Errorf("delete pod %s: %w", p.Name, err))
					mu.Unlock()
					return
				}
				c.recorder.Eventf(rs, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	return nil
}

// relatedPods are the active pods of rs's family: every ReplicaSet with
// the same controller (a Deployment's old and new sets), or rs alone.
func (c *Controller) relatedPods(rs *appsv1.ReplicaSet, all []*corev1.Pod) []*corev1.Pod {
	family := map[types.UID]bool{rs.UID: true}
	if owner := metav1.GetControllerOf(rs); owner != nil {
		if sets, err := c.rsLister.ReplicaSets(rs.Namespace).List(labels.Everything()); err == nil {
			for _, s := range sets {
				if o := metav1.GetControllerOf(s); o != nil && o.UID == owner.UID {
					family[s.UID] = true
				}
			}
		}
	}
	var out []*corev1.Pod
	for _, p := range all {
		if ref := metav1.GetControllerOf(p); ref != nil && family[ref.UID] && Active(p) {
			out = append(out, p)
		}
	}
	return out
}

// NewPod returns the pod rs creates from its template.
func NewPod(rs *appsv1.ReplicaSet) *corev1.Pod {
	t := rs.Spec.Template
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    rs.Name + "-",
			Namespace:       rs.Namespace,
			Labels:          maps.Clone(t.Labels),
			Annotations:     maps.Clone(t.Annotations),
			Finalizers:      append([]string(nil), t.Finalizers...),
			OwnerReferences: []metav1.OwnerReference{controllerRef(rs)},
		},
		Spec: *t.Spec.DeepCopy(),
	}
}

func (c *Controller) createPod(ctx context.Context, rs *appsv1.ReplicaSet) error {
	p, err := c.client.CoreV1().Pods(rs.Namespace).Create(ctx, NewPod(rs), metav1.CreateOptions{})
	if err != nil {
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return err // the namespace collector is removing the set: no warning
		}
		c.recorder.Eventf(rs, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return err
	}
	c.recorder.Eventf(rs, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", p.Name)
	return nil
}

// slowStartBatch calls fn count times in batches of 1, 2, 4, … running
// each batch in parallel and stopping after the first batch with an
// error, so a set whose creates all fail (quota, validation) makes one
// failing call, not hundreds. It returns the number of successful calls.
func slowStartBatch(count int, fn func() error) (int, error) {
	done := 0
	for batch := 1; count > 0; batch *= 2 {
		n := min(batch, count)
		errc := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() { defer wg.Done(); errc <- fn() }()
		}
		wg.Wait()
		close(errc)
		var errs []error
		for err := range errc {
			if err != nil {
				errs = append(errs, err)
			} else {
				done++
			}
		}
		if len(errs) > 0 {
			return done, errs[0]
		}
		count -= n
	}
	return done, nil
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// updateStatus writes st if it differs from rs's status, retrying once on
// a conflict with a fresh copy.
func (c *Controller) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) (*appsv1.ReplicaSet, error) {
	if apiequality.Semantic.DeepEqual(rs.Status, st) {
		return rs, nil
	}
	cur := rs.DeepCopy()
	for i := 0; ; i++ {
		cur.Status = st
		out, err := c.client.AppsV1().ReplicaSets(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			return out, nil
		}
		if !apierrors.IsConflict(err) || i == 1 {
			return nil, err
		}
		fresh, gerr := c.client.AppsV1().ReplicaSets(cur.Namespace).Get(ctx, cur.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, gerr
		}
		cur = fresh
	}
}
