// Package statefulset is the StatefulSet controller (apps/v1): pods with a
// stable identity <set>-<ordinal> (hostname and subdomain for per-pod DNS
// through a headless Service), each with its own PersistentVolumeClaims
// made from the volumeClaimTemplates and kept across restarts and
// reschedules. It follows Kubernetes' semantics:
//
//   - OrderedReady (the default) creates ordinals in order, each only once
//     the previous one is Running and Ready, scales down from the highest
//     ordinal one pod at a time waiting for it to be gone, and halts while
//     any pod is unhealthy; Parallel creates and deletes without waiting.
//   - RollingUpdate (the default) replaces pods from the highest ordinal
//     down to the partition, one at a time, each only once the one before
//     is Running and available; OnDelete leaves replacement to the user.
//   - Failed pods are deleted and recreated under the same name; a deleted
//     pod comes back under its name.
//   - Every template is recorded in a ControllerRevision (the pods'
//     controller-revision-hash label names it), so `kubectl rollout
//     status|history|undo statefulset/NAME` work.
//   - PVCs are kept on scale-down and deletion unless
//     persistentVolumeClaimRetentionPolicy says Delete, which is carried out
//     by ownerReferences (to the set for whenDeleted, to the condemned pod
//     for whenScaled) that the API server's garbage collector follows.
package statefulset

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/berth/berth/internal/cluster/kube"
)

// Name is the controller's event source and component name.
const Name = "statefulset-controller"

// Pod labels Kubernetes gives every StatefulSet pod.
const (
	podNameLabel  = appsv1.StatefulSetPodNameLabel // statefulset.kubernetes.io/pod-name
	podIndexLabel = appsv1.PodIndexLabel           // apps.kubernetes.io/pod-index
)

var kindSet = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// Component runs the controller on the leading server.
func Component() kube.Component {
	return kube.Component{Name: Name, Run: func(ctx context.Context, c *kube.Clients) error {
		i := c.Informers
		ctl := New(c.Client, i.Apps().V1().StatefulSets().Informer(), i.Core().V1().Pods().Informer(),
			i.Core().V1().PersistentVolumeClaims().Informer(), c.Recorder(Name, ""), c.Logger)
		i.Start(ctx.Done())
		return ctl.Run(ctx, 2)
	}}
}

// Controller reconciles StatefulSets. Build it with New.
type Controller struct {
	client   kubernetes.Interface
	sets     appslisters.StatefulSetLister
	pods     corelisters.PodLister
	claims   corelisters.PersistentVolumeClaimLister
	synced   []cache.InformerSynced
	recorder record.EventRecorder
	log      *slog.Logger
	queue    workqueue.TypedRateLimitingInterface[string]
	now      func() time.Time
}

// New builds a controller on informers the caller starts.
func New(client kubernetes.Interface, sets, pods, claims cache.SharedIndexInformer, rec record.EventRecorder, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	c := &Controller{
		client: client, sets: appslisters.NewStatefulSetLister(sets.GetIndexer()),
		pods: corelisters.NewPodLister(pods.GetIndexer()), claims: corelisters.NewPersistentVolumeClaimLister(claims.GetIndexer()),
		synced:   []cache.InformerSynced{sets.HasSynced, pods.HasSynced, claims.HasSynced},
		recorder: rec, log: log.With("component", Name),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second)),
		now:   time.Now,
	}
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	_, _ = sets.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue})
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: c.podChanged, UpdateFunc: func(_, o any) { c.podChanged(o) }, DeleteFunc: c.podChanged})
	return c
}

// podChanged queues the set that owns a pod, or that could adopt an
// orphan carrying one of its names.
func (c *Controller) podChanged(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOf(p); ref != nil {
		if ref.Kind == kindSet.Kind {
			c.queue.Add(p.Namespace + "/" + ref.Name)
		}
		return
	}
	if i := strings.LastIndexByte(p.Name, '-'); i > 0 {
		if _, err := c.sets.StatefulSets(p.Namespace).Get(p.Name[:i]); err == nil {
			c.queue.Add(p.Namespace + "/" + p.Name[:i])
		}
	}
}

// Run works with n workers until ctx ends.
func (c *Controller) Run(ctx context.Context, n int) error {
	return kube.RunQueue(ctx, c.queue, c.synced, n, c.log, "statefulset", c.sync)
}

