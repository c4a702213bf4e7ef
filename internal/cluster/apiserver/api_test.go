package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
)

func TestCRUDLifecycle(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/configmaps"
	r := do(t, "POST", base, cm("a", map[string]string{"k": "v"}))
	mustCode(t, r, 201)
	for _, f := range []string{"metadata.uid", "metadata.creationTimestamp", "metadata.resourceVersion"} {
		if r.str(f) == "" {
			t.Errorf("created object has no %s", f)
		}
	}
	if got := r.str("metadata.namespace"); got != ns {
		t.Errorf("namespace: got %q, want %q", got, ns)
	}
	rv := r.str("metadata.resourceVersion")
	mustCode(t, do(t, "POST", base, cm("a", nil)), 409)

	g := do(t, "GET", base+"/a", nil)
	mustCode(t, g, 200)
	if got := g.str("data.k"); got != "v" {
		t.Errorf("get data.k: got %q, want v", got)
	}
	// Update with the current resourceVersion succeeds, with a stale one conflicts.
	upd := cm("a", map[string]string{"k": "v2"})
	upd["metadata"].(map[string]any)["resourceVersion"] = rv
	u := do(t, "PUT", base+"/a", upd)
	mustCode(t, u, 200)
	if u.str("metadata.resourceVersion") == rv {
		t.Errorf("resourceVersion did not change on update")
	}
	c := do(t, "PUT", base+"/a", upd)
	mustCode(t, c, 409)
	if got := c.str("reason"); got != "Conflict" {
		t.Errorf("stale update reason: got %q, want Conflict", got)
	}
	if got := do(t, "GET", base+"/a", nil).str("data.k"); got != "v2" {
		t.Errorf("after conflict data.k: got %q, want v2 (unchanged)", got)
	}
	nf := do(t, "GET", base+"/missing", nil)
	mustCode(t, nf, 404)
	if nf.str("reason") != "NotFound" || nf.str("kind") != "Status" {
		t.Errorf("404 body: got %s", nf.body)
	}
	mustCode(t, do(t, "DELETE", base+"/a", nil), 200)
	mustCode(t, do(t, "GET", base+"/a", nil), 404)
}

func TestGenerateName(t *testing.T) {
	ns := newNS(t)
	body := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"generateName": "gen-"}}
	a := do(t, "POST", "/api/v1/namespaces/"+ns+"/configmaps", body)
	b := do(t, "POST", "/api/v1/namespaces/"+ns+"/configmaps", body)
	mustCode(t, a, 201)
	mustCode(t, b, 201)
	na, nb := a.str("metadata.name"), b.str("metadata.name")
	if !strings.HasPrefix(na, "gen-") || len(na) != len("gen-")+5 || na == nb {
		t.Errorf("generated names: got %q and %q, want distinct gen-xxxxx", na, nb)
	}
}

func TestBadInput(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns
	big := strings.Repeat("x", 1600*1024)
	cases := []struct {
		name, path, ct string
		body           any
		code           int
		reason         string
		field          string
	}{
		{"malformed json", base + "/configmaps", "application/json", `{"apiVersion":`, 400, "BadRequest", ""},
		{"malformed yaml", base + "/configmaps", "application/yaml", "a: [b", 400, "BadRequest", ""},
		{"garbage protobuf", base + "/configmaps", "application/vnd.kubernetes.protobuf", "k8s\x00\x01\x02garbage", 400, "BadRequest", ""},
		{"wrong kind", base + "/configmaps", "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`, 400, "BadRequest", ""},
		{"wrong apiVersion", base + "/configmaps", "application/json", `{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"x"}}`, 400, "BadRequest", ""},
		{"unknown content type", base + "/configmaps", "text/csv", `a,b`, 415, "UnsupportedMediaType", ""},
		{"invalid name", base + "/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}`, 422, "Invalid", "metadata.name"},
		{"missing name", base + "/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}`, 422, "Invalid", "metadata.name"},
		{"pod without containers", base + "/pods", "application/json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{}}`, 422, "Invalid", "spec.containers"},
		{"container without image", base + "/pods", "application/json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}`, 422, "Invalid", "spec.containers[0].image"},
		{"deployment selector mismatch", "/apis/apps/v1/namespaces/" + ns + "/deployments", "application/json", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"c"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}`, 422, "Invalid", "spec.template.metadata.labels"},
		{"unknown field strict", base + "/configmaps?fieldValidation=Strict", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"bogus":1}`, 400, "BadRequest", ""},
		{"wrong field type", base + "/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":[1]}`, 400, "BadRequest", ""},
		{"oversized", base + "/pods", "application/json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big"},"spec":{"containers":[{"name":"c","image":"i","env":[{"name":"A","value":"` + big + `"}]}]}}`, 413, "RequestEntityTooLarge", ""},
		{"oversized body", base + "/configmaps", "application/json", strings.Repeat(" ", 4<<20), 413, "RequestEntityTooLarge", ""},
		{"empty body", base + "/configmaps", "application/json", "", 400, "BadRequest", ""},
		{"missing namespace", "/api/v1/namespaces/nope-" + randSuffix() + "/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`, 404, "NotFound", ""},
		{"unknown resource", base + "/widgets", "application/json", `{}`, 404, "NotFound", ""},
		{"unknown group version", "/apis/apps/v9/namespaces/" + ns + "/deployments", "application/json", `{}`, 404, "NotFound", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", tc.path, tc.body, withCT(tc.ct))
			if r.code != tc.code {
				t.Fatalf("got HTTP %d, want %d: %s", r.code, tc.code, r.body)
			}
			if r.str("kind") != "Status" || r.str("reason") != tc.reason {
				t.Errorf("got kind %q reason %q, want Status %q: %s", r.str("kind"), r.str("reason"), tc.reason, r.body)
			}
			if tc.field != "" && !strings.Contains(string(r.body), `"field":"`+tc.field) {
				t.Errorf("causes do not name field %q: %s", tc.field, r.body)
			}
		})
	}
	// Nothing was stored by any of the bad requests.
	l := do(t, "GET", base+"/configmaps", nil)
	if items := l.obj["items"].([]any); len(items) != 0 {
		t.Errorf("after bad input: got %d configmaps, want 0", len(items))
	}
}

func TestProtobufCreate(t *testing.T) {
	ns := newNS(t)
	obj := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Name: "pb"}, Data: map[string]string{"a": "b"}}
	var buf strings.Builder
	if err := protobuf.NewSerializer(testAPI.scheme, testAPI.scheme).Encode(obj, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "k8s\x00") {
		t.Fatalf("encoded body lacks the k8s magic")
	}
	r := do(t, "POST", "/api/v1/namespaces/"+ns+"/configmaps", buf.String(), withCT("application/vnd.kubernetes.protobuf"), withAccept("application/vnd.kubernetes.protobuf, application/json"))
	mustCode(t, r, 201)
	if got := r.str("data.a"); got != "b" {
		t.Errorf("data.a: got %q, want b", got)
	}
	// A protobuf Secret posted to configmaps is refused.
	sec := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: metav1.ObjectMeta{Name: "s"}}
	buf.Reset()
	_ = protobuf.NewSerializer(testAPI.scheme, testAPI.scheme).Encode(sec, &buf)
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/configmaps", buf.String(), withCT("application/vnd.kubernetes.protobuf")), 400)
}

