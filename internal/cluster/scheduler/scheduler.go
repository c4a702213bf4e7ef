// Package scheduler places pods on nodes, as kube-scheduler does: a pure
// placement core (Cluster: a read-only view of nodes and placed pods in, a
// Decision out) and the loop around it (Scheduler: informers on pods and
// nodes, a queue with backoff, assume-then-bind through pods/binding,
// Scheduled and FailedScheduling events, and retries of unschedulable pods
// when the cluster changes).
package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/berth/berth/internal/cluster/kube"
)

// DefaultSchedulerName is the spec.schedulerName this scheduler serves
// (pods that leave it empty too).
const DefaultSchedulerName = "default-scheduler"

// Config configures the loop. Zero values get defaults.
type Config struct {
	// SchedulerName is the spec.schedulerName served and the events'
	// source (default "default-scheduler").
	SchedulerName string
	// Placement tunes the core.
	Placement Options
	// RetryInterval is how often pods found unschedulable are retried even
	// when nothing seems to have changed (default 30s; kube-scheduler waits
	// up to 5 minutes).
	RetryInterval time.Duration
	// InitialBackoff and MaxBackoff bound the wait before a pod is tried
	// again after a failure (defaults 1s and 10s, as kube-scheduler).
	InitialBackoff, MaxBackoff time.Duration
	// Binders is how many bindings may be in flight at once (default 32).
	Binders int
}

func (c *Config) defaults() {
	if c.SchedulerName == "" {
		c.SchedulerName = DefaultSchedulerName
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = 30 * time.Second
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.Binders <= 0 {
		c.Binders = 32
	}
}

// Component is the scheduler as one of the server's control loops.
func Component(cfg Config) kube.Component {
	return kube.Component{Name: "scheduler", Run: func(ctx context.Context, c *kube.Clients) error {
		s := New(c, cfg)
		c.Informers.Start(ctx.Done())
		return s.Run(ctx)
	}}
}

// Scheduler is the scheduling loop. Create it with New (which registers its
// informers), start the informer factory, then Run.
type Scheduler struct {
	cfg      Config
	log      *slog.Logger
	client   kubernetes.Interface
	recorder record.EventRecorder
	pods     corelisters.PodLister
	claims   corelisters.PersistentVolumeClaimLister
	pvs      corelisters.PersistentVolumeLister
	classes  storagelisters.StorageClassLister
	synced   []cache.InformerSynced
	queue    *queue
	binders  chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex
	cluster *Cluster
	// assumed holds the pods placed but not yet seen bound by the
	// informer: uid → the copy the cluster holds.
	assumed map[types.UID]*corev1.Pod
	// unschedulable holds the pods waiting for a change of the cluster,
	// with the reasons (rejection bits) that kept them out.
	unschedulable map[string]waiting
}

type waiting struct {
	codes uint32
	prio  int32
}

// New builds the loop on c's clients and registers its event handlers.
func New(c *kube.Clients, cfg Config) *Scheduler {
	cfg.defaults()
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Scheduler{
		cfg:           cfg,
		log:           log.With("component", "scheduler"),
		client:        c.Client,
		recorder:      c.Recorder(cfg.SchedulerName, ""),
		queue:         newQueue(cfg.InitialBackoff, cfg.MaxBackoff),
		binders:       make(chan struct{}, cfg.Binders),
		cluster:       NewCluster(cfg.Placement),
		assumed:       map[types.UID]*corev1.Pod{},
		unschedulable: map[string]waiting{},
	}
	podInf := c.Informers.Core().V1().Pods()
	nodeInf := c.Informers.Core().V1().Nodes()
	claimInf := c.Informers.Core().V1().PersistentVolumeClaims()
	pvInf := c.Informers.Core().V1().PersistentVolumes()
	classInf := c.Informers.Storage().V1().StorageClasses()
	s.pods = podInf.Lister()
	s.claims, s.pvs, s.classes = claimInf.Lister(), pvInf.Lister(), classInf.Lister()
	s.synced = []cache.InformerSynced{podInf.Informer().HasSynced, nodeInf.Informer().HasSynced,
		claimInf.Informer().HasSynced, pvInf.Informer().HasSynced, classInf.Informer().HasSynced}
	// A claim, volume or class that appears or changes may let a pod
	// rejected for its volumes in.
	volumeChanged := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.retry(rVolumeUnresolvable | rVolumeConflict) },
		UpdateFunc: func(any, any) { s.retry(rVolumeUnresolvable | rVolumeConflict) },
	}
	for _, inf := range []cache.SharedIndexInformer{claimInf.Informer(), pvInf.Informer(), classInf.Informer()} {
		_, _ = inf.AddEventHandler(volumeChanged)
	}
	_, _ = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.nodeChanged(nil, obj.(*corev1.Node)) },
		UpdateFunc: func(old, obj any) { s.nodeChanged(old.(*corev1.Node), obj.(*corev1.Node)) },
		DeleteFunc: s.nodeDeleted,
	})
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.podChanged(nil, obj.(*corev1.Pod)) },
		UpdateFunc: func(old, obj any) { s.podChanged(old.(*corev1.Pod), obj.(*corev1.Pod)) },
		DeleteFunc: s.podDeleted,
	})
	return s
}