// retryTerminatingClaim is how soon a set looks again while a claim it
// needs is still being deleted (claims are not watched for it).
const retryTerminatingClaim = time.Second

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	cached, err := c.sets.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if cached.DeletionTimestamp != nil {
		return 0, nil // the garbage collector removes pods (and claims it owns)
	}
	set := cached.DeepCopy()
	revs, err := c.revisions(ctx, set)
	if err != nil {
		return 0, err
	}
	pods, err := c.podsOf(ctx, set)
	if err != nil {
		return 0, err
	}
	v := newView(set, pods)
	now := c.now()
	after, rerr := c.reconcile(ctx, set, v, revs, now)
	// The status reports what was observed even when an action failed
	// (the key is retried for the error).
	if wait := c.updateStatus(ctx, cached, v, revs, now); wait > 0 && (after == 0 || wait < after) {
		after = wait
	}
	if rerr != nil {
		return 0, rerr
	}
	if err := c.pruneRevisions(ctx, set, revs, pods); err != nil {
		return 0, err
	}
	return after, nil
}

// view is the set's pods sorted into the ordinals it should run
// (slots[i] is ordinal start+i, nil when missing) and the condemned pods
// of ordinals beyond them, highest first.
type view struct {
	start     int
	slots     []*corev1.Pod
	condemned []*corev1.Pod
}

func startOrdinal(set *appsv1.StatefulSet) int {
	if set.Spec.Ordinals != nil {
		return int(set.Spec.Ordinals.Start)
	}
	return 0
}

func replicas(set *appsv1.StatefulSet) int {
	if set.Spec.Replicas == nil {
		return 1
	}
	return int(*set.Spec.Replicas)
}

func newView(set *appsv1.StatefulSet, pods []*corev1.Pod) *view {
	v := &view{start: startOrdinal(set), slots: make([]*corev1.Pod, replicas(set))}
	for _, p := range pods {
		ord := ordinalOf(set, p)
		if ord < 0 {
			continue
		}
		if i := ord - v.start; i >= 0 && i < len(v.slots) {
			v.slots[i] = p
		} else {
			v.condemned = append(v.condemned, p)
		}
	}
	sort.Slice(v.condemned, func(i, j int) bool { return ordinalOf(set, v.condemned[i]) > ordinalOf(set, v.condemned[j]) })
	return v
}

// ordinalOf parses <set>-<ordinal>; -1 if p's name is not of that form.
func ordinalOf(set *appsv1.StatefulSet, p *corev1.Pod) int {
	s, ok := strings.CutPrefix(p.Name, set.Name+"-")
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return -1
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func podName(set *appsv1.StatefulSet, ord int) string { return fmt.Sprintf("%s-%d", set.Name, ord) }

// podsOf lists the set's pods from the informer's cache, adopting orphans
// that match the selector and carry one of the set's pod names (as after
// `kubectl delete sts --cascade=orphan` and a re-create).
func (c *Controller) podsOf(ctx context.Context, set *appsv1.StatefulSet) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("statefulset %s/%s: spec.selector: %w", set.Namespace, set.Name, err)
	}
	list, err := c.pods.Pods(set.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range list {
		ref := metav1.GetControllerOf(p)
		switch {
		case ref != nil && ref.UID == set.UID:
			out = append(out, p)
		case ref == nil && p.DeletionTimestamp == nil && ordinalOf(set, p) >= 0:
			q := p.DeepCopy()
			q.OwnerReferences = append(q.OwnerReferences, *metav1.NewControllerRef(set, kindSet))
			adopted, err := c.client.CoreV1().Pods(q.Namespace).Update(ctx, q, metav1.UpdateOptions{})
			if err != nil {
				return nil, fmt.Errorf("adopt pod %s: %w", p.Name, err)
			}
			out = append(out, adopted)
		}
	}
	return out, nil
}

// health of one pod, as the ordering rules see it.
func runningAndReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && isReady(p)
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// available reports whether p has been Running and Ready for minReady;
// if it is ready but not yet for long enough, wait says how long remains.
func available(p *corev1.Pod, minReady time.Duration, now time.Time) (ok bool, wait time.Duration) {
	if !runningAndReady(p) || p.DeletionTimestamp != nil {
		return false, 0
	}
	if minReady == 0 {
		return true, 0
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			at := c.LastTransitionTime.Add(minReady)
			if !now.Before(at) {
				return true, 0
			}
			return false, at.Sub(now)
		}
	}
	return false, 0
}

func terminating(p *corev1.Pod) bool { return p.DeletionTimestamp != nil }

