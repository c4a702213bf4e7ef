package orch

import (
	"strings"
	"testing"
	"time"
)

// Every node's agent serves the cluster DNS to its own pods: a pod on each
// node (a DaemonSet) finds a service by its short name through
// 169.254.20.10 in its node's network namespace.
func TestClusterDNSOnEveryNode(t *testing.T) {
	ns := namespace(t, "dns")
	apply(t, ns, `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: dnsc}
spec:
  selector: {matchLabels: {app: dnsc}}
  template:
    metadata: {labels: {app: dnsc}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sleep, "100000"]
`)
	pods, _ := waitReady(t, ns, "app=dnsc", 3, 90*time.Second)
	ip, err := kubectl(t, "", "get", "svc", "-n", ns, "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil || strings.TrimSpace(ip) == "" {
		t.Fatalf("service web: %v %q", err, ip)
	}
	nodes := map[string]bool{}
	var slowest time.Duration
	for _, p := range pods {
		nodes[p.Spec.NodeName] = true
		rc, err := kubectl(t, "", "exec", "-n", ns, p.Name, "--", "cat", "/etc/resolv.conf")
		if err != nil || !strings.Contains(rc, "nameserver 169.254.20.10") || !strings.Contains(rc, "search "+ns+".svc.cluster.local svc.cluster.local cluster.local") {
			t.Errorf("%s on %s: resolv.conf %v\n%s", p.Name, p.Spec.NodeName, err, rc)
		}
		start := time.Now()
		out, _ := kubectl(t, "", "exec", "-n", ns, p.Name, "--", "busybox", "nslookup", "web")
		took := time.Since(start)
		slowest = max(slowest, took)
		if !strings.Contains(out, "Address: "+strings.TrimSpace(ip)) {
			t.Errorf("%s on %s: nslookup web:\n%s\nwant Address: %s", p.Name, p.Spec.NodeName, out, ip)
		}
	}
	if len(nodes) != 3 {
		t.Errorf("pods on %d nodes, want 3", len(nodes))
	}
	report(t, "x-dns", "nodes", len(nodes), "slowest_exec_nslookup", slowest)
}
