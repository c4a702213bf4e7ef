// Package cronjob is the CronJob controller: it creates a Job from a
// CronJob's jobTemplate at each time of its schedule (in spec.timeZone),
// honouring startingDeadlineSeconds, concurrencyPolicy (Allow, Forbid,
// Replace) and suspend, keeps status.active, lastScheduleTime and
// lastSuccessfulTime, and deletes finished Jobs beyond the history limits,
// with the events Kubernetes 1.32 records.
//
// A CronJob is not polled: each sync asks the queue to come back just
// after the next time of the schedule, and Job events bring it back
// sooner. Job names are <cronjob>-<scheduled time in Unix minutes>, so a
// sync repeated on stale data cannot start one run twice.
package cronjob

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/berth/berth/internal/cluster/cron"
	"github.com/berth/berth/internal/cluster/kube"
)

const (
	// MissedLimit is how many missed schedule times a sync counts before it
	// warns (TooManyMissedTimes) and starts only the most recent, as
	// Kubernetes does.
	MissedLimit = 100
	// nextDelta pads the wake-up after a schedule time, so that a clock
	// a little behind the queue's still sees the time as passed.
	nextDelta = 100 * time.Millisecond
)

var controllerKind = batchv1.SchemeGroupVersion.WithKind("CronJob")

// Component returns the CronJob controller as a server component.
func Component() kube.Component {
	return kube.Component{Name: "cronjob-controller", Run: func(ctx context.Context, c *kube.Clients) error {
		ctl := New(c.Client, c.Informers.Batch().V1().CronJobs().Informer(), c.Informers.Batch().V1().Jobs().Informer(), c.Recorder("cronjob-controller", ""), c.Logger, nil)
		c.Informers.Start(ctx.Done())
		return ctl.Run(ctx, 2)
	}}
}

// Controller reconciles CronJobs.
type Controller struct {
	client   kubernetes.Interface
	cronJobs batchlisters.CronJobLister
	jobs     batchlisters.JobLister
	synced   []cache.InformerSynced
	recorder record.EventRecorder
	log      *slog.Logger
	queue    workqueue.TypedRateLimitingInterface[string]
	clock    clock.WithTicker
	// local is the zone of schedules without spec.timeZone: the server's,
	// as Kubernetes uses kube-controller-manager's.
	local *time.Location
}

// New builds a controller on informers the caller starts. clk (nil: the
// real clock) is both the controller's "now" and the clock of its queue's
// delays, so a test can step through schedules without waiting.
func New(client kubernetes.Interface, cronJobs, jobs cache.SharedIndexInformer, rec record.EventRecorder, log *slog.Logger, clk clock.WithTicker) *Controller {
	if log == nil {
		log = slog.Default()
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	c := &Controller{
		client:   client,
		cronJobs: batchlisters.NewCronJobLister(cronJobs.GetIndexer()),
		jobs:     batchlisters.NewJobLister(jobs.GetIndexer()),
		synced:   []cache.InformerSynced{cronJobs.HasSynced, jobs.HasSynced},
		recorder: rec, log: log.With("component", "cronjob-controller"),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Clock: clk}),
		clock: clk,
		local: time.Local,
	}
	_, _ = cronJobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
	})
	owner := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		j, ok := obj.(*batchv1.Job)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(j); ref != nil && ref.Kind == controllerKind.Kind {
			c.queue.Add(j.Namespace + "/" + ref.Name)
		}
	}
	_, _ = jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: owner, UpdateFunc: func(_, obj any) { owner(obj) }, DeleteFunc: owner,
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
	return kube.RunQueue(ctx, c.queue, c.synced, n, c.log, "cronjob", c.sync)
}

