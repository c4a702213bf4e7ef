// Package daemonset is the DaemonSet controller: one pod per eligible node
// (nodeSelector, required node affinity, taints against the pod's
// tolerations plus the ones Kubernetes adds to daemon pods), including
// nodes that join later; pods leave nodes that stop being eligible. Updates
// roll out with RollingUpdate (maxUnavailable, maxSurge) or OnDelete, and
// each template is recorded in a ControllerRevision, so `kubectl rollout
// history|undo|status ds/NAME` work.
//
// Daemon pods are created already bound (spec.nodeName) and also carry the
// required node affinity on metadata.name that Kubernetes gives them, so
// they do not depend on the scheduler and still say where they belong.
package daemonset

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"github.com/berth/berth/internal/cluster/kube"
)

// templateGenerationLabel is the pod label Kubernetes sets to the
// DaemonSet's generation (apps/v1 has the key only in the extensions API).
const templateGenerationLabel = "pod-template-generation"

// Component returns the DaemonSet controller as a server component.
func Component() kube.Component {
	return kube.Component{Name: "daemonset-controller", Run: func(ctx context.Context, c *kube.Clients) error {
		i := c.Informers
		ctl := New(c.Client, i.Apps().V1().DaemonSets().Informer(), i.Core().V1().Nodes().Informer(), i.Core().V1().Pods().Informer(),
			c.Recorder("daemonset-controller", ""), c.Logger)
		i.Start(ctx.Done())
		return ctl.Run(ctx, 2)
	}}
}

// Controller reconciles DaemonSets.
type Controller struct {
	client   kubernetes.Interface
	sets     appslisters.DaemonSetLister
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
	recorder record.EventRecorder
	log      *slog.Logger
	queue    workqueue.TypedRateLimitingInterface[string]
}

// New builds a controller on informers the caller starts.
func New(client kubernetes.Interface, sets, nodes, pods cache.SharedIndexInformer, rec record.EventRecorder, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	c := &Controller{
		client: client, sets: appslisters.NewDaemonSetLister(sets.GetIndexer()), nodes: corelisters.NewNodeLister(nodes.GetIndexer()),
		synced:   []cache.InformerSynced{sets.HasSynced, nodes.HasSynced, pods.HasSynced},
		recorder: rec, log: log.With("component", "daemonset-controller"),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second)),
	}
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	_, _ = sets.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }})
	all := func(any) {
		list, _ := c.sets.List(labels.Everything())
		for _, ds := range list {
			enqueue(ds)
		}
	}
	_, _ = nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: all, DeleteFunc: all,
		UpdateFunc: func(old, obj any) {
			o, n := old.(*corev1.Node), obj.(*corev1.Node)
			if !apiequality.Semantic.DeepEqual(o.Labels, n.Labels) || !apiequality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints) {
				all(obj)
			}
		},
	})
	owner := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok {
			if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "DaemonSet" {
				c.queue.Add(p.Namespace + "/" + ref.Name)
			}
		}
	}
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: owner, UpdateFunc: func(_, o any) { owner(o) }, DeleteFunc: owner})
	return c
}

// Run works with n workers until ctx ends.
func (c *Controller) Run(ctx context.Context, n int) error {
	return kube.RunQueue(ctx, c.queue, c.synced, n, c.log, "daemonset", c.sync)
}

