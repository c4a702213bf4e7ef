package apiserver

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestDefaultTolerationSeconds(t *testing.T) {
	two, five := int64(2), int64(5)
	for _, tc := range []struct {
		name string
		have []corev1.Toleration
		want map[string]int64 // key → seconds of the added toleration
	}{
		{"none", nil, map[string]int64{corev1.TaintNodeNotReady: 5, corev1.TaintNodeUnreachable: 2}},
		{"own unreachable kept", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists}}, map[string]int64{corev1.TaintNodeNotReady: 5}},
		{"wildcard tolerates all", []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, map[string]int64{}},
		{"NoSchedule toleration does not count", []corev1.Toleration{{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, map[string]int64{corev1.TaintNodeNotReady: 5, corev1.TaintNodeUnreachable: 2}},
	} {
		s := corev1.PodSpec{Tolerations: append([]corev1.Toleration(nil), tc.have...)}
		defaultTolerationSeconds(&s, &five, &two)
		added := s.Tolerations[len(tc.have):]
		if len(added) != len(tc.want) {
			t.Errorf("%s: got %d added tolerations %+v, want %d", tc.name, len(added), added, len(tc.want))
			continue
		}
		for _, a := range added {
			if a.Effect != corev1.TaintEffectNoExecute || a.Operator != corev1.TolerationOpExists || a.TolerationSeconds == nil || *a.TolerationSeconds != tc.want[a.Key] {
				t.Errorf("%s: added %+v, want %s:NoExecute Exists for %ds", tc.name, a, a.Key, tc.want[a.Key])
			}
		}
	}
	s := corev1.PodSpec{}
	defaultTolerationSeconds(&s, nil, nil)
	if len(s.Tolerations) != 0 {
		t.Errorf("nil seconds added %+v", s.Tolerations)
	}
}

func TestJobSelectorGenerated(t *testing.T) {
	ns := newNS(t)
	job := map[string]any{"apiVersion": "batch/v1", "kind": "Job", "metadata": map[string]any{"name": "j"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"restartPolicy": "Never", "containers": []any{map[string]any{"name": "c", "image": "busybox"}}}}}}
	r := do(t, "POST", "/apis/batch/v1/namespaces/"+ns+"/jobs", job)
	mustCode(t, r, 201)
	uid := r.str("metadata.uid")
	sel := r.obj["spec"].(map[string]any)["selector"].(map[string]any)["matchLabels"].(map[string]any)
	if sel["batch.kubernetes.io/controller-uid"] != uid {
		t.Errorf("selector %v, want controller-uid %s", sel, uid)
	}
	labels := r.obj["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
	if labels["batch.kubernetes.io/job-name"] != "j" || labels["batch.kubernetes.io/controller-uid"] != uid || labels["job-name"] != "j" {
		t.Errorf("template labels %v", labels)
	}
	if got := r.str("spec.completionMode"); got != "NonIndexed" {
		t.Errorf("completionMode %q, want NonIndexed", got)
	}
	// An update keeps the generated selector.
	r = do(t, "PATCH", "/apis/batch/v1/namespaces/"+ns+"/jobs/j", `{"metadata":{"labels":{"x":"y"}}}`, withCT("application/merge-patch+json"))
	mustCode(t, r, 200)
	if sel := r.obj["spec"].(map[string]any)["selector"].(map[string]any)["matchLabels"].(map[string]any); sel["batch.kubernetes.io/controller-uid"] != uid {
		t.Errorf("after update selector %v", sel)
	}
}

func TestJobDefaults(t *testing.T) {
	ns := newNS(t)
	job := func(name string, parallelism any) map[string]any {
		spec := map[string]any{"template": map[string]any{"spec": map[string]any{"restartPolicy": "Never", "containers": []any{map[string]any{"name": "c", "image": "busybox"}}}}}
		if parallelism != nil {
			spec["parallelism"] = parallelism
		}
		return map[string]any{"apiVersion": "batch/v1", "kind": "Job", "metadata": map[string]any{"name": name}, "spec": spec}
	}
	r := do(t, "POST", "/apis/batch/v1/namespaces/"+ns+"/jobs", job("plain", nil))
	mustCode(t, r, 201)
	if c, p := r.str("spec.completions"), r.str("spec.parallelism"); c != "1" || p != "1" {
		t.Errorf("plain job completions/parallelism %s/%s, want 1/1", c, p)
	}
	r = do(t, "POST", "/apis/batch/v1/namespaces/"+ns+"/jobs", job("queue", 3))
	mustCode(t, r, 201)
	if c, p := r.str("spec.completions"), r.str("spec.parallelism"); c != "" || p != "3" {
		t.Errorf("work-queue job completions/parallelism %q/%s, want unset/3", c, p)
	}
}

// Probes and hook actions get Kubernetes' defaults, so describe shows the
// timing the agent applies.
func TestProbeDefaults(t *testing.T) {
	ns := newNS(t)
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox:1",
	"readinessProbe":{"httpGet":{"port":8080}},"livenessProbe":{"tcpSocket":{"port":80},"periodSeconds":5},
	"lifecycle":{"preStop":{"httpGet":{"port":80}}}}]}}`
	r := do(t, "POST", "/api/v1/namespaces/"+ns+"/pods", pod)
	mustCode(t, r, 201)
	c := r.obj["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	rp := c["readinessProbe"].(map[string]any)
	if rp["timeoutSeconds"] != 1.0 || rp["periodSeconds"] != 10.0 || rp["successThreshold"] != 1.0 || rp["failureThreshold"] != 3.0 {
		t.Errorf("readiness probe defaults: %v", rp)
	}
	if hg := rp["httpGet"].(map[string]any); hg["path"] != "/" || hg["scheme"] != "HTTP" {
		t.Errorf("httpGet defaults: %v", hg)
	}
	if lp := c["livenessProbe"].(map[string]any); lp["periodSeconds"] != 5.0 || lp["failureThreshold"] != 3.0 {
		t.Errorf("liveness probe: given period kept and defaults added: %v", lp)
	}
	if hg := c["lifecycle"].(map[string]any)["preStop"].(map[string]any)["httpGet"].(map[string]any); hg["scheme"] != "HTTP" {
		t.Errorf("preStop httpGet defaults: %v", hg)
	}
}
