package apiserver

import (
	"encoding/json"
	"strings"
	"testing"
)

// statefulSetBody is a StatefulSet with spec fields replaced by spec (nil
// deletes a field).
func statefulSetBody(name string, spec map[string]any) map[string]any {
	s := map[string]any{
		"serviceName": "web",
		"selector":    map[string]any{"matchLabels": map[string]any{"app": "web"}},
		"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
			"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "nginx"}}}},
	}
	for k, v := range spec {
		if v == nil {
			delete(s, k)
		} else {
			s[k] = v
		}
	}
	return map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": map[string]any{"name": name}, "spec": s}
}

func claimTemplate(name string) map[string]any {
	return map[string]any{"metadata": map[string]any{"name": name},
		"spec": map[string]any{"accessModes": []any{"ReadWriteOnce"}, "resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}}}}
}

// A StatefulSet gets Kubernetes' defaults; bad policies, strategies,
// claim templates and service names are refused with 422 naming the
// field; only the fields Kubernetes lets change may change; the scale
// subresource moves spec.replicas.
func TestStatefulSetValidation(t *testing.T) {
	ns := newNS(t)
	base := "/apis/apps/v1/namespaces/" + ns + "/statefulsets"
	r := do(t, "POST", base, statefulSetBody("ok", map[string]any{"volumeClaimTemplates": []any{claimTemplate("data")}}))
	mustCode(t, r, 201)
	for path, want := range map[string]string{
		"spec.replicas": "1", "spec.podManagementPolicy": "OrderedReady", "spec.updateStrategy.type": "RollingUpdate",
		"spec.updateStrategy.rollingUpdate.partition": "0", "spec.revisionHistoryLimit": "10",
		"spec.persistentVolumeClaimRetentionPolicy.whenDeleted": "Retain", "spec.persistentVolumeClaimRetentionPolicy.whenScaled": "Retain",
	} {
		if got := r.str(path); got != want {
			t.Errorf("default %s: got %q, want %q", path, got, want)
		}
	}
	for _, ok := range []map[string]any{
		{"podManagementPolicy": "Parallel", "replicas": 0},
		{"updateStrategy": map[string]any{"type": "OnDelete"}},
		{"updateStrategy": map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"partition": 2}}},
		{"persistentVolumeClaimRetentionPolicy": map[string]any{"whenDeleted": "Delete", "whenScaled": "Delete"}, "ordinals": map[string]any{"start": 5}},
	} {
		if r := do(t, "POST", base, statefulSetBody("good-"+randSuffix(), ok)); r.code != 201 {
			j, _ := json.Marshal(ok)
			t.Errorf("%s: got HTTP %d, want 201: %s", j, r.code, r.body)
		}
	}
	cases := []struct {
		name  string
		spec  map[string]any
		field string
		says  string
	}{
		{"selector mismatch", map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "db"}}}, "spec.template.metadata.labels", "does not match"},
		{"no selector", map[string]any{"selector": nil}, "spec.selector", "Required"},
		{"bad service name", map[string]any{"serviceName": "Web_1"}, "spec.serviceName", "RFC 1123"},
		{"bad policy", map[string]any{"podManagementPolicy": "Random"}, "spec.podManagementPolicy", "must be 'OrderedReady' or 'Parallel'"},
		{"bad strategy", map[string]any{"updateStrategy": map[string]any{"type": "Recreate"}}, "spec.updateStrategy.type", "must be 'RollingUpdate' or 'OnDelete'"},
		{"rollingUpdate with OnDelete", map[string]any{"updateStrategy": map[string]any{"type": "OnDelete", "rollingUpdate": map[string]any{"partition": 1}}}, "spec.updateStrategy.rollingUpdate", "only allowed for updateStrategy 'RollingUpdate'"},
		{"negative partition", map[string]any{"updateStrategy": map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"partition": -1}}}, "spec.updateStrategy.rollingUpdate.partition", "greater than or equal to 0"},
		{"negative replicas", map[string]any{"replicas": -1}, "spec.replicas", "greater than or equal to 0"},
		{"negative history", map[string]any{"revisionHistoryLimit": -1}, "spec.revisionHistoryLimit", "greater than or equal to 0"},
		{"negative start", map[string]any{"ordinals": map[string]any{"start": -1}}, "spec.ordinals.start", "greater than or equal to 0"},
		{"bad retention", map[string]any{"persistentVolumeClaimRetentionPolicy": map[string]any{"whenScaled": "Keep"}}, "spec.persistentVolumeClaimRetentionPolicy.whenScaled", "Unsupported value"},
		{"claim without access modes", map[string]any{"volumeClaimTemplates": []any{map[string]any{"metadata": map[string]any{"name": "data"},
			"spec": map[string]any{"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}}}}}}, "spec.volumeClaimTemplates[0].spec.accessModes", "Required"},
		{"duplicate claims", map[string]any{"volumeClaimTemplates": []any{claimTemplate("data"), claimTemplate("data")}}, "spec.volumeClaimTemplates[1].metadata.name", "Duplicate"},
		{"restartPolicy Never", map[string]any{"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
			"spec": map[string]any{"restartPolicy": "Never", "containers": []any{map[string]any{"name": "c", "image": "nginx"}}}}}, "spec.template.spec.restartPolicy", "Unsupported value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", base, statefulSetBody("bad", tc.spec))
			if r.code != 422 {
				t.Fatalf("got HTTP %d, want 422: %s", r.code, r.body)
			}
			if !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) || !strings.Contains(string(r.body), tc.says) {
				t.Errorf("got %s, want a cause on %s saying %q", r.body, tc.field, tc.says)
			}
		})
	}
	// Updates: replicas, template, strategy and retention may change ...
	mustCode(t, do(t, "PATCH", base+"/ok", `{"spec":{"replicas":3,"minReadySeconds":5,"updateStrategy":{"rollingUpdate":{"partition":1}},"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"},"template":{"spec":{"containers":[{"name":"c","image":"nginx:2"}]}}}}`, withCT("application/merge-patch+json")), 200)
	// ... the rest is fixed.
	for _, patch := range []string{`{"spec":{"serviceName":"other"}}`, `{"spec":{"podManagementPolicy":"Parallel"}}`,
		`{"spec":{"volumeClaimTemplates":[]}}`} {
		r := do(t, "PATCH", base+"/ok", patch, withCT("application/merge-patch+json"))
		if r.code != 422 || !strings.Contains(string(r.body), "updates to statefulset spec for fields other than") {
			t.Errorf("%s: got HTTP %d %s, want 422 Forbidden", patch, r.code, r.body)
		}
	}
	// The scale subresource (kubectl scale sts).
	mustCode(t, do(t, "PATCH", base+"/ok/scale", `{"spec":{"replicas":4}}`, withCT("application/merge-patch+json")), 200)
	if got := do(t, "GET", base+"/ok", nil).str("spec.replicas"); got != "4" {
		t.Errorf("spec.replicas after scale: %s, want 4", got)
	}
	if got := do(t, "GET", base+"/ok/scale", nil).str("status.selector"); got != "app=web" {
		t.Errorf("scale status.selector %q, want app=web", got)
	}
}
