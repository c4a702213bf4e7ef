package cronjob

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"
)

// t0 is when the test CronJobs are created: 30 s into a minute.
var t0 = time.Date(2026, 11, 27, 10, 0, 30, 0, time.UTC)

// harness runs the controller's sync against a fake clientset. The Job
// cache is refreshed from the clientset before each sync, so every sync
// sees what earlier ones did.
type harness struct {
	t      *testing.T
	client *fake.Clientset
	inf    informers.SharedInformerFactory
	ctl    *Controller
	clock  *testingclock.FakeClock
	events *record.FakeRecorder
}

func newHarness(t *testing.T, cj *batchv1.CronJob) *harness {
	t.Helper()
	client := fake.NewClientset(cj)
	// The fake clientset assigns no UIDs; the API server does.
	client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if j := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job); j.UID == "" {
			j.UID = types.UID(j.Name + "-uid")
		}
		return false, nil, nil
	})
	inf := informers.NewSharedInformerFactory(client, 0)
	clk := testingclock.NewFakeClock(t0)
	rec := record.NewFakeRecorder(1000)
	ctl := New(client, inf.Batch().V1().CronJobs().Informer(), inf.Batch().V1().Jobs().Informer(), rec, slog.New(slog.NewTextHandler(io.Discard, nil)), clk)
	ctl.local = time.UTC
	return &harness{t: t, client: client, inf: inf, ctl: ctl, clock: clk, events: rec}
}

func newCronJob(schedule string, mod ...func(*batchv1.CronJob)) *batchv1.CronJob {
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "tick", Namespace: "default", UID: "cj-uid", CreationTimestamp: metav1.NewTime(t0)},
		Spec: batchv1.CronJobSpec{
			Schedule:                   schedule,
			ConcurrencyPolicy:          batchv1.AllowConcurrent,
			Suspend:                    ptr(false),
			SuccessfulJobsHistoryLimit: ptr(int32(3)),
			FailedJobsHistoryLimit:     ptr(int32(1)),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "tick"}, Annotations: map[string]string{"note": "x"}},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
				}}},
			},
		},
	}
	for _, m := range mod {
		m(cj)
	}
	return cj
}

func ptr[T any](v T) *T { return &v }

// at moves the clock to t0+d and syncs; it returns the requested requeue.
func (h *harness) at(d time.Duration) time.Duration {
	h.t.Helper()
	h.clock.SetTime(t0.Add(d))
	return h.sync()
}

func (h *harness) sync() time.Duration {
	h.t.Helper()
	ctx := context.Background()
	// Refresh the caches from the clientset.
	jobs, err := h.client.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var objs []any
	for i := range jobs.Items {
		objs = append(objs, &jobs.Items[i])
	}
	if err := h.inf.Batch().V1().Jobs().Informer().GetIndexer().Replace(objs, ""); err != nil {
		h.t.Fatal(err)
	}
	cjs, err := h.client.BatchV1().CronJobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	objs = nil
	for i := range cjs.Items {
		objs = append(objs, &cjs.Items[i])
	}
	if err := h.inf.Batch().V1().CronJobs().Informer().GetIndexer().Replace(objs, ""); err != nil {
		h.t.Fatal(err)
	}
	after, err := h.ctl.sync(ctx, "default/tick")
	if err != nil {
		h.t.Fatalf("sync: %v", err)
	}
	return after
}

