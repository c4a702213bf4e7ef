package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/berth/berth/internal/cluster/metricsapi"
)

// The resource metrics API (metrics.k8s.io/v1beta1) is served here rather
// than by an aggregated metrics-server: NodeMetrics and PodMetrics are
// built on request from the usage each node agent samples (GET
// /stats/metrics on its streaming port, package agent/metrics), asked of
// all nodes at once and cached briefly.
const (
	// metricsTTL is how long one round of node answers is reused: agents
	// sample every 5 s, so asking more often gains nothing.
	metricsTTL = 2 * time.Second
	// metricsNodeTimeout bounds the wait for one node; nodes that do not
	// answer in time are left out, as metrics-server leaves them out.
	metricsNodeTimeout = 3 * time.Second
)

// metricsCache holds the last round of node summaries.
type metricsCache struct {
	mu     sync.Mutex // held during a round, so concurrent requests share it
	at     time.Time
	byNode map[string]*metricsapi.NodeSummary
}

// nodeSummaries returns every answering node's summary, by node name.
func (s *Server) nodeSummaries(ctx context.Context) (map[string]*metricsapi.NodeSummary, error) {
	if s.nodeTLS.err != nil {
		return nil, newStatus(503, metav1.StatusReasonServiceUnavailable, nil, fmt.Sprintf("resource metrics: %v", s.nodeTLS.err))
	}
	c := &s.metrics
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byNode != nil && time.Since(c.at) < metricsTTL {
		return c.byNode, nil
	}
	page, err := s.st.list(ctx, lookup("", "v1", "nodes"), "", 0, "", 0, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]*metricsapi.NodeSummary{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, obj := range page.items {
		node, ok := obj.(*corev1.Node)
		if !ok || notReady(node) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sum, err := s.fetchNodeSummary(ctx, node)
			if err != nil {
				s.log.Debug("node left out of resource metrics", "node", node.Name, "err", err)
				return
			}
			mu.Lock()
			out[node.Name] = sum
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() == nil { // a client that left saw a partial round: do not keep it
		c.at, c.byNode = time.Now(), out
	}
	return out, nil
}

// notReady reports a node whose Ready condition is False or Unknown: its
// agent is most likely gone, and asking would only make every request
// wait out the timeout.
func notReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status != corev1.ConditionTrue
		}
	}
	return false
}

// fetchNodeSummary asks one node agent for its usage.
func (s *Server) fetchNodeSummary(ctx context.Context, node *corev1.Node) (*metricsapi.NodeSummary, error) {
	addr, err := kubeletAddress(node)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(ctx, metricsNodeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/stats/metrics", nil)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: s.nodeTLS.config(node.Name, host), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /stats/metrics: HTTP %d: %.200s", res.StatusCode, b)
	}
	var sum metricsapi.NodeSummary
	if err := json.Unmarshal(b, &sum); err != nil {
		return nil, fmt.Errorf("GET /stats/metrics: %w", err)
	}
	return &sum, nil
}