// nodeState is one node as the DaemonSet sees it.
type nodeState struct {
	node                      *corev1.Node
	shouldRun, shouldContinue bool
	pods                      []*corev1.Pod // live (not deleting, not finished) pods
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	cached, err := c.sets.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if cached.DeletionTimestamp != nil {
		return 0, nil
	}
	ds := cached.DeepCopy()
	hash, err := c.ensureRevision(ctx, ds)
	if err != nil {
		return 0, err
	}
	pods, err := c.pods(ctx, ds)
	if err != nil {
		return 0, err
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	tmpl := newPod(ds, "", hash)
	byNode := map[string]*nodeState{}
	for _, n := range nodes {
		run, cont := fits(tmpl, n)
		byNode[n.Name] = &nodeState{node: n, shouldRun: run, shouldContinue: cont}
	}
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		st := byNode[p.Spec.NodeName]
		if st == nil || p.Status.Phase == corev1.PodFailed {
			// Pods of missing nodes, and failed daemon pods, are replaced.
			c.delete(ctx, ds, p)
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		st.pods = append(st.pods, p)
	}
	surge, unavailable := budgets(ds, countShouldRun(byNode))
	now := time.Now()
	var after time.Duration
	for _, n := range nodes {
		st := byNode[n.Name]
		switch {
		case !st.shouldContinue:
			for _, p := range st.pods {
				c.delete(ctx, ds, p)
			}
			st.pods = nil
		case len(st.pods) == 0 && st.shouldRun:
			if err := c.create(ctx, ds, n.Name, hash); err != nil {
				return 0, err
			}
		case len(st.pods) > 1:
			// Keep the newest updated pod and, while surging, one old
			// available pod; delete the rest.
			st.pods = c.dedupe(ctx, ds, st.pods, hash, surge > 0)
		}
	}
	if isRollingUpdate(ds) {
		wait, err := c.rollingUpdate(ctx, ds, byNode, hash, surge, unavailable, now)
		if err != nil {
			return 0, err
		}
		after = wait
	}
	if wait := c.updateStatus(ctx, cached, byNode, hash, now); wait > 0 && (after == 0 || wait < after) {
		after = wait
	}
	return after, nil
}

// pods lists the DaemonSet's pods from the API server (never a stale cache,
// so a pod is not created twice for one node).
func (c *Controller) pods(ctx context.Context, ds *appsv1.DaemonSet) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("daemonset %s/%s selector: %w", ds.Namespace, ds.Name, err)
	}
	list, err := c.client.CoreV1().Pods(ds.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for i := range list.Items {
		p := &list.Items[i]
		if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == ds.UID {
			out = append(out, p)
		}
	}
	return out, nil
}

// fits reports whether a daemon pod should run on n, and whether one
// already there may stay: NoSchedule taints keep new pods off but do not
// evict; NoExecute taints do both.
func fits(p *corev1.Pod, n *corev1.Node) (shouldRun, shouldContinue bool) {
	if ok, _ := nodeaffinity.GetRequiredNodeAffinity(p).Match(n); !ok {
		return false, false
	}
	logger := klog.Background()
	shouldRun, shouldContinue = true, true
	for i := range n.Spec.Taints {
		t := &n.Spec.Taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		tolerated := false
		for j := range p.Spec.Tolerations {
			if p.Spec.Tolerations[j].ToleratesTaint(logger, t, false) {
				tolerated = true
				break
			}
		}
		if !tolerated {
			shouldRun = false
			if t.Effect == corev1.TaintEffectNoExecute {
				shouldContinue = false
			}
		}
	}
	return shouldRun, shouldContinue
}

// daemonTolerations are the tolerations Kubernetes adds to every daemon
// pod: daemons stay on not-ready, unreachable and pressured nodes, and run
// on cordoned ones.
func daemonTolerations(hostNetwork bool) []corev1.Toleration {
	ts := []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	}
	if hostNetwork {
		ts = append(ts, corev1.Toleration{Key: corev1.TaintNodeNetworkUnavailable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	}
	return ts
}

// newPod is a daemon pod for node ("" for the template used to judge
// nodes).
func newPod(ds *appsv1.DaemonSet, node, hash string) *corev1.Pod {
	t := ds.Spec.Template.DeepCopy()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: ds.Name + "-", Namespace: ds.Namespace, Labels: t.Labels, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))},
		},
		Spec: t.Spec,
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[appsv1.ControllerRevisionHashLabelKey] = hash
	p.Labels[templateGenerationLabel] = strconv.FormatInt(ds.Generation, 10)
	for _, want := range daemonTolerations(p.Spec.HostNetwork) {
		have := false
		for _, t := range p.Spec.Tolerations {
			if t.MatchToleration(&want) {
				have = true
				break
			}
		}
		if !have {
			p.Spec.Tolerations = append(p.Spec.Tolerations, want)
		}
	}
	if node != "" {
		p.Spec.NodeName = node
		pinToNode(&p.Spec, node)
	}
	return p
}