func (h *harness) cronJob() *batchv1.CronJob {
	h.t.Helper()
	cj, err := h.client.BatchV1().CronJobs("default").Get(context.Background(), "tick", metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return cj
}

// jobs returns the Jobs' names, sorted.
func (h *harness) jobs() []string {
	h.t.Helper()
	list, err := h.client.BatchV1().Jobs("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var names []string
	for _, j := range list.Items {
		names = append(names, j.Name)
	}
	sort.Strings(names)
	return names
}

// drain returns the events recorded since the last call.
func (h *harness) drain() []string {
	var out []string
	for {
		select {
		case e := <-h.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (h *harness) wantEvent(reason string) string {
	h.t.Helper()
	evs := h.drain()
	for _, e := range evs {
		if strings.Fields(e)[1] == reason {
			return e
		}
	}
	h.t.Fatalf("events %q: want one with reason %s", evs, reason)
	return ""
}

// finish marks a Job Complete (or Failed) as the Job controller would,
// started at start and finished at end.
func (h *harness) finish(name string, cond batchv1.JobConditionType, start, end time.Time) {
	h.t.Helper()
	ctx := context.Background()
	j, err := h.client.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	s, e := metav1.NewTime(start), metav1.NewTime(end)
	j.Status.StartTime = &s
	j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: cond, Status: corev1.ConditionTrue})
	if cond == batchv1.JobComplete {
		j.Status.CompletionTime = &e
	}
	if _, err := h.client.BatchV1().Jobs("default").UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// jobAt is the name of the Job for schedule time t0+d (truncated to the minute).
func jobAt(d time.Duration) string {
	return fmt.Sprintf("tick-%d", t0.Add(d).Unix()/60)
}

func TestCreatesJobAtScheduleTime(t *testing.T) {
	h := newHarness(t, newCronJob("*/1 * * * *"))
	// 10:00:45: nothing due; come back just after 10:01.
	if after := h.at(15 * time.Second); after != 15*time.Second+nextDelta {
		t.Errorf("requeue before the first run: got %v, want %v", after, 15*time.Second+nextDelta)
	}
	if got := h.jobs(); len(got) != 0 {
		t.Fatalf("jobs before 10:01: got %v, want none", got)
	}
	// 10:01:00.1: the 10:01 run starts.
	after := h.at(30*time.Second + nextDelta)
	name := jobAt(30 * time.Second)
	if got := h.jobs(); len(got) != 1 || got[0] != name {
		t.Fatalf("jobs at 10:01: got %v, want [%s]", got, name)
	}
	if after != time.Minute {
		t.Errorf("requeue after the run: got %v, want 1m (10:02:00.1)", after)
	}
	h.wantEvent("SuccessfulCreate")
	j, _ := h.client.BatchV1().Jobs("default").Get(context.Background(), name, metav1.GetOptions{})
	ref := metav1.GetControllerOf(j)
	if ref == nil || ref.Kind != "CronJob" || ref.Name != "tick" || ref.UID != "cj-uid" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("owner reference: got %+v, want controller CronJob tick", ref)
	}
	if got, want := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation], "2026-11-27T10:01:00Z"; got != want {
		t.Errorf("scheduled-timestamp annotation: got %q, want %q", got, want)
	}
	if j.Annotations["note"] != "x" || j.Labels["app"] != "tick" || j.Spec.Template.Spec.Containers[0].Image != "busybox" {
		t.Errorf("job from template: got labels %v annotations %v", j.Labels, j.Annotations)
	}
	cj := h.cronJob()
	if len(cj.Status.Active) != 1 || cj.Status.Active[0].Name != name || cj.Status.Active[0].Kind != "Job" {
		t.Errorf("status.active: got %+v, want [%s]", cj.Status.Active, name)
	}
	if cj.Status.LastScheduleTime == nil || !cj.Status.LastScheduleTime.Time.Equal(t0.Add(30*time.Second)) {
		t.Errorf("lastScheduleTime: got %v, want 10:01:00", cj.Status.LastScheduleTime)
	}
	// Syncing again in the same minute starts nothing new.
	h.at(50 * time.Second)
	if got := h.jobs(); len(got) != 1 {
		t.Errorf("jobs after a second sync: got %v, want one", got)
	}
	// The Job completes: it leaves status.active, lastSuccessfulTime is its
	// completion.
	done := t0.Add(60 * time.Second)
	h.finish(name, batchv1.JobComplete, t0.Add(31*time.Second), done)
	h.drain()
	h.at(61 * time.Second)
	h.wantEvent("SawCompletedJob")
	cj = h.cronJob()
	if len(cj.Status.Active) != 0 || cj.Status.LastSuccessfulTime == nil || !cj.Status.LastSuccessfulTime.Time.Equal(done) {
		t.Errorf("after completion: active %v lastSuccessfulTime %v, want none and %s", cj.Status.Active, cj.Status.LastSuccessfulTime, done)
	}
}

// After downtime only the most recent missed time runs; more than 100
// missed times are reported but still run the most recent, as in
// Kubernetes.
func TestMissedRuns(t *testing.T) {
	h := newHarness(t, newCronJob("*/1 * * * *"))
	h.at(5*time.Minute + 10*time.Second) // 10:05:40
	if got, want := h.jobs(), []string{jobAt(5 * time.Minute)}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("after 5 missed: got %v, want %v", got, want)
	}
	h.drain()
	h.at(300 * time.Minute)
	h.wantEvent("TooManyMissedTimes")
	if got := h.jobs(); len(got) != 2 || got[1] != jobAt(299*time.Minute+30*time.Second) {
		t.Errorf("after 295 missed: got %v, want the 15:00 run added", got)
	}
}

func TestStartingDeadline(t *testing.T) {
	h := newHarness(t, newCronJob("*/1 * * * *", func(cj *batchv1.CronJob) { cj.Spec.StartingDeadlineSeconds = ptr(int64(20)) }))
	// 10:01:25: the 10:01 run is 25 s late, past its 20 s deadline.
	after := h.at(55 * time.Second)
	if got := h.jobs(); len(got) != 0 {
		t.Fatalf("jobs past the deadline: got %v, want none", got)
	}
	if e := h.wantEvent("MissSchedule"); !strings.Contains(e, "27 Nov 2026 10:01:00") {
		t.Errorf("MissSchedule event: got %q, want it to name 10:01", e)
	}
	if after != 35*time.Second+nextDelta {
		t.Errorf("requeue: got %v, want 35.1s (10:02:00.1)", after)
	}
	// 10:02:15: within the deadline, it runs.
	h.at(105 * time.Second)
	if got := h.jobs(); len(got) != 1 || got[0] != jobAt(90*time.Second) {
		t.Errorf("jobs within the deadline: got %v, want [%s]", got, jobAt(90*time.Second))
	}
}

func TestConcurrencyPolicies(t *testing.T) {
	t.Run("Allow", func(t *testing.T) {
		h := newHarness(t, newCronJob("*/1 * * * *"))
		h.at(31 * time.Second)
		h.at(91 * time.Second)
		if got := h.cronJob().Status.Active; len(got) != 2 {
			t.Errorf("active: got %d jobs, want 2", len(got))
		}
	})
	t.Run("Forbid", func(t *testing.T) {
		h := newHarness(t, newCronJob("*/1 * * * *", func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent }))
		h.at(31 * time.Second)
		first := jobAt(30 * time.Second)
		h.drain()
		h.at(91 * time.Second)
		h.wantEvent("JobAlreadyActive")
		if got := h.jobs(); len(got) != 1 {
			t.Fatalf("jobs while one runs: got %v, want [%s]", got, first)
		}
		// The first finishes at 10:02:20: the held-back 10:02 run starts late.
		h.finish(first, batchv1.JobComplete, t0.Add(31*time.Second), t0.Add(110*time.Second))
		h.at(110 * time.Second)
		if got := h.jobs(); len(got) != 2 || got[1] != jobAt(90*time.Second) {
			t.Errorf("jobs after the first finished: got %v, want the 10:02 run too", got)
		}
	})
	t.Run("Replace", func(t *testing.T) {
		h := newHarness(t, newCronJob("*/1 * * * *", func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = batchv1.ReplaceConcurrent }))
		h.at(31 * time.Second)
		h.drain()
		h.at(91 * time.Second)
		if e := h.wantEvent("SuccessfulDelete"); !strings.Contains(e, jobAt(30*time.Second)) {
			t.Errorf("delete event: got %q, want it to name %s", e, jobAt(30*time.Second))
		}
		if got := h.jobs(); len(got) != 1 || got[0] != jobAt(90*time.Second) {
			t.Errorf("jobs: got %v, want only [%s]", got, jobAt(90*time.Second))
		}
		if a := h.cronJob().Status.Active; len(a) != 1 || a[0].Name != jobAt(90*time.Second) {
			t.Errorf("active: got %+v, want only the new job", a)
		}
	})
}