// client-go sends DeleteOptions as protobuf when it speaks protobuf (the
// controllers' clients do): the options, a UID precondition here, must be
// honoured, not refused as bad JSON.
func TestProtobufDeleteOptions(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/configmaps"
	mustCode(t, do(t, "POST", base, cm("pbdel", nil)), 201)
	body := func(uid string) string {
		u := types.UID(uid)
		raw, err := (&metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &u}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		env, err := (&runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "v1", Kind: "DeleteOptions"}, Raw: raw}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return "k8s\x00" + string(env)
	}
	mustCode(t, do(t, "DELETE", base+"/pbdel", body("not-the-uid"), withCT("application/vnd.kubernetes.protobuf")), 409)
	uid := do(t, "GET", base+"/pbdel", nil).str("metadata.uid")
	mustCode(t, do(t, "DELETE", base+"/pbdel", body(uid), withCT("application/vnd.kubernetes.protobuf")), 200)
}

func TestSelectorsAndPagination(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/configmaps"
	for i := 0; i < 7; i++ {
		b := cm(fmt.Sprintf("c%d", i), nil)
		b["metadata"].(map[string]any)["labels"] = map[string]any{"parity": []string{"even", "odd"}[i%2]}
		mustCode(t, do(t, "POST", base, b), 201)
	}
	cases := []struct {
		query string
		want  int
	}{
		{"", 7},
		{"?labelSelector=parity%3Deven", 4},
		{"?labelSelector=parity+in+(odd)", 3},
		{"?labelSelector=parity!%3Deven", 3},
		{"?fieldSelector=metadata.name%3Dc3", 1},
		{"?fieldSelector=metadata.name!%3Dc3", 6},
		{"?labelSelector=parity%3Deven&fieldSelector=metadata.name%3Dc3", 0},
	}
	for _, tc := range cases {
		r := do(t, "GET", base+tc.query, nil)
		mustCode(t, r, 200)
		if got := len(r.obj["items"].([]any)); got != tc.want {
			t.Errorf("list %q: got %d items, want %d", tc.query, got, tc.want)
		}
		if r.str("metadata.resourceVersion") == "" || r.str("kind") != "ConfigMapList" {
			t.Errorf("list %q: missing resourceVersion or kind: %s", tc.query, r.body)
		}
	}
	mustCode(t, do(t, "GET", base+"?labelSelector=a%3D%3D%3Db", nil), 400)
	// limit/continue walks every item exactly once.
	seen := map[string]bool{}
	cont := ""
	pages := 0
	for {
		q := "?limit=3"
		if cont != "" {
			q += "&continue=" + cont
		}
		r := do(t, "GET", base+q, nil)
		mustCode(t, r, 200)
		pages++
		for _, it := range r.obj["items"].([]any) {
			n := it.(map[string]any)["metadata"].(map[string]any)["name"].(string)
			if seen[n] {
				t.Errorf("item %s returned twice", n)
			}
			seen[n] = true
		}
		cont = r.str("metadata.continue")
		if cont == "" {
			break
		}
	}
	if len(seen) != 7 || pages != 3 {
		t.Errorf("pagination: got %d items in %d pages, want 7 in 3", len(seen), pages)
	}
	mustCode(t, do(t, "GET", base+"?limit=2&continue=bogus", nil), 400)
}

