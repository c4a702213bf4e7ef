package apiserver

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
)

const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

// tableOf GETs path as a meta.k8s.io Table and returns its column names
// and the cells of its first row.
func tableOf(t *testing.T, path string) ([]string, []any) {
	t.Helper()
	r := do(t, "GET", path, nil, withAccept(tableAccept))
	mustCode(t, r, 200)
	var tbl metav1.Table
	if err := json.Unmarshal(r.body, &tbl); err != nil {
		t.Fatalf("table: %v: %s", err, r.body)
	}
	var cols []string
	for _, c := range tbl.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	if len(tbl.Rows) == 0 {
		t.Fatalf("table %s has no rows", path)
	}
	return cols, tbl.Rows[0].Cells
}

// TestStorageAndPolicyKinds creates, updates and watches the kinds no
// controller of berth writes: each must round-trip through the API with
// Kubernetes' defaults and kubectl's table columns.
func TestStorageAndPolicyKinds(t *testing.T) {
	ns := newNS(t)
	pvName := "pv-" + ns
	do(t, "DELETE", "/api/v1/persistentvolumes/"+pvName, nil)
	t.Cleanup(func() { do(t, "DELETE", "/api/v1/persistentvolumes/"+pvName, nil) })
	cases := []struct {
		name, coll, obj string
		update          func(m map[string]any) // mutates the object read back
		defaults        map[string]string      // field path -> value after create
		cols            []string               // table columns, in order
		cells           map[int]string         // column index -> cell after update
	}{
		{
			name: "persistentvolume", coll: "/api/v1/persistentvolumes",
			obj:    `{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"` + pvName + `"},"spec":{"capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce","ReadOnlyMany"],"hostPath":{"path":"/tmp/pv"}},"status":{"phase":"Bound"}}`,
			update: func(m map[string]any) { m["spec"].(map[string]any)["storageClassName"] = "slow" },
			defaults: map[string]string{"spec.persistentVolumeReclaimPolicy": "Retain", "spec.volumeMode": "Filesystem",
				// The user's status is dropped; no claimRef: Available.
				"status.phase": "Available"},
			cols:  []string{"Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass", "VolumeAttributesClass", "Reason", "Age", "VolumeMode"},
			cells: map[int]string{1: "1Gi", 2: "RWO,ROX", 3: "Retain", 4: "Available", 6: "slow", 7: "<unset>", 10: "Filesystem"},
		},
		{
			name: "persistentvolumeclaim", coll: "/api/v1/namespaces/" + ns + "/persistentvolumeclaims",
			obj:      `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}},"status":{"phase":"Bound"}}`,
			update:   func(m map[string]any) { m["metadata"].(map[string]any)["labels"] = map[string]any{"tier": "db"} },
			defaults: map[string]string{"spec.volumeMode": "Filesystem", "status.phase": "Pending"},
			cols:     []string{"Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass", "VolumeAttributesClass", "Age", "VolumeMode"},
			cells:    map[int]string{1: "Pending", 2: "", 3: "", 6: "<unset>", 8: "Filesystem"},
		},
		{
			name: "resourcequota", coll: "/api/v1/namespaces/" + ns + "/resourcequotas",
			obj: `{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"q"},"spec":{"hard":{"pods":"10"}}}`,
			update: func(m map[string]any) {
				m["spec"].(map[string]any)["hard"] = map[string]any{"pods": "20", "requests.cpu": "2", "limits.memory": "1Gi"}
			},
			cols: []string{"Name", "Age", "Request", "Limit"},
			// No quota controller fills status: kubectl shows empty cells.
			cells: map[int]string{2: "", 3: ""},
		},
		{
			name: "limitrange", coll: "/api/v1/namespaces/" + ns + "/limitranges",
			obj: `{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"lr"},"spec":{"limits":[{"type":"Container","default":{"cpu":"500m"}}]}}`,
			update: func(m map[string]any) {
				m["spec"].(map[string]any)["limits"].([]any)[0].(map[string]any)["defaultRequest"] = map[string]any{"cpu": "100m"}
			},
			cols: []string{"Name", "Created At"},
		},
		{
			// A Service without a selector: its Endpoints are the user's.
			name: "endpoints", coll: "/api/v1/namespaces/" + ns + "/endpoints",
			obj: `{"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"ext"},"subsets":[{"addresses":[{"ip":"192.0.2.10"}],"ports":[{"port":5432}]}]}`,
			update: func(m map[string]any) {
				s := m["subsets"].([]any)[0].(map[string]any)
				s["addresses"] = append(s["addresses"].([]any), map[string]any{"ip": "192.0.2.11"})
			},
			cols:  []string{"Name", "Endpoints", "Age"},
			cells: map[int]string{1: "192.0.2.10:5432,192.0.2.11:5432"},
		},
		{
			name: "controllerrevision", coll: "/apis/apps/v1/namespaces/" + ns + "/controllerrevisions",
			obj:    `{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"db-1","ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"db","uid":"u-1","controller":true}]},"data":{"spec":{"template":{}}},"revision":1}`,
			update: func(m map[string]any) { m["metadata"].(map[string]any)["labels"] = map[string]any{"rev": "one"} },
			cols:   []string{"Name", "Controller", "Revision", "Age"},
			cells:  map[int]string{1: "statefulset.apps/db", 2: "1"},
		},
	}
	mustCode(t, do(t, "POST", "/api/v1/namespaces/"+ns+"/services", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"ext"},"spec":{"ports":[{"port":5432}]}}`), 201)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			list := do(t, "GET", tc.coll, nil)
			mustCode(t, list, 200)
			ch, stop := openWatch(t, tc.coll+"?watch=true&resourceVersion="+list.str("metadata.resourceVersion"))
			defer stop()
			c := do(t, "POST", tc.coll, tc.obj)
			mustCode(t, c, 201)
			name := c.str("metadata.name")
			for f, want := range tc.defaults {
				if got := c.str(f); got != want {
					t.Errorf("%s after create: got %q, want %q", f, got, want)
				}
			}
			tc.update(c.obj)
			u := do(t, "PUT", tc.coll+"/"+name, c.obj)
			mustCode(t, u, 200)
			if u.str("metadata.resourceVersion") == c.str("metadata.resourceVersion") {
				t.Errorf("update did not change resourceVersion")
			}
			for _, want := range []string{"ADDED", "MODIFIED"} {
				for {
					e := next(t, ch, true)
					if e.Object["metadata"].(map[string]any)["name"] != name {
						continue // a neighbour of the same collection (the PV list is cluster-wide)
					}
					if e.Type != want {
						t.Errorf("watch: got %s, want %s", e.Type, want)
					}
					break
				}
			}
			cols, cells := tableOf(t, tc.coll+"/"+name)
			if strings.Join(cols, "|") != strings.Join(tc.cols, "|") {
				t.Errorf("table columns:\n got %v\nwant %v", cols, tc.cols)
			}
			for i, want := range tc.cells {
				if i >= len(cells) || fmt.Sprint(cells[i]) != want {
					t.Errorf("table cell %d (%s): got %v, want %q (row %v)", i, tc.cols[i], cells, want, cells)
				}
			}
		})
	}
	// The user-managed Endpoints stay as written: no controller claims a
	// Service without a selector.
	if ep := do(t, "GET", "/api/v1/namespaces/"+ns+"/endpoints/ext", nil); !strings.Contains(string(ep.body), "192.0.2.11") {
		t.Errorf("user-managed endpoints changed: %s", ep.body)
	}
}

// TestQuotaTableFromStatus: the quota table reads status (what the
// quota controller reports), limits.* in their own column, sorted.
func TestQuotaTableFromStatus(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/resourcequotas"
	mustCode(t, do(t, "POST", base, `{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"q"},"spec":{"hard":{"pods":"10"}}}`), 201)
	mustCode(t, do(t, "PATCH", base+"/q/status", `{"status":{"hard":{"pods":"10","requests.cpu":"2","limits.memory":"1Gi"},"used":{"pods":"3","requests.cpu":"500m","limits.memory":"0"}}}`, withCT(mtMergePatch)), 200)
	_, cells := tableOf(t, base+"/q")
	if fmt.Sprint(cells[2]) != "pods: 3/10, requests.cpu: 500m/2" || fmt.Sprint(cells[3]) != "limits.memory: 0/1Gi" {
		t.Errorf("quota cells: got %v", cells)
	}
}

func TestHPADefaultsAndTable(t *testing.T) {
	ns := newNS(t)
	for _, v := range []string{"v1", "v2"} {
		r := do(t, "POST", "/apis/autoscaling/"+v+"/namespaces/"+ns+"/horizontalpodautoscalers", `{"apiVersion":"autoscaling/`+v+`","kind":"HorizontalPodAutoscaler","metadata":{"name":"h`+v+`"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"maxReplicas":5}}`)
		mustCode(t, r, 201)
		if got := r.str("spec.minReplicas"); got != "1" {
			t.Errorf("autoscaling/%s minReplicas default: got %q, want 1", v, got)
		}
	}
	mustCode(t, do(t, "POST", "/apis/autoscaling/v2/namespaces/"+ns+"/horizontalpodautoscalers", `{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"cpu"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":2,"maxReplicas":5,"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":70}}}]}}`), 201)
	cols, cells := tableOf(t, "/apis/autoscaling/v2/namespaces/"+ns+"/horizontalpodautoscalers/cpu")
	if strings.Join(cols, "|") != "Name|Reference|Targets|MinPods|MaxPods|Replicas|Age" {
		t.Errorf("HPA columns: got %v", cols)
	}
	if fmt.Sprint(cells[1:5]) != "[Deployment/web cpu: <unknown>/70% 2 5]" {
		t.Errorf("HPA cells: got %v", cells)
	}
}

