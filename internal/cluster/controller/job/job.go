// Package job is the Job controller: it runs a Job's pods until enough of
// them succeed (completions, parallelism, NonIndexed and Indexed
// completion modes), gives up after backoffLimit failures or
// activeDeadlineSeconds, reports status and conditions as Kubernetes 1.32
// does (SuccessCriteriaMet then Complete; FailureTarget then Failed), and
// deletes finished Jobs after ttlSecondsAfterFinished.
//
// Pods are listed from the API server on every sync (not from a cache, so
// a pod just created is never created twice) and counted exactly once with
// the batch.kubernetes.io/job-tracking finalizer and
// status.uncountedTerminatedPods, as in Kubernetes.
package job

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/berth/berth/internal/cluster/kube"
)

// Pod backoff after failures: the next pod waits BackoffBase·2^(failures-1),
// at most BackoffMax. Kubernetes uses 10 s and 6 min; berth is quicker to
// retry, as it is quicker everywhere.
const (
	BackoffBase = time.Second
	BackoffMax  = time.Minute
)

// Component returns the Job controller as a server component.
func Component() kube.Component {
	return kube.Component{Name: "job-controller", Run: func(ctx context.Context, c *kube.Clients) error {
		ctl := New(c.Client, c.Informers.Batch().V1().Jobs().Informer(), c.Informers.Core().V1().Pods().Informer(), c.Recorder("job-controller", ""), c.Logger)
		c.Informers.Start(ctx.Done())
		return ctl.Run(ctx, 4)
	}}
}

// Controller reconciles Jobs.
type Controller struct {
	client   kubernetes.Interface
	jobs     batchlisters.JobLister
	synced   []cache.InformerSynced
	recorder record.EventRecorder
	log      *slog.Logger
	queue    workqueue.TypedRateLimitingInterface[string]
	now      func() time.Time
}

// New builds a controller on informers the caller starts.
func New(client kubernetes.Interface, jobs, pods cache.SharedIndexInformer, rec record.EventRecorder, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	c := &Controller{
		client: client, jobs: batchlisters.NewJobLister(jobs.GetIndexer()),
		synced:   []cache.InformerSynced{jobs.HasSynced, pods.HasSynced},
		recorder: rec, log: log.With("component", "job-controller"),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second)),
		now:   time.Now,
	}
	_, _ = jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
	})
	podOwner := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "Job" {
			c.queue.Add(p.Namespace + "/" + ref.Name)
		}
	}
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: podOwner, UpdateFunc: func(_, obj any) { podOwner(obj) }, DeleteFunc: podOwner,
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// Run works with n workers until ctx ends.
func (c *Controller) Run(ctx context.Context, n int) error {
	return kube.RunQueue(ctx, c.queue, c.synced, n, c.log, "job", c.sync)
}

// counts is what the pods of a Job say.
type counts struct {
	active, ready, terminating []*corev1.Pod
	restarts                   int32 // container restarts of active pods (restartPolicy OnFailure)
	lastFailure                time.Time
	succeededIndexes           map[int]bool
	activeIndexes              map[int]int
}

