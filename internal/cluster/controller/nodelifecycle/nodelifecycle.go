// Package nodelifecycle owns what happens to a node that stops talking:
// the node monitor (a node whose Lease in kube-node-lease is not renewed
// within the grace period goes Ready=Unknown, its pods Ready=False, and it
// gets the unreachable/not-ready taints), taint-based eviction (pods that do
// not tolerate a node's NoExecute taints, or tolerate them only for
// tolerationSeconds, are deleted) and the pod garbage collector (pods bound
// to nodes that no longer exist are force-deleted).
//
// These are Kubernetes' node-lifecycle-controller, taint-eviction-controller
// and pod-garbage-collector, with shorter default timings so that a lost
// node's pods run elsewhere within 10 s (see docs/controllers.md).
package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/berth/berth/internal/cluster/kube"
)

// LeaseNamespace holds one Lease per node, named after the node, renewed by
// the node's agent.
const LeaseNamespace = corev1.NamespaceNodeLease

// Options tune the controller. Zero values take the defaults below.
type Options struct {
	// GracePeriod is how long a node may go without renewing its Lease (or
	// posting a new Ready heartbeat) before it is marked Unknown. Default
	// DefaultGracePeriod. It must exceed the agent's renew interval (1 s).
	GracePeriod time.Duration
	// StartupGracePeriod applies instead to a node that has no Lease at all
	// (being set up, or made by hand). Default DefaultStartupGracePeriod.
	StartupGracePeriod time.Duration
	// MonitorPeriod is how often node health is checked. Default
	// DefaultMonitorPeriod.
	MonitorPeriod time.Duration
	// PodGCPeriod is how often pods bound to missing nodes are looked for.
	// Default DefaultPodGCPeriod.
	PodGCPeriod time.Duration
}

// The defaults, chosen so that a killed node's pods are deleted (and so
// replaced) within about 7 s: the agent renews every 1 s, a node is Unknown
// 4 s after its last renewal (checked every 0.5 s), and pods tolerate the
// unreachable taint for 2 s (the API server's default toleration).
// Kubernetes uses 40-50 s, 5 s and 300 s.
const (
	DefaultGracePeriod        = 4 * time.Second
	DefaultStartupGracePeriod = 60 * time.Second
	DefaultMonitorPeriod      = 500 * time.Millisecond
	DefaultPodGCPeriod        = 5 * time.Second
)

func (o *Options) defaults() {
	if o.GracePeriod <= 0 {
		o.GracePeriod = DefaultGracePeriod
	}
	if o.StartupGracePeriod <= 0 {
		o.StartupGracePeriod = DefaultStartupGracePeriod
	}
	if o.MonitorPeriod <= 0 {
		o.MonitorPeriod = DefaultMonitorPeriod
	}
	if o.PodGCPeriod <= 0 {
		o.PodGCPeriod = DefaultPodGCPeriod
	}
}

// Component returns the controller as a server component.
func Component(o Options) kube.Component {
	return kube.Component{Name: "node-lifecycle-controller", Run: func(ctx context.Context, c *kube.Clients) error {
		ctl := New(o, c.Client, c.Informers.Core().V1().Nodes().Informer(), c.Informers.Coordination().V1().Leases().Informer(),
			c.Informers.Core().V1().Pods().Informer(), c.Recorder("node-controller", ""), c.Logger)
		c.Informers.Start(ctx.Done())
		return ctl.Run(ctx)
	}}
}

// Controller is the node monitor, the taint eviction and the pod GC.
type Controller struct {
	o        Options
	client   kubernetes.Interface
	nodes    corelisters.NodeLister
	leases   coordlisters.LeaseLister
	pods     cache.Indexer
	synced   []cache.InformerSynced
	recorder record.EventRecorder
	log      *slog.Logger

	mu     sync.Mutex
	health map[string]*nodeHealth
	// firstSeen records when eviction first saw a NoExecute taint without
	// timeAdded on a node, by node and taint key.
	firstSeen map[string]time.Time
	// added records when this process added a NoExecute taint, to the
	// nanosecond: timeAdded is stored in whole seconds, and tolerationSeconds
	// must not be cut short by the rounding.
	added map[string]time.Time
	// evicted remembers pods deleted recently, so the status update that
	// precedes a deletion does not trigger a second one.
	evicted map[types.UID]time.Time

	evictions workqueue.TypedDelayingInterface[string]
}

// nodeHealth is what the monitor last observed of a node: the Lease renew
// time and Ready heartbeat, and the local time it saw either change. Local
// observation times (not the node's own timestamps) decide, as in
// Kubernetes, so clock skew between hosts does not matter.
type nodeHealth struct {
	probe     time.Time
	renew     time.Time
	heartbeat time.Time
}

const nodeNameIndex = "berth-nodelifecycle/spec.nodeName"

// New builds a controller on informers the caller starts.
func New(o Options, client kubernetes.Interface, nodes, leases, pods cache.SharedIndexInformer, rec record.EventRecorder, log *slog.Logger) *Controller {
	o.defaults()
	if log == nil {
		log = slog.Default()
	}
	_ = pods.AddIndexers(cache.Indexers{nodeNameIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}})
	c := &Controller{
		o: o, client: client,
		nodes:     corelisters.NewNodeLister(nodes.GetIndexer()),
		leases:    coordlisters.NewLeaseLister(leases.GetIndexer()),
		pods:      pods.GetIndexer(),
		synced:    []cache.InformerSynced{nodes.HasSynced, leases.HasSynced, pods.HasSynced},
		recorder:  rec,
		log:       log.With("component", "node-lifecycle-controller"),
		health:    map[string]*nodeHealth{},
		firstSeen: map[string]time.Time{},
		added:     map[string]time.Time{},
		evicted:   map[types.UID]time.Time{},
		evictions: workqueue.NewTypedDelayingQueue[string](),
	}
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueuePod(obj) },
		UpdateFunc: func(_, obj any) { c.enqueuePod(obj) },
	})
	_, _ = nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.enqueueNodePods(obj) },
		UpdateFunc: func(old, obj any) {
			o, n := old.(*corev1.Node), obj.(*corev1.Node)
			if !equalTaints(noExecute(o.Spec.Taints), noExecute(n.Spec.Taints)) {
				c.enqueueNodePods(obj)
			}
		},
	})
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer c.evictions.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	c.log.Info("started", "grace", c.o.GracePeriod, "monitor", c.o.MonitorPeriod)
	go func() {
		for c.processEviction(ctx) {
		}
	}()
	go func() {
		t := time.NewTicker(c.o.PodGCPeriod)
		defer t.Stop()
		for {
			c.collectPods(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	t := time.NewTicker(c.o.MonitorPeriod)
	defer t.Stop()
	for {
		c.monitor(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// monitor checks every node once.
func (c *Controller) monitor(ctx context.Context) {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		seen[n.Name] = true
		if err := c.monitorNode(ctx, n); err != nil && ctx.Err() == nil {
			c.log.Warn("node update failed", "node", n.Name, "err", err)
		}
	}
	c.mu.Lock()
	for name := range c.health {
		if !seen[name] {
			delete(c.health, name)
		}
	}
	c.mu.Unlock()
}

func (c *Controller) lease(name string) *coordinationv1.Lease {
	l, err := c.leases.Leases(LeaseNamespace).Get(name)
	if err != nil {
		return nil
	}
	return l
}

// observe updates the node's probe time and reports how long it has been
// silent and the grace that applies.
func (c *Controller) observe(n *corev1.Node, now time.Time) (silent, grace time.Duration) {
	var renew, heartbeat time.Time
	l := c.lease(n.Name)
	if l != nil && l.Spec.RenewTime != nil {
		renew = l.Spec.RenewTime.Time
	}
	if rc := condition(n, corev1.NodeReady); rc != nil {
		heartbeat = rc.LastHeartbeatTime.Time
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.health[n.Name]
	switch {
	case h == nil:
		// A node first seen (or a new leader) gets a full grace period.
		h = &nodeHealth{probe: now, renew: renew, heartbeat: heartbeat}
		c.health[n.Name] = h
	case !renew.Equal(h.renew) || !heartbeat.Equal(h.heartbeat):
		h.probe, h.renew, h.heartbeat = now, renew, heartbeat
	}
	grace = c.o.GracePeriod
	if l == nil {
		grace = c.o.StartupGracePeriod
	}
	return now.Sub(h.probe), grace
}

// nodeConditions are the conditions the agent reports and the monitor
// turns Unknown.
var nodeConditions = []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure}

func (c *Controller) monitorNode(ctx context.Context, n *corev1.Node) error {
	now := time.Now()
	silent, grace := c.observe(n, now)
	if silent > grace {
		if rc := condition(n, corev1.NodeReady); rc == nil || rc.Status != corev1.ConditionUnknown {
			next, err := c.markUnknown(ctx, n, now)
			if err != nil {
				return err
			}
			n = next
		}
	}
	if err := c.reconcileTaints(ctx, n); err != nil {
		return err
	}
	if rc := condition(n, corev1.NodeReady); rc != nil && rc.Status == corev1.ConditionUnknown {
		c.markPodsNotReady(ctx, n.Name)
	}
	return nil
}

// markUnknown sets every node condition Unknown, as Kubernetes does when the
// kubelet stops posting status.
func (c *Controller) markUnknown(ctx context.Context, n *corev1.Node, now time.Time) (*corev1.Node, error) {
	n = n.DeepCopy()
	t := metav1.NewTime(now)
	for _, ct := range nodeConditions {
		cond := condition(n, ct)
		if cond == nil {
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{
				Type: ct, Status: corev1.ConditionUnknown, Reason: "NodeStatusNeverUpdated",
				Message: "Kubelet never posted node status.", LastHeartbeatTime: t, LastTransitionTime: t,
			})
			continue
		}
		if cond.Status != corev1.ConditionUnknown {
			cond.LastTransitionTime = t
		}
		cond.Status, cond.Reason, cond.Message = corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."
	}
	out, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("mark node %s Unknown: %w", n.Name, err)
	}
	c.log.Info("node stopped renewing its lease: Ready=Unknown", "node", n.Name, "grace", c.o.GracePeriod)
	c.recorder.Eventf(out, corev1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", n.Name)
	return out, nil
}

// wantTaints are the taints the node's conditions call for, among the keys
// this controller manages.
func wantTaints(n *corev1.Node) []corev1.Taint {
	var out []corev1.Taint
	add := func(key string, effects ...corev1.TaintEffect) {
		for _, e := range effects {
			out = append(out, corev1.Taint{Key: key, Effect: e})
		}
	}
	if rc := condition(n, corev1.NodeReady); rc != nil {
		switch rc.Status {
		case corev1.ConditionFalse:
			add(corev1.TaintNodeNotReady, corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute)
		case corev1.ConditionUnknown:
			add(corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute)
		}
	}
	for ct, key := range map[corev1.NodeConditionType]string{
		corev1.NodeMemoryPressure:     corev1.TaintNodeMemoryPressure,
		corev1.NodeDiskPressure:       corev1.TaintNodeDiskPressure,
		corev1.NodePIDPressure:        corev1.TaintNodePIDPressure,
		corev1.NodeNetworkUnavailable: corev1.TaintNodeNetworkUnavailable,
	} {
		if cond := condition(n, ct); cond != nil && cond.Status == corev1.ConditionTrue {
			add(key, corev1.TaintEffectNoSchedule)
		}
	}
	if n.Spec.Unschedulable {
		add(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)
	}
	return out
}

var managedTaintKeys = map[string]bool{
	corev1.TaintNodeNotReady: true, corev1.TaintNodeUnreachable: true, corev1.TaintNodeMemoryPressure: true,
	corev1.TaintNodeDiskPressure: true, corev1.TaintNodePIDPressure: true, corev1.TaintNodeNetworkUnavailable: true,
	corev1.TaintNodeUnschedulable: true,
}

// nextTaints returns the node's taints with the managed ones replaced by
// want, keeping timeAdded of taints already present; changed reports a
// difference.
func nextTaints(cur, want []corev1.Taint, now time.Time) (out []corev1.Taint, changed bool) {
	has := func(list []corev1.Taint, t corev1.Taint) *corev1.Taint {
		for i := range list {
			if list[i].Key == t.Key && list[i].Effect == t.Effect {
				return &list[i]
			}
		}
		return nil
	}
	for _, t := range cur {
		if managedTaintKeys[t.Key] && has(want, t) == nil {
			changed = true
			continue
		}
		out = append(out, t)
	}
	for _, t := range want {
		if has(cur, t) != nil {
			continue
		}
		if t.Effect == corev1.TaintEffectNoExecute {
			ta := metav1.NewTime(now)
			t.TimeAdded = &ta
		}
		out = append(out, t)
		changed = true
	}
	return out, changed
}

func (c *Controller) reconcileTaints(ctx context.Context, n *corev1.Node) error {
	taints, changed := nextTaints(n.Spec.Taints, wantTaints(n), time.Now())
	if !changed {
		return nil
	}
	for attempt := 0; ; attempt++ {
		next := n.DeepCopy()
		next.Spec.Taints = taints
		_, err := c.client.CoreV1().Nodes().Update(ctx, next, metav1.UpdateOptions{})
		if err == nil {
			c.mu.Lock()
			for _, t := range taints {
				if t.TimeAdded != nil && !t.TimeAdded.IsZero() {
					k := n.Name + "\x00" + t.Key
					if prev, ok := c.added[k]; !ok || !prev.Truncate(time.Second).Equal(t.TimeAdded.Truncate(time.Second)) {
						c.added[k] = t.TimeAdded.Time
					}
				}
			}
			c.mu.Unlock()
			c.log.Info("node taints", "node", n.Name, "taints", taintStrings(taints))
			return nil
		}
		if !apierrors.IsConflict(err) || attempt > 3 {
			return fmt.Errorf("taint node %s: %w", n.Name, err)
		}
		n, err = c.client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if taints, changed = nextTaints(n.Spec.Taints, wantTaints(n), time.Now()); !changed {
			return nil
		}
	}
}

// markPodsNotReady sets Ready=False on the pods of a node that stopped
// reporting: nobody vouches for them any more (Kubernetes does the same, so
// Services stop sending them traffic).
func (c *Controller) markPodsNotReady(ctx context.Context, node string) {
	objs, _ := c.pods.ByIndex(nodeNameIndex, node)
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		i := podCondition(p, corev1.PodReady)
		if i < 0 || p.Status.Conditions[i].Status == corev1.ConditionFalse {
			continue
		}
		p = p.DeepCopy()
		cond := &p.Status.Conditions[i]
		cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, "NodeNotReady", "Node "+node+" stopped posting status"
		cond.LastTransitionTime = metav1.Now()
		if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
			c.log.Warn("mark pod not ready", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
	}
}

func condition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) int {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return i
		}
	}
	return -1
}

func taintStrings(ts []corev1.Taint) []string {
	var s []string
	for i := range ts {
		s = append(s, ts[i].ToString())
	}
	return s
}