// pinToNode replaces any metadata.name field requirement of the pod's
// required node affinity with one for node, as Kubernetes does.
func pinToNode(s *corev1.PodSpec, node string) {
	req := corev1.NodeSelectorRequirement{Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}
	if s.Affinity == nil {
		s.Affinity = &corev1.Affinity{}
	}
	if s.Affinity.NodeAffinity == nil {
		s.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := s.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil || len(na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms) == 0 {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{req}}}}
		return
	}
	terms := na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for i := range terms {
		var fields []corev1.NodeSelectorRequirement
		for _, f := range terms[i].MatchFields {
			if f.Key != metav1.ObjectNameField {
				fields = append(fields, f)
			}
		}
		terms[i].MatchFields = append(fields, req)
	}
}

func (c *Controller) create(ctx context.Context, ds *appsv1.DaemonSet, node, hash string) error {
	out, err := c.client.CoreV1().Pods(ds.Namespace).Create(ctx, newPod(ds, node, hash), metav1.CreateOptions{})
	if err != nil {
		c.recorder.Eventf(ds, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return err
	}
	c.recorder.Eventf(ds, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", out.Name)
	return nil
}

func (c *Controller) delete(ctx context.Context, ds *appsv1.DaemonSet, p *corev1.Pod) {
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err == nil {
		c.recorder.Eventf(ds, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
	}
}

// dedupe keeps, of several live pods on one node, the newest updated pod
// and, while surging (or when no pod is updated), the oldest old pod; it
// deletes the rest.
func (c *Controller) dedupe(ctx context.Context, ds *appsv1.DaemonSet, pods []*corev1.Pod, hash string, surging bool) []*corev1.Pod {
	sort.Slice(pods, func(i, j int) bool { return pods[j].CreationTimestamp.Before(&pods[i].CreationTimestamp) }) // newest first
	var newest, oldest *corev1.Pod
	for _, p := range pods {
		if p.Labels[appsv1.ControllerRevisionHashLabelKey] == hash {
			if newest == nil {
				newest = p
			}
		} else {
			oldest = p
		}
	}
	var keep []*corev1.Pod
	for _, p := range pods {
		if p == newest || (p == oldest && (surging || newest == nil)) {
			keep = append(keep, p)
			continue
		}
		c.delete(ctx, ds, p)
	}
	return keep
}

func isRollingUpdate(ds *appsv1.DaemonSet) bool {
	return ds.Spec.UpdateStrategy.Type == "" || ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType
}

func countShouldRun(byNode map[string]*nodeState) int {
	n := 0
	for _, st := range byNode {
		if st.shouldRun {
			n++
		}
	}
	return n
}

// budgets resolves maxSurge and maxUnavailable against the number of nodes
// that should run a pod (percentages round up, as in Kubernetes); at least
// one of them is positive.
func budgets(ds *appsv1.DaemonSet, desired int) (surge, unavailable int) {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
	mu, ms := &one, &zero
	if ru != nil {
		if ru.MaxUnavailable != nil {
			mu = ru.MaxUnavailable
		}
		if ru.MaxSurge != nil {
			ms = ru.MaxSurge
		}
	}
	surge, _ = intstr.GetScaledValueFromIntOrPercent(ms, desired, true)
	unavailable, _ = intstr.GetScaledValueFromIntOrPercent(mu, desired, true)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}

// rollingUpdate replaces old pods: without surge, it deletes old pods while
// fewer than maxUnavailable nodes lack an available pod (the next sync
// creates their new pods); with surge, it starts new pods beside old ones on
// up to maxSurge nodes and deletes each old pod once its new one is
// available. Old pods that are not available are replaced at once either
// way: nothing is lost by it.
func (c *Controller) rollingUpdate(ctx context.Context, ds *appsv1.DaemonSet, byNode map[string]*nodeState, hash string, surge, maxUnavailable int, now time.Time) (time.Duration, error) {
	minReady := time.Duration(ds.Spec.MinReadySeconds) * time.Second
	var after time.Duration
	note := func(p *corev1.Pod) bool {
		ok, wait := available(p, minReady, now)
		if !ok && wait > 0 && (after == 0 || wait < after) {
			after = wait
		}
		return ok
	}
	names := make([]string, 0, len(byNode))
	for n := range byNode {
		names = append(names, n)
	}
	sort.Strings(names)
	unavailable, surging := 0, 0
	var candidates []*corev1.Pod
	type pair struct{ oldPod, newPod *corev1.Pod }
	state := map[string]pair{}
	for _, n := range names {
		st := byNode[n]
		if !st.shouldRun {
			continue
		}
		var pr pair
		for _, p := range st.pods {
			if p.Labels[appsv1.ControllerRevisionHashLabelKey] == hash {
				pr.newPod = p
			} else {
				pr.oldPod = p
			}
		}
		state[n] = pr
		switch {
		case pr.newPod == nil && pr.oldPod == nil:
			unavailable++
		case pr.newPod != nil && pr.oldPod != nil:
			surging++
			if note(pr.newPod) {
				c.delete(ctx, ds, pr.oldPod)
			}
		case pr.newPod != nil:
			if !note(pr.newPod) {
				unavailable++
			}
		default:
			if !note(pr.oldPod) {
				c.delete(ctx, ds, pr.oldPod) // already unavailable
				unavailable++
				continue
			}
			candidates = append(candidates, pr.oldPod)
		}
	}
	if surge > 0 {
		for _, p := range candidates {
			if surging >= surge {
				break
			}
			if err := c.create(ctx, ds, p.Spec.NodeName, hash); err != nil {
				return 0, err
			}
			surging++
		}
		return after, nil
	}
	for _, p := range candidates {
		if unavailable >= maxUnavailable {
			break
		}
		c.delete(ctx, ds, p)
		unavailable++
	}
	return after, nil
}

// available reports whether p has been Ready for minReady; if it is Ready
// but not yet for long enough, wait says how long remains.
func available(p *corev1.Pod, minReady time.Duration, now time.Time) (ok bool, wait time.Duration) {
	if p.DeletionTimestamp != nil {
		return false, 0
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			if minReady == 0 {
				return true, 0
			}
			at := c.LastTransitionTime.Add(minReady)
			if !now.Before(at) {
				return true, 0
			}
			return false, at.Sub(now)
		}
	}
	return false, 0
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (c *Controller) updateStatus(ctx context.Context, cached *appsv1.DaemonSet, byNode map[string]*nodeState, hash string, now time.Time) time.Duration {
	ds := cached.DeepCopy()
	var desired, current, misscheduled, readyN, availableN, updated int32
	var after time.Duration
	minReady := time.Duration(ds.Spec.MinReadySeconds) * time.Second
	for _, st := range byNode {
		if !st.shouldRun {
			if len(st.pods) > 0 {
				misscheduled++
			}
			continue
		}
		desired++
		if len(st.pods) == 0 {
			continue
		}
		current++
		for _, p := range st.pods {
			if p.Labels[appsv1.ControllerRevisionHashLabelKey] == hash {
				updated++
				break
			}
		}
		// The node counts as ready/available if its newest pod is.
		p := st.pods[0]
		for _, q := range st.pods[1:] {
			if p.CreationTimestamp.Before(&q.CreationTimestamp) {
				p = q
			}
		}
		if ready(p) {
			readyN++
		}
		if ok, wait := available(p, minReady, now); ok {
			availableN++
		} else if wait > 0 && (after == 0 || wait < after) {
			after = wait
		}
	}
	s := &ds.Status
	s.DesiredNumberScheduled, s.CurrentNumberScheduled, s.NumberMisscheduled = desired, current, misscheduled
	s.NumberReady, s.NumberAvailable, s.NumberUnavailable, s.UpdatedNumberScheduled = readyN, availableN, desired-availableN, updated
	s.ObservedGeneration = ds.Generation
	if !apiequality.Semantic.DeepEqual(cached.Status, ds.Status) {
		if _, err := c.client.AppsV1().DaemonSets(ds.Namespace).UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
			c.queue.AddRateLimited(ds.Namespace + "/" + ds.Name)
		}
	}
	return after
}

// revisionData is what Kubernetes stores in a DaemonSet's
// ControllerRevision: a strategic merge patch that replaces the template,
// which `kubectl rollout history|undo` apply.
func revisionData(ds *appsv1.DaemonSet) ([]byte, error) {
	b, err := json.Marshal(ds.Spec.Template)
	if err != nil {
		return nil, err
	}
	var tmpl map[string]any
	if err := json.Unmarshal(b, &tmpl); err != nil {
		return nil, err
	}
	tmpl["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": tmpl}})
}