// Run schedules until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	defer s.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return ctx.Err()
	}
	s.log.Info("scheduler started", "name", s.cfg.SchedulerName, "nodes", s.numNodes())
	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
	}()
	go func() {
		t := time.NewTicker(s.cfg.RetryInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.retry(^uint32(0))
			}
		}
	}()
	for s.scheduleNext(ctx) {
	}
	s.wg.Wait()
	return nil
}

func (s *Scheduler) numNodes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cluster.NumNodes()
}

// responsible says whether the pod is this scheduler's to place now (a pod
// with scheduling gates waits until they are removed).
func (s *Scheduler) responsible(p *corev1.Pod) bool {
	return p.Spec.NodeName == "" && p.DeletionTimestamp == nil && len(p.Spec.SchedulingGates) == 0 &&
		p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed &&
		(p.Spec.SchedulerName == "" || p.Spec.SchedulerName == s.cfg.SchedulerName)
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// retry puts back in the queue (after their backoff) the unschedulable pods
// that failed for any of the reasons in mask.
func (s *Scheduler) retry(mask uint32) {
	s.mu.Lock()
	var keys []string
	var prios []int32
	for k, w := range s.unschedulable {
		if w.codes&mask != 0 || w.codes == 0 {
			keys = append(keys, k)
			prios = append(prios, w.prio)
			delete(s.unschedulable, k)
		}
	}
	s.mu.Unlock()
	for i, k := range keys {
		s.queue.AddBackoff(k, prios[i])
	}
}

// What may make a rejected pod fit when a placed pod appears (affinity to
// it) or goes away (everything else).
const (
	codesFreedByPodRemoval = ^uint32(0) &^ (rUnschedulable | rNotReady | rNodeName | rTaint | rNodeAffinity | rPodAffinity | rVolumeUnresolvable | rVolumeConflict)
	codesMetByPodPlacement = rPodAffinity
)

func (s *Scheduler) nodeChanged(old, n *corev1.Node) {
	s.mu.Lock()
	s.cluster.SetNode(n)
	s.mu.Unlock()
	if old == nil || schedulingChanged(old, n) {
		s.retry(^uint32(0))
	}
}

// schedulingChanged ignores heartbeats: only what the filters read counts.
func schedulingChanged(old, n *corev1.Node) bool {
	return old.Spec.Unschedulable != n.Spec.Unschedulable ||
		!reflect.DeepEqual(old.Labels, n.Labels) ||
		!reflect.DeepEqual(old.Spec.Taints, n.Spec.Taints) ||
		!reflect.DeepEqual(old.Status.Allocatable, n.Status.Allocatable) ||
		nodeReady(old) != nodeReady(n)
}

func (s *Scheduler) nodeDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	s.mu.Lock()
	s.cluster.RemoveNode(n.Name)
	s.mu.Unlock()
}