// sync reconciles one Job; a positive duration asks to look again then.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	if _, err := c.jobs.Jobs(ns).Get(name); apierrors.IsNotFound(err) {
		return 0, c.releaseOrphans(ctx, ns, name, "")
	}
	// The Job itself is read from the API server: counts build on its
	// status, and a stale cached status would create pods twice.
	cached, err := c.client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, c.releaseOrphans(ctx, ns, name, "")
	}
	if err != nil {
		return 0, err
	}
	if cached.DeletionTimestamp != nil {
		return 0, c.releaseOrphans(ctx, ns, name, "")
	}
	job := cached.DeepCopy()
	now := c.now()
	if finished(job) {
		return c.expire(ctx, job, now)
	}
	pods, err := c.pods(ctx, job)
	if err != nil {
		return 0, err
	}
	job, err = c.track(ctx, job, pods)
	if err != nil {
		return 0, err
	}
	cnt := count(job, pods)
	st := &job.Status
	if st.StartTime == nil && !suspended(job) {
		t := metav1.NewTime(now)
		st.StartTime = &t
	}
	st.Active, st.Ready, st.Terminating = int32(len(cnt.active)), ptr(int32(len(cnt.ready))), ptr(int32(len(cnt.terminating)))
	// Terminal conditions wait until every finished pod is counted.
	settled := len(cnt.active) == 0 && uncountedEmpty(job)

	var after time.Duration
	reason, message := "", ""
	switch {
	case hasCondition(job, batchv1.JobFailureTarget):
		reason, message = conditionOf(job, batchv1.JobFailureTarget)
	case complete(job, cnt):
		// Success decided: pods deleted on the way out count as failed
		// but must not fail the Job.
	case job.Spec.BackoffLimit != nil && st.Failed+cnt.restarts > *job.Spec.BackoffLimit:
		reason, message = batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit"
	case job.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil && !suspended(job):
		deadline := st.StartTime.Add(time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second)
		if !now.Before(deadline) {
			reason, message = batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline"
		} else {
			after = deadline.Sub(now)
		}
	}
	switch {
	case reason != "":
		setCondition(job, batchv1.JobFailureTarget, reason, message, now)
		c.deleteAll(ctx, job, cnt.active)
		if settled {
			if !hasCondition(job, batchv1.JobFailed) {
				c.recorder.Event(job, corev1.EventTypeWarning, reason, message)
			}
			setCondition(job, batchv1.JobFailed, reason, message, now)
		}
	case complete(job, cnt):
		setCondition(job, batchv1.JobSuccessCriteriaMet, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", now)
		c.deleteAll(ctx, job, cnt.active)
		if settled {
			if !hasCondition(job, batchv1.JobComplete) {
				c.recorder.Event(job, corev1.EventTypeNormal, "Completed", "Job completed")
			}
			setCondition(job, batchv1.JobComplete, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", now)
			t := metav1.NewTime(now)
			st.CompletionTime = &t
		}
	case suspended(job):
		c.deleteAll(ctx, job, cnt.active)
		setCondition(job, batchv1.JobSuspended, "JobSuspended", "Job suspended", now)
		st.StartTime = nil
	default:
		if hasCondition(job, batchv1.JobSuspended) {
			cond := &job.Status.Conditions[conditionIndex(job, batchv1.JobSuspended)]
			cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, "JobResumed", "Job resumed"
			cond.LastTransitionTime, cond.LastProbeTime = metav1.NewTime(now), metav1.NewTime(now)
		}
		wait, err := c.manage(ctx, job, cnt, now)
		if err != nil {
			return 0, err
		}
		if wait > 0 && (after == 0 || wait < after) {
			after = wait
		}
	}
	if !apiequality.Semantic.DeepEqual(cached.Status, job.Status) {
		if _, err := c.client.BatchV1().Jobs(ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	if !uncountedEmpty(job) {
		return time.Second, nil // finalizers still to remove: look again
	}
	if finished(job) {
		return c.expire(ctx, job, now)
	}
	return after, nil
}

// pods lists the Job's pods from the API server.
func (c *Controller) pods(ctx context.Context, job *batchv1.Job) ([]*corev1.Pod, error) {
	if job.Spec.Selector == nil {
		return nil, fmt.Errorf("job %s/%s has no selector", job.Namespace, job.Name)
	}
	sel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector)
	if err != nil {
		return nil, err
	}
	list, err := c.client.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for i := range list.Items {
		p := &list.Items[i]
		if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == job.UID {
			out = append(out, p)
		}
	}
	return out, nil
}

func count(job *batchv1.Job, pods []*corev1.Pod) counts {
	cnt := counts{succeededIndexes: parseIndexes(job.Status.CompletedIndexes), activeIndexes: map[int]int{}}
	for _, p := range pods {
		idx := podIndex(p)
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
			if indexed(job) && idx >= 0 && idx < int(completions(job)) {
				cnt.succeededIndexes[idx] = true
			}
		case podFailed(p):
			if p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodFailed {
				cnt.terminating = append(cnt.terminating, p)
			}
			if t := finishedAt(p); t.After(cnt.lastFailure) {
				cnt.lastFailure = t
			}
		default:
			cnt.active = append(cnt.active, p)
			if idx >= 0 {
				cnt.activeIndexes[idx]++
			}
			for _, s := range p.Status.ContainerStatuses {
				cnt.restarts += s.RestartCount
			}
			for _, s := range p.Status.Conditions {
				if s.Type == corev1.PodReady && s.Status == corev1.ConditionTrue {
					cnt.ready = append(cnt.ready, p)
				}
			}
		}
	}
	if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		cnt.restarts = 0
	}
	return cnt
}

// podFailed: failed, or deleted before it finished (evicted from a lost
// node, deleted by hand), which Kubernetes also counts as a failure.
func podFailed(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || (p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded)
}