func TestStatusScaleAndGeneration(t *testing.T) {
	ns := newNS(t)
	base := "/apis/apps/v1/namespaces/" + ns + "/deployments"
	r := do(t, "POST", base, deployment("web", 2))
	mustCode(t, r, 201)
	if g := r.str("metadata.generation"); g != "1" {
		t.Errorf("generation after create: got %s, want 1", g)
	}
	if r.str("spec.strategy.type") != "RollingUpdate" || r.str("spec.template.spec.restartPolicy") != "Always" {
		t.Errorf("defaults not applied: %s", r.body)
	}
	// Metadata-only change: no generation bump.
	p := do(t, "PATCH", base+"/web", `{"metadata":{"labels":{"x":"y"}}}`, withCT(mtMergePatch))
	mustCode(t, p, 200)
	if g := p.str("metadata.generation"); g != "1" {
		t.Errorf("generation after label change: got %s, want 1", g)
	}
	// Status through the main resource is ignored.
	p = do(t, "PATCH", base+"/web", `{"status":{"replicas":9}}`, withCT(mtMergePatch))
	mustCode(t, p, 200)
	if got := p.str("status.replicas"); got != "" {
		t.Errorf("status via main resource: got replicas %q, want unset", got)
	}
	// Status through /status is taken, spec there is ignored, generation unchanged.
	p = do(t, "PATCH", base+"/web/status", `{"status":{"replicas":2,"observedGeneration":1},"spec":{"replicas":7}}`, withCT(mtMergePatch))
	mustCode(t, p, 200)
	if p.str("status.replicas") != "2" || p.str("spec.replicas") != "2" || p.str("metadata.generation") != "1" {
		t.Errorf("status patch: got status.replicas=%s spec.replicas=%s generation=%s, want 2 2 1", p.str("status.replicas"), p.str("spec.replicas"), p.str("metadata.generation"))
	}
	// Scale subresource.
	s := do(t, "GET", base+"/web/scale", nil)
	mustCode(t, s, 200)
	if s.str("kind") != "Scale" || s.str("apiVersion") != "autoscaling/v1" || s.str("spec.replicas") != "2" || s.str("status.selector") != "app=web" {
		t.Errorf("scale: got %s", s.body)
	}
	s = do(t, "PATCH", base+"/web/scale", `{"spec":{"replicas":5}}`, withCT(mtMergePatch))
	mustCode(t, s, 200)
	d := do(t, "GET", base+"/web", nil)
	if d.str("spec.replicas") != "5" || d.str("metadata.generation") != "2" {
		t.Errorf("after scale: got replicas %s generation %s, want 5 2", d.str("spec.replicas"), d.str("metadata.generation"))
	}
	mustCode(t, do(t, "PUT", base+"/web/scale", `{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"web"},"spec":{"replicas":-1}}`), 422)
}

func TestPatchTypes(t *testing.T) {
	ns := newNS(t)
	base := "/apis/apps/v1/namespaces/" + ns + "/deployments"
	mustCode(t, do(t, "POST", base, deployment("web", 1)), 201)
	cases := []struct {
		name, ct, patch, path, want string
		code                        int
	}{
		{"json patch", mtJSONPatch, `[{"op":"replace","path":"/spec/replicas","value":3}]`, "spec.replicas", "3", 200},
		{"merge patch", mtMergePatch, `{"spec":{"replicas":4}}`, "spec.replicas", "4", 200},
		{"strategic merge keeps other containers", mtSMP, `{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}`, "spec.template.spec.containers", "", 200},
		{"json patch test fails", mtJSONPatch, `[{"op":"test","path":"/spec/replicas","value":99}]`, "", "", 422},
		{"json patch malformed", mtJSONPatch, `{"op":"x"}`, "", "", 400},
		{"merge patch malformed", mtMergePatch, `{"spec":`, "", "", 400},
		{"smp not an object", mtSMP, `[1,2]`, "", "", 400},
		{"patch makes object invalid", mtMergePatch, `{"spec":{"template":{"spec":{"containers":null}}}}`, "", "", 422},
		{"patch renames", mtMergePatch, `{"metadata":{"name":"other"}}`, "", "", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := do(t, "GET", base+"/web", nil)
			r := do(t, "PATCH", base+"/web", tc.patch, withCT(tc.ct))
			if r.code != tc.code {
				t.Fatalf("got HTTP %d, want %d: %s", r.code, tc.code, r.body)
			}
			if tc.code != 200 {
				after := do(t, "GET", base+"/web", nil)
				if after.str("metadata.resourceVersion") != before.str("metadata.resourceVersion") {
					t.Errorf("failed patch changed the object")
				}
				return
			}
			if tc.want != "" && r.str(tc.path) != tc.want {
				t.Errorf("%s: got %q, want %q", tc.path, r.str(tc.path), tc.want)
			}
		})
	}
	d := do(t, "GET", base+"/web", nil)
	cs := d.obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
	if len(cs) != 2 {
		t.Errorf("after strategic merge: got %d containers, want 2 (c and side)", len(cs))
	}
}