// serveMetrics answers get and list of metrics.k8s.io nodes and pods.
func (s *Server) serveMetrics(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	if ri.verb != "get" && ri.verb != "list" {
		return errMethodNotAllowed("%s supports get and list only, not %s", ri.r.groupResource(), ri.verb)
	}
	ctx := req.Context()
	match, err := selectors(req)
	if err != nil {
		return err
	}
	sums, err := s.nodeSummaries(ctx)
	if err != nil {
		return err
	}
	// The objects the metrics describe: one by name, or those selected.
	src := lookup("", "v1", ri.r.name)
	var objs []runtime.Object
	if ri.verb == "get" {
		obj, err := s.st.get(ctx, src, ri.ns, ri.name)
		if err != nil {
			if toStatus(err).status.Code == 404 {
				return metricsNotFound(ri, err)
			}
			return err
		}
		objs = []runtime.Object{obj}
	} else {
		page, err := s.st.list(ctx, src, ri.ns, 0, "", 0, match)
		if err != nil {
			return err
		}
		objs = page.items
	}
	now := metav1.Now()
	var nodes []metricsapi.NodeMetrics
	var pods []metricsapi.PodMetrics
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Node:
			if m, ok := nodeMetrics(o, sums[o.Name], now); ok {
				nodes = append(nodes, m)
			}
		case *corev1.Pod:
			if m, ok := podMetrics(o, sums[o.Spec.NodeName], now); ok {
				pods = append(pods, m)
			}
		}
	}
	tm := metav1.TypeMeta{APIVersion: metricsapi.APIVersion}
	if ri.verb == "get" {
		switch {
		case len(nodes) == 1:
			tm.Kind = "NodeMetrics"
			nodes[0].TypeMeta = tm
			writeJSON(w, 200, nodes[0])
		case len(pods) == 1:
			tm.Kind = "PodMetrics"
			pods[0].TypeMeta = tm
			writeJSON(w, 200, pods[0])
		default:
			return metricsNotFound(ri, nil)
		}
		return nil
	}
	if ri.r.name == "nodes" {
		tm.Kind = "NodeMetricsList"
		writeJSON(w, 200, metricsapi.NodeMetricsList{TypeMeta: tm, Items: orEmpty(nodes)})
	} else {
		tm.Kind = "PodMetricsList"
		writeJSON(w, 200, metricsapi.PodMetricsList{TypeMeta: tm, Items: orEmpty(pods)})
	}
	return nil
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// metricsNotFound is metrics-server's answer for an object without
// metrics (or without existence): podmetrics.metrics.k8s.io "ns/name" not
// found.
func metricsNotFound(ri *reqInfo, _ error) error {
	kind, name := "nodemetrics", ri.name
	if ri.r.name == "pods" {
		kind, name = "podmetrics", ri.ns+"/"+ri.name
	}
	e := newStatus(404, metav1.StatusReasonNotFound, nil, fmt.Sprintf("%s.%s %q not found", kind, metricsapi.Group, name))
	e.status.Details = &metav1.StatusDetails{Group: metricsapi.Group, Kind: ri.r.name, Name: ri.name}
	return e
}

// window rounds a sampling window to milliseconds, as it is printed.
func window(d time.Duration) metav1.Duration {
	return metav1.Duration{Duration: d.Round(time.Millisecond)}
}

func nodeMetrics(n *corev1.Node, sum *metricsapi.NodeSummary, now metav1.Time) (metricsapi.NodeMetrics, bool) {
	if sum == nil || sum.Node == nil {
		return metricsapi.NodeMetrics{}, false
	}
	return metricsapi.NodeMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, CreationTimestamp: now},
		Timestamp:  metav1.NewTime(sum.Node.Timestamp), Window: window(sum.Node.Window),
		Usage: metricsapi.Usage(sum.Node.CPUNanoCores, sum.Node.MemoryBytes),
	}, true
}

// podMetrics matches a pod with its node's sample by UID (a pod deleted
// and created again under its name is another pod), containers in the
// order of the pod's spec.
func podMetrics(p *corev1.Pod, sum *metricsapi.NodeSummary, now metav1.Time) (metricsapi.PodMetrics, bool) {
	if sum == nil {
		return metricsapi.PodMetrics{}, false
	}
	i := slices.IndexFunc(sum.Pods, func(ps metricsapi.PodSample) bool { return ps.UID == string(p.UID) })
	if i < 0 || len(sum.Pods[i].Containers) == 0 {
		return metricsapi.PodMetrics{}, false
	}
	ps := sum.Pods[i]
	order := func(name string) int {
		for j, c := range p.Spec.InitContainers {
			if c.Name == name {
				return j - len(p.Spec.InitContainers)
			}
		}
		for j, c := range p.Spec.Containers {
			if c.Name == name {
				return j
			}
		}
		return len(p.Spec.Containers)
	}
	cs := slices.Clone(ps.Containers)
	slices.SortStableFunc(cs, func(a, b metricsapi.ContainerSample) int { return order(a.Name) - order(b.Name) })
	m := metricsapi.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, CreationTimestamp: now}}
	for _, c := range cs {
		// The pod's timestamp and window are its latest and longest
		// container's (they are sampled in the same round).
		if c.Timestamp.After(m.Timestamp.Time) {
			m.Timestamp = metav1.NewTime(c.Timestamp)
		}
		if c.Window > m.Window.Duration {
			m.Window = window(c.Window)
		}
		m.Containers = append(m.Containers, metricsapi.ContainerMetrics{Name: c.Name, Usage: metricsapi.Usage(c.CPUNanoCores, c.MemoryBytes)})
	}
	return m, true
}