func hasFinalizer(p *corev1.Pod) bool {
	for _, f := range p.Finalizers {
		if f == batchv1.JobTrackingFinalizer {
			return true
		}
	}
	return false
}

func uncountedEmpty(job *batchv1.Job) bool {
	u := job.Status.UncountedTerminatedPods
	return u == nil || (len(u.Succeeded) == 0 && len(u.Failed) == 0)
}

// track counts finished pods exactly once, as Kubernetes does: a finished
// pod still carrying the batch.kubernetes.io/job-tracking finalizer is
// first recorded in status.uncountedTerminatedPods (written before anything
// else), then loses its finalizer, and only then moves from uncounted into
// succeeded/failed. A pod without the finalizer is never recorded again, so
// a retry at any step neither loses nor repeats a count, and a finished pod
// cannot vanish before it is counted.
func (c *Controller) track(ctx context.Context, job *batchv1.Job, pods []*corev1.Pod) (*batchv1.Job, error) {
	u := job.Status.UncountedTerminatedPods
	if u == nil {
		u = &batchv1.UncountedTerminatedPods{}
	}
	recorded := map[types.UID]bool{}
	for _, id := range u.Succeeded {
		recorded[id] = true
	}
	for _, id := range u.Failed {
		recorded[id] = true
	}
	// 1. Record newly finished pods (and, for Indexed Jobs, their index).
	done := parseIndexes(job.Status.CompletedIndexes)
	added := false
	for _, p := range pods {
		if !hasFinalizer(p) || recorded[p.UID] {
			continue
		}
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
			u.Succeeded = append(u.Succeeded, p.UID)
			if i := podIndex(p); indexed(job) && i >= 0 && i < int(completions(job)) {
				done[i] = true
			}
		case podFailed(p):
			u.Failed = append(u.Failed, p.UID)
		default:
			continue
		}
		recorded[p.UID], added = true, true
	}
	if added {
		job.Status.UncountedTerminatedPods = u
		if indexed(job) {
			job.Status.CompletedIndexes = formatIndexes(done)
		}
		out, err := c.client.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{})
		if err != nil {
			return nil, err
		}
		job = out.DeepCopy()
		u = job.Status.UncountedTerminatedPods
	}
	if len(recorded) == 0 {
		return job, nil
	}
	// 2. Release the recorded pods.
	byUID := map[types.UID]*corev1.Pod{}
	for _, p := range pods {
		byUID[p.UID] = p
	}
	released := map[types.UID]bool{}
	for id := range recorded {
		p := byUID[id]
		if p == nil || !hasFinalizer(p) {
			released[id] = true
			continue
		}
		if err := c.removeFinalizer(ctx, p); err != nil {
			if apierrors.IsNotFound(err) {
				released[id] = true
			}
			continue
		}
		released[id] = true
	}
	// 3. Count what was released (written by the caller's status update).
	keep := func(ids []types.UID, n *int32) []types.UID {
		var rest []types.UID
		for _, id := range ids {
			if released[id] {
				*n++
			} else {
				rest = append(rest, id)
			}
		}
		return rest
	}
	var succeeded int32
	u.Succeeded = keep(u.Succeeded, &succeeded)
	u.Failed = keep(u.Failed, &job.Status.Failed)
	if indexed(job) {
		job.Status.Succeeded = int32(len(parseIndexes(job.Status.CompletedIndexes)))
	} else {
		job.Status.Succeeded += succeeded
	}
	if len(u.Succeeded) == 0 && len(u.Failed) == 0 {
		// Kubernetes keeps the empty struct; so does berth, for kubectl.
		u.Succeeded, u.Failed = nil, nil
	}
	job.Status.UncountedTerminatedPods = u
	return job, nil
}