// failed pods (and, as in Kubernetes, ones that exited Succeeded) are
// deleted and recreated under their name.
func failed(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

func revisionOf(p *corev1.Pod) string { return p.Labels[appsv1.ControllerRevisionHashLabelKey] }

// reconcile is one pass of the StatefulSet rules: replace failed and
// create missing pods, delete condemned ones, then roll the update. With
// OrderedReady each step returns as soon as it has to wait.
func (c *Controller) reconcile(ctx context.Context, set *appsv1.StatefulSet, v *view, revs *revisions, now time.Time) (time.Duration, error) {
	ordered := set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	minReady := time.Duration(set.Spec.MinReadySeconds) * time.Second
	if err := c.reconcileClaimOwners(ctx, set, v); err != nil {
		return 0, err
	}
	partition := 0
	rolling := set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType
	if rolling && set.Spec.UpdateStrategy.RollingUpdate != nil && set.Spec.UpdateStrategy.RollingUpdate.Partition != nil {
		partition = int(*set.Spec.UpdateStrategy.RollingUpdate.Partition)
	}

	// Scale up and repair, lowest ordinal first.
	for i, p := range v.slots {
		ord := v.start + i
		if p != nil && failed(p) && !terminating(p) {
			c.recorder.Eventf(set, corev1.EventTypeWarning, "RecreatingFailedPod", "StatefulSet %s/%s is recreating failed Pod %s", set.Namespace, set.Name, p.Name)
			c.deletePod(ctx, set, p, "failed")
			if ordered {
				return 0, nil
			}
			continue
		}
		if p == nil {
			// Below the partition a recreated pod keeps the current
			// revision; everything else gets the update revision.
			rev := revs.update
			if rolling && i < partition {
				rev = revs.current
			}
			wait, err := c.createPod(ctx, set, ord, rev)
			if err != nil || wait > 0 {
				return wait, err
			}
			if ordered {
				return 0, nil
			}
			continue
		}
		if ordered && (terminating(p) || !runningAndReady(p)) {
			return 0, nil // halt until this ordinal is healthy
		}
	}

	// Scale down, highest ordinal first.
	for _, p := range v.condemned {
		if terminating(p) {
			if ordered {
				return 0, nil // wait for it to be gone
			}
			continue
		}
		if ordered {
			if u := firstUnhealthy(v); u != nil && u != p {
				return 0, nil
			}
		}
		c.deletePod(ctx, set, p, "scale down")
		if ordered {
			return 0, nil
		}
	}

	if !rolling {
		return 0, nil // OnDelete: pods change revision when users delete them
	}
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		return c.rollWithBudget(ctx, set, v, revs, partition, ru.MaxUnavailable, now), nil
	}
	// Roll the update from the highest ordinal down to the partition.
	for i := len(v.slots) - 1; i >= partition && i >= 0; i-- {
		p := v.slots[i]
		if p == nil {
			return 0, nil // being created (Parallel) or waiting its turn
		}
		if revisionOf(p) != revs.update.Name && !terminating(p) {
			c.deletePod(ctx, set, p, "update")
			return 0, nil
		}
		if ok, wait := available(p, minReady, now); !ok {
			return wait, nil
		}
	}
	return 0, nil
}

// rollWithBudget is the rolling update with maxUnavailable set (Kubernetes'
// MaxUnavailableStatefulSet behaviour): while fewer than maxUnavailable
// pods (of all ordinals) are unavailable, old-revision pods at or above
// the partition are deleted from the highest ordinal down, up to the
// remaining budget. It returns how soon a pod becomes available.
func (c *Controller) rollWithBudget(ctx context.Context, set *appsv1.StatefulSet, v *view, revs *revisions, partition int, mu *intstr.IntOrString, now time.Time) time.Duration {
	budget, err := intstr.GetScaledValueFromIntOrPercent(mu, len(v.slots), false)
	if err != nil || budget < 1 {
		budget = 1 // as Kubernetes: a percentage that rounds to 0 still moves
	}
	minReady := time.Duration(set.Spec.MinReadySeconds) * time.Second
	var after time.Duration
	unavailable := 0
	for _, p := range v.slots {
		if p == nil {
			unavailable++
			continue
		}
		if ok, wait := available(p, minReady, now); !ok {
			unavailable++
			if wait > 0 && (after == 0 || wait < after) {
				after = wait
			}
		}
	}
	for i := len(v.slots) - 1; i >= partition && i >= 0 && unavailable < budget; i-- {
		p := v.slots[i]
		if p == nil || terminating(p) || revisionOf(p) == revs.update.Name {
			continue
		}
		wasAvailable, _ := available(p, minReady, now)
		c.deletePod(ctx, set, p, "update")
		if wasAvailable {
			unavailable++
		}
	}
	return after
}