func TestServerSideApply(t *testing.T) {
	ns := newNS(t)
	base := "/apis/apps/v1/namespaces/" + ns + "/deployments"
	cfg := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
spec:
  replicas: 2
  selector: {matchLabels: {app: ssa}}
  template:
    metadata: {labels: {app: ssa}}
    spec:
      containers: [{name: c, image: "nginx:1"}]
`
	r := do(t, "PATCH", base+"/ssa?fieldManager=alice", cfg, withCT(mtApply))
	mustCode(t, r, 201)
	mf := r.obj["metadata"].(map[string]any)["managedFields"].([]any)
	if len(mf) != 1 || mf[0].(map[string]any)["manager"] != "alice" || mf[0].(map[string]any)["operation"] != "Apply" {
		t.Errorf("managedFields after create: got %v", mf)
	}
	// Re-applying the same configuration is a no-op.
	r2 := do(t, "PATCH", base+"/ssa?fieldManager=alice", cfg, withCT(mtApply))
	mustCode(t, r2, 200)
	// Another manager changing replicas conflicts, unless forced.
	other := strings.Replace(cfg, "replicas: 2", "replicas: 5", 1)
	c := do(t, "PATCH", base+"/ssa?fieldManager=bob", other, withCT(mtApply))
	mustCode(t, c, 409)
	if !strings.Contains(c.str("message"), "alice") || !strings.Contains(c.str("message"), "spec.replicas") {
		t.Errorf("conflict message should name manager and field: %s", c.str("message"))
	}
	f := do(t, "PATCH", base+"/ssa?fieldManager=bob&force=true", other, withCT(mtApply))
	mustCode(t, f, 200)
	if f.str("spec.replicas") != "5" {
		t.Errorf("forced apply: got replicas %s, want 5", f.str("spec.replicas"))
	}
	// Same value from another manager: shared, no conflict.
	mustCode(t, do(t, "PATCH", base+"/ssa?fieldManager=carol", other, withCT(mtApply)), 200)
	// Fields alice stops applying are removed when nobody else owns them.
	withLabel := strings.Replace(cfg, "  name: ssa\n", "  name: ssa\n  labels: {team: a}\n", 1)
	mustCode(t, do(t, "PATCH", base+"/ssa?fieldManager=alice&force=true", withLabel, withCT(mtApply)), 200)
	r3 := do(t, "PATCH", base+"/ssa?fieldManager=alice&force=true", cfg, withCT(mtApply))
	mustCode(t, r3, 200)
	if r3.str("metadata.labels.team") != "" {
		t.Errorf("label no longer applied by its only owner should be removed: %s", r3.body)
	}
	mustCode(t, do(t, "PATCH", base+"/ssa", cfg, withCT(mtApply)), 400) // fieldManager required
}

func TestFinalizersAndGracefulDelete(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/configmaps"
	b := cm("fin", nil)
	b["metadata"].(map[string]any)["finalizers"] = []string{"example.com/hold"}
	mustCode(t, do(t, "POST", base, b), 201)
	d := do(t, "DELETE", base+"/fin", nil)
	mustCode(t, d, 200)
	if d.str("metadata.deletionTimestamp") == "" {
		t.Fatalf("delete with finalizer: no deletionTimestamp: %s", d.body)
	}
	mustCode(t, do(t, "GET", base+"/fin", nil), 200)
	mustCode(t, do(t, "PATCH", base+"/fin", `{"metadata":{"finalizers":null}}`, withCT(mtMergePatch)), 200)
	mustCode(t, do(t, "GET", base+"/fin", nil), 404)

	// A pod bound to a node is deleted gracefully; an unbound one at once.
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s"},"spec":{"nodeName":"%s","terminationGracePeriodSeconds":1,"containers":[{"name":"c","image":"busybox"}]}}`
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/pods", fmt.Sprintf(pod, "bound", "node1")), 201)
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/pods", fmt.Sprintf(pod, "free", "")), 201)
	g := do(t, "DELETE", "/api/v1/namespaces/"+ns+"/pods/bound", nil)
	if g.str("metadata.deletionTimestamp") == "" || g.str("metadata.deletionGracePeriodSeconds") != "1" {
		t.Errorf("bound pod delete: got %s", g.body)
	}
	mustCode(t, do(t, "DELETE", "/api/v1/namespaces/"+ns+"/pods/free", nil), 200)
	mustCode(t, do(t, "GET", "/api/v1/namespaces/"+ns+"/pods/free", nil), 404)
	eventually(t, "graceful pod removal", func() bool { return do(t, "GET", "/api/v1/namespaces/"+ns+"/pods/bound", nil).code == 404 })
}

func ownerRef(kind, apiVersion, name, uid string) []any {
	return []any{map[string]any{"apiVersion": apiVersion, "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}}
}

func TestGarbageCollection(t *testing.T) {
	ns := newNS(t)
	cmBase := "/api/v1/namespaces/" + ns + "/configmaps"
	for _, policy := range []string{"Background", "Foreground", "Orphan"} {
		t.Run(policy, func(t *testing.T) {
			owner := do(t, "POST", cmBase, cm("owner-"+strings.ToLower(policy), nil))
			mustCode(t, owner, 201)
			dep := cm("dep-"+strings.ToLower(policy), nil)
			dep["metadata"].(map[string]any)["ownerReferences"] = ownerRef("ConfigMap", "v1", owner.str("metadata.name"), owner.str("metadata.uid"))
			mustCode(t, do(t, "POST", cmBase, dep), 201)
			mustCode(t, do(t, "DELETE", cmBase+"/"+owner.str("metadata.name"), map[string]any{"propagationPolicy": policy}), 200)
			eventually(t, "owner gone", func() bool { return do(t, "GET", cmBase+"/"+owner.str("metadata.name"), nil).code == 404 })
			depPath := cmBase + "/dep-" + strings.ToLower(policy)
			if policy == "Orphan" {
				time.Sleep(300 * time.Millisecond)
				d := do(t, "GET", depPath, nil)
				mustCode(t, d, 200)
				if _, has := d.obj["metadata"].(map[string]any)["ownerReferences"]; has {
					t.Errorf("orphaned dependent still has ownerReferences: %s", d.body)
				}
				return
			}
			eventually(t, "dependent collected", func() bool { return do(t, "GET", depPath, nil).code == 404 })
		})
	}
}

func TestNamespaceDeletion(t *testing.T) {
	ns := newNS(t)
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/configmaps", cm("x", nil)), 201)
	mustCode(t, do(t, "POST", "/apis/apps/v1/namespaces/"+ns+"/deployments", deployment("d", 1)), 201)
	d := do(t, "DELETE", "/api/v1/namespaces/"+ns, nil)
	mustCode(t, d, 200)
	if d.str("status.phase") != "Terminating" {
		t.Errorf("namespace phase: got %q, want Terminating", d.str("status.phase"))
	}
	r := do(t, "POST", "/api/v1/namespaces/"+ns+"/configmaps", cm("y", nil))
	if r.code != 403 && r.code != 404 {
		t.Errorf("create in terminating namespace: got %d, want 403 (or 404 once gone)", r.code)
	}
	eventually(t, "namespace removed", func() bool { return do(t, "GET", "/api/v1/namespaces/"+ns, nil).code == 404 })
	if n := len(do(t, "GET", "/api/v1/namespaces/"+ns+"/configmaps", nil).obj["items"].([]any)); n != 0 {
		t.Errorf("configmaps left in deleted namespace: %d", n)
	}
}

type watchLine struct {
	Type   string         `json:"type"`
	Object map[string]any `json:"object"`
}

func openWatch(t *testing.T, path string) (<-chan watchLine, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", testSrv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("watch %s: HTTP %d", path, res.StatusCode)
	}
	ch := make(chan watchLine, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l watchLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				ch <- l
			}
		}
	}()
	return ch, func() { cancel(); res.Body.Close() }
}

