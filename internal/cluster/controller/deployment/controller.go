// Package deployment is the Deployment controller: for each Deployment it
// keeps one ReplicaSet per pod template ("<deploy>-<pod-template-hash>"),
// rolls from the old ones to the new one by the Deployment's strategy
// (RollingUpdate within maxSurge/maxUnavailable of real availability, or
// Recreate), numbers revisions so that kubectl rollout history/undo work,
// prunes old ReplicaSets beyond revisionHistoryLimit and reports progress
// (Progressing/Available conditions, progressDeadlineSeconds). Pods are
// the ReplicaSet controller's business (internal/cluster/controller/
// replicaset); this controller only reads ReplicaSet status, and pods
// only to learn when a Recreate rollout's old pods are gone.
package deployment

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
const Name = "deployment-controller"

var kindDeployment = appsv1.SchemeGroupVersion.WithKind("Deployment")

// Component runs the controller on the leading server.
func Component() kube.Component {
	return kube.Component{Name: Name, Run: func(ctx context.Context, c *kube.Clients) error {
		ctl := New(c.Client, c.Informers, c.Recorder(Name, ""), c.Logger.With("component", Name))
		c.Informers.Start(ctx.Done())
		return ctl.Run(ctx, 4)
	}}
}

// Controller reconciles Deployments. Build it with New.
type Controller struct {
	client    kubernetes.Interface
	dLister   appslisters.DeploymentLister
	rsLister  appslisters.ReplicaSetLister
	podLister corelisters.PodLister
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
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
	dInf, rsInf, podInf := f.Apps().V1().Deployments(), f.Apps().V1().ReplicaSets(), f.Core().V1().Pods()
	c := &Controller{
		client:    client,
		dLister:   dInf.Lister(),
		rsLister:  rsInf.Lister(),
		podLister: podInf.Lister(),
		synced:    []cache.InformerSynced{dInf.Informer().HasSynced, rsInf.Informer().HasSynced, podInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "deployment"}),
		recorder: rec,
		log:      log,
		now:      time.Now,
	}
	dInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, cur any) { c.enqueue(cur) },
		DeleteFunc: func(obj any) {
			if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.queue.Add(k)
			}
		},
	})
	rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.rsChanged(nil, obj.(*appsv1.ReplicaSet)) },
		UpdateFunc: func(old, cur any) {
			o, n := old.(*appsv1.ReplicaSet), cur.(*appsv1.ReplicaSet)
			if o.ResourceVersion != n.ResourceVersion {
				c.rsChanged(o, n)
			}
		},
		DeleteFunc: func(obj any) {
			rs, ok := obj.(*appsv1.ReplicaSet)
			if !ok {
				if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					rs, _ = t.Obj.(*appsv1.ReplicaSet)
				}
			}
			if rs != nil {
				c.enqueueOwner(rs)
			}
		},
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: c.podDeleted,
	})
	return c
}

// Run processes the queue with workers goroutines until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	return kube.RunQueue(ctx, c.queue, c.synced, workers, c.log, "deployment", func(ctx context.Context, key string) (time.Duration, error) {
		return 0, c.Sync(ctx, key)
	})
}

func (c *Controller) enqueue(obj any) {
	if k, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(k)
	}
}

// owner returns the Deployment controlling rs, or nil.
func (c *Controller) owner(rs *appsv1.ReplicaSet) *appsv1.Deployment {
	ref := metav1.GetControllerOf(rs)
	if ref == nil || ref.Kind != "Deployment" {
		return nil
	}
	d, err := c.dLister.Deployments(rs.Namespace).Get(ref.Name)
	if err != nil || d.UID != ref.UID {
		return nil
	}
	return d
}

func (c *Controller) enqueueOwner(rs *appsv1.ReplicaSet) {
	if d := c.owner(rs); d != nil {
		c.enqueue(d)
	}
}

// enqueueMatching queues the Deployments whose selector matches an orphan
// ReplicaSet's labels, so one may adopt it.
func (c *Controller) enqueueMatching(rs *appsv1.ReplicaSet) {
	ds, err := c.dLister.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range ds {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.Labels)) {
			c.enqueue(d)
		}
	}
}

func (c *Controller) rsChanged(old, cur *appsv1.ReplicaSet) {
	if old != nil {
		if o, n := metav1.GetControllerOf(old), metav1.GetControllerOf(cur); o != nil && (n == nil || o.UID != n.UID) {
			c.enqueueOwner(old)
		}
	}
	if metav1.GetControllerOf(cur) != nil {
		c.enqueueOwner(cur)
		return
	}
	c.enqueueMatching(cur)
}

// podDeleted wakes a Recreate rollout waiting for its old pods to go.
func (c *Controller) podDeleted(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		t, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if p, ok = t.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	rs, err := c.rsLister.ReplicaSets(p.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	if d := c.owner(rs); d != nil && d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		c.enqueue(d)
	}
}

