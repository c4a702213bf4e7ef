package podautoscaler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"
)

// env is one HPA on Deployment "web" whose /scale is served by reactors
// on the fake clientset; pods are put straight into the informer cache.
type env struct {
	t              *testing.T
	cs             *fake.Clientset
	ctl            *Controller
	rec            *record.FakeRecorder
	clk            *testingclock.FakeClock
	metrics        *FakeMetrics
	replicas       int32 // the Deployment's spec.replicas
	hpaIdx, podIdx cache.Indexer
}

func newEnv(t *testing.T, hpa *autoscalingv2.HorizontalPodAutoscaler, replicas int32) *env {
	t.Helper()
	e := &env{t: t, cs: fake.NewSimpleClientset(hpa), rec: record.NewFakeRecorder(100), clk: testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), metrics: &FakeMetrics{}, replicas: replicas}
	e.cs.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: autoscalingv1.ScaleSpec{Replicas: e.replicas}, Status: autoscalingv1.ScaleStatus{Replicas: e.replicas, Selector: "app=web"}}, nil
	})
	e.cs.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		sc := a.(k8stesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		e.replicas = sc.Spec.Replicas
		return true, sc, nil
	})
	f := informers.NewSharedInformerFactory(e.cs, 0)
	hi, pi := f.Autoscaling().V2().HorizontalPodAutoscalers().Informer(), f.Core().V1().Pods().Informer()
	e.hpaIdx, e.podIdx = hi.GetIndexer(), pi.GetIndexer()
	if err := e.hpaIdx.Add(hpa); err != nil {
		t.Fatal(err)
	}
	e.ctl = New(e.cs, hi, pi, e.rec, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Metrics: e.metrics, Clock: e.clk})
	return e
}

// pods makes n Running, Ready pods web-0… with a cpu request of 100m and a
// memory request of 100Mi, each using usage (cpu and/or memory).
func (e *env) pods(n int, usage map[corev1.ResourceName]string) {
	for _, o := range e.podIdx.List() {
		_ = e.podIdx.Delete(o)
	}
	for i := range n {
		p := pod(fmt.Sprintf("web-%d", i), true)
		if err := e.podIdx.Add(p); err != nil {
			e.t.Fatal(err)
		}
		if usage != nil {
			e.metrics.Set("default", p.Name, usage)
		}
	}
}

func pod(name string, ready bool) *corev1.Pod {
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("100Mi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
}

// sync runs one evaluation and returns the HPA as stored, also feeding it
// back to the cache as the informer would.
func (e *env) sync() *autoscalingv2.HorizontalPodAutoscaler {
	e.t.Helper()
	if _, err := e.ctl.sync(context.Background(), "default/web"); err != nil {
		e.t.Fatalf("sync: %v", err)
	}
	h, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.hpaIdx.Update(h); err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (e *env) events() []string {
	var out []string
	for {
		select {
		case ev := <-e.rec.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func cpuHPA(target int32, minR, maxR int32) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Generation: 1},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    &minR, MaxReplicas: maxR,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &target}}}},
		}}
}

func cond(h *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType) autoscalingv2.HorizontalPodAutoscalerCondition {
	for _, c := range h.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return autoscalingv2.HorizontalPodAutoscalerCondition{}
}

