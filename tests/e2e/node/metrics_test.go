package node

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/internal/cluster/metricsapi"
)

// kubectl top reads metrics.k8s.io from the API server, which asks the
// agent's /stats/metrics: a busy loop shows up as (close to) a core.
func TestKubectlTop(t *testing.T) {
	env.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: busy
  labels: {app: busy}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: busybox:e2e
    command: ["sh", "-c", "while :; do :; done"]
    resources:
      limits: {cpu: "1", memory: 32Mi}
`, env.node))
	defer env.kubectl("", "delete", "pod", "busy", "--grace-period=1", "--wait=false")
	env.waitPod(t, "busy", 30*time.Second, "Running", running)

	// Two samples (5 s apart) are needed for a rate; the loop competes
	// with whatever else runs on the machine, so keep the best reading.
	var best int
	var last string
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) && best <= 500 {
		out, err := env.kubectl("", "top", "pod", "busy", "--no-headers")
		last = out
		if f := strings.Fields(out); err == nil && len(f) >= 3 && f[0] == "busy" {
			if n, err := strconv.Atoi(strings.TrimSuffix(f[1], "m")); err == nil && n > best {
				best = n
			}
		}
		time.Sleep(2 * time.Second)
	}
	if best <= 500 {
		t.Fatalf("kubectl top pod busy: best CPU %dm, want > 500m; last output:\n%s", best, last)
	}
	t.Logf("busy loop: %dm CPU; last: %s", best, strings.TrimSpace(last))
	start := time.Now()
	env.kube(t, "top", "pod", "busy")
	t.Logf("kubectl top pod (whole process): %v", time.Since(start))

	// Containers, label selector, all namespaces.
	if out := env.kube(t, "top", "pod", "-l", "app=busy", "--containers", "--no-headers"); !strings.Contains(out, "busy") || !strings.Contains(out, "spin") {
		t.Errorf("kubectl top pod -l app=busy --containers: got %q, want the pod and its container spin", out)
	}
	if out := env.kube(t, "top", "pod", "-A", "--no-headers"); !strings.Contains(out, "default") || !strings.Contains(out, "busy") {
		t.Errorf("kubectl top pod -A: got %q, want default busy", out)
	}
	// The raw API, as the HorizontalPodAutoscaler reads it.
	raw := env.kube(t, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy")
	for _, want := range []string{`"kind":"PodMetrics"`, `"name":"spin"`, `"cpu":"`, `"memory":"`, `"window":"`} {
		if !strings.Contains(raw, want) {
			t.Errorf("PodMetrics: no %s in %s", want, raw)
		}
	}

	var pm metricsapi.PodMetrics
	if err := json.Unmarshal([]byte(raw), &pm); err != nil || len(pm.Containers) != 1 {
		t.Fatalf("PodMetrics %s: %v", raw, err)
	}
	if mem := pm.Containers[0].Usage.Memory().Value(); mem <= 0 || mem > 32<<20 {
		t.Errorf("busy working set: %d bytes, want some, under its 32Mi limit", mem)
	}
	t.Logf("PodMetrics: %s", raw)

	out := env.kube(t, "top", "node", "--no-headers")
	t.Logf("kubectl top node: %s", strings.TrimSpace(out))
	if f := strings.Fields(out); len(f) < 5 || f[0] != env.node || !strings.HasSuffix(f[1], "m") || !strings.HasSuffix(f[2], "%") {
		t.Errorf("kubectl top node: got %q, want %s with CPU (m), CPU%%, memory and memory%%", out, env.node)
	}
}
