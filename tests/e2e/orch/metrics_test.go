package orch

import (
	"strings"
	"testing"
	"time"
)

// kubectl top across the lab: the API server asks every node's agent (in
// its own network namespace) for its usage; each node and a pod on each
// node show up.
func TestResourceMetricsEveryNode(t *testing.T) {
	ns := namespace(t, "top")
	apply(t, ns, `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: topd}
spec:
  selector: {matchLabels: {app: topd}}
  template:
    metadata: {labels: {app: topd}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sleep, "100000"]
`)
	pods, _ := waitReady(t, ns, "app=topd", 3, 90*time.Second)
	var out string
	d := waitFor(t, 40*time.Second, "kubectl top pod lists the pod on every node", func() (bool, string) {
		out, _ = kubectl(t, "", "top", "pod", "-n", ns, "--no-headers")
		for _, p := range pods {
			if !strings.Contains(out, p.Name) {
				return false, out
			}
		}
		return true, out
	})
	nodes, err := kubectl(t, "", "top", "node", "--no-headers")
	if err != nil {
		t.Fatalf("kubectl top node: %v\n%s", err, nodes)
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		if !strings.Contains(nodes, n) {
			t.Errorf("kubectl top node: no %s in\n%s", n, nodes)
		}
	}
	t.Logf("kubectl top pod:\n%s\nkubectl top node:\n%s", out, nodes)
	report(t, "x-metrics", "pods", len(pods), "first_metrics_after_ready", d)
}