func TestScaleUp(t *testing.T) {
	e := newEnv(t, cpuHPA(50, 1, 10), 2)
	e.pods(2, map[corev1.ResourceName]string{"cpu": "80m"}) // 160 %/50 % → ceil(2*1.6) = 4
	h := e.sync()
	if e.replicas != 4 || h.Status.DesiredReplicas != 4 {
		t.Fatalf("replicas %d desired %d, want 4", e.replicas, h.Status.DesiredReplicas)
	}
	if h.Status.LastScaleTime == nil || h.Status.CurrentReplicas != 2 {
		t.Errorf("status: lastScaleTime %v currentReplicas %d, want set and 2", h.Status.LastScaleTime, h.Status.CurrentReplicas)
	}
	if m := h.Status.CurrentMetrics; len(m) != 1 || *m[0].Resource.Current.AverageUtilization != 80 || m[0].Resource.Current.AverageValue.String() != "80m" {
		t.Errorf("currentMetrics %+v, want cpu 80%% (80m)", m)
	}
	ev := e.events()
	if len(ev) != 1 || ev[0] != "Normal SuccessfulRescale New size: 4; reason: cpu resource utilization (percentage of request) above target" {
		t.Errorf("events %q", ev)
	}
	for ct, want := range map[autoscalingv2.HorizontalPodAutoscalerConditionType]string{autoscalingv2.AbleToScale: "SucceededRescale", autoscalingv2.ScalingActive: "ValidMetricFound", autoscalingv2.ScalingLimited: "DesiredWithinRange"} {
		if c := cond(h, ct); c.Reason != want {
			t.Errorf("condition %s: reason %q, want %q", ct, c.Reason, want)
		}
	}
}

func TestTolerance(t *testing.T) {
	e := newEnv(t, cpuHPA(50, 1, 10), 3)
	e.pods(3, map[corev1.ResourceName]string{"cpu": "54m"}) // ratio 1.08: within 10 %
	h := e.sync()
	if e.replicas != 3 || h.Status.DesiredReplicas != 3 || h.Status.LastScaleTime != nil {
		t.Fatalf("replicas %d desired %d lastScaleTime %v, want 3, 3, unset", e.replicas, h.Status.DesiredReplicas, h.Status.LastScaleTime)
	}
	if ev := e.events(); len(ev) != 0 {
		t.Errorf("events %q, want none", ev)
	}
	e.pods(3, map[corev1.ResourceName]string{"cpu": "56m"}) // 1.12: outside
	e.sync()
	if e.replicas != 4 {
		t.Errorf("at 112 %% of target: replicas %d, want ceil(3*1.12) = 4", e.replicas)
	}
}

func TestScaleDownAfterWindow(t *testing.T) {
	e := newEnv(t, cpuHPA(50, 1, 10), 4)
	e.pods(4, map[corev1.ResourceName]string{"cpu": "10m"}) // 20 % → 1
	h := e.sync()
	if e.replicas != 4 || cond(h, autoscalingv2.AbleToScale).Reason != "ScaleDownStabilized" {
		t.Fatalf("first look: replicas %d AbleToScale %q, want 4 ScaleDownStabilized", e.replicas, cond(h, autoscalingv2.AbleToScale).Reason)
	}
	for range 19 { // 285 s of low usage
		e.clk.Step(15 * time.Second)
		e.sync()
	}
	if e.replicas != 4 {
		t.Fatalf("within the 300 s window: replicas %d, want 4", e.replicas)
	}
	e.clk.Step(16 * time.Second)
	e.sync()
	e.clk.Step(15 * time.Second)
	h = e.sync()
	if e.replicas != 1 || h.Status.DesiredReplicas != 1 {
		t.Fatalf("after the window: replicas %d desired %d, want 1", e.replicas, h.Status.DesiredReplicas)
	}
	ev := e.events()
	if len(ev) != 1 || ev[0] != "Normal SuccessfulRescale New size: 1; reason: All metrics below target" {
		t.Errorf("events %q", ev)
	}
}

func TestShortWindowHonoured(t *testing.T) {
	hpa := cpuHPA(50, 2, 10)
	hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(3))}}
	e := newEnv(t, hpa, 6)
	e.pods(6, map[corev1.ResourceName]string{"cpu": "5m"})
	e.sync()
	e.clk.Step(4 * time.Second)
	h := e.sync()
	if e.replicas != 2 || cond(h, autoscalingv2.ScalingLimited).Reason != "TooFewReplicas" {
		t.Fatalf("replicas %d ScalingLimited %q, want minReplicas 2 and TooFewReplicas", e.replicas, cond(h, autoscalingv2.ScalingLimited).Reason)
	}
}