// firstUnhealthy is the lowest-ordinal pod that is not Running and Ready
// or is terminating, counting condemned pods after the live ones.
func firstUnhealthy(v *view) *corev1.Pod {
	for _, p := range v.slots {
		if p != nil && (terminating(p) || !runningAndReady(p)) {
			return p
		}
	}
	for i := len(v.condemned) - 1; i >= 0; i-- {
		if p := v.condemned[i]; terminating(p) || !runningAndReady(p) {
			return p
		}
	}
	return nil
}

func (c *Controller) deletePod(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod, why string) {
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
	switch {
	case err == nil:
		c.recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", p.Name, set.Name)
		c.log.Debug("deleted pod", "statefulset", set.Namespace+"/"+set.Name, "pod", p.Name, "reason", why)
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
	default:
		c.recorder.Eventf(set, corev1.EventTypeWarning, "FailedDelete", "delete Pod %s in StatefulSet %s failed error: %v", p.Name, set.Name, err)
	}
}

// createPod creates ordinal ord's claims (if missing), then its pod at
// revision rev. A positive wait means a claim is still being deleted.
func (c *Controller) createPod(ctx context.Context, set *appsv1.StatefulSet, ord int, rev *appsv1.ControllerRevision) (time.Duration, error) {
	tmpl, err := templateOf(rev)
	if err != nil {
		return 0, err
	}
	pod := newPod(set, tmpl, ord, rev.Name)
	for _, claim := range claimsFor(set, ord) {
		have, err := c.claims.PersistentVolumeClaims(set.Namespace).Get(claim.Name)
		if err == nil {
			if have.DeletionTimestamp != nil {
				c.log.Info("waiting for claim to be deleted before recreating it", "statefulset", set.Namespace+"/"+set.Name, "claim", claim.Name)
				return retryTerminatingClaim, nil
			}
			continue
		}
		if !apierrors.IsNotFound(err) {
			return 0, err
		}
		setClaimOwners(claim, set, nil, wantSetOwner(set, false), false)
		_, err = c.client.CoreV1().PersistentVolumeClaims(set.Namespace).Create(ctx, claim, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // the cache was behind: it is there
		}
		if err != nil {
			c.recorder.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "create Claim %s for Pod %s in StatefulSet %s failed error: %v", claim.Name, pod.Name, set.Name, err)
			return 0, err
		}
		c.recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulCreate", "create Claim %s Pod %s in StatefulSet %s success", claim.Name, pod.Name, set.Name)
	}
	if _, err := c.client.CoreV1().Pods(set.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return 0, err // the cache is behind; retry after it catches up
		}
		c.recorder.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "create Pod %s in StatefulSet %s failed error: %v", pod.Name, set.Name, err)
		return 0, err
	}
	c.recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulCreate", "create Pod %s in StatefulSet %s successful", pod.Name, set.Name)
	return 0, nil
}

// newPod is ordinal ord's pod from tmpl (the template of revision rev).
func newPod(set *appsv1.StatefulSet, tmpl *corev1.PodTemplateSpec, ord int, rev string) *corev1.Pod {
	name := podName(set, ord)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: set.Namespace, Labels: map[string]string{}, Annotations: tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, kindSet)},
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	for k, v := range tmpl.Labels {
		p.Labels[k] = v
	}
	p.Labels[podNameLabel] = name
	p.Labels[podIndexLabel] = strconv.Itoa(ord)
	p.Labels[appsv1.ControllerRevisionHashLabelKey] = rev
	// Stable network identity: <pod>.<serviceName>.<ns>.svc.<domain>.
	p.Spec.Hostname = name
	p.Spec.Subdomain = set.Spec.ServiceName
	// Each claim template becomes a volume of the same name backed by
	// this ordinal's claim, replacing a template volume of that name.
	for _, claim := range set.Spec.VolumeClaimTemplates {
		vol := corev1.Volume{Name: claim.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName(set, claim.Name, ord)}}}
		replaced := false
		for i := range p.Spec.Volumes {
			if p.Spec.Volumes[i].Name == claim.Name {
				p.Spec.Volumes[i], replaced = vol, true
			}
		}
		if !replaced {
			p.Spec.Volumes = append(p.Spec.Volumes, vol)
		}
	}
	return p
}

// pods is every pod of the set: live ordinals, then condemned ones.
func (v *view) pods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range v.slots {
		if p != nil {
			out = append(out, p)
		}
	}
	return append(out, v.condemned...)
}