func next(t *testing.T, ch <-chan watchLine, skipBookmarks bool) watchLine {
	t.Helper()
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatal("watch ended early")
			}
			if skipBookmarks && l.Type == "BOOKMARK" {
				continue
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event within 10s")
		}
	}
}

func TestWatch(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/configmaps"
	c := do(t, "POST", base, cm("w0", nil))
	rv := c.str("metadata.resourceVersion")
	ch, stop := openWatch(t, base+"?watch=true&allowWatchBookmarks=true&resourceVersion="+rv)
	defer stop()
	mustCode(t, do(t, "POST", base, cm("w1", nil)), 201)
	mustCode(t, do(t, "PATCH", base+"/w1", `{"data":{"a":"b"}}`, withCT(mtMergePatch)), 200)
	mustCode(t, do(t, "DELETE", base+"/w1", nil), 200)
	for _, want := range []string{"ADDED", "MODIFIED", "DELETED"} {
		l := next(t, ch, true)
		if l.Type != want || l.Object["metadata"].(map[string]any)["name"] != "w1" {
			t.Errorf("got event %s %v, want %s w1", l.Type, l.Object["metadata"], want)
		}
	}
	// Bookmarks arrive with the right kind and apiVersion.
	l := next(t, ch, false)
	if l.Type != "BOOKMARK" || l.Object["kind"] != "ConfigMap" || l.Object["apiVersion"] != "v1" {
		t.Errorf("got %s %v, want a ConfigMap BOOKMARK", l.Type, l.Object)
	}

	// WatchList: initial state as ADDED, then the initial-events-end bookmark.
	wl, stop2 := openWatch(t, base+"?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan")
	defer stop2()
	if e := next(t, wl, false); e.Type != "ADDED" || e.Object["metadata"].(map[string]any)["name"] != "w0" {
		t.Errorf("watch-list first event: got %s %v", e.Type, e.Object["metadata"])
	}
	e := next(t, wl, false)
	ann, _ := e.Object["metadata"].(map[string]any)["annotations"].(map[string]any)
	if e.Type != "BOOKMARK" || ann["k8s.io/initial-events-end"] != "true" {
		t.Errorf("watch-list end: got %s %v", e.Type, e.Object)
	}
	// sendInitialEvents without bookmarks is refused (clients fall back to list+watch).
	mustCode(t, do(t, "GET", base+"?watch=true&sendInitialEvents=true", nil), 422)
}