// Finished Jobs beyond successfulJobsHistoryLimit 3 / failedJobsHistoryLimit
// 1 are deleted, the oldest first.
func TestHistoryLimits(t *testing.T) {
	h := newHarness(t, newCronJob("*/1 * * * *"))
	var names []string
	for i := range 7 {
		d := time.Duration(i)*time.Minute + 31*time.Second
		h.at(d)
		names = append(names, jobAt(d))
	}
	// Five succeed, two fail (runs 3 and 5).
	for i, n := range names {
		start := t0.Add(time.Duration(i)*time.Minute + 31*time.Second)
		cond := batchv1.JobComplete
		if i == 2 || i == 4 {
			cond = batchv1.JobFailed
		}
		h.finish(n, cond, start, start.Add(10*time.Second))
	}
	h.drain()
	h.at(7*time.Minute + 10*time.Second)
	want := []string{names[3], names[4], names[5], names[6]} // 3 succeeded + the last failed
	sort.Strings(want)
	if got := h.jobs(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("jobs kept: got %v, want %v", got, want)
	}
	deletes := 0
	for _, e := range h.drain() {
		if strings.Contains(e, "SuccessfulDelete") {
			deletes++
		}
	}
	if deletes != 3 {
		t.Errorf("SuccessfulDelete events: got %d, want 3", deletes)
	}
	if got, want := h.cronJob().Status.LastSuccessfulTime, t0.Add(6*time.Minute+41*time.Second); got == nil || !got.Time.Equal(want) {
		t.Errorf("lastSuccessfulTime: got %v, want %s", got, want)
	}
}