// Sync reconciles one Deployment by key ("ns/name").
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.dLister.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d := cached.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		c.recorder.Eventf(d, corev1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		return nil
	}
	sets, err := c.claimReplicaSets(ctx, d, sel)
	if err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		newRS, old, err := c.getAllReplicaSets(ctx, d, sets, false)
		if err != nil {
			return err
		}
		return c.syncStatus(ctx, d, append(old, newRS), newRS)
	}
	if err := c.checkPausedConditions(ctx, d); err != nil {
		return err
	}
	if d.Spec.Paused || c.isScalingEvent(d, sets) {
		return c.syncScale(ctx, d, sets)
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return c.rolloutRecreate(ctx, d, sets)
	}
	return c.rolloutRolling(ctx, d, sets)
}

// claimReplicaSets returns the ReplicaSets d controls, adopting orphans
// whose labels match d's selector and releasing owned ones that stopped
// matching.
func (c *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment, sel labels.Selector) ([]*appsv1.ReplicaSet, error) {
	all, err := c.rsLister.ReplicaSets(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var owned []*appsv1.ReplicaSet
	var adoptable *bool
	var errs []error
	for _, rs := range all {
		ref := metav1.GetControllerOf(rs)
		matches := sel.Matches(labels.Set(rs.Labels))
		switch {
		case ref != nil && ref.UID == d.UID:
			if matches || d.DeletionTimestamp != nil {
				owned = append(owned, rs)
				continue
			}
			refs := without(rs.OwnerReferences, d.UID)
			if _, err := c.patchOwners(ctx, rs, refs); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, err)
			}
		case ref == nil && matches && d.DeletionTimestamp == nil && rs.DeletionTimestamp == nil:
			if adoptable == nil {
				fresh, err := c.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					return nil, err
				}
				ok := err == nil && fresh.UID == d.UID && fresh.DeletionTimestamp == nil
				adoptable = &ok
			}
			if !*adoptable {
				continue
			}
			refs := append(append([]metav1.OwnerReference(nil), rs.OwnerReferences...), *metav1.NewControllerRef(d, kindDeployment))
			out, err := c.patchOwners(ctx, rs, refs)
			if err != nil {
				if !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
				continue
			}
			c.log.Info("adopted replicaset", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name)
			owned = append(owned, out)
		}
	}
	return owned, errors.Join(errs...)
}

func without(refs []metav1.OwnerReference, uid types.UID) []metav1.OwnerReference {
	var out []metav1.OwnerReference
	for _, r := range refs {
		if r.UID != uid {
			out = append(out, r)
		}
	}
	return out
}

// patchOwners sets rs's ownerReferences, guarded by its resourceVersion so
// that a concurrent change (another owner adopting it) fails the patch.
func (c *Controller) patchOwners(ctx context.Context, rs *appsv1.ReplicaSet, refs []metav1.OwnerReference) (*appsv1.ReplicaSet, error) {
	var v any = refs
	if len(refs) == 0 {
		v = nil
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": v, "resourceVersion": rs.ResourceVersion}})
	if err != nil {
		return nil, err
	}
	return c.client.AppsV1().ReplicaSets(rs.Namespace).Patch(ctx, rs.Name, types.MergePatchType, body, metav1.PatchOptions{})
}

// podsByReplicaSet maps each of sets' UIDs to the pods it controls (all
// pods, finished and terminating included).
func (c *Controller) podsByReplicaSet(d *appsv1.Deployment, sets []*appsv1.ReplicaSet) (map[types.UID][]*corev1.Pod, error) {
	pods, err := c.podLister.Pods(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	m := map[types.UID][]*corev1.Pod{}
	for _, rs := range sets {
		m[rs.UID] = nil
	}
	for _, p := range pods {
		if ref := metav1.GetControllerOf(p); ref != nil {
			if _, ok := m[ref.UID]; ok {
				m[ref.UID] = append(m[ref.UID], p)
			}
		}
	}
	return m, nil
}

// checkPausedConditions records pause and resume in the Progressing
// condition, so that a Deployment paused longer than its deadline is not
// reported as stuck when it resumes.
func (c *Controller) checkPausedConditions(ctx context.Context, d *appsv1.Deployment) error {
	if !hasDeadline(d) {
		return nil
	}
	cond := getCondition(&d.Status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == ReasonTimedOut {
		return nil
	}
	paused := cond != nil && cond.Reason == ReasonPaused
	switch {
	case d.Spec.Paused && !paused:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonPaused, "Deployment is paused", c.now()))
	case !d.Spec.Paused && paused:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonResumed, "Deployment is resumed", c.now()))
	default:
		return nil
	}
	out, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	d.ResourceVersion = out.ResourceVersion
	return nil
}