// sync reconciles one CronJob; the duration is when to look again (the
// next schedule time).
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	if _, err := c.cronJobs.CronJobs(ns).Get(name); apierrors.IsNotFound(err) {
		return 0, nil // its Jobs go with it through garbage collection
	}
	// The CronJob itself is read from the API server: status.active just
	// written must not look missing (a Job reported as unexpected, or a
	// Forbid policy that lets a second run start).
	cached, err := c.client.BatchV1().CronJobs(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	cj := cached.DeepCopy()
	jobs, err := c.jobsOf(cj)
	if err != nil {
		return 0, err
	}
	after, syncErr := c.schedule(ctx, cj, jobs)
	c.cleanup(ctx, cj, jobs)
	if !apiequality.Semantic.DeepEqual(cached.Status, cj.Status) {
		if _, err := c.client.BatchV1().CronJobs(ns).UpdateStatus(ctx, cj, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	if syncErr != nil {
		return 0, syncErr
	}
	return after, nil
}

// jobsOf lists the Jobs the CronJob controls, from the informer cache
// (deterministic Job names keep a stale cache from creating one twice).
func (c *Controller) jobsOf(cj *batchv1.CronJob) ([]*batchv1.Job, error) {
	all, err := c.jobs.Jobs(cj.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []*batchv1.Job
	for _, j := range all {
		if metav1.IsControlledBy(j, cj) {
			out = append(out, j)
		}
	}
	return out, nil
}

// schedule updates cj.Status from its Jobs and starts the Job of the most
// recent unmet schedule time if the policies allow it. It returns when to
// look again.
func (c *Controller) schedule(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) (time.Duration, error) {
	now := c.clock.Now()
	children := map[types.UID]bool{}
	for _, j := range jobs {
		children[j.UID] = true
		if j.DeletionTimestamp != nil {
			continue // on its way out (replaced or pruned)
		}
		active := inActive(cj, j.UID)
		finished, cond := finishedCondition(j)
		switch {
		case !active && !finished:
			// Created but the status update was lost, a stale read, or
			// `kubectl create job --from=cronjob/…`: reported, not adopted,
			// as in Kubernetes.
			c.recorder.Eventf(cj, corev1.EventTypeWarning, "UnexpectedJob", "Saw a job that the controller did not create or forgot: %s", j.Name)
		case active && finished:
			removeActive(cj, j.UID)
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "SawCompletedJob", "Saw completed job: %s, status: %v", j.Name, cond)
		}
		if cond == batchv1.JobComplete && j.Status.CompletionTime != nil {
			if last := cj.Status.LastSuccessfulTime; last == nil || j.Status.CompletionTime.After(last.Time) {
				t := *j.Status.CompletionTime
				cj.Status.LastSuccessfulTime = &t
			}
		}
	}
	// An active Job missing from the cache may just be new: ask the API
	// server before dropping it.
	for _, ref := range append([]corev1.ObjectReference(nil), cj.Status.Active...) {
		if children[ref.UID] {
			continue
		}
		j, err := c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) || (err == nil && j.UID != ref.UID):
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "MissingJob", "Active job went missing: %v", ref.Name)
			removeActive(cj, ref.UID)
		case err != nil:
			return 0, err
		}
	}
	if cj.DeletionTimestamp != nil {
		return 0, nil
	}

	loc := c.local
	if tz := cj.Spec.TimeZone; tz != nil {
		l, err := time.LoadLocation(*tz)
		if err != nil {
			c.recorder.Eventf(cj, corev1.EventTypeWarning, "UnknownTimeZone", "invalid timeZone: %q: %s", *tz, err)
			return 0, nil // until the spec changes
		}
		loc = l
	}
	if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		return 0, nil // resuming is a spec update, which brings it back
	}
	if strings.Contains(cj.Spec.Schedule, "TZ") {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "UnsupportedSchedule", "CRON_TZ or TZ used in schedule %q is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details", cj.Spec.Schedule)
	}
	sched, err := cron.Parse(cj.Spec.Schedule, loc)
	if err != nil {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "UnparseableSchedule", "unparseable schedule: %q : %s", cj.Spec.Schedule, err)
		return 0, nil
	}

	// since is the last time already handled; earliest the first one still
	// worth running.
	since := cj.CreationTimestamp.Time
	if cj.Status.LastScheduleTime != nil {
		since = cj.Status.LastScheduleTime.Time
	}
	earliest := since
	if d := cj.Spec.StartingDeadlineSeconds; d != nil {
		// Times older than the deadline are not counted, let alone run.
		if floor := now.Add(-time.Duration(*d) * time.Second); floor.After(earliest) {
			earliest = floor
		}
	}
	var scheduled time.Time
	var missed int
	if !earliest.After(now) {
		scheduled, missed = cron.Missed(sched, earliest, now, MissedLimit)
	}
	// wake is when to look again: just after the next schedule time.
	wake := func() time.Duration {
		base := earliest
		if !scheduled.IsZero() {
			base = scheduled
		}
		next := sched.Next(base)
		for !next.IsZero() && !next.After(now) {
			next = sched.Next(next)
		}
		if next.IsZero() {
			return 0 // never again (e.g. February 30th)
		}
		return next.Sub(now) + nextDelta
	}
	if scheduled.IsZero() {
		// A time missed by more than startingDeadlineSeconds (the
		// controller was down, or Forbid held it back) is reported.
		if cj.Spec.StartingDeadlineSeconds != nil && !since.After(now) {
			if late, _ := cron.Missed(sched, since, now, MissedLimit); !late.IsZero() {
				c.recorder.Eventf(cj, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", late.UTC().Format(time.RFC1123Z))
			}
		}
		if sched.Next(earliest).IsZero() {
			c.recorder.Eventf(cj, corev1.EventTypeWarning, "InvalidSchedule", "invalid schedule: %s : no time within five years matches it", cj.Spec.Schedule)
			return 0, nil
		}
		return wake(), nil
	}
	if missed > MissedLimit {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "TooManyMissedTimes", "too many missed start times: %d. Set or decrease .spec.startingDeadlineSeconds or check clock skew", missed)
		c.log.Info("too many missed start times; starting the most recent", "cronjob", cj.Namespace+"/"+cj.Name, "missed", missed)
	}
	name := JobName(cj, scheduled)
	if activeByName(cj, name) || (cj.Status.LastScheduleTime != nil && cj.Status.LastScheduleTime.Time.Equal(scheduled)) {
		return wake(), nil // already started
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.ForbidConcurrent:
		if len(cj.Status.Active) > 0 {
			// The time stays unmet: it starts late when the running Job
			// finishes, if still within startingDeadlineSeconds.
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
			return wake(), nil
		}
	case batchv1.ReplaceConcurrent:
		for _, ref := range append([]corev1.ObjectReference(nil), cj.Status.Active...) {
			if err := c.deleteJob(ctx, cj, ref.Name, ref.UID); err != nil {
				return 0, fmt.Errorf("replace job %s/%s: %w", cj.Namespace, ref.Name, err)
			}
		}
	}

	// The annotation is in spec.timeZone, UTC without one (not the
	// server's zone), as in Kubernetes.
	annLoc := time.UTC
	if cj.Spec.TimeZone != nil {
		annLoc = loc
	}
	job, err := c.client.BatchV1().Jobs(cj.Namespace).Create(ctx, jobFor(cj, scheduled, annLoc), metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		// Created earlier by this controller and the status update lost,
		// or by someone else, who then owns the bookkeeping.
		existing, gerr := c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return 0, gerr
		}
		if !metav1.IsControlledBy(existing, cj) || inActive(cj, existing.UID) {
			return wake(), nil
		}
		if done, _ := finishedCondition(existing); done {
			// Its minute's Job already ran (a schedule of seconds, such as
			// @every 10s, shares one name a minute): the time is handled.
			// Kubernetes would list the finished Job as active again.
			t := metav1.NewTime(scheduled)
			cj.Status.LastScheduleTime = &t
			return wake(), nil
		}
		job = existing
		c.log.Info("job already exists; recording it as active", "cronjob", cj.Namespace+"/"+cj.Name, "job", name)
	case err != nil:
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return 0, err
	default:
		c.recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %v", job.Name)
	}
	cj.Status.Active = append(cj.Status.Active, corev1.ObjectReference{
		Kind: "Job", APIVersion: batchv1.SchemeGroupVersion.String(), Namespace: job.Namespace, Name: job.Name, UID: job.UID, ResourceVersion: job.ResourceVersion,
	})
	t := metav1.NewTime(scheduled)
	cj.Status.LastScheduleTime = &t
	return wake(), nil
}

