package orch

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// BenchmarkPodStartup100 measures pod startup latency as Kubernetes'
// SLO defines it, images present: from the create request to the pod's
// Running phase observed through a watch, for 100 pods created at once
// (10 in flight) on the lab's 3 nodes. Run it with -benchtime=1x (make
// bench); each iteration is one batch of 100.
func BenchmarkPodStartup100(b *testing.B) {
	const n = 100
	var all []time.Duration
	for i := 0; i < b.N; i++ {
		lat, err := podStartupBatch(fmt.Sprintf("bench%d", i), n)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, lat...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	q := func(p float64) time.Duration { return all[int(p*float64(len(all)-1)+0.5)] }
	b.ReportMetric(float64(q(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
	fmt.Printf("pod startup latency, %d pods on %d nodes: p50 %v p99 %v max %v (target p99 ≤ 1s)\n",
		len(all), len(theLab.NodeNames()), q(0.50).Round(time.Millisecond), q(0.99).Round(time.Millisecond), all[len(all)-1].Round(time.Millisecond))
}

func podStartupBatch(ns string, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	defer client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	created := map[string]time.Time{}
	running := map[string]time.Time{}
	grace := int64(1)
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("p%03d", i)
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "bench"}},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{{
					Name: "app", Image: "lab/app:v1", ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "100000"}}}}}
			start := time.Now()
			mu.Lock()
			created[name] = start
			mu.Unlock()
			if _, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}(i)
	}
	for len(running) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, fmt.Errorf("watch closed with %d of %d pods running", len(running), n)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted || p.Status.Phase != corev1.PodRunning {
				continue
			}
			if _, seen := running[p.Name]; !seen {
				running[p.Name] = time.Now()
			}
		case err := <-errs:
			return nil, err
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d pods running after 5 minutes", len(running), n)
		}
	}
	wg.Wait()
	var lat []time.Duration
	mu.Lock()
	defer mu.Unlock()
	for name, at := range running {
		lat = append(lat, at.Sub(created[name]))
	}
	return lat, nil
}
