package apiserver

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestStorageClasses: storage.k8s.io/v1 StorageClasses are served with
// Kubernetes' defaults, validation, immutability and kubectl's columns,
// and a claim without a class gets the newest default class at create.
func TestStorageClasses(t *testing.T) {
	ns := newNS(t)
	const coll = "/apis/storage.k8s.io/v1/storageclasses"
	names := []string{"sc-a-" + ns, "sc-b-" + ns, "sc-bad-" + ns}
	t.Cleanup(func() {
		for _, n := range names {
			do(t, "DELETE", coll+"/"+n, nil)
		}
	})
	for _, tc := range []struct{ body, field string }{
		{`{"metadata":{"name":"` + names[2] + `"}}`, "provisioner"},
		{`{"metadata":{"name":"` + names[2] + `"},"provisioner":"x.dev/p","reclaimPolicy":"Recycle"}`, "reclaimPolicy"},
		{`{"metadata":{"name":"` + names[2] + `"},"provisioner":"x.dev/p","volumeBindingMode":"Later"}`, "volumeBindingMode"},
	} {
		if r := do(t, "POST", coll, tc.body); r.code != 422 || !strings.Contains(string(r.body), tc.field) {
			t.Errorf("create %s: got %d %s, want 422 naming %s", tc.body, r.code, r.body, tc.field)
		}
	}

	// A claim made while there is no default class keeps no class.
	pvcs := "/api/v1/namespaces/" + ns + "/persistentvolumeclaims"
	claim := func(name, extra string) string {
		return `{"metadata":{"name":"` + name + `"},"spec":{` + extra + `"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}`
	}
	if r := do(t, "POST", pvcs, claim("before", "")); r.code != 201 || r.str("spec.storageClassName") != "" {
		t.Fatalf("claim without a default class: got %d class %q", r.code, r.str("spec.storageClassName"))
	}

	a := do(t, "POST", coll, `{"metadata":{"name":"`+names[0]+`","annotations":{"storageclass.kubernetes.io/is-default-class":"true"}},"provisioner":"berth.dev/local-path","volumeBindingMode":"WaitForFirstConsumer"}`)
	mustCode(t, a, 201)
	if a.str("reclaimPolicy") != "Delete" || a.str("volumeBindingMode") != "WaitForFirstConsumer" {
		t.Errorf("defaults: got reclaimPolicy %q volumeBindingMode %q, want Delete and WaitForFirstConsumer", a.str("reclaimPolicy"), a.str("volumeBindingMode"))
	}
	cols, cells := tableOf(t, coll+"/"+names[0])
	if want := "Name|Provisioner|ReclaimPolicy|VolumeBindingMode|AllowVolumeExpansion|Age"; strings.Join(cols, "|") != want {
		t.Errorf("columns: got %v, want %s", cols, want)
	}
	if got := fmt.Sprint(cells[:5]); got != "["+names[0]+" (default) berth.dev/local-path Delete WaitForFirstConsumer false]" {
		t.Errorf("cells: got %s", got)
	}
	if r := do(t, "POST", pvcs, claim("defaulted", "")); r.code != 201 || r.str("spec.storageClassName") != names[0] {
		t.Errorf("claim without class: got %d class %q, want %q", r.code, r.str("spec.storageClassName"), names[0])
	}
	if r := do(t, "POST", pvcs, claim("none", `"storageClassName":"",`)); r.code != 201 || r.str("spec.storageClassName") != "" {
		t.Errorf("claim with class \"\": got %d class %q, want it kept empty", r.code, r.str("spec.storageClassName"))
	}
	// Immutable fields.
	a.obj["reclaimPolicy"] = "Retain"
	if r := do(t, "PUT", coll+"/"+names[0], a.obj); r.code != 422 || !strings.Contains(string(r.body), "reclaimPolicy") {
		t.Errorf("changing reclaimPolicy: got %d %s, want 422", r.code, r.body)
	}
	// The newest of two defaults wins.
	time.Sleep(1100 * time.Millisecond) // creation timestamps have second resolution
	mustCode(t, do(t, "POST", coll, `{"metadata":{"name":"`+names[1]+`","annotations":{"storageclass.kubernetes.io/is-default-class":"true"}},"provisioner":"x.dev/other"}`), 201)
	if r := do(t, "POST", pvcs, claim("newest", "")); r.str("spec.storageClassName") != names[1] {
		t.Errorf("two defaults: got class %q, want the newest %q", r.str("spec.storageClassName"), names[1])
	}
	// Discovery lists the group.
	if r := do(t, "GET", "/apis/storage.k8s.io/v1", nil); !strings.Contains(string(r.body), `"storageclasses"`) || !strings.Contains(string(r.body), `"sc"`) {
		t.Errorf("discovery: got %s", r.body)
	}
}
