package job

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

var seq atomic.Int64

// newClientset is a fake clientset that, like the API server, fills in
// generateName and uid.
func newClientset(objs ...runtime.Object) *fake.Clientset {
	cs := fake.NewClientset(objs...)
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		n := seq.Add(1)
		if p.Name == "" {
			p.Name = fmt.Sprintf("%s%05d", p.GenerateName, n)
		}
		p.UID = types.UID(fmt.Sprintf("pod-uid-%d", n))
		p.CreationTimestamp = metav1.Now()
		return false, nil, nil
	})
	return cs
}

func newJob(name string, completions, parallelism, backoff int32) *batchv1.Job {
	never := corev1.RestartPolicyNever
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("job-" + name), CreationTimestamp: metav1.Now()},
		Spec: batchv1.JobSpec{
			Completions: &completions, Parallelism: &parallelism, BackoffLimit: &backoff,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"job": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"job": name}},
				Spec: corev1.PodSpec{RestartPolicy: never, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}},
		},
	}
}

func start(t *testing.T, cs *fake.Clientset) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := informers.NewSharedInformerFactory(cs, 0)
	c := New(cs, f.Batch().V1().Jobs().Informer(), f.Core().V1().Pods().Informer(), record.NewFakeRecorder(1000), nil)
	f.Start(ctx.Done())
	go func() { _ = c.Run(ctx, 2) }()
}

// kubelet plays the node: every pod it finds running for long enough gets
// the phase outcome(pod) returns ("" leaves it running). It records the
// most pods seen active at once.
func kubelet(t *testing.T, cs *fake.Clientset, outcome func(*corev1.Pod) corev1.PodPhase) *atomic.Int32 {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var peak atomic.Int32
	go func() {
		for ctx.Err() == nil {
			time.Sleep(30 * time.Millisecond)
			list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			active := int32(0)
			for i := range list.Items {
				p := &list.Items[i]
				if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
					continue
				}
				active++
				if time.Since(p.CreationTimestamp.Time) < 100*time.Millisecond {
					continue
				}
				if ph := outcome(p); ph != "" {
					p.Status.Phase = ph
					now := metav1.Now()
					code := int32(0)
					if ph == corev1.PodFailed {
						code = 1
					}
					p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, FinishedAt: now}}}}
					_, _ = cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
			if active > peak.Load() {
				peak.Store(active)
			}
		}
	}()
	return &peak
}

func waitJob(t *testing.T, cs *fake.Clientset, name string, d time.Duration, cond func(*batchv1.Job) bool) *batchv1.Job {
	t.Helper()
	deadline := time.Now().Add(d)
	var j *batchv1.Job
	for time.Now().Before(deadline) {
		var err error
		j, err = cs.BatchV1().Jobs("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && cond(j) {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s: condition not met in %v; status %+v", name, d, j.Status)
	return nil
}

func cond(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	if i := conditionIndex(j, t); i >= 0 {
		return &j.Status.Conditions[i]
	}
	return nil
}

func TestCompletionsAndParallelism(t *testing.T) {
	cs := newClientset(newJob("work", 3, 2, 6))
	start(t, cs)
	peak := kubelet(t, cs, func(*corev1.Pod) corev1.PodPhase { return corev1.PodSucceeded })
	j := waitJob(t, cs, "work", 5*time.Second, func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobComplete) })
	if j.Status.Succeeded != 3 || j.Status.Failed != 0 || j.Status.Active != 0 {
		t.Errorf("status succeeded/failed/active = %d/%d/%d, want 3/0/0", j.Status.Succeeded, j.Status.Failed, j.Status.Active)
	}
	if c := cond(j, batchv1.JobSuccessCriteriaMet); c == nil || c.Status != corev1.ConditionTrue || c.Reason != "CompletionsReached" {
		t.Errorf("SuccessCriteriaMet condition: %+v", c)
	}
	if j.Status.StartTime == nil || j.Status.CompletionTime == nil {
		t.Errorf("startTime %v completionTime %v", j.Status.StartTime, j.Status.CompletionTime)
	}
	if p := peak.Load(); p > 2 {
		t.Errorf("%d pods active at once, want at most parallelism 2", p)
	}
	pods, _ := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if len(pods.Items) != 3 {
		t.Errorf("created %d pods, want 3", len(pods.Items))
	}
	for _, p := range pods.Items {
		if ref := metav1.GetControllerOf(&p); ref == nil || ref.Kind != "Job" || ref.Name != "work" {
			t.Errorf("pod %s owner %+v", p.Name, ref)
		}
	}
}

