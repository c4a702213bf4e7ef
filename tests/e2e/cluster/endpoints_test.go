package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const endpointsYAML = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9100, targetPort: 9100}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, labels: {app: web}}
spec:
  nodeName: NODE
  containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: NODE
  containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, labels: {app: web}}
spec:
  nodeName: NODE
  containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8080}]}]
`

// TestServiceEndpoints applies a stock Service and pods with kubectl,
// plays their node agent (pod addresses and readiness through the API,
// with the node's credential) and reads what the endpoints controller of
// the real berth-server wrote, as users see it with kubectl.
func TestServiceEndpoints(t *testing.T) {
	k := newKubectl(t, "/usr/bin/kubectl", shared)
	ns := "e2e-endpoints"
	node := "ep-node"
	k.ok(t, "create", "namespace", ns)
	t.Cleanup(func() { _, _ = k.run(t, "", "delete", "namespace", ns, "--wait=false") })
	nc := nodeClient(t, shared, node)
	startNode(t, nc, node, map[string]string{corev1.LabelTopologyZone: "zone-a"})
	K := func(args ...string) string { t.Helper(); return k.ok(t, append([]string{"-n", ns}, args...)...) }
	k.okIn(t, strings.ReplaceAll(endpointsYAML, "NODE", node), "-n", ns, "apply", "-f", "-")

	ctx := context.Background()
	setStatus := func(name, ip string, ready bool) {
		t.Helper()
		p, err := nc.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "127.0.0.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}}
		if _, err := nc.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("pod %s status as the node: %v", name, err)
		}
	}
	setStatus("web-0", "10.88.5.10", true)
	setStatus("web-1", "10.88.5.11", true)
	setStatus("web-2", "10.88.5.12", false)

	// kubectl's ENDPOINTS column: ready addresses, port by port, three and
	// a count.
	var out string
	took := waitUntil(t, 15*time.Second, "kubectl get endpoints to list the ready pods", func() bool {
		out = K("get", "endpoints", "web")
		return strings.Contains(out, "10.88.5.10:8080,10.88.5.11:8080,10.88.5.10:9100 + 1 more...")
	})
	t.Logf("endpoints listed %v after the last pod status:\n%s", took.Round(time.Millisecond), out)
	mustContain(t, out, "NAME", "ENDPOINTS", "AGE", "web ")
	out = K("get", "endpointslices", "-l", "kubernetes.io/service-name=web")
	t.Logf("\n%s", out)
	mustContain(t, out, "NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE", "web-", "IPv4", "8080,9100", "10.88.5.10,10.88.5.11,10.88.5.12")
	if got := K("get", "endpoints", "web", "-o", "jsonpath={.subsets[0].notReadyAddresses[0].ip} {.subsets[0].addresses[0].targetRef.name} {.subsets[0].addresses[0].nodeName}"); got != "10.88.5.12 web-0 "+node {
		t.Errorf("endpoints notReady/targetRef/nodeName: got %q", got)
	}
	got := K("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o",
		`jsonpath={range .items[*].endpoints[*]}{.targetRef.name}={.conditions.ready}/{.conditions.serving}/{.conditions.terminating}@{.zone} {end}`)
	for _, want := range []string{"web-0=true/true/false@zone-a", "web-1=true/true/false@zone-a", "web-2=false/false/false@zone-a"} {
		if !strings.Contains(got, want) {
			t.Errorf("slice endpoints: got %q, want %q among them", got, want)
		}
	}
	mustContain(t, K("describe", "service", "web"), "10.88.5.10:8080", "10.88.5.11:8080")

	// Graceful delete: the pod terminates on its node; the slice says so
	// (not ready, still serving, terminating) and the Endpoints drop it.
	K("delete", "pod", "web-0", "--wait=false")
	waitUntil(t, 15*time.Second, "the terminating pod flagged", func() bool {
		got := K("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o",
			`jsonpath={range .items[*].endpoints[*]}{.targetRef.name}={.conditions.ready}/{.conditions.serving}/{.conditions.terminating} {end}`)
		return strings.Contains(got, "web-0=false/true/true")
	})
	waitUntil(t, 15*time.Second, "the terminating pod out of the Endpoints", func() bool {
		return strings.Contains(K("get", "endpoints", "web"), "10.88.5.11:8080,10.88.5.11:9100 ")
	})

	// Deleting the Service (in the foreground: kubectl waits until the
	// slices it owns are gone) takes its Endpoints and slices along.
	K("delete", "service", "web", "--cascade=foreground", "--timeout=20s")
	waitUntil(t, 15*time.Second, "endpoints and slices gone with the service", func() bool {
		out, _ := k.run(t, "", "-n", ns, "get", "endpoints,endpointslices", "-o", "name")
		return !strings.Contains(out, "web")
	})
}
