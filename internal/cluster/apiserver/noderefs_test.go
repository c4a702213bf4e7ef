package apiserver

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A node reads only the secrets, config maps and claims of pods bound to
// it, one by one; it cannot list or watch them.
func TestNodeReadsOnlyItsPodsReferences(t *testing.T) {
	ns := newNS(t)
	for _, name := range []string{"env-secret", "vol-secret", "pull-secret", "other-secret", "theirs-secret"} {
		mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/secrets", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"`+name+`"},"stringData":{"k":"v"}}`), 201)
	}
	for _, name := range []string{"proj-cm", "envfrom-cm", "other-cm"} {
		mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/configmaps", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"`+name+`"}}`), 201)
	}
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/pods", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"mine"},"spec":{"nodeName":"node1",
		"imagePullSecrets":[{"name":"pull-secret"}],
		"volumes":[{"name":"s","secret":{"secretName":"vol-secret"}},{"name":"p","projected":{"sources":[{"configMap":{"name":"proj-cm"}}]}},{"name":"d","persistentVolumeClaim":{"claimName":"data"}}],
		"initContainers":[{"name":"i","image":"i","envFrom":[{"configMapRef":{"name":"envfrom-cm"}}]}],
		"containers":[{"name":"c","image":"i","env":[{"name":"E","valueFrom":{"secretKeyRef":{"name":"env-secret","key":"k"}}}]}]}}`), 201)
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/pods", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"theirs"},"spec":{"nodeName":"node2",
		"containers":[{"name":"c","image":"i","env":[{"name":"E","valueFrom":{"secretKeyRef":{"name":"theirs-secret","key":"k"}}}]}]}}`), 201)
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/persistentvolumeclaims", `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}`), 201)

	cases := []struct {
		path string
		code int
	}{
		{"/secrets/env-secret", 200},
		{"/secrets/vol-secret", 200},
		{"/secrets/pull-secret", 200},
		{"/configmaps/proj-cm", 200},
		{"/configmaps/envfrom-cm", 200},
		{"/persistentvolumeclaims/data", 200},
		{"/secrets/other-secret", 403},  // nobody's
		{"/secrets/theirs-secret", 403}, // a pod on another node
		{"/configmaps/other-cm", 403},
		{"/secrets", 403},            // no list
		{"/secrets?watch=true", 403}, // no watch
		{"/configmaps", 403},
	}
	for _, tc := range cases {
		r := do(t, "GET", "/api/v1/namespaces/"+ns+tc.path, nil, withToken("node1-token"))
		if r.code != tc.code {
			t.Errorf("node1 GET %s: got %d, want %d: %s", tc.path, r.code, tc.code, r.body)
		}
	}
	// The reference goes with the pod.
	mustCode(t, do(t, "DELETE", "/api/v1/namespaces/"+ns+"/pods/mine?gracePeriodSeconds=0", nil), 200)
	if r := do(t, "GET", "/api/v1/namespaces/"+ns+"/secrets/env-secret", nil, withToken("node1-token")); r.code != 403 {
		t.Errorf("after its pod went: got %d, want 403", r.code)
	}
}

func TestPodRefersEphemeralContainers(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "dbg"}}}}}}}}}}
	if !podRefers(p, "secrets", "dbg") || podRefers(p, "configmaps", "dbg") {
		t.Error("ephemeral container env references not seen")
	}
}