func (c *Controller) removeFinalizer(ctx context.Context, p *corev1.Pod) error {
	var keep []string
	for _, f := range p.Finalizers {
		if f != batchv1.JobTrackingFinalizer {
			keep = append(keep, f)
		}
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": keep, "resourceVersion": p.ResourceVersion}})
	_, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// releaseOrphans removes the tracking finalizer from pods of a Job named
// name that is gone, being deleted, or was replaced by another of that name
// (uid is the current Job's, "" if none): nobody will count them any more,
// and they must not be kept from deletion.
func (c *Controller) releaseOrphans(ctx context.Context, ns, name string, uid types.UID) error {
	list, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + name})
	if err != nil {
		return err
	}
	for i := range list.Items {
		p := &list.Items[i]
		ref := metav1.GetControllerOf(p)
		if !hasFinalizer(p) || ref == nil || ref.Kind != "Job" || ref.Name != name || (uid != "" && ref.UID == uid) {
			continue
		}
		if err := c.removeFinalizer(ctx, p); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func complete(job *batchv1.Job, cnt counts) bool {
	if job.Spec.Completions == nil {
		// Work-queue Jobs: done when one pod succeeded and none still runs.
		return job.Status.Succeeded > 0 && len(cnt.active) == 0 || hasCondition(job, batchv1.JobSuccessCriteriaMet)
	}
	return job.Status.Succeeded >= *job.Spec.Completions || hasCondition(job, batchv1.JobSuccessCriteriaMet)
}

// manage creates the pods the Job is missing (after the failure backoff)
// and deletes the extra ones.
func (c *Controller) manage(ctx context.Context, job *batchv1.Job, cnt counts, now time.Time) (time.Duration, error) {
	parallelism := int32(1)
	if job.Spec.Parallelism != nil {
		parallelism = *job.Spec.Parallelism
	}
	want := parallelism
	if job.Spec.Completions != nil {
		want = min(parallelism, *job.Spec.Completions-job.Status.Succeeded)
	} else if job.Status.Succeeded > 0 {
		// A work queue is draining: start nothing, stop nothing.
		want = int32(len(cnt.active))
	}
	active := cnt.active
	if indexed(job) {
		// Extra pods for one index, or for an index already done, go.
		var extra []*corev1.Pod
		seen := map[int]bool{}
		for _, p := range active {
			i := podIndex(p)
			if i < 0 || i >= int(completions(job)) || cnt.succeededIndexes[i] || seen[i] {
				extra = append(extra, p)
				continue
			}
			seen[i] = true
		}
		c.deleteAll(ctx, job, extra)
		active = active[:0:0]
		for _, p := range cnt.active {
			if !contains(extra, p) {
				active = append(active, p)
			}
		}
	}
	have := int32(len(active))
	if have > want {
		// Newest first: they have done the least work.
		sort.Slice(active, func(i, j int) bool { return active[j].CreationTimestamp.Before(&active[i].CreationTimestamp) })
		c.deleteAll(ctx, job, active[:have-want])
		return 0, nil
	}
	if have == want {
		return 0, nil
	}
	if job.Status.Failed > 0 && !cnt.lastFailure.IsZero() {
		delay := BackoffBase << min(job.Status.Failed-1, 16)
		if delay > BackoffMax {
			delay = BackoffMax
		}
		if wait := cnt.lastFailure.Add(delay).Sub(now); wait > 0 {
			return wait, nil
		}
	}
	var indexes []int
	if indexed(job) {
		for i := 0; i < int(completions(job)) && int32(len(indexes)) < want-have; i++ {
			if !cnt.succeededIndexes[i] && cnt.activeIndexes[i] == 0 {
				indexes = append(indexes, i)
			}
		}
	} else {
		for i := have; i < want; i++ {
			indexes = append(indexes, -1)
		}
	}
	for _, i := range indexes {
		p := newPod(job, i)
		out, err := c.client.CoreV1().Pods(job.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			c.recorder.Eventf(job, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
			return 0, err
		}
		c.recorder.Eventf(job, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", out.Name)
	}
	return 0, nil
}

// newPod is a pod from the Job's template; index ≥ 0 for Indexed Jobs.
func newPod(job *batchv1.Job, index int) *corev1.Pod {
	t := job.Spec.Template.DeepCopy()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    job.Name + "-",
			Namespace:       job.Namespace,
			Finalizers:      []string{batchv1.JobTrackingFinalizer},
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: t.Spec,
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if index >= 0 {
		s := strconv.Itoa(index)
		p.GenerateName = job.Name + "-" + s + "-"
		p.Labels[batchv1.JobCompletionIndexAnnotation] = s
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[batchv1.JobCompletionIndexAnnotation] = s
		if p.Spec.Hostname == "" {
			p.Spec.Hostname = job.Name + "-" + s
		}
		for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for i := range cs {
				cs[i].Env = append(cs[i].Env, corev1.EnvVar{Name: "JOB_COMPLETION_INDEX", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['" + batchv1.JobCompletionIndexAnnotation + "']"}}})
			}
		}
	}
	return p
}

func (c *Controller) deleteAll(ctx context.Context, job *batchv1.Job, pods []*corev1.Pod) {
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err == nil {
			c.recorder.Eventf(job, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
		}
	}
}

// expire deletes a finished Job once its ttlSecondsAfterFinished passed
// (its pods go with it, by the garbage collector).
func (c *Controller) expire(ctx context.Context, job *batchv1.Job, now time.Time) (time.Duration, error) {
	if job.Spec.TTLSecondsAfterFinished == nil {
		return 0, nil
	}
	done := finishTime(job)
	at := done.Add(time.Duration(*job.Spec.TTLSecondsAfterFinished) * time.Second)
	if wait := at.Sub(now); wait > 0 {
		return wait, nil
	}
	bg := metav1.DeletePropagationBackground
	err := c.client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &job.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	c.log.Info("deleted finished job after its TTL", "job", job.Namespace+"/"+job.Name, "ttl", *job.Spec.TTLSecondsAfterFinished)
	return 0, nil
}

func finishTime(job *batchv1.Job) time.Time {
	for _, t := range []batchv1.JobConditionType{batchv1.JobComplete, batchv1.JobFailed} {
		if i := conditionIndex(job, t); i >= 0 && job.Status.Conditions[i].Status == corev1.ConditionTrue {
			return job.Status.Conditions[i].LastTransitionTime.Time
		}
	}
	if job.Status.CompletionTime != nil {
		return job.Status.CompletionTime.Time
	}
	return job.CreationTimestamp.Time
}

func finished(job *batchv1.Job) bool {
	return hasCondition(job, batchv1.JobComplete) || hasCondition(job, batchv1.JobFailed)
}

func suspended(job *batchv1.Job) bool { return job.Spec.Suspend != nil && *job.Spec.Suspend }

func indexed(job *batchv1.Job) bool {
	return job.Spec.CompletionMode != nil && *job.Spec.CompletionMode == batchv1.IndexedCompletion && job.Spec.Completions != nil
}

func completions(job *batchv1.Job) int32 {
	if job.Spec.Completions == nil {
		return 1
	}
	return *job.Spec.Completions
}

func podIndex(p *corev1.Pod) int {
	s, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// formatIndexes renders indexes as Kubernetes' completedIndexes: "1,3-5".
func formatIndexes(set map[int]bool) string {
	var idx []int
	for i := range set {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var parts []string
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(idx[i]))
		} else {
			parts = append(parts, strconv.Itoa(idx[i])+"-"+strconv.Itoa(idx[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// parseIndexes reads completedIndexes ("1,3-5"); bad parts are skipped.
func parseIndexes(s string) map[int]bool {
	out := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				continue
			}
		}
		for i := a; i <= b && i-a < 1<<20; i++ {
			out[i] = true
		}
	}
	return out
}

func finishedAt(p *corev1.Pod) time.Time {
	var t time.Time
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Terminated != nil && s.State.Terminated.FinishedAt.After(t) {
			t = s.State.Terminated.FinishedAt.Time
		}
	}
	if t.IsZero() && p.DeletionTimestamp != nil {
		t = p.DeletionTimestamp.Time
	}
	if t.IsZero() {
		for _, c := range p.Status.Conditions {
			if c.LastTransitionTime.After(t) {
				t = c.LastTransitionTime.Time
			}
		}
	}
	if t.IsZero() {
		t = p.CreationTimestamp.Time
	}
	return t
}

func conditionIndex(job *batchv1.Job, t batchv1.JobConditionType) int {
	for i := range job.Status.Conditions {
		if job.Status.Conditions[i].Type == t {
			return i
		}
	}
	return -1
}

func hasCondition(job *batchv1.Job, t batchv1.JobConditionType) bool {
	i := conditionIndex(job, t)
	return i >= 0 && job.Status.Conditions[i].Status == corev1.ConditionTrue
}

func conditionOf(job *batchv1.Job, t batchv1.JobConditionType) (reason, message string) {
	c := job.Status.Conditions[conditionIndex(job, t)]
	return c.Reason, c.Message
}

// setCondition sets a True condition (keeping the transition time of one
// already True).
func setCondition(job *batchv1.Job, t batchv1.JobConditionType, reason, message string, now time.Time) {
	if i := conditionIndex(job, t); i >= 0 {
		c := &job.Status.Conditions[i]
		if c.Status != corev1.ConditionTrue || c.Reason != reason {
			c.LastTransitionTime, c.LastProbeTime = metav1.NewTime(now), metav1.NewTime(now)
		}
		c.Status, c.Reason, c.Message = corev1.ConditionTrue, reason, message
		return
	}
	job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{
		Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: message,
		LastProbeTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now),
	})
}

func contains(list []*corev1.Pod, p *corev1.Pod) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }
