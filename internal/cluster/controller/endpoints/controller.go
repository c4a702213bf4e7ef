// Package endpoints is the endpoints controller: for every Service with a
// selector it writes the core/v1 Endpoints of the same name and the
// discovery.k8s.io/v1 EndpointSlices (owned by the Service) listing the
// addresses and resolved ports of the pods the selector picks, with
// Kubernetes' readiness conditions. The node agents' service proxy and
// cluster DNS read the slices; kubectl and older tools read the
// Endpoints. It merges what Kubernetes splits into the endpoint and the
// endpointslice controllers: both derive from the same pods.
package endpoints

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/berth/berth/internal/cluster/kube"
)

// Name is the controller's event source and component name.
const Name = "endpoints-controller"

// cacheWait is how soon a Service is looked at again while the caches
// have not shown the controller's last writes.
const cacheWait = 200 * time.Millisecond

// Component runs the controller on the leading server.
func Component() kube.Component {
	return kube.Component{Name: Name, Run: func(ctx context.Context, c *kube.Clients) error {
		ctl := New(c.Client, c.Informers, c.Recorder(Name, ""), c.Logger.With("component", Name))
		c.Informers.Start(ctx.Done())
		return ctl.Run(ctx, 4)
	}}
}

// Controller keeps Endpoints and EndpointSlices. Build it with New.
type Controller struct {
	client    kubernetes.Interface
	services  corelisters.ServiceLister
	pods      corelisters.PodLister
	endpoints corelisters.EndpointsLister
	slices    discoverylisters.EndpointSliceLister
	nodes     corelisters.NodeLister
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
	writes    *writes
	recorder  record.EventRecorder
	log       *slog.Logger
	// maxPerSlice is the endpoints one slice holds (tests lower it).
	maxPerSlice int
}

// New registers the controller's informers on f (start f afterwards).
func New(client kubernetes.Interface, f informers.SharedInformerFactory, rec record.EventRecorder, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	svcInf := f.Core().V1().Services()
	podInf := f.Core().V1().Pods()
	epInf := f.Core().V1().Endpoints()
	sliceInf := f.Discovery().V1().EndpointSlices()
	nodeInf := f.Core().V1().Nodes()
	c := &Controller{
		client:    client,
		services:  svcInf.Lister(),
		pods:      podInf.Lister(),
		endpoints: epInf.Lister(),
		slices:    sliceInf.Lister(),
		nodes:     nodeInf.Lister(),
		synced: []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced, epInf.Informer().HasSynced,
			sliceInf.Informer().HasSynced, nodeInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "endpoints"}),
		writes:      newWrites(),
		recorder:    rec,
		log:         log,
		maxPerSlice: maxEndpointsPerSlice,
	}
	_, _ = svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, cur any) { c.enqueue(cur) },
		DeleteFunc: c.enqueue,
	})
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.enqueueFor(obj.(*corev1.Pod)) },
		UpdateFunc: func(oldObj, curObj any) {
			old, cur := oldObj.(*corev1.Pod), curObj.(*corev1.Pod)
			if !endpointsChanged(old, cur) {
				return
			}
			c.enqueueFor(cur)
			if !maps.Equal(old.Labels, cur.Labels) {
				c.enqueueFor(old)
			}
		},
		DeleteFunc: func(obj any) {
			if p := podOf(obj); p != nil {
				c.enqueueFor(p)
			}
		},
	})
	// Someone else's change to what the controller writes (a deleted or
	// edited Endpoints or slice) is put back; an Endpoints seen at start
	// whose Service is gone is deleted.
	_, _ = epInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.endpointsEvent(obj, false) },
		UpdateFunc: func(_, cur any) { c.endpointsEvent(cur, false) },
		DeleteFunc: func(obj any) { c.endpointsEvent(obj, true) },
	})
	_, _ = sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.sliceEvent(obj, false) },
		UpdateFunc: func(_, cur any) { c.sliceEvent(cur, false) },
		DeleteFunc: func(obj any) { c.sliceEvent(obj, true) },
	})
	// A node's zone goes into its pods' slice endpoints. Zones change
	// rarely; then every pod on the node is looked at.
	_, _ = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, curObj any) {
			old, cur := oldObj.(*corev1.Node), curObj.(*corev1.Node)
			if old.Labels[corev1.LabelTopologyZone] == cur.Labels[corev1.LabelTopologyZone] {
				return
			}
			pods, err := c.pods.List(labels.Everything())
			if err != nil {
				return
			}
			for _, p := range pods {
				if p.Spec.NodeName == cur.Name {
					c.enqueueFor(p)
				}
			}
		},
	})
	return c
}

// Run processes the queue with workers goroutines until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	return kube.RunQueue(ctx, c.queue, c.synced, workers, c.log, "service", c.Sync)
}

func (c *Controller) enqueue(obj any) {
	if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(k)
	}
}

func (c *Controller) endpointsEvent(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	ep, ok := obj.(*corev1.Endpoints)
	if !ok {
		return
	}
	key := ep.Namespace + "/" + ep.Name
	c.writes.observe(key, "endpoints", ep.Name, ep.ResourceVersion, deleted)
	c.queue.Add(key)
}

