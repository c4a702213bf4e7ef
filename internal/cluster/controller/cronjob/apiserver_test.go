package cronjob_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/berth/berth/internal/cluster/apiserver/apiservertest"
	"github.com/berth/berth/internal/cluster/controller/cronjob"
)

// TestAgainstAPIServer drives a "*/1 * * * *" CronJob through three runs
// against the real API server, with an injected clock in place of
// waiting minutes: the controller starts a Job at each minute, sees it
// complete (marked through the status subresource, standing in for the
// Job controller), records lastSuccessfulTime, and keeps one finished Job
// (successfulJobsHistoryLimit 1).
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, c := apiservertest.StartClients(t, ctx)
	cs := c.Client

	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "tick", Namespace: "default"},
		Spec: batchv1.CronJobSpec{
			Schedule:                   "*/1 * * * *",
			SuccessfulJobsHistoryLimit: ptr(int32(1)),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
			}}}},
		},
	}
	cj, err := cs.BatchV1().CronJobs("default").Create(ctx, cj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cj.Spec.ConcurrencyPolicy != batchv1.AllowConcurrent || cj.Spec.FailedJobsHistoryLimit == nil || *cj.Spec.FailedJobsHistoryLimit != 1 {
		t.Errorf("defaults: got policy %q failed limit %v, want Allow and 1", cj.Spec.ConcurrencyPolicy, cj.Spec.FailedJobsHistoryLimit)
	}
	// The fake clock starts at the CronJob's creation; runs are due at
	// each following whole minute.
	created := cj.CreationTimestamp.Time
	clk := testingclock.NewFakeClock(created.Add(time.Second))
	ctl := cronjob.New(cs, c.Informers.Batch().V1().CronJobs().Informer(), c.Informers.Batch().V1().Jobs().Informer(),
		c.Recorder("cronjob-controller", ""), c.Logger, clk)
	c.Informers.Start(ctx.Done())
	go func() { _ = ctl.Run(ctx, 2) }()

	// waitFor polls (real time) while the fake clock creeps forward 100 ms
	// a poll, as time would, so rate-limited retries get their turn.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			clk.Step(100 * time.Millisecond)
			time.Sleep(20 * time.Millisecond)
		}
	}
	getCJ := func() *batchv1.CronJob {
		t.Helper()
		cur, err := cs.BatchV1().CronJobs("default").Get(ctx, "tick", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	jobNames := func() map[string]bool {
		t.Helper()
		l, err := cs.BatchV1().Jobs("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, j := range l.Items {
			out[j.Name] = true
		}
		return out
	}
	complete := func(name string) {
		t.Helper()
		j, err := cs.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.NewTime(clk.Now())
		j.Status.StartTime, j.Status.CompletionTime, j.Status.Succeeded = &now, &now, 1
		j.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue},
		}
		if _, err := cs.BatchV1().Jobs("default").UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing before the first minute.
	time.Sleep(200 * time.Millisecond)
	if n := jobNames(); len(n) != 0 {
		t.Fatalf("jobs before the first schedule time: got %v, want none", n)
	}
	first := created.Truncate(time.Minute).Add(time.Minute)
	var names []string
	for run := range 3 {
		due := first.Add(time.Duration(run) * time.Minute)
		name := fmt.Sprintf("tick-%d", due.Unix()/60)
		names = append(names, name)
		// Jump to just after the schedule time: the queued wake-up fires.
		clk.SetTime(due.Add(200 * time.Millisecond))
		start := time.Now()
		waitFor("job "+name, func() bool { return jobNames()[name] })
		t.Logf("run %d: job %s created %v (real time) after its schedule time came", run+1, name, time.Since(start).Round(time.Millisecond))
		j, err := cs.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ref := metav1.GetControllerOf(j); ref == nil || ref.UID != cj.UID {
			t.Errorf("%s: controller ref %+v, want the CronJob", name, ref)
		}
		if got, err := time.Parse(time.RFC3339, j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]); err != nil || !got.Equal(due) {
			t.Errorf("%s: scheduled-timestamp %q, want %s", name, j.Annotations[batchv1.CronJobScheduledTimestampAnnotation], due)
		}
		waitFor("status.active = ["+name+"]", func() bool {
			a := getCJ().Status.Active
			return len(a) == 1 && a[0].Name == name
		})
		if last := getCJ().Status.LastScheduleTime; last == nil || !last.Time.Equal(due) {
			t.Errorf("lastScheduleTime: got %v, want %s", last, due)
		}
		complete(name)
		waitFor("job "+name+" seen completed", func() bool {
			cur := getCJ()
			return len(cur.Status.Active) == 0 && cur.Status.LastSuccessfulTime != nil && !cur.Status.LastSuccessfulTime.Time.Before(due)
		})
	}
	// successfulJobsHistoryLimit 1: only the last run's Job is kept.
	waitFor("history pruned to the last job", func() bool {
		n := jobNames()
		return len(n) == 1 && n[names[2]]
	})
	// The events Kubernetes records, on the CronJob.
	waitFor("events", func() bool {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=tick"})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range evs.Items {
			seen[e.Reason] = true
		}
		return seen["SuccessfulCreate"] && seen["SawCompletedJob"] && seen["SuccessfulDelete"]
	})
}

func ptr[T any](v T) *T { return &v }