func TestClamps(t *testing.T) {
	e := newEnv(t, cpuHPA(50, 1, 5), 4)
	e.pods(4, map[corev1.ResourceName]string{"cpu": "100m"}) // wants 8
	h := e.sync()
	if e.replicas != 5 || cond(h, autoscalingv2.ScalingLimited).Reason != "TooManyReplicas" {
		t.Fatalf("replicas %d ScalingLimited %q, want maxReplicas 5 and TooManyReplicas", e.replicas, cond(h, autoscalingv2.ScalingLimited).Reason)
	}
	e.events()
	e.replicas = 9 // scaled by hand beyond the range
	e.sync()
	if ev := e.events(); e.replicas != 5 || len(ev) != 1 || !strings.HasSuffix(ev[0], "reason: Current number of replicas above Spec.MaxReplicas") {
		t.Errorf("replicas %d events %q, want 5 and the above-max reason", e.replicas, ev)
	}
	e.replicas = 0 // scaled to zero by hand: the HPA stands aside
	h = e.sync()
	if c := cond(h, autoscalingv2.ScalingActive); e.replicas != 0 || c.Status != corev1.ConditionFalse || c.Reason != "ScalingDisabled" {
		t.Errorf("replicas %d ScalingActive %s/%s, want 0 and False/ScalingDisabled", e.replicas, c.Status, c.Reason)
	}
}

func TestMissingRequest(t *testing.T) {
	e := newEnv(t, cpuHPA(50, 1, 10), 2)
	e.pods(2, map[corev1.ResourceName]string{"cpu": "200m"})
	p := pod("web-1", true)
	p.Spec.Containers[0].Resources.Requests = nil
	if err := e.podIdx.Update(p); err != nil {
		t.Fatal(err)
	}
	h := e.sync()
	c := cond(h, autoscalingv2.ScalingActive)
	if e.replicas != 2 || c.Status != corev1.ConditionFalse || c.Reason != "FailedGetResourceMetric" || !strings.Contains(c.Message, "missing request for cpu in container c of Pod web-1") {
		t.Fatalf("replicas %d ScalingActive %s/%s %q, want no change and False/FailedGetResourceMetric naming the container", e.replicas, c.Status, c.Reason, c.Message)
	}
	if ev := e.events(); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning FailedGetResourceMetric") {
		t.Errorf("events %q", ev)
	}
}

func TestAverageValueMemory(t *testing.T) {
	hpa := cpuHPA(0, 1, 10)
	hpa.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceMemory, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr(resource.MustParse("100Mi"))}}}}
	e := newEnv(t, hpa, 2)
	e.pods(2, map[corev1.ResourceName]string{"memory": "250Mi"}) // 2.5 → 5
	h := e.sync()
	if e.replicas != 5 {
		t.Fatalf("replicas %d, want ceil(2*2.5) = 5", e.replicas)
	}
	if m := h.Status.CurrentMetrics; len(m) != 1 || m[0].Resource.Current.AverageValue.String() != "250Mi" || m[0].Resource.Current.AverageUtilization != nil {
		t.Errorf("currentMetrics %+v, want memory 250Mi", m)
	}
	if ev := e.events(); len(ev) != 1 || ev[0] != "Normal SuccessfulRescale New size: 5; reason: memory resource above target" {
		t.Errorf("events %q", ev)
	}
}

