package podautoscaler_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/internal/cluster/apiserver/apiservertest"
	"github.com/berth/berth/internal/cluster/controller/deployment"
	"github.com/berth/berth/internal/cluster/controller/podautoscaler"
	"github.com/berth/berth/internal/cluster/controller/replicaset"
	"github.com/berth/berth/internal/cluster/kube"
)

// TestAgainstAPIServer autoscales a Deployment through the real API
// server's /scale subresource, with the Deployment and ReplicaSet
// controllers running and a fake metrics source: the test stands in for
// the kubelet (marks pods Running and Ready) and for metrics-server (a
// fixed total cpu load shared by the pods). 150m of load on pods
// requesting 100m at a 50 % target wants 3 pods; when the load drops the
// Deployment returns to minReplicas after the 2 s stabilization window.
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, c := apiservertest.StartClients(t, ctx)
	cs := c.Client
	metrics := &podautoscaler.FakeMetrics{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, comp := range []kube.Component{replicaset.Component(), deployment.Component(),
		podautoscaler.Component(podautoscaler.Options{SyncPeriod: 200 * time.Millisecond, Metrics: metrics})} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = comp.Run(ctx, c) }()
	}

	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "busybox", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}},
	}}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
		MinReplicas:    ptr(int32(1)), MaxReplicas: 5,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(int32(50))}}}},
		Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(2))}},
	}}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The kubelet and metrics-server stand-in.
	var mu sync.Mutex
	totalMilli := int64(150)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err == nil {
				var live []corev1.Pod
				for _, p := range pods.Items {
					if p.DeletionTimestamp == nil {
						live = append(live, p)
					}
				}
				mu.Lock()
				each := totalMilli / int64(max(len(live), 1))
				mu.Unlock()
				for _, p := range live {
					if p.Status.Phase != corev1.PodRunning {
						p.Status.Phase = corev1.PodRunning
						p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
						_, _ = cs.CoreV1().Pods("default").UpdateStatus(ctx, &p, metav1.UpdateOptions{})
					}
					metrics.Set("default", p.Name, map[corev1.ResourceName]string{"cpu": fmt.Sprintf("%dm", each)})
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	waitReplicas := func(want int32) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			d, err := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if *d.Spec.Replicas == want {
				return time.Since(start)
			}
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %d replicas (at %d)", want, *d.Spec.Replicas)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	up := waitReplicas(3)
	t.Logf("scaled up to 3 in %v", up)

	// Stable at 3: 50m each is on target. Wait for the status to show it,
	// then check the kubectl table renders current/target.
	var h *autoscalingv2.HorizontalPodAutoscaler
	var err error
	for {
		h, err = cs.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := h.Status.CurrentMetrics; h.Status.CurrentReplicas == 3 && len(m) == 1 && m[0].Resource.Current.AverageUtilization != nil && *m[0].Resource.Current.AverageUtilization == 50 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("status never showed 3 replicas at 50%%: %+v", h.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h.Status.LastScaleTime == nil || h.Status.DesiredReplicas != 3 {
		t.Errorf("status %+v, want lastScaleTime and desiredReplicas 3", h.Status)
	}
	raw, err := cs.AutoscalingV2().RESTClient().Get().AbsPath("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"cpu: 50%/50%"`) {
		t.Errorf("table has no TARGETS cell \"cpu: 50%%/50%%\": %s", raw)
	}
	evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs.Items {
		if e.Reason == "SuccessfulRescale" && e.Message == "New size: 3; reason: cpu resource utilization (percentage of request) above target" {
			found = true
		}
	}
	if !found {
		t.Errorf("no SuccessfulRescale event to 3 among %d events", len(evs.Items))
	}

	mu.Lock()
	totalMilli = 15
	mu.Unlock()
	down := waitReplicas(1)
	// The window holds the high recommendations of the last 2 s; the last
	// of them may have been made up to one sync (200 ms) before the load
	// dropped, so the scale-down may come that much sooner than 2 s after.
	if down < 2*time.Second-200*time.Millisecond {
		t.Errorf("scaled down after %v, before the 2 s stabilization window (less one 200 ms sync)", down)
	}
	t.Logf("scaled down to 1 in %v after the load dropped", down)
}

func ptr[T any](v T) *T { return &v }
