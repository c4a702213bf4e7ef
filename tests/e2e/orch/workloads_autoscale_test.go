package orch

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// This file is named to sort after the other scenario files: go test runs
// the files of a package in name order, and this scenario comes last.

// Scenario 15: autoscaling. A Deployment whose pods burn CPU (each capped
// at 200m by its limit, 100m requested) behind an HPA with a 50% CPU
// target, 1 to 3 replicas: it grows to 3 on load, and once the load stops
// it shrinks back to 1 after the (shortened) scale-down window.
func TestScenario15Autoscale(t *testing.T) {
	ns := namespace(t, "s15")
	apply(t, ns, `apiVersion: apps/v1
kind: Deployment
metadata: {name: burn}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'while [ ! -f /tmp/stop ]; do :; done; exec sleep 100000']
        resources: {requests: {cpu: 100m}, limits: {cpu: 200m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 5}
`)
	k(t, "rollout", "status", "-n", ns, "deployment/burn", "--timeout=60s")
	replicas := func() int32 {
		d, err := client.AppsV1().Deployments(ns).Get(context.Background(), "burn", metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return *d.Spec.Replicas
	}
	up := waitFor(t, 90*time.Second, "the HPA scaling burn up to 3", func() (bool, string) {
		out, _ := kubectl(t, "", "get", "-n", ns, "hpa/burn", "--no-headers")
		return replicas() == 3, strings.TrimSpace(out)
	})
	top, _ := kubectl(t, "", "top", "pods", "-n", ns, "--no-headers")
	waitReady(t, ns, "app=burn", 3, 60*time.Second)
	// Stop the load in every pod.
	for _, p := range pods(t, ns, "app=burn") {
		k(t, "exec", "-n", ns, p.Name, "--", "touch", "/tmp/stop")
	}
	down := waitFor(t, 120*time.Second, "the HPA scaling burn back down to 1", func() (bool, string) {
		for _, p := range pods(t, ns, "app=burn") {
			_, _ = kubectl(t, "", "exec", "-n", ns, p.Name, "--", "touch", "/tmp/stop") // new pods too
		}
		out, _ := kubectl(t, "", "get", "-n", ns, "hpa/burn", "--no-headers")
		return replicas() == 1, strings.TrimSpace(out)
	})
	report(t, "15-autoscale", "load_to_3_replicas", up, "idle_to_1_replica", down, "top", fmt.Sprintf("%q", strings.Join(strings.Fields(top), " ")))
}