func TestBackoffLimit(t *testing.T) {
	cs := newClientset(newJob("flaky", 1, 1, 1))
	start(t, cs)
	kubelet(t, cs, func(*corev1.Pod) corev1.PodPhase { return corev1.PodFailed })
	j := waitJob(t, cs, "flaky", 8*time.Second, func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobFailed) })
	if c := cond(j, batchv1.JobFailed); c.Reason != batchv1.JobReasonBackoffLimitExceeded {
		t.Errorf("Failed reason %q, want BackoffLimitExceeded", c.Reason)
	}
	if c := cond(j, batchv1.JobFailureTarget); c == nil || c.Reason != batchv1.JobReasonBackoffLimitExceeded {
		t.Errorf("FailureTarget condition %+v", c)
	}
	if j.Status.Failed != 2 {
		t.Errorf("failed %d, want 2 (backoffLimit 1 + 1)", j.Status.Failed)
	}
	time.Sleep(300 * time.Millisecond)
	pods, _ := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if len(pods.Items) != 2 {
		t.Errorf("created %d pods, want 2", len(pods.Items))
	}
}

func TestActiveDeadlineAndTTL(t *testing.T) {
	j := newJob("slow", 1, 2, 6)
	deadline, ttl := int64(1), int32(1)
	j.Spec.ActiveDeadlineSeconds = &deadline
	j.Spec.TTLSecondsAfterFinished = &ttl
	cs := newClientset(j)
	start(t, cs)
	got := waitJob(t, cs, "slow", 5*time.Second, func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobFailed) })
	if c := cond(got, batchv1.JobFailed); c.Reason != batchv1.JobReasonDeadlineExceeded {
		t.Errorf("Failed reason %q, want DeadlineExceeded", c.Reason)
	}
	if el := cond(got, batchv1.JobFailed).LastTransitionTime.Sub(got.Status.StartTime.Time); el < 900*time.Millisecond {
		t.Errorf("failed %v after start, before its 1s deadline", el)
	}
	pods, _ := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if len(pods.Items) != 0 {
		t.Errorf("%d pods left after the deadline, want 0", len(pods.Items))
	}
	// ttlSecondsAfterFinished 1: the Job goes about a second later.
	end := time.Now().Add(4 * time.Second)
	for time.Now().Before(end) {
		_, err := cs.BatchV1().Jobs("default").Get(context.Background(), "slow", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Error("finished job with ttlSecondsAfterFinished 1 not deleted")
}

func TestIndexed(t *testing.T) {
	j := newJob("idx", 3, 3, 6)
	mode := batchv1.IndexedCompletion
	j.Spec.CompletionMode = &mode
	cs := newClientset(j)
	start(t, cs)
	// Index 1 fails once, then succeeds.
	var failedOnce atomic.Bool
	kubelet(t, cs, func(p *corev1.Pod) corev1.PodPhase {
		if podIndex(p) == 1 && failedOnce.CompareAndSwap(false, true) {
			return corev1.PodFailed
		}
		return corev1.PodSucceeded
	})
	got := waitJob(t, cs, "idx", 8*time.Second, func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobComplete) })
	if got.Status.CompletedIndexes != "0-2" || got.Status.Succeeded != 3 || got.Status.Failed != 1 {
		t.Errorf("completedIndexes %q succeeded %d failed %d, want 0-2 3 1", got.Status.CompletedIndexes, got.Status.Succeeded, got.Status.Failed)
	}
	pods, _ := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	seen := map[int]int{}
	for _, p := range pods.Items {
		seen[podIndex(&p)]++
		if p.Spec.Hostname != fmt.Sprintf("idx-%d", podIndex(&p)) {
			t.Errorf("pod %s hostname %q", p.Name, p.Spec.Hostname)
		}
	}
	if seen[0] != 1 || seen[1] != 2 || seen[2] != 1 {
		t.Errorf("pods per index %v, want 0:1 1:2 2:1", seen)
	}
}

func TestFormatIndexes(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{{nil, ""}, {[]int{0}, "0"}, {[]int{0, 1, 2, 4, 6, 7}, "0-2,4,6-7"}} {
		m := map[int]bool{}
		for _, i := range tc.in {
			m[i] = true
		}
		if got := formatIndexes(m); got != tc.want {
			t.Errorf("formatIndexes(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A work-queue Job (parallelism, no completions) runs parallelism pods and
// is complete once one succeeded and none runs; no pod is added after the
// first success.
func TestWorkQueue(t *testing.T) {
	j := newJob("queue", 0, 2, 6)
	j.Spec.Completions = nil
	cs := newClientset(j)
	start(t, cs)
	peak := kubelet(t, cs, func(*corev1.Pod) corev1.PodPhase { return corev1.PodSucceeded })
	got := waitJob(t, cs, "queue", 5*time.Second, func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobComplete) })
	pods, _ := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if len(pods.Items) != 2 || got.Status.Succeeded != 2 || peak.Load() > 2 {
		t.Errorf("work queue: %d pods, succeeded %d, peak %d; want 2, 2, ≤2", len(pods.Items), got.Status.Succeeded, peak.Load())
	}
}
