package podautoscaler

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
)

// PodUsage is a pod's resource usage, summed over its containers (the
// HPA compares it with the sum of the containers' requests).
type PodUsage corev1.ResourceList

// MetricsSource reads the current resource usage of the pods a selector
// picks in a namespace, by pod name, and the time of the oldest sample.
type MetricsSource interface {
	PodMetrics(ctx context.Context, namespace string, selector labels.Selector) (map[string]PodUsage, time.Time, error)
}

// RESTMetrics reads the resource metrics API (metrics.k8s.io/v1beta1
// PodMetrics) that the API server serves, as Kubernetes' HPA reads
// metrics-server's.
type RESTMetrics struct {
	Client rest.Interface // any client of the API server; the path is absolute
}

// The parts of metrics.k8s.io/v1beta1 PodMetricsList the HPA reads
// (k8s.io/metrics is not in the module graph).
type podMetricsList struct {
	Items []struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Timestamp  time.Time `json:"timestamp"`
		Containers []struct {
			Name  string              `json:"name"`
			Usage corev1.ResourceList `json:"usage"`
		} `json:"containers"`
	} `json:"items"`
}

// PodMetrics GETs /apis/metrics.k8s.io/v1beta1/namespaces/NS/pods?labelSelector=….
func (m RESTMetrics) PodMetrics(ctx context.Context, namespace string, selector labels.Selector) (map[string]PodUsage, time.Time, error) {
	raw, err := m.Client.Get().AbsPath("/apis/metrics.k8s.io/v1beta1", "namespaces", namespace, "pods").
		Param("labelSelector", selector.String()).
		// JSON, whatever the client's content type: there are no
		// protobuf types for metrics.k8s.io here.
		SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("unable to fetch metrics from resource metrics API: %w", err)
	}
	var l podMetricsList
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, time.Time{}, fmt.Errorf("decoding metrics.k8s.io PodMetricsList: %w", err)
	}
	out := make(map[string]PodUsage, len(l.Items))
	var oldest time.Time
	for _, it := range l.Items {
		u := PodUsage{}
		for _, c := range it.Containers {
			for name, q := range c.Usage {
				sum := u[name]
				sum.Add(q)
				u[name] = sum
			}
		}
		out[it.Metadata.Name] = u
		if oldest.IsZero() || it.Timestamp.Before(oldest) {
			oldest = it.Timestamp
		}
	}
	return out, oldest, nil
}

// FakeMetrics is a MetricsSource for tests and labs: usage set by hand,
// per namespace and pod.
type FakeMetrics struct {
	mu    sync.Mutex
	usage map[string]map[string]PodUsage // namespace → pod → usage
	err   error
}

// Set records a pod's usage (e.g. "cpu": "250m").
func (f *FakeMetrics) Set(namespace, pod string, usage map[corev1.ResourceName]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.usage == nil {
		f.usage = map[string]map[string]PodUsage{}
	}
	if f.usage[namespace] == nil {
		f.usage[namespace] = map[string]PodUsage{}
	}
	u := PodUsage{}
	for k, v := range usage {
		u[k] = resource.MustParse(v)
	}
	f.usage[namespace][pod] = u
}

// Delete forgets a pod's usage (its metrics go missing).
func (f *FakeMetrics) Delete(namespace, pod string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.usage[namespace], pod)
}

// SetError makes PodMetrics fail (nil: succeed again).
func (f *FakeMetrics) SetError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// PodMetrics returns the usage set for the namespace's pods. The selector
// is not applied: the controller only looks up the pods it selected.
func (f *FakeMetrics) PodMetrics(_ context.Context, namespace string, _ labels.Selector) (map[string]PodUsage, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, time.Time{}, f.err
	}
	out := map[string]PodUsage{}
	for k, v := range f.usage[namespace] {
		out[k] = v
	}
	return out, time.Now(), nil
}
