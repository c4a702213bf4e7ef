package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestStartupLatency creates pods (BERTH_E2E_PODS, default 30) at once on
// the node and reports creation → Running as seen by a watch, images
// present.
func TestStartupLatency(t *testing.T) {
	n := 30
	if v, err := strconv.Atoi(os.Getenv("BERTH_E2E_PODS")); err == nil && v > 0 {
		n = v
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(env.dir, "server", "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.ContentType = "application/json"
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := "latency"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	grace := int64(1)
	created := map[string]time.Time{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("p%d", i)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{
			NodeName: env.node, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "c", Image: "busybox:e2e", Command: []string{"sleep", "3600"}}}}}
		created[name] = time.Now()
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var lat []time.Duration
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted || seen[p.Name] || p.Status.Phase != corev1.PodRunning {
				continue
			}
			seen[p.Name] = true
			lat = append(lat, time.Since(created[p.Name]))
		case <-ctx.Done():
			t.Fatalf("only %d of %d pods Running", len(seen), n)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p int) time.Duration { return lat[(len(lat)-1)*p/100] }
	t.Logf("pod startup (create → Running via watch, %d pods at once, one node): p50 %v p99 %v max %v",
		n, pct(50).Round(time.Millisecond), pct(99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Every container goes with its pod.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if out, _ := env.berth("ps", "-aq", "--filter", "label=io.kubernetes.pod.namespace="+ns); out == "" {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	out, _ := env.berth("ps", "-a", "--filter", "label=io.kubernetes.pod.namespace="+ns)
	t.Fatalf("containers left after the namespace was deleted:\n%s", out)
}