func TestWatchGone(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/configmaps"
	first := do(t, "POST", base, cm("g0", nil))
	old, _ := strconv.ParseInt(first.str("metadata.resourceVersion"), 10, 64)
	last := first
	for i := 1; i < 5; i++ {
		last = do(t, "POST", base, cm(fmt.Sprintf("g%d", i), nil))
	}
	cur, _ := strconv.ParseInt(last.str("metadata.resourceVersion"), 10, 64)
	if _, err := testStore.Client.Compact(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	ch, stop := openWatch(t, base+"?watch=true&resourceVersion="+strconv.FormatInt(old, 10))
	defer stop()
	l := next(t, ch, true)
	if l.Type != "ERROR" || fmt.Sprint(l.Object["code"]) != "410" || l.Object["reason"] != "Expired" {
		t.Errorf("watch from compacted rv: got %s %v, want ERROR 410 Expired", l.Type, l.Object)
	}
}

func TestTableAndDiscovery(t *testing.T) {
	ns := newNS(t)
	mustCode(t, do(t, "POST", "/apis/apps/v1/namespaces/"+ns+"/deployments", deployment("web", 3)), 201)
	tb := do(t, "GET", "/apis/apps/v1/namespaces/"+ns+"/deployments", nil, withAccept("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"))
	mustCode(t, tb, 200)
	if tb.str("kind") != "Table" {
		t.Fatalf("got kind %q, want Table", tb.str("kind"))
	}
	cols := tb.obj["columnDefinitions"].([]any)
	var names []string
	for _, c := range cols {
		names = append(names, c.(map[string]any)["name"].(string))
	}
	if strings.Join(names[:5], ",") != "Name,Ready,Up-to-date,Available,Age" {
		t.Errorf("deployment columns: got %v", names)
	}
	row := tb.obj["rows"].([]any)[0].(map[string]any)
	if cells := row["cells"].([]any); cells[0] != "web" || cells[1] != "0/3" {
		t.Errorf("row cells: got %v", cells)
	}
	cases := []struct {
		path, accept, wantCT, wantKind string
	}{
		{"/api", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", "APIGroupDiscoveryList"},
		{"/apis", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList", "APIGroupDiscoveryList"},
		{"/api", "application/json", "application/json", "APIVersions"},
		{"/apis", "application/json", "application/json", "APIGroupList"},
		{"/apis/apps/v1", "", "application/json", "APIResourceList"},
		{"/api/v1", "", "application/json", "APIResourceList"},
	}
	for _, tc := range cases {
		r := do(t, "GET", tc.path, nil, withAccept(tc.accept))
		mustCode(t, r, 200)
		if ct := r.hdr.Get("Content-Type"); ct != tc.wantCT || r.str("kind") != tc.wantKind {
			t.Errorf("GET %s Accept %q: got %s %s, want %s %s", tc.path, tc.accept, ct, r.str("kind"), tc.wantCT, tc.wantKind)
		}
	}
	if !strings.Contains(string(do(t, "GET", "/apis/apps/v1", nil).body), `"name":"deployments/scale","singularName":"","namespaced":true,"group":"autoscaling","version":"v1","kind":"Scale"`) {
		t.Errorf("deployments/scale not declared as autoscaling/v1 Scale")
	}
	o := do(t, "GET", "/openapi/v3/apis/apps/v1", nil)
	mustCode(t, o, 200)
	if !strings.Contains(string(o.body), `"fieldValidation"`) || !strings.Contains(string(o.body), `"io.k8s.api.apps.v1.Deployment"`) {
		t.Errorf("openapi v3 apps/v1 lacks fieldValidation or the Deployment schema")
	}
	mustCode(t, do(t, "GET", "/openapi/v2", nil, withAccept("application/com.github.proto-openapi.spec.v2@v1.0+protobuf")), 200)
	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		if r := do(t, "GET", p, nil, withToken("")); r.code != 200 || string(r.body) != "ok" {
			t.Errorf("%s: got %d %q", p, r.code, r.body)
		}
	}
	if v := do(t, "GET", "/version", nil); v.str("major") != "1" || v.str("gitVersion") == "" {
		t.Errorf("/version: got %s", v.body)
	}
}

func TestAuthorization(t *testing.T) {
	ns := newNS(t)
	// Cluster-scoped leftovers of an earlier run (-count > 1).
	do(t, "DELETE", "/api/v1/nodes/node1", nil)
	do(t, "DELETE", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1", nil)
	// node2's lease exists, so a refusal to node1 is not a 404 in disguise.
	do(t, "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", `{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"node2"},"spec":{"holderIdentity":"node2"}}`)
	cases := []struct {
		name, token, method, path, body string
		code                            int
	}{
		{"anonymous", "", "GET", "/api/v1/namespaces", "", 401},
		{"bad token", "nope", "GET", "/api/v1/namespaces", "", 401},
		{"viewer reads", "viewer-token", "GET", "/api/v1/namespaces/" + ns + "/configmaps", "", 200},
		{"viewer cannot write", "viewer-token", "POST", "/api/v1/namespaces/" + ns + "/configmaps", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"v"}}`, 403},
		{"viewer cannot read secrets", "viewer-token", "GET", "/api/v1/namespaces/" + ns + "/secrets", "", 403},
		{"node creates its node", "node1-token", "POST", "/api/v1/nodes", `{"apiVersion":"v1","kind":"Node","metadata":{"name":"node1"}}`, 201},
		{"node cannot create another node", "node1-token", "POST", "/api/v1/nodes", `{"apiVersion":"v1","kind":"Node","metadata":{"name":"node2"}}`, 403},
		{"node updates its node status", "node1-token", "PATCH", "/api/v1/nodes/node1/status", `{"status":{"phase":"Running"}}`, 200},
		{"node cannot touch another node", "node1-token", "PATCH", "/api/v1/nodes/node2/status", `{"status":{}}`, 403},
		{"node creates its lease", "node1-token", "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", `{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"node1"}}`, 201},
		{"node renews its lease", "node1-token", "PATCH", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1", `{"spec":{"holderIdentity":"node1","leaseDurationSeconds":40}}`, 200},
		{"node cannot create another node's lease", "node1-token", "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", `{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"node2"}}`, 403},
		{"node cannot renew another node's lease", "node1-token", "PATCH", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node2", `{"spec":{"holderIdentity":"node1"}}`, 403},
		{"node cannot delete another node's lease", "node1-token", "DELETE", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node2", "", 403},
		{"node cannot write configmaps", "node1-token", "POST", "/api/v1/namespaces/" + ns + "/configmaps", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n"}}`, 403},
	}
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/pods", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"mine"},"spec":{"nodeName":"node1","containers":[{"name":"c","image":"i"}]}}`), 201)
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/pods", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"theirs"},"spec":{"nodeName":"node2","containers":[{"name":"c","image":"i"}]}}`), 201)
	cases = append(cases,
		struct {
			name, token, method, path, body string
			code                            int
		}{"node writes status of its pod", "node1-token", "PATCH", "/api/v1/namespaces/" + ns + "/pods/mine/status", `{"status":{"phase":"Running"}}`, 200},
		struct {
			name, token, method, path, body string
			code                            int
		}{"node cannot write status of other pods", "node1-token", "PATCH", "/api/v1/namespaces/" + ns + "/pods/theirs/status", `{"status":{"phase":"Running"}}`, 403},
		struct {
			name, token, method, path, body string
			code                            int
		}{"node cannot write pod spec", "node1-token", "PATCH", "/api/v1/namespaces/" + ns + "/pods/mine", `{"metadata":{"labels":{"a":"b"}}}`, 403},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			ct := "application/json"
			if tc.method == "PATCH" {
				ct = mtMergePatch
			}
			r := do(t, tc.method, tc.path, body, withToken(tc.token), withCT(ct))
			if tc.token == "" {
				r = do(t, tc.method, tc.path, body, func(r *http.Request) { r.Header.Del("Authorization") })
			}
			if r.code != tc.code {
				t.Fatalf("got HTTP %d, want %d: %s", r.code, tc.code, r.body)
			}
			if r.code >= 400 && r.str("kind") != "Status" {
				t.Errorf("error body is not a Status: %s", r.body)
			}
		})
	}
}