func (s *Scheduler) podChanged(old, p *corev1.Pod) {
	if p.Spec.NodeName != "" {
		s.mu.Lock()
		_, ours := s.assumed[p.UID]
		delete(s.assumed, p.UID)
		s.cluster.SetPod(p)
		delete(s.unschedulable, podKey(p))
		s.mu.Unlock()
		switch {
		case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
			if old == nil || old.Status.Phase != p.Status.Phase {
				s.retry(codesFreedByPodRemoval)
			}
		case !ours && (old == nil || old.Spec.NodeName == ""):
			// Placed by someone else (or before this scheduler started).
			s.retry(codesMetByPodPlacement)
		}
		return
	}
	if !s.responsible(p) {
		return
	}
	if old != nil && reflect.DeepEqual(old.Spec, p.Spec) && reflect.DeepEqual(old.Labels, p.Labels) {
		// A status update (ours, for instance): nothing to reconsider.
		return
	}
	s.mu.Lock()
	delete(s.unschedulable, podKey(p))
	s.mu.Unlock()
	s.queue.Add(podKey(p), PodPriority(p))
}

func (s *Scheduler) podDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	s.mu.Lock()
	s.cluster.RemovePod(p)
	delete(s.assumed, p.UID)
	delete(s.unschedulable, podKey(p))
	s.mu.Unlock()
	if p.Spec.NodeName != "" {
		s.retry(codesFreedByPodRemoval)
	}
}

// scheduleNext places one pod from the queue; false when the queue is shut.
func (s *Scheduler) scheduleNext(ctx context.Context) bool {
	key, ok := s.queue.Get()
	if !ok {
		return false
	}
	defer s.queue.Done(key)
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	pod, err := s.pods.Pods(ns).Get(name)
	if err != nil || !s.responsible(pod) {
		s.queue.Forget(key)
		return true
	}
	vols := resolveVolumes(pod, s.claims, s.pvs, s.classes)
	s.mu.Lock()
	if _, ok := s.assumed[pod.UID]; ok {
		s.mu.Unlock()
		return true
	}
	start := time.Now()
	d := s.cluster.PlaceWith(pod, vols)
	var assumed *corev1.Pod
	var nominated string
	var victims []*corev1.Pod
	if d.Node != "" {
		assumed = s.cluster.Assume(pod, d.Node)
		s.assumed[pod.UID] = assumed
	} else {
		s.unschedulable[key] = waiting{codes: d.codes, prio: PodPriority(pod)}
		if d.Err == nil && s.mayPreempt(pod) {
			nominated, victims = s.cluster.PreemptWith(pod, vols)
		}
	}
	s.mu.Unlock()

	if d.Node == "" {
		msg := d.Message()
		s.log.Debug("unschedulable", "pod", key, "reason", msg, "took", time.Since(start))
		s.recorder.Event(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
		reason := corev1.PodReasonUnschedulable
		if d.Err != nil {
			reason = corev1.PodReasonSchedulerError
		}
		s.async(ctx, func() { s.setScheduledCondition(ctx, pod, corev1.ConditionFalse, reason, msg) })
		if nominated != "" {
			s.async(ctx, func() { s.preempt(ctx, pod, nominated, victims) })
		}
		return true
	}
	s.async(ctx, func() {
		if vols != nil && len(vols.ToSelect) > 0 {
			if err := s.selectNode(ctx, pod, vols.ToSelect, d.Node); err != nil {
				s.unassume(pod, assumed)
				if ctx.Err() != nil {
					return
				}
				s.log.Info("selecting the node of the pod's claims failed", "pod", key, "node", d.Node, "err", err)
				s.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "selecting node %s for the pod's claims: %v", d.Node, err)
				s.queue.AddBackoff(key, PodPriority(pod))
				return
			}
		}
		s.bind(ctx, key, pod, assumed, d.Node)
	})
	return true
}

// unassume takes back a placement whose binding failed.
func (s *Scheduler) unassume(pod, assumed *corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.assumed[pod.UID] == assumed {
		delete(s.assumed, pod.UID)
		if pi := s.cluster.pods[pod.UID]; pi != nil && pi.pod == assumed {
			s.cluster.RemovePod(assumed)
		}
	}
}

