package metricsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"k8s.io/client-go/rest"
)

// PodsPath is the collection path of PodMetrics in namespace ns, or in all
// namespaces when ns is "".
func PodsPath(ns string) string {
	if ns == "" {
		return "/apis/" + APIVersion + "/pods"
	}
	return "/apis/" + APIVersion + "/namespaces/" + url.PathEscape(ns) + "/pods"
}

// ListPodMetrics lists the PodMetrics of namespace ns ("" for all) whose
// pods match the label selector (as in ListOptions.LabelSelector, "" for
// all), through any REST client of the cluster, such as
// clientset.CoreV1().RESTClient(). Pods without a sample yet are absent.
func ListPodMetrics(ctx context.Context, c rest.Interface, ns, labelSelector string) (*PodMetricsList, error) {
	req := c.Get().AbsPath(PodsPath(ns))
	if labelSelector != "" {
		req = req.Param("labelSelector", labelSelector)
	}
	b, err := req.DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing %s pod metrics: %w", APIVersion, err)
	}
	var out PodMetricsList
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decoding %s PodMetricsList: %w", APIVersion, err)
	}
	return &out, nil
}