func TestInjectRV(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a"},"data":{"metadata":{"x":1}}}`, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"7","name":"a"},"data":{"metadata":{"x":1}}}`},
		{`{"metadata":{}}`, `{"metadata":{"resourceVersion":"7"}}`},
	}
	for _, tc := range cases {
		got, ok := injectRV([]byte(tc.in), 7)
		if !ok || string(got) != tc.want {
			t.Errorf("injectRV(%s): got %s, want %s", tc.in, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("injectRV(%s) is not valid JSON", tc.in)
		}
	}
	if _, ok := injectRV([]byte(`{"kind":"X"}`), 1); ok {
		t.Errorf("injectRV without metadata: got ok")
	}
}

func TestPodUpdateRules(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/pods"
	mustCode(t, do(t, "POST", base, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox:1"}]}}`), 201)
	cases := []struct {
		name, patch string
		code        int
	}{
		{"image may change", `{"spec":{"containers":[{"name":"c","image":"busybox:2"}]}}`, 200},
		{"labels may change", `{"metadata":{"labels":{"a":"b"}}}`, 200},
		{"restartPolicy may not", `{"spec":{"restartPolicy":"Never"}}`, 422},
		{"new container may not", `{"spec":{"containers":[{"name":"c","image":"busybox:2"},{"name":"d","image":"x"}]}}`, 422},
	}
	for _, tc := range cases {
		r := do(t, "PATCH", base+"/p", tc.patch, withCT(mtSMP))
		if r.code != tc.code {
			t.Errorf("%s: got HTTP %d, want %d: %s", tc.name, r.code, tc.code, r.body)
		}
	}
	// Binding sets the node once; a second binding conflicts.
	mustCode(t, do(t, "POST", base+"/p/binding", `{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"n1"}}`), 201)
	mustCode(t, do(t, "POST", base+"/p/binding", `{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"n2"}}`), 409)
	if got := do(t, "GET", base+"/p", nil).str("spec.nodeName"); got != "n1" {
		t.Errorf("nodeName after binding: got %q, want n1", got)
	}
	if conds, _ := do(t, "GET", base+"/p", nil).obj["status"].(map[string]any)["conditions"].([]any); len(conds) != 1 || conds[0].(map[string]any)["type"] != "PodScheduled" || conds[0].(map[string]any)["status"] != "True" {
		t.Errorf("conditions after binding: got %v, want PodScheduled True", conds)
	}
	// Streams are routed but need the node agent.
	if r := do(t, "GET", base+"/p/log", nil); r.code != 503 || r.str("kind") != "Status" {
		t.Errorf("pod log without agent: got %d %s, want 503 Status", r.code, r.body)
	}
	// Namespaced create without a namespace is refused with a clear message.
	mustCode(t, do(t, "POST", "/api/v1/pods", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`), 405)
}

func TestServiceClusterIP(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/services"
	svc := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"%s"},"spec":{%s"ports":[{"port":80}]}}`
	a := do(t, "POST", base, fmt.Sprintf(svc, "a", ""))
	mustCode(t, a, 201)
	ip := a.str("spec.clusterIP")
	if !strings.HasPrefix(ip, "10.43.") {
		t.Fatalf("allocated clusterIP: got %q, want an address in 10.43.0.0/16", ip)
	}
	if tp := a.obj["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)["targetPort"]; fmt.Sprint(tp) != "80" {
		t.Errorf("targetPort default: got %v, want 80", tp)
	}
	// The same address cannot be taken twice; an address outside the range is invalid.
	mustCode(t, do(t, "POST", base, fmt.Sprintf(svc, "b", `"clusterIP":"`+ip+`",`)), 422)
	mustCode(t, do(t, "POST", base, fmt.Sprintf(svc, "c", `"clusterIP":"192.168.1.1",`)), 422)
	mustCode(t, do(t, "POST", base, fmt.Sprintf(svc, "h", `"clusterIP":"None",`)), 201)
	// Updates keep the address; changing it is refused.
	mustCode(t, do(t, "PATCH", base+"/a", `{"spec":{"clusterIP":"10.43.9.9"}}`, withCT(mtMergePatch)), 422)
	// Deleting the service frees the address for others.
	mustCode(t, do(t, "DELETE", base+"/a", nil), 200)
	eventually(t, "cluster IP released", func() bool {
		return do(t, "POST", base, fmt.Sprintf(svc, "b", `"clusterIP":"`+ip+`",`)).code == 201
	})
}

func TestVersionsShareStorage(t *testing.T) {
	ns := newNS(t)
	v1 := do(t, "POST", "/apis/autoscaling/v1/namespaces/"+ns+"/horizontalpodautoscalers", `{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"h"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"maxReplicas":5,"targetCPUUtilizationPercentage":70}}`)
	mustCode(t, v1, 201)
	v2 := do(t, "GET", "/apis/autoscaling/v2/namespaces/"+ns+"/horizontalpodautoscalers/h", nil)
	mustCode(t, v2, 200)
	m := v2.obj["spec"].(map[string]any)["metrics"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	if m["name"] != "cpu" || fmt.Sprint(m["target"].(map[string]any)["averageUtilization"]) != "70" || v2.str("apiVersion") != "autoscaling/v2" {
		t.Errorf("v1 HPA read as v2: got %s", v2.body)
	}
	if v2.str("metadata.uid") != v1.str("metadata.uid") || v2.str("metadata.resourceVersion") != v1.str("metadata.resourceVersion") {
		t.Errorf("v1 and v2 views differ in identity: %s vs %s", v1.body, v2.body)
	}
	mustCode(t, do(t, "PATCH", "/apis/autoscaling/v2/namespaces/"+ns+"/horizontalpodautoscalers/h", `{"spec":{"maxReplicas":9}}`, withCT(mtMergePatch)), 200)
	if got := do(t, "GET", "/apis/autoscaling/v1/namespaces/"+ns+"/horizontalpodautoscalers/h", nil).str("spec.maxReplicas"); got != "9" {
		t.Errorf("v2 change seen through v1: got maxReplicas %q, want 9", got)
	}

	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/events", `{"apiVersion":"v1","kind":"Event","metadata":{"name":"e"},"involvedObject":{"kind":"Pod","name":"p","namespace":"`+ns+`"},"reason":"Started","message":"hello","type":"Normal"}`), 201)
	ev := do(t, "GET", "/apis/events.k8s.io/v1/namespaces/"+ns+"/events/e", nil)
	mustCode(t, ev, 200)
	if ev.str("note") != "hello" || ev.str("regarding.name") != "p" || ev.str("apiVersion") != "events.k8s.io/v1" {
		t.Errorf("core event read through events.k8s.io: got %s", ev.body)
	}
	mustCode(t, do(t, "POST", "/apis/events.k8s.io/v1/namespaces/"+ns+"/events", `{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e2"},"eventTime":"2026-01-01T00:00:00.000000Z","regarding":{"kind":"Pod","name":"q"},"reason":"Pulled","note":"world","type":"Normal","action":"Pull","reportingController":"berth/agent","reportingInstance":"n1"}`), 201)
	l := do(t, "GET", "/api/v1/namespaces/"+ns+"/events?fieldSelector=involvedObject.name%3Dq", nil)
	if items := l.obj["items"].([]any); len(items) != 1 || items[0].(map[string]any)["message"] != "world" {
		t.Errorf("events.k8s.io event listed through core/v1 by involvedObject: got %s", l.body)
	}
}

func TestAccessReviews(t *testing.T) {
	review := func(tok, verb, resource, group string) bool {
		t.Helper()
		r := do(t, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", fmt.Sprintf(`{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"namespace":"default","verb":%q,"resource":%q,"group":%q}}}`, verb, resource, group), withToken(tok))
		mustCode(t, r, 201)
		return r.str("status.allowed") == "true"
	}
	cases := []struct {
		tok, verb, resource, group string
		want                       bool
	}{
		{adminToken, "delete", "nodes", "", true},
		{"viewer-token", "list", "deployments", "apps", true},
		{"viewer-token", "create", "deployments", "apps", false},
		{"viewer-token", "get", "secrets", "", false},
		{"node1-token", "create", "configmaps", "", false},
		{"node1-token", "list", "pods", "", true},
	}
	for _, tc := range cases {
		if got := review(tc.tok, tc.verb, tc.resource, tc.group); got != tc.want {
			t.Errorf("%s can-i %s %s.%s: got %v, want %v", tc.tok, tc.verb, tc.resource, tc.group, got, tc.want)
		}
	}
	who := do(t, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`, withToken("viewer-token"))
	mustCode(t, who, 201)
	if who.str("status.userInfo.username") != "viewer" {
		t.Errorf("whoami: got %s", who.body)
	}
	mustCode(t, do(t, "GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", nil), 405)
}

func TestContinueAfterCompaction(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/configmaps"
	for i := 0; i < 3; i++ {
		mustCode(t, do(t, "POST", base, cm(fmt.Sprintf("c%d", i), nil)), 201)
	}
	first := do(t, "GET", base+"?limit=1", nil)
	cont := first.str("metadata.continue")
	if cont == "" {
		t.Fatal("no continue token")
	}
	last := do(t, "POST", base, cm("later", nil))
	rev, _ := strconv.ParseInt(last.str("metadata.resourceVersion"), 10, 64)
	if _, err := testStore.Client.Compact(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	r := do(t, "GET", base+"?limit=1&continue="+cont, nil)
	if r.code != 410 || r.str("reason") != "Expired" {
		t.Errorf("continue after compaction: got %d %s, want 410 Expired", r.code, r.body)
	}
}

func TestBootstrapKubernetesService(t *testing.T) {
	ctx := context.Background()
	for i, addr := range []string{"10.0.0.1", "10.0.0.1", "10.0.0.2"} {
		s := New(Config{Client: testStore.Client, AdvertiseAddress: addr, AdvertisePort: 6443})
		if err := s.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap %d (%s): %v", i, addr, err)
		}
	}
	svc := do(t, "GET", "/api/v1/namespaces/default/services/kubernetes", nil)
	mustCode(t, svc, 200)
	if svc.str("spec.clusterIP") != "10.43.0.1" {
		t.Errorf("kubernetes service clusterIP: got %q, want 10.43.0.1", svc.str("spec.clusterIP"))
	}
	ep := do(t, "GET", "/api/v1/namespaces/default/endpoints/kubernetes", nil)
	addrs := ep.obj["subsets"].([]any)[0].(map[string]any)["addresses"].([]any)
	if len(addrs) != 2 {
		t.Errorf("endpoints after two servers (one restarted): got %d addresses, want 2: %s", len(addrs), ep.body)
	}
}

func TestClusterScopedOwner(t *testing.T) {
	ns := newNS(t)
	node := do(t, "POST", "/api/v1/nodes", `{"apiVersion":"v1","kind":"Node","metadata":{"name":"owner-node-`+ns+`"}}`)
	mustCode(t, node, 201)
	lease := map[string]any{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": map[string]any{"name": "l", "ownerReferences": ownerRef("Node", "v1", node.str("metadata.name"), node.str("metadata.uid"))}}
	mustCode(t, do(t, "POST", "/apis/coordination.k8s.io/v1/namespaces/"+ns+"/leases", lease), 201)
	mustCode(t, do(t, "DELETE", "/api/v1/nodes/"+node.str("metadata.name"), nil), 200)
	eventually(t, "namespaced dependent of a node collected", func() bool {
		return do(t, "GET", "/apis/coordination.k8s.io/v1/namespaces/"+ns+"/leases/l", nil).code == 404
	})
}