// JobName is the name of the Job for the schedule time t: the CronJob's
// name and t in Unix minutes, as in Kubernetes.
func JobName(cj *batchv1.CronJob, t time.Time) string {
	return fmt.Sprintf("%s-%d", cj.Name, t.Unix()/60)
}

// jobFor builds the Job of schedule time t from the template.
func jobFor(cj *batchv1.CronJob, t time.Time, loc *time.Location) *batchv1.Job {
	tmpl := cj.Spec.JobTemplate.DeepCopy()
	ann := maps.Clone(tmpl.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[batchv1.CronJobScheduledTimestampAnnotation] = t.In(loc).Format(time.RFC3339)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: JobName(cj, t), Namespace: cj.Namespace,
			Labels: tmpl.Labels, Annotations: ann,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, controllerKind)},
		},
		Spec: tmpl.Spec,
	}
}

// cleanup deletes the oldest finished Jobs beyond the history limits.
func (c *Controller) cleanup(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) {
	var succeeded, failed []*batchv1.Job
	for _, j := range jobs {
		if j.DeletionTimestamp != nil {
			continue
		}
		switch _, cond := finishedCondition(j); cond {
		case batchv1.JobComplete:
			succeeded = append(succeeded, j)
		case batchv1.JobFailed:
			failed = append(failed, j)
		}
	}
	if l := cj.Spec.SuccessfulJobsHistoryLimit; l != nil {
		c.prune(ctx, cj, succeeded, int(*l))
	}
	if l := cj.Spec.FailedJobsHistoryLimit; l != nil {
		c.prune(ctx, cj, failed, int(*l))
	}
}