func TestSuspend(t *testing.T) {
	h := newHarness(t, newCronJob("*/1 * * * *", func(cj *batchv1.CronJob) { cj.Spec.Suspend = ptr(true) }))
	if after := h.at(3 * time.Minute); after != 0 {
		t.Errorf("suspended requeue: got %v, want none (a spec update resumes it)", after)
	}
	if got := h.jobs(); len(got) != 0 {
		t.Fatalf("jobs while suspended: got %v, want none", got)
	}
	cj := h.cronJob()
	cj.Spec.Suspend = ptr(false)
	if _, err := h.client.BatchV1().CronJobs("default").Update(context.Background(), cj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Resumed without a deadline: the most recent missed time runs.
	h.at(3*time.Minute + 5*time.Second)
	if got := h.jobs(); len(got) != 1 || got[0] != jobAt(150*time.Second) {
		t.Errorf("jobs after resuming: got %v, want [%s]", got, jobAt(150*time.Second))
	}
}

func TestTimeZone(t *testing.T) {
	if _, err := time.LoadLocation("Asia/Tokyo"); err != nil {
		t.Skipf("no zone data: %v", err)
	}
	// 09:00 in Tokyo is 00:00 UTC.
	h := newHarness(t, newCronJob("0 9 * * *", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr("Asia/Tokyo") }))
	next := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	if after := h.at(0); after != next.Sub(t0)+nextDelta {
		t.Errorf("requeue: got %v, want until %s", after, next)
	}
	h.at(next.Sub(t0) + time.Second)
	if got := h.jobs(); len(got) != 1 || got[0] != fmt.Sprintf("tick-%d", next.Unix()/60) {
		t.Fatalf("jobs: got %v, want the 09:00 JST run", got)
	}
	j, _ := h.client.BatchV1().Jobs("default").Get(context.Background(), h.jobs()[0], metav1.GetOptions{})
	if got, want := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation], "2026-11-28T09:00:00+09:00"; got != want {
		t.Errorf("scheduled-timestamp annotation: got %q, want %q", got, want)
	}

	// Without spec.timeZone the server's zone (here Tokyo) sets the
	// times, and the annotation is in UTC.
	local := newHarness(t, newCronJob("0 9 * * *"))
	local.ctl.local, _ = time.LoadLocation("Asia/Tokyo")
	local.at(next.Sub(t0) + time.Second)
	if got := local.jobs(); len(got) != 1 || got[0] != fmt.Sprintf("tick-%d", next.Unix()/60) {
		t.Fatalf("jobs in the server's zone: got %v, want the 09:00 JST run", got)
	}
	j, _ = local.client.BatchV1().Jobs("default").Get(context.Background(), local.jobs()[0], metav1.GetOptions{})
	if got, want := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation], "2026-11-28T00:00:00Z"; got != want {
		t.Errorf("scheduled-timestamp without timeZone: got %q, want %q", got, want)
	}

	bad := newHarness(t, newCronJob("* * * * *", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr("Mars/Olympus") }))
	if after := bad.at(5 * time.Minute); after != 0 {
		t.Errorf("unknown zone requeue: got %v, want none", after)
	}
	bad.wantEvent("UnknownTimeZone")
	if got := bad.jobs(); len(got) != 0 {
		t.Errorf("jobs with an unknown zone: got %v, want none", got)
	}
}