// evictionBody encodes an Eviction as client-go does in protobuf.
func evictionBody(t *testing.T, ev *policyv1.Eviction) string {
	t.Helper()
	raw, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	env, err := (&runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "policy/v1", Kind: "Eviction"}, Raw: raw}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return "k8s\x00" + string(env)
}

func TestEviction(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/pods"
	pod := func(name string) {
		t.Helper()
		mustCode(t, do(t, "POST", base, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"`+name+`"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`), 201)
	}
	pod("json")
	r := do(t, "POST", base+"/json/eviction", `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"json","namespace":"`+ns+`"}}`)
	mustCode(t, r, 201)
	if r.str("kind") != "Status" || r.str("status") != "Success" {
		t.Errorf("eviction reply: %s", r.body)
	}
	mustCode(t, do(t, "GET", base+"/json", nil), 404)

	// A protobuf Eviction (client-go's typed client speaking protobuf)
	// carries DeleteOptions that are honoured: a wrong UID precondition
	// conflicts, the right one evicts.
	pod("pb")
	uid := do(t, "GET", base+"/pb", nil).str("metadata.uid")
	ev := func(u string) string {
		id := k8stypes.UID(u)
		return evictionBody(t, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "pb", Namespace: ns}, DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &id}}})
	}
	pb := withCT("application/vnd.kubernetes.protobuf")
	mustCode(t, do(t, "POST", base+"/pb/eviction", ev("not-the-uid"), pb), 409)
	mustCode(t, do(t, "GET", base+"/pb", nil), 200)
	mustCode(t, do(t, "POST", base+"/pb/eviction", ev(uid), pb), 201)
	mustCode(t, do(t, "GET", base+"/pb", nil), 404)

	pod("bad")
	for _, tc := range []struct {
		name, body string
		opts       []reqOpt
		code       int
	}{
		{"missing pod", `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"nope"}}`, nil, 404},
		{"malformed json", `{"apiVersion":`, nil, 400},
		{"garbage protobuf", "k8s\x00\x01\x02garbage", []reqOpt{pb}, 400},
		{"name mismatch", `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"other"}}`, nil, 400},
		{"wrong kind", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bad"}}`, nil, 400},
	} {
		path := base + "/bad/eviction"
		if tc.name == "missing pod" {
			path = base + "/nope/eviction"
		}
		r := do(t, "POST", path, tc.body, tc.opts...)
		if r.code != tc.code || r.str("kind") != "Status" {
			t.Errorf("%s: got %d %s, want %d Status", tc.name, r.code, r.body, tc.code)
		}
	}
	mustCode(t, do(t, "GET", base+"/bad", nil), 200)
}