func TestBehaviorPolicies(t *testing.T) {
	hpa := cpuHPA(50, 1, 20)
	hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: &autoscalingv2.HPAScalingRules{
		Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 60}}}}
	e := newEnv(t, hpa, 2)
	e.pods(2, map[corev1.ResourceName]string{"cpu": "200m"}) // wants 8
	h := e.sync()
	if e.replicas != 3 || cond(h, autoscalingv2.ScalingLimited).Reason != "ScaleUpLimit" {
		t.Fatalf("replicas %d ScalingLimited %q, want 3 (1 pod per 60 s) and ScaleUpLimit", e.replicas, cond(h, autoscalingv2.ScalingLimited).Reason)
	}
	e.pods(3, map[corev1.ResourceName]string{"cpu": "200m"})
	e.clk.Step(30 * time.Second)
	e.sync()
	if e.replicas != 3 {
		t.Fatalf("within the period: replicas %d, want 3", e.replicas)
	}
	e.clk.Step(31 * time.Second)
	e.sync()
	if e.replicas != 4 {
		t.Fatalf("next period: replicas %d, want 4", e.replicas)
	}

	// Default scale-up rule: max(+4 pods, +100 %) per 15 s.
	e2 := newEnv(t, cpuHPA(10, 1, 100), 2)
	e2.pods(2, map[corev1.ResourceName]string{"cpu": "100m"}) // wants 20
	e2.sync()
	if e2.replicas != 6 {
		t.Errorf("default policy from 2: replicas %d, want 6 (+4 pods beats +100 %%)", e2.replicas)
	}

	// Percent scale-down with selectPolicy Min.
	minSel := autoscalingv2.MinChangePolicySelect
	hpa3 := cpuHPA(50, 1, 20)
	hpa3.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{
		StabilizationWindowSeconds: ptr(int32(0)), SelectPolicy: &minSel,
		Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 50, PeriodSeconds: 60}, {Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 60}}}}
	e3 := newEnv(t, hpa3, 10)
	e3.pods(10, map[corev1.ResourceName]string{"cpu": "5m"}) // wants 1
	e3.sync()
	if e3.replicas != 9 {
		t.Errorf("scale down with Min of (-50 %%, -1 pod): replicas %d, want 9", e3.replicas)
	}
}

func TestMissingMetricsAndUnreadyPods(t *testing.T) {
	// Scale down: a pod without metrics counts as at target.
	hpa := cpuHPA(50, 1, 10)
	hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(0))}}
	e := newEnv(t, hpa, 4)
	e.pods(4, map[corev1.ResourceName]string{"cpu": "10m"})
	e.metrics.Delete("default", "web-3")
	e.sync()
	if e.replicas != 2 {
		t.Errorf("scale down with a pod missing metrics: replicas %d, want ceil(4*(30+50)/400/0.5) = 2", e.replicas)
	}

	// Scale up: unready pods count as idle, which here cancels it.
	e2 := newEnv(t, cpuHPA(50, 1, 10), 4)
	e2.pods(4, map[corev1.ResourceName]string{"cpu": "100m"})
	for _, n := range []string{"web-2", "web-3"} {
		if err := e2.podIdx.Update(pod(n, false)); err != nil {
			t.Fatal(err)
		}
	}
	h := e2.sync()
	if e2.replicas != 4 {
		t.Errorf("scale up with half the pods unready: replicas %d, want 4 (100 %% over 2 ready pods is 50 %% over 4)", e2.replicas)
	}
	if u := h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization; *u != 100 {
		t.Errorf("reported utilization %d, want 100 (of the ready pods)", *u)
	}
}

func TestBadTarget(t *testing.T) {
	hpa := cpuHPA(50, 1, 10)
	hpa.Spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{APIVersion: "v1", Kind: "Pod", Name: "web"}
	e := newEnv(t, hpa, 2)
	h := e.sync()
	if c := cond(h, autoscalingv2.AbleToScale); c.Status != corev1.ConditionFalse || c.Reason != "FailedGetScale" || !strings.Contains(c.Message, "Deployment, ReplicaSet or StatefulSet") {
		t.Errorf("AbleToScale %s/%s %q", c.Status, c.Reason, c.Message)
	}
}

func TestNoMetricsMeansCPU80(t *testing.T) {
	hpa := cpuHPA(50, 1, 10)
	hpa.Spec.Metrics = nil
	e := newEnv(t, hpa, 2)
	e.pods(2, map[corev1.ResourceName]string{"cpu": "160m"}) // 160 %/80 % → 4
	e.sync()
	if e.replicas != 4 {
		t.Errorf("replicas %d, want 4 (default target 80 %% cpu)", e.replicas)
	}
}