// prune deletes all but the keep most recently started of jobs.
func (c *Controller) prune(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job, keep int) {
	if len(jobs) <= keep {
		return
	}
	// Oldest first; Jobs that never started count as the newest.
	sort.Slice(jobs, func(a, b int) bool {
		sa, sb := jobs[a].Status.StartTime, jobs[b].Status.StartTime
		switch {
		case sa == nil || sb == nil:
			if (sa == nil) != (sb == nil) {
				return sb == nil
			}
		case !sa.Equal(sb):
			return sa.Before(sb)
		}
		return jobs[a].Name < jobs[b].Name
	})
	for _, j := range jobs[:len(jobs)-keep] {
		if err := c.deleteJob(ctx, cj, j.Name, j.UID); err != nil {
			c.log.Warn("delete old job", "cronjob", cj.Namespace+"/"+cj.Name, "job", j.Name, "err", err)
		}
	}
}

// deleteJob deletes a Job (its pods in the background) and drops it from
// status.active.
func (c *Controller) deleteJob(ctx context.Context, cj *batchv1.CronJob, name string, uid types.UID) error {
	bg := metav1.DeletePropagationBackground
	err := c.client.BatchV1().Jobs(cj.Namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err): // gone, or a newer Job of that name
	case err != nil:
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
		return err
	default:
		c.recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", name)
	}
	removeActive(cj, uid)
	return nil
}

// finishedCondition reports whether a Job is finished and how.
func finishedCondition(j *batchv1.Job) (bool, batchv1.JobConditionType) {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true, c.Type
		}
	}
	return false, ""
}

func inActive(cj *batchv1.CronJob, uid types.UID) bool {
	for _, r := range cj.Status.Active {
		if r.UID == uid {
			return true
		}
	}
	return false
}

func activeByName(cj *batchv1.CronJob, name string) bool {
	for _, r := range cj.Status.Active {
		if r.Name == name {
			return true
		}
	}
	return false
}

func removeActive(cj *batchv1.CronJob, uid types.UID) {
	out := cj.Status.Active[:0:0]
	for _, r := range cj.Status.Active {
		if r.UID != uid {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		out = nil
	}
	cj.Status.Active = out
}