// templateHash names the template's revision (the controller-revision-hash
// label of its pods).
func templateHash(ds *appsv1.DaemonSet) string {
	b, _ := json.Marshal(ds.Spec.Template)
	h := fnv.New32a()
	h.Write(b)
	if ds.Status.CollisionCount != nil {
		fmt.Fprint(h, *ds.Status.CollisionCount)
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// ensureRevision makes sure the current template has a ControllerRevision
// with the highest revision number, and prunes old revisions beyond
// revisionHistoryLimit. It returns the template's hash.
func (c *Controller) ensureRevision(ctx context.Context, ds *appsv1.DaemonSet) (string, error) {
	hash := templateHash(ds)
	name := ds.Name + "-" + hash
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return "", err
	}
	api := c.client.AppsV1().ControllerRevisions(ds.Namespace)
	list, err := api.List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return "", err
	}
	var owned []appsv1.ControllerRevision
	var top int64
	var cur *appsv1.ControllerRevision
	for i := range list.Items {
		r := list.Items[i]
		if ref := metav1.GetControllerOf(&r); ref == nil || ref.UID != ds.UID {
			continue
		}
		owned = append(owned, r)
		top = max(top, r.Revision)
		if r.Name == name {
			cur = &owned[len(owned)-1]
		}
	}
	data, err := revisionData(ds)
	if err != nil {
		return "", err
	}
	switch {
	case cur == nil:
		labels := map[string]string{}
		for k, v := range ds.Spec.Template.Labels {
			labels[k] = v
		}
		labels[appsv1.ControllerRevisionHashLabelKey] = hash
		r := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ds.Namespace, Labels: labels,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))}},
			Data:     runtime.RawExtension{Raw: data},
			Revision: top + 1,
		}
		if _, err := api.Create(ctx, r, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("controllerrevision %s: %w", name, err)
		}
		owned = append(owned, *r)
	case cur.Revision < top:
		// A rollback to an earlier template makes it the newest revision.
		next := cur.DeepCopy()
		next.Revision = top + 1
		if _, err := api.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
			return "", err
		}
		cur.Revision = top + 1
	}
	limit := int32(10)
	if ds.Spec.RevisionHistoryLimit != nil {
		limit = *ds.Spec.RevisionHistoryLimit
	}
	var old []appsv1.ControllerRevision
	for _, r := range owned {
		if r.Name != name {
			old = append(old, r)
		}
	}
	if len(old) > int(limit) {
		inUse, err := c.hashesInUse(ctx, ds)
		if err != nil {
			return "", err
		}
		sort.Slice(old, func(i, j int) bool { return old[i].Revision < old[j].Revision })
		for _, r := range old[:len(old)-int(limit)] {
			if !inUse[r.Labels[appsv1.ControllerRevisionHashLabelKey]] {
				_ = api.Delete(ctx, r.Name, metav1.DeleteOptions{})
			}
		}
	}
	return hash, nil
}

func (c *Controller) hashesInUse(ctx context.Context, ds *appsv1.DaemonSet) (map[string]bool, error) {
	pods, err := c.pods(ctx, ds)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, p := range pods {
		out[p.Labels[appsv1.ControllerRevisionHashLabelKey]] = true
	}
	return out, nil
}