// async runs f with at most cfg.Binders at once.
func (s *Scheduler) async(ctx context.Context, f func()) {
	select {
	case s.binders <- struct{}{}:
	case <-ctx.Done():
		return
	}
	s.wg.Add(1)
	go func() {
		defer func() { <-s.binders; s.wg.Done() }()
		f()
	}()
}

func (s *Scheduler) bind(ctx context.Context, key string, pod, assumed *corev1.Pod, node string) {
	err := s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err != nil {
		s.unassume(pod, assumed)
		if ctx.Err() != nil {
			return
		}
		s.log.Info("binding failed", "pod", key, "node", node, "err", err)
		s.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "Binding rejected: %v", err)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			// Gone, or bound by someone else: the informer will tell.
			s.queue.Forget(key)
			return
		}
		s.queue.AddBackoff(key, PodPriority(pod))
		return
	}
	s.queue.Forget(key)
	s.recorder.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s to %s", key, node)
	if c := podCondition(pod, corev1.PodScheduled); c != nil && c.Status != corev1.ConditionTrue {
		s.setScheduledCondition(ctx, pod, corev1.ConditionTrue, "", "")
	}
}

// mayPreempt says whether pod may evict others now: it has a priority
// above zero, and the victims of its last preemption, if any, are gone
// (while they terminate, their room is on its way). Called with s.mu held.
func (s *Scheduler) mayPreempt(pod *corev1.Pod) bool {
	prio := PodPriority(pod)
	if prio <= 0 {
		return false
	}
	if n := pod.Status.NominatedNodeName; n != "" {
		if ni := s.cluster.byName[n]; ni != nil {
			for _, pi := range ni.pods {
				if pi.terminating && PodPriority(pi.pod) < prio {
					return false
				}
			}
		}
	}
	return true
}

// preempt deletes the victims chosen for pod and nominates node in the
// pod's status; the pod is placed when the victims are gone (their
// deletion retries it).
func (s *Scheduler) preempt(ctx context.Context, pod *corev1.Pod, node string, victims []*corev1.Pod) {
	s.log.Info("preempting", "pod", podKey(pod), "node", node, "victims", len(victims))
	for _, v := range victims {
		uid := v.UID
		err := s.client.CoreV1().Pods(v.Namespace).Delete(ctx, v.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			s.log.Info("preemption: delete victim", "victim", podKey(v), "err", err)
			continue
		}
		s.recorder.Eventf(v, corev1.EventTypeNormal, "Preempted", "Preempted by %s on node %s", podKey(pod), node)
	}
	if pod.Status.NominatedNodeName == node {
		return
	}
	cur, err := s.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil || cur.UID != pod.UID || cur.Spec.NodeName != "" {
		return
	}
	cur = cur.DeepCopy()
	cur.Status.NominatedNodeName = node
	if _, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		s.log.Info("preemption: nominate", "pod", podKey(pod), "err", err)
	}
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// setScheduledCondition records PodScheduled on the pod's status, unless it
// already says the same.
func (s *Scheduler) setScheduledCondition(ctx context.Context, pod *corev1.Pod, status corev1.ConditionStatus, reason, msg string) {
	if c := podCondition(pod, corev1.PodScheduled); c != nil && c.Status == status && c.Reason == reason && c.Message == msg {
		return
	}
	for attempt := 0; attempt < 3; attempt++ {
		cur, err := s.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || cur.UID != pod.UID {
			return
		}
		if status == corev1.ConditionFalse && cur.Spec.NodeName != "" {
			return // placed meanwhile
		}
		cur = cur.DeepCopy()
		now := metav1.Now()
		cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: status, Reason: reason, Message: msg, LastProbeTime: now, LastTransitionTime: now}
		if c := podCondition(cur, corev1.PodScheduled); c != nil {
			if c.Status == status && c.Reason == reason && c.Message == msg {
				return
			}
			if c.Status == status {
				cond.LastTransitionTime = c.LastTransitionTime
			}
			*c = cond
		} else {
			cur.Status.Conditions = append(cur.Status.Conditions, cond)
		}
		_, err = s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil || !apierrors.IsConflict(err) {
			if err != nil && ctx.Err() == nil {
				s.log.Info("pod status", "pod", podKey(pod), "err", fmt.Sprint(err))
			}
			return
		}
	}
}
