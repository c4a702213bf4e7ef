package orch

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// webApp is a Deployment whose pods serve their own name over HTTP on port
// 8080 (webname, a static Go program of the test images), ready once they
// answer, spread over the nodes.
func webApp(name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: %[2]d
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 1
%[3]s
      containers:
      - name: web
        image: lab/app:v2
        imagePullPolicy: IfNotPresent
        command: [webname, serve, "8080"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 1
`, name, replicas, fmt.Sprintf(spreadHostname, name))
}

const webService = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
`

// clientPod sleeps, to run webname get (Go's resolver reads the pod's
// resolv.conf: cluster DNS, search path, ndots) and webname lookup from
// inside the cluster.
const clientPod = `apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: lab/app:v2
    imagePullPolicy: IfNotPresent
    command: [sleep, "100000"]
`

// fetch runs n HTTP requests from the client pod to url and returns the
// answers (one per line, "ERR <why>" for a failed request).
func fetch(t *testing.T, ns, url string, n int) []string {
	t.Helper()
	out, err := kubectl(t, "", "exec", "-n", ns, "client", "--", "webname", "get", url, fmt.Sprint(n))
	if err != nil {
		return []string{"ERR " + strings.ReplaceAll(err.Error(), "\n", " ")}
	}
	return strings.Split(strings.TrimSpace(out), "\n")
}

// answers counts the distinct answers.
func answers(lines []string) map[string]int {
	m := map[string]int{}
	for _, l := range lines {
		m[l]++
	}
	return m
}

// Scenario 11: a Service in front of a 3-replica Deployment on 3 nodes.
// A client pod reaches it by its DNS name (cluster DNS, search path),
// the node proxy spreads the requests over every replica on every node,
// a scale-down is followed, and a headless Service resolves to the pods.
func TestScenario11Services(t *testing.T) {
	ns := namespace(t, "s11")
	apply(t, ns, webApp("web", 3))
	apply(t, ns, clientPod)
	k(t, "rollout", "status", "-n", ns, "deployment/web", "--timeout=90s")
	k(t, "wait", "-n", ns, "--for=condition=Ready", "pod/client", "--timeout=60s")
	ready, per := readyPods(pods(t, ns, "app=web"))
	if len(ready) != 3 || len(per) != 3 {
		t.Fatalf("want 3 ready web pods on 3 nodes, got %d on %v", len(ready), per)
	}
	want := map[string]bool{}
	for _, p := range ready {
		want[p.Name] = true
	}

	start := time.Now()
	apply(t, ns, webService)
	var svc corev1.Service
	kjson(t, &svc, "-n", ns, "service/web")
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == "None" {
		t.Fatalf("service web got no cluster IP: %+v", svc.Spec)
	}

	// Endpoints follow the ready pods, with the named port resolved.
	waitFor(t, 20*time.Second, "endpoints of web", func() (bool, string) {
		var ep corev1.Endpoints
		out, err := kubectl(t, "", "get", "-n", ns, "endpoints/web", "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &ep) != nil {
			return false, out
		}
		n := 0
		for _, s := range ep.Subsets {
			for _, p := range s.Ports {
				if p.Port != 8080 {
					return false, fmt.Sprintf("port %d, want 8080", p.Port)
				}
			}
			n += len(s.Addresses)
		}
		return n == 3, out
	})

	// By name through cluster DNS and the node proxy.
	waitFor(t, 30*time.Second, "the first answer from http://web/", func() (bool, string) {
		got := fetch(t, ns, "http://web/", 1)
		return len(got) == 1 && want[got[0]], strings.Join(got, " ")
	})
	first := time.Since(start)
	got := answers(fetch(t, ns, "http://web.s11.svc.cluster.local/", 60))
	for name := range want {
		if got[name] == 0 {
			t.Errorf("60 requests to web.s11.svc.cluster.local never reached %s: %v", name, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("answers %v: want only the 3 pods' names", got)
	}
	out, err := kubectl(t, "", "exec", "-n", ns, "client", "--", "webname", "lookup", "web")
	if err != nil || strings.TrimSpace(out) != svc.Spec.ClusterIP {
		t.Errorf("lookup web: want %s, got:\n%s (%v)", svc.Spec.ClusterIP, out, err)
	}

	// Scale down: the proxy follows the endpoints.
	k(t, "scale", "-n", ns, "deployment/web", "--replicas=1")
	var left string
	converge := waitFor(t, 30*time.Second, "answers only from the remaining pod", func() (bool, string) {
		ready, _ := readyPods(pods(t, ns, "app=web"))
		if len(ready) != 1 {
			return false, describe(ready)
		}
		left = ready[0].Name
		got := answers(fetch(t, ns, "http://web/", 10))
		return len(got) == 1 && got[left] == 10, fmt.Sprint(got)
	})

	// Headless: the name resolves to the pod itself.
	var pod corev1.Pod
	kjson(t, &pod, "-n", ns, "pod/"+left)
	waitFor(t, 20*time.Second, "web-headless resolving to the remaining pod", func() (bool, string) {
		out, err := kubectl(t, "", "exec", "-n", ns, "client", "--", "webname", "lookup", "web-headless.s11.svc.cluster.local")
		if err != nil {
			return false, out
		}
		return strings.TrimSpace(out) == pod.Status.PodIP, out
	})

	report(t, "11-services", "service_to_first_answer", first, "spread_over_60", fmt.Sprint(sortedCounts(got)), "scale_down_converged", converge)
}

// sortedCounts renders answer counts in a stable order.
func sortedCounts(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}