func (c *Controller) sliceEvent(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
		return
	}
	if m := s.Labels[discoveryv1.LabelManagedBy]; m != ManagedBy && m != MirrorManagedBy {
		return
	}
	key := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
	c.writes.observe(key, "slice", s.Name, s.ResourceVersion, deleted)
	c.queue.Add(key)
}

func podOf(obj any) *corev1.Pod {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, _ := obj.(*corev1.Pod)
	return p
}

// enqueueFor queues every Service in the pod's namespace whose selector
// matches the pod's labels.
func (c *Controller) enqueueFor(p *corev1.Pod) {
	svcs, err := c.services.Services(p.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		if len(s.Spec.Selector) == 0 {
			continue
		}
		if labels.Set(s.Spec.Selector).AsSelectorPreValidated().Matches(labels.Set(p.Labels)) {
			c.queue.Add(p.Namespace + "/" + s.Name)
		}
	}
}

// endpointsChanged reports whether an update can change the pod's
// endpoints; status heartbeats and container restarts mostly cannot.
func endpointsChanged(old, cur *corev1.Pod) bool {
	terminal := func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	return !maps.Equal(old.Labels, cur.Labels) ||
		podIPv4(old) != podIPv4(cur) ||
		podReady(old) != podReady(cur) ||
		(old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil) ||
		terminal(old) != terminal(cur) ||
		old.Spec.NodeName != cur.Spec.NodeName ||
		old.Spec.Hostname != cur.Spec.Hostname || old.Spec.Subdomain != cur.Spec.Subdomain ||
		old.UID != cur.UID
}

// Sync reconciles one Service by key ("ns/name").
func (c *Controller) Sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	if apierrors.IsNotFound(err) {
		svc = nil
		c.writes.forget(key)
	}
	if svc != nil && svc.DeletionTimestamp != nil {
		// Going (a foreground delete waits for its slices): writing now
		// would only hold up the garbage collector.
		return 0, nil
	}
	if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		// Gone, or without endpoints.
		return 0, c.cleanup(ctx, ns, name, true, ManagedBy, MirrorManagedBy)
	}
	if len(svc.Spec.Selector) == 0 {
		// The user writes the Endpoints; the controller mirrors them.
		if err := c.cleanup(ctx, ns, name, true, ManagedBy); err != nil {
			return 0, err
		}
		if c.writes.pending(key, c.cached(ns)) {
			return cacheWait, nil
		}
		return 0, c.mirror(ctx, key, svc)
	}
	if c.writes.pending(key, c.cached(ns)) {
		return cacheWait, nil
	}
	if err := c.cleanup(ctx, ns, name, false, MirrorManagedBy); err != nil {
		return 0, err
	}
	pods, err := c.pods.Pods(ns).List(labels.Set(svc.Spec.Selector).AsSelectorPreValidated())
	if err != nil {
		return 0, err
	}
	errEp := c.syncEndpoints(ctx, key, svc, desiredEndpoints(svc, pods))
	if errEp != nil && !apierrors.IsConflict(errEp) && !apierrors.IsAlreadyExists(errEp) {
		c.recorder.Eventf(svc, corev1.EventTypeWarning, "FailedToUpdateEndpoint", "Failed to update endpoint %s: %v", key, errEp)
	}
	existing, err := c.ownSlices(ns, name, ManagedBy)
	if err != nil {
		return 0, errors.Join(errEp, err)
	}
	plan := planSlices(svc, desiredSlices(svc, pods, c.zone), existing, c.maxPerSlice, ManagedBy)
	errSl := c.applySlices(ctx, key, plan)
	if errSl != nil && !apierrors.IsConflict(errSl) && !apierrors.IsAlreadyExists(errSl) {
		c.recorder.Eventf(svc, corev1.EventTypeWarning, "FailedToUpdateEndpointSlices", "Error updating Endpoint Slices for Service %s: %v", key, errSl)
	}
	return 0, errors.Join(errEp, errSl)
}

// cached looks up the controller's objects in the informer caches, for
// writes.pending.
func (c *Controller) cached(ns string) func(kind, name string) (string, bool) {
	return func(kind, name string) (string, bool) {
		var m metav1.Object
		var err error
		if kind == "endpoints" {
			m, err = c.endpoints.Endpoints(ns).Get(name)
		} else {
			m, err = c.slices.EndpointSlices(ns).Get(name)
		}
		if err != nil {
			return "", false
		}
		return m.GetResourceVersion(), true
	}
}

func (c *Controller) zone(node string) string {
	n, err := c.nodes.Get(node)
	if err != nil {
		return ""
	}
	return n.Labels[corev1.LabelTopologyZone]
}

// mirror writes the slices of a selectorless Service from its Endpoints.
func (c *Controller) mirror(ctx context.Context, key string, svc *corev1.Service) error {
	var groups map[string]*sliceGroup
	if ep, err := c.endpoints.Endpoints(svc.Namespace).Get(svc.Name); err == nil && mirrorable(ep) {
		groups = mirrorSlices(ep)
	}
	existing, err := c.ownSlices(svc.Namespace, svc.Name, MirrorManagedBy)
	if err != nil {
		return err
	}
	return c.applySlices(ctx, key, planSlices(svc, groups, existing, c.maxPerSlice, MirrorManagedBy))
}

// ownSlices lists the cached slices for Service name that this controller
// wrote as managedBy (ManagedBy or MirrorManagedBy).
func (c *Controller) ownSlices(ns, name, managedBy string) ([]*discoveryv1.EndpointSlice, error) {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: managedBy})
	return c.slices.EndpointSlices(ns).List(sel)
}

// syncEndpoints writes want as the Service's Endpoints unless the cached
// one already says the same.
func (c *Controller) syncEndpoints(ctx context.Context, key string, svc *corev1.Service, want *corev1.Endpoints) error {
	cur, err := c.endpoints.Endpoints(svc.Namespace).Get(svc.Name)
	if apierrors.IsNotFound(err) {
		out, err := c.client.CoreV1().Endpoints(svc.Namespace).Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) {
			// Mostly a namespace being deleted (nothing to do: its
			// Services go too), as Kubernetes' controller reasons.
			c.log.Debug("endpoints create forbidden", "service", key, "err", err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("create endpoints %s: %w", key, err)
		}
		c.writes.record(key, "endpoints", out.Name, out.ResourceVersion, false)
		return nil
	}
	if err != nil {
		return err
	}
	if eqSubsets(cur.Subsets, want.Subsets) && maps.Equal(cur.Labels, want.Labels) &&
		cur.Annotations[AnnotationOverCapacity] == want.Annotations[AnnotationOverCapacity] {
		return nil
	}
	upd := cur.DeepCopy()
	upd.Subsets, upd.Labels = want.Subsets, want.Labels
	if v := want.Annotations[AnnotationOverCapacity]; v != "" {
		if upd.Annotations == nil {
			upd.Annotations = map[string]string{}
		}
		upd.Annotations[AnnotationOverCapacity] = v
	} else {
		delete(upd.Annotations, AnnotationOverCapacity)
	}
	out, err := c.client.CoreV1().Endpoints(svc.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update endpoints %s: %w", key, err)
	}
	c.writes.record(key, "endpoints", out.Name, out.ResourceVersion, false)
	return nil
}

// applySlices makes plan's writes: creates and updates before deletes, so
// that a reader never sees fewer endpoints than either state has.
func (c *Controller) applySlices(ctx context.Context, key string, plan slicePlan) error {
	api := c.client.DiscoveryV1().EndpointSlices
	var errs []error
	for _, s := range plan.create {
		out, err := api(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) {
			c.log.Debug("endpointslice create forbidden", "service", key, "err", err)
			continue // as for the Endpoints
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("create endpointslice for %s: %w", key, err))
			continue
		}
		c.writes.record(key, "slice", out.Name, out.ResourceVersion, false)
	}
	for _, s := range plan.update {
		out, err := api(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			errs = append(errs, fmt.Errorf("update endpointslice %s/%s: %w", s.Namespace, s.Name, err))
			continue
		}
		c.writes.record(key, "slice", out.Name, out.ResourceVersion, false)
	}
	if len(errs) > 0 {
		// Keep what readers have until the new state is written.
		return errors.Join(errs...)
	}
	for _, s := range plan.delete {
		if err := c.deleteSlice(ctx, key, s); err != nil {
			errs = append(errs, err)
		}
	}
	if !plan.empty() {
		c.log.Debug("endpointslices written", "service", key, "created", len(plan.create), "updated", len(plan.update), "deleted", len(plan.delete))
	}
	return errors.Join(errs...)
}

func (c *Controller) deleteSlice(ctx context.Context, key string, s *discoveryv1.EndpointSlice) error {
	err := c.client.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete endpointslice %s/%s: %w", s.Namespace, s.Name, err)
	}
	c.writes.record(key, "slice", s.Name, "", true)
	return nil
}

// cleanup deletes what the controller wrote for a Service: with
// endpoints, its Endpoints if they carry the controller's label (others
// are the user's and stay), and its slices of each managedBy. The garbage
// collector removes a deleted Service's slices too; a Service that lost
// its selector keeps its ownership of them.
func (c *Controller) cleanup(ctx context.Context, ns, name string, endpoints bool, managedBy ...string) error {
	key := ns + "/" + name
	var errs []error
	ep, err := c.endpoints.Endpoints(ns).Get(name)
	if endpoints && err == nil && ep.Labels[LabelEndpointsManagedBy] == EndpointsManagedBy {
		err := c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &ep.UID}})
		switch {
		case err == nil:
			c.log.Info("deleted endpoints: the service is gone or has no selector", "service", key)
		case !apierrors.IsNotFound(err):
			errs = append(errs, fmt.Errorf("delete endpoints %s: %w", key, err))
		}
	}
	for _, m := range managedBy {
		own, err := c.ownSlices(ns, name, m)
		if err != nil {
			return err
		}
		for _, s := range own {
			if err := c.deleteSlice(ctx, key, s); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
