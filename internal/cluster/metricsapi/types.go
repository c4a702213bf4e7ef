// Package metricsapi holds the wire types of the resource metrics API,
// metrics.k8s.io/v1beta1 (NodeMetrics, PodMetrics), field for field as
// metrics-server serves them, and the node agent's /stats/metrics answer
// the API server builds them from. k8s.io/metrics is not a dependency;
// these structs decode its JSON and vice versa.
package metricsapi

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Group and Version of the resource metrics API.
const (
	Group      = "metrics.k8s.io"
	Version    = "v1beta1"
	APIVersion = Group + "/" + Version
)

// NodeMetrics is one node's usage: usage.cpu in cores (nanocores on the
// wire, "123456789n"), usage.memory the working set in bytes.
type NodeMetrics struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Timestamp is the end of the sampling window, Window its length.
	Timestamp metav1.Time         `json:"timestamp"`
	Window    metav1.Duration     `json:"window"`
	Usage     corev1.ResourceList `json:"usage"`
}

// NodeMetricsList is a list of NodeMetrics.
type NodeMetricsList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []NodeMetrics `json:"items"`
}

// PodMetrics is one pod's usage, per container.
type PodMetrics struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Timestamp         metav1.Time        `json:"timestamp"`
	Window            metav1.Duration    `json:"window"`
	Containers        []ContainerMetrics `json:"containers"`
}

// ContainerMetrics is one container's usage.
type ContainerMetrics struct {
	Name  string              `json:"name"`
	Usage corev1.ResourceList `json:"usage"`
}

// PodMetricsList is a list of PodMetrics.
type PodMetricsList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []PodMetrics `json:"items"`
}

// Usage returns a ResourceList of cpu (nanocores) and memory (bytes), as
// metrics-server writes them.
func Usage(nanocores, bytes uint64) corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewScaledQuantity(int64(nanocores), resource.Nano),
		corev1.ResourceMemory: *resource.NewQuantity(int64(bytes), resource.BinarySI),
	}
}

// NodeSummary is the node agent's answer to GET /stats/metrics on its
// streaming port (HTTPS, the API server's kubelet-client certificate).
type NodeSummary struct {
	NodeName string `json:"nodeName"`
	// Node is nil until the agent has two samples of the node.
	Node *Sample     `json:"node,omitempty"`
	Pods []PodSample `json:"pods"`
	// Timestamp is when the last sampling round ended.
	Timestamp time.Time `json:"timestamp"`
}

// Sample is a usage over a window: CPU as a rate, memory the working set
// at the window's end.
type Sample struct {
	CPUNanoCores uint64        `json:"cpu_nanocores"`
	MemoryBytes  uint64        `json:"memory_bytes"`
	Timestamp    time.Time     `json:"timestamp"`
	Window       time.Duration `json:"window_ns"`
}

// PodSample is one pod's containers. Only running containers with two
// samples appear.
type PodSample struct {
	Namespace  string            `json:"namespace"`
	Name       string            `json:"name"`
	UID        string            `json:"uid"`
	Containers []ContainerSample `json:"containers"`
}

// ContainerSample is one container's usage.
type ContainerSample struct {
	Name string `json:"name"`
	Sample
}