// TestOversizedUpdates: an update that makes an object larger than
// etcd's 1.5 MiB limit is refused with 413 on every update path and
// leaves the stored object as it was.
func TestOversizedUpdates(t *testing.T) {
	ns := newNS(t)
	base := "/apis/apps/v1/namespaces/" + ns + "/deployments"
	// Two environment values of 0.9 MiB: one fits, both do not.
	half := strings.Repeat("y", 900*1024)
	withEnv := func(env ...string) map[string]any {
		d := deployment("big", 1)
		var vars []any
		for i, v := range env {
			vars = append(vars, map[string]any{"name": fmt.Sprintf("V%d", i), "value": v})
		}
		d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"] = vars
		return d
	}
	c := do(t, "POST", base, withEnv(half))
	mustCode(t, c, 201)
	rv := c.str("metadata.resourceVersion")
	full := withEnv(half, half)
	applied, _ := json.Marshal(full)
	cases := []struct {
		name, method, ct string
		body             any
	}{
		{"put", "PUT", "application/json", full},
		{"json patch", "PATCH", mtJSONPatch, `[{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"V1","value":"` + half + `"}}]`},
		{"merge patch", "PATCH", mtMergePatch, `{"metadata":{"labels":{"x":"` + strings.Repeat("z", 10) + `"}},"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:1.25","env":[{"name":"V0","value":"` + half + `"},{"name":"V1","value":"` + half + `"}]}]}}}}`},
		{"strategic merge patch", "PATCH", mtSMP, `{"spec":{"template":{"spec":{"containers":[{"name":"c","env":[{"name":"V1","value":"` + half + `"}]}]}}}}`},
		{"server-side apply", "PATCH", mtApply, string(applied)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := base + "/big"
			if tc.ct == mtApply {
				path += "?fieldManager=big&force=true"
			}
			r := do(t, tc.method, path, tc.body, withCT(tc.ct))
			if r.code != 413 || r.str("reason") != "RequestEntityTooLarge" || r.str("kind") != "Status" {
				t.Fatalf("got %d %.300s, want 413 RequestEntityTooLarge Status", r.code, r.body)
			}
			if got := do(t, "GET", base+"/big", nil).str("metadata.resourceVersion"); got != rv {
				t.Errorf("resourceVersion after a refused update: got %s, want %s", got, rv)
			}
		})
	}
}