// An active Job deleted behind the controller's back leaves status.active;
// one created by an earlier sync whose status update was lost is taken
// back into it.
func TestActiveListRepair(t *testing.T) {
	h := newHarness(t, newCronJob("*/1 * * * *"))
	h.at(31 * time.Second)
	name := jobAt(30 * time.Second)
	if err := h.client.BatchV1().Jobs("default").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.drain()
	h.at(40 * time.Second)
	h.wantEvent("MissingJob")
	if a := h.cronJob().Status.Active; len(a) != 0 {
		t.Errorf("active after the job vanished: got %+v, want none", a)
	}

	// The 10:02 Job exists (created, then the status write was lost).
	lost := jobFor(h.cronJob(), t0.Add(90*time.Second), time.UTC)
	lost.UID = types.UID("lost-uid")
	if _, err := h.client.BatchV1().Jobs("default").Create(context.Background(), lost, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.at(91 * time.Second)
	cj := h.cronJob()
	if len(cj.Status.Active) != 1 || cj.Status.Active[0].UID != "lost-uid" || !cj.Status.LastScheduleTime.Time.Equal(t0.Add(90*time.Second)) {
		t.Errorf("status after AlreadyExists: active %+v last %v, want the existing job at 10:02", cj.Status.Active, cj.Status.LastScheduleTime)
	}
}

// Schedules of seconds share one Job name a minute: a finished Job of the
// minute marks later times of that minute handled, without listing it as
// active again.
func TestSecondsScheduleSharesMinute(t *testing.T) {
	h := newHarness(t, newCronJob("@every 10s"))
	h.at(10 * time.Second) // 10:00:40
	name := jobAt(10 * time.Second)
	if got := h.jobs(); len(got) != 1 || got[0] != name {
		t.Fatalf("jobs: got %v, want [%s]", got, name)
	}
	h.finish(name, batchv1.JobComplete, t0.Add(10*time.Second), t0.Add(12*time.Second))
	h.at(15 * time.Second)
	h.drain()
	h.at(20 * time.Second) // 10:00:50: same minute, same name
	cj := h.cronJob()
	if len(cj.Status.Active) != 0 || !cj.Status.LastScheduleTime.Time.Equal(t0.Add(20*time.Second)) {
		t.Errorf("status: active %+v last %v, want none and 10:00:50", cj.Status.Active, cj.Status.LastScheduleTime)
	}
	h.at(30 * time.Second) // 10:01:00: a new minute, a new Job
	if got := h.jobs(); len(got) != 2 {
		t.Errorf("jobs in the next minute: got %v, want two", got)
	}
}

// An invalid stored schedule is reported, not retried.
func TestUnparseableSchedule(t *testing.T) {
	h := newHarness(t, newCronJob("61 * * * *"))
	if after := h.at(time.Minute); after != 0 {
		t.Errorf("requeue: got %v, want none", after)
	}
	h.wantEvent("UnparseableSchedule")
}