// TestSecretStringData: stringData is write-only, as in Kubernetes: it
// is merged into data on create and on every update path, wins over a
// data key of the same name, and is never returned.
func TestSecretStringData(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/secrets"
	check := func(r resp, want map[string]string) {
		t.Helper()
		if _, has := r.obj["stringData"]; has {
			t.Errorf("stringData returned: %s", r.body)
		}
		for k, v := range want {
			if got := r.str("data." + k); got != v {
				t.Errorf("data.%s: got %q, want %q", k, got, v)
			}
		}
	}
	c := do(t, "POST", base, `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{"a":"eA=="},"stringData":{"a":"wins","b":"plain"}}`)
	mustCode(t, c, 201)
	check(c, map[string]string{"a": "d2lucw==", "b": "cGxhaW4="})
	check(do(t, "GET", base+"/s", nil), map[string]string{"a": "d2lucw==", "b": "cGxhaW4="})
	check(do(t, "PATCH", base+"/s", `{"stringData":{"c":"merged"}}`, withCT(mtMergePatch)), map[string]string{"c": "bWVyZ2Vk", "a": "d2lucw=="})
	check(do(t, "PATCH", base+"/s", `{"stringData":{"d":"smp"}}`, withCT(mtSMP)), map[string]string{"d": "c21w"})
	check(do(t, "PATCH", base+"/s?fieldManager=t&force=true", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"e":"ssa"}}`, withCT(mtApply)), map[string]string{"e": "c3Nh"})
	cur := do(t, "GET", base+"/s", nil)
	cur.obj["stringData"] = map[string]any{"f": "put"}
	check(do(t, "PUT", base+"/s", cur.obj), map[string]string{"f": "cHV0", "a": "d2lucw=="})
}
