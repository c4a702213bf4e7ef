package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"sigs.k8s.io/yaml"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

const (
	mtJSONPatch  = "application/json-patch+json"
	mtMergePatch = "application/merge-patch+json"
	mtSMP        = "application/strategic-merge-patch+json"
	mtApply      = "application/apply-patch+yaml"
)

// applyPatch applies a patch document of media type mt to the JSON cur.
// schema is a typed zero value used by strategic merge patch.
func applyPatch(mt string, cur, patch []byte, schema any) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, errBadRequest("applying %s: malformed patch (%v)", mt, p)
		}
	}()
	switch mt {
	case mtJSONPatch:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, errBadRequest("decoding JSON patch: %v: want a JSON array of RFC 6902 operations", err)
		}
		out, err := p.Apply(cur)
		if err != nil {
			return nil, newStatus(422, metav1.StatusReasonInvalid, nil, fmt.Sprintf("the JSON patch could not be applied: %v", err))
		}
		return out, nil
	case mtMergePatch:
		if !json.Valid(patch) {
			return nil, errBadRequest("merge patch: the body is not valid JSON")
		}
		out, err := jsonpatch.MergePatch(cur, patch)
		if err != nil {
			return nil, errBadRequest("applying merge patch: %v", err)
		}
		return out, nil
	case mtSMP:
		var pm map[string]any
		if err := json.Unmarshal(patch, &pm); err != nil {
			return nil, errBadRequest("strategic merge patch: %v: want a JSON object", err)
		}
		out, err := strategicpatch.StrategicMergePatch(cur, patch, schema)
		if err != nil {
			return nil, errBadRequest("applying strategic merge patch: %v", err)
		}
		return out, nil
	}
	return nil, errUnsupportedMedia(mt)
}

func (s *Server) patch(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	ctx := req.Context()
	body, err := readBody(req)
	if err != nil {
		return err
	}
	mt := mediaType(req)
	q := req.URL.Query()
	if mt == mtApply {
		if ri.sub != "" && ri.sub != "status" {
			return errMethodNotAllowed("server-side apply is not supported on %s/%s", ri.r.name, ri.sub)
		}
		return s.apply(w, req, ri, body)
	}
	if ri.sub == "scale" {
		cur, err := s.st.get(ctx, ri.r, ri.ns, ri.name)
		if err != nil {
			return err
		}
		sc, _ := toScale(ri.r, cur)
		sc.ResourceVersion = ""
		cj, _ := json.Marshal(sc)
		pj, err := applyPatch(mt, cj, body, &autoscalingv1.Scale{})
		if err != nil {
			return err
		}
		return s.updateScale(w, req, ri, pj, "")
	}
	if ri.sub != "" && ri.sub != "status" {
		return errMethodNotAllowed("PATCH is not allowed on %s/%s", ri.r.name, ri.sub)
	}
	pinned := bytes.Contains(body, []byte(`"resourceVersion"`))
	for attempt := 0; ; attempt++ {
		cur, err := s.st.get(ctx, ri.r, ri.ns, ri.name)
		if err != nil {
			return err
		}
		cj, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		pj, err := applyPatch(mt, cj, body, ri.r.newObj())
		if err != nil {
			return err
		}
		obj, warnings, err := s.decodeObject(ri.r, "application/json", pj, q.Get("fieldValidation"))
		if err != nil {
			return err
		}
		a := accessor(obj)
		if a.GetName() != ri.name || (ri.r.namespaced && a.GetNamespace() != ri.ns) {
			return errBadRequest("a patch must not change metadata.name or metadata.namespace")
		}
		out, err := s.updateObject(ctx, ri, cur, obj, fieldManager(req, "unknown"), metav1.ManagedFieldsOperationUpdate, isDryRun(req))
		if err != nil {
			if !pinned && attempt < 10 && toStatus(err).status.Reason == metav1.StatusReasonConflict {
				continue
			}
			return err
		}
		addWarnings(w, warnings)
		return s.respondObject(w, req, ri.r, 200, out)
	}
}

// --- managed fields -------------------------------------------------------

// fieldSet is the FieldsV1 form: nested maps keyed "f:name"; a leaf is {}.
type fieldSet = map[string]any

var skipMeta = map[string]bool{"uid": true, "resourceVersion": true, "generation": true, "creationTimestamp": true, "managedFields": true, "name": true, "namespace": true, "deletionTimestamp": true, "deletionGracePeriodSeconds": true, "selfLink": true}

// fieldsOf returns the field set of a JSON map (lists and scalars are leaves).
func fieldsOf(m map[string]any, top bool) fieldSet {
	fs := fieldSet{}
	for k, v := range m {
		if top && (k == "apiVersion" || k == "kind") {
			continue
		}
		if mm, ok := v.(map[string]any); ok && len(mm) > 0 {
			sub := mm
			if top && k == "metadata" {
				sub = map[string]any{}
				for mk, mv := range mm {
					if !skipMeta[mk] {
						sub[mk] = mv
					}
				}
				if len(sub) == 0 {
					continue
				}
			}
			fs["f:"+k] = fieldsOf(sub, false)
			continue
		}
		fs["f:"+k] = fieldSet{}
	}
	return fs
}

// changedFields returns the leaves of next that differ from prev.
func changedFields(prev, next map[string]any, top bool) fieldSet {
	fs := fieldSet{}
	for k, v := range next {
		if top && (k == "apiVersion" || k == "kind" || k == "status") {
			continue
		}
		pv := prev[k]
		if mm, ok := v.(map[string]any); ok && len(mm) > 0 {
			pm, _ := pv.(map[string]any)
			if pm == nil {
				pm = map[string]any{}
			}
			if top && k == "metadata" {
				mm2 := map[string]any{}
				for mk, mv := range mm {
					if !skipMeta[mk] {
						mm2[mk] = mv
					}
				}
				mm = mm2
			}
			if sub := changedFields(pm, mm, false); len(sub) > 0 {
				fs["f:"+k] = sub
			}
			continue
		}
		if !reflect.DeepEqual(pv, v) {
			fs["f:"+k] = fieldSet{}
		}
	}
	return fs
}

// leaves lists the paths of a field set's leaves.
func leaves(fs fieldSet, prefix []string, out *[][]string) {
	for k, v := range fs {
		p := append(append([]string{}, prefix...), k)
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			leaves(sub, p, out)
			continue
		}
		*out = append(*out, p)
	}
}

// owns reports whether fs contains path or a prefix of it (or path is a prefix of one of its leaves).
func owns(fs fieldSet, path []string) bool {
	cur := fs
	for _, k := range path {
		v, ok := cur[k]
		if !ok {
			return false
		}
		sub, _ := v.(map[string]any)
		if len(sub) == 0 {
			return true
		}
		cur = sub
	}
	return true
}

func removePath(fs fieldSet, path []string) {
	if len(path) == 0 {
		return
	}
	v, ok := fs[path[0]]
	if !ok {
		return
	}
	sub, _ := v.(map[string]any)
	if len(path) == 1 || len(sub) == 0 {
		delete(fs, path[0])
		return
	}
	removePath(sub, path[1:])
	if len(sub) == 0 {
		delete(fs, path[0])
	}
}

func union(a, b fieldSet) fieldSet {
	for k, v := range b {
		bv, _ := v.(map[string]any)
		av, _ := a[k].(map[string]any)
		if _, present := a[k]; present && len(av) == 0 {
			continue // a leaf in a already covers it
		}
		if av == nil || len(bv) == 0 {
			a[k] = v
			continue
		}
		a[k] = union(av, bv)
	}
	return a
}

func valueAt(m map[string]any, path []string) (any, bool) {
	var cur any = m
	for _, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = mm[strings.TrimPrefix(k, "f:")]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func deleteAt(m map[string]any, path []string) {
	if len(path) == 0 {
		return
	}
	k := strings.TrimPrefix(path[0], "f:")
	if len(path) == 1 {
		delete(m, k)
		return
	}
	if sub, ok := m[k].(map[string]any); ok {
		deleteAt(sub, path[1:])
	}
}

func decodeFields(e metav1.ManagedFieldsEntry) fieldSet {
	fs := fieldSet{}
	if e.FieldsV1 != nil {
		_ = json.Unmarshal(e.FieldsV1.Raw, &fs)
	}
	return fs
}

func entry(manager string, op metav1.ManagedFieldsOperationType, apiVersion, sub string, fs fieldSet) metav1.ManagedFieldsEntry {
	raw, _ := json.Marshal(fs)
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, APIVersion: apiVersion, Time: &now, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: raw}, Subresource: sub}
}

// setManagedFields records an Update by manager: it owns what it changed
// (everything on create, prev == nil) and other managers lose those fields.
func setManagedFields(obj runtime.Object, manager string, op metav1.ManagedFieldsOperationType, prev runtime.Object) {
	a := accessor(obj)
	next := toMap(obj)
	var changed fieldSet
	if prev == nil {
		changed = fieldsOf(next, true)
		delete(changed, "f:status")
	} else {
		changed = changedFields(toMap(prev), next, true)
	}
	if len(changed) == 0 {
		return
	}
	var paths [][]string
	leaves(changed, nil, &paths)
	apiVersion := obj.GetObjectKind().GroupVersionKind().GroupVersion().String()
	var out []metav1.ManagedFieldsEntry
	merged := false
	for _, e := range a.GetManagedFields() {
		fs := decodeFields(e)
		if e.Manager == manager && e.Operation == op {
			e = entry(manager, op, apiVersion, e.Subresource, union(fs, changed))
			merged = true
		} else {
			for _, p := range paths {
				removePath(fs, p)
			}
			if len(fs) == 0 {
				continue
			}
			raw, _ := json.Marshal(fs)
			e.FieldsV1 = &metav1.FieldsV1{Raw: raw}
		}
		out = append(out, e)
	}
	if !merged {
		out = append(out, entry(manager, op, apiVersion, "", changed))
	}
	a.SetManagedFields(out)
}

// apply implements server-side apply: the configuration is merged
// (strategic merge) over the live object; the manager owns exactly the
// fields of its configuration; a field owned by another manager with a
// different value is a conflict (409) unless force=true, which takes it
// over; fields the manager applied before and no longer applies are
// removed when nobody else owns them. Missing objects are created.
func (s *Server) apply(w http.ResponseWriter, req *http.Request, ri *reqInfo, body []byte) error {
	ctx := req.Context()
	q := req.URL.Query()
	manager := q.Get("fieldManager")
	if manager == "" {
		return errBadRequest("PATCH with application/apply-patch+yaml requires the fieldManager query parameter")
	}
	force := isTrue(q.Get("force"))
	cfgJSON, err := yaml.YAMLToJSON(body)
	if err != nil {
		return errBadRequest("decoding apply configuration (YAML or JSON): %v", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil || cfg == nil {
		return errBadRequest("the apply configuration must be an object: %v", err)
	}
	cfgObj, warnings, err := s.decodeObject(ri.r, "application/json", cfgJSON, q.Get("fieldValidation"))
	if err != nil {
		return err
	}
	if k, _ := cfg["kind"].(string); k == "" {
		return errBadRequest("the apply configuration must set apiVersion and kind (%s %s)", ri.r.apiVersion(), ri.r.kind)
	}
	ca := accessor(cfgObj)
	if ca.GetName() != ri.name {
		return errBadRequest("the name of the object (%s) does not match the name on the URL (%s)", ca.GetName(), ri.name)
	}
	if ri.r.namespaced && ca.GetNamespace() != "" && ca.GetNamespace() != ri.ns {
		return errBadRequest("the namespace of the provided object (%s) does not match the namespace sent on the request (%s)", ca.GetNamespace(), ri.ns)
	}
	applied := fieldsOf(cfg, true)
	if ri.sub == "" {
		delete(applied, "f:status")
	}
	apiVersion := ri.r.apiVersion()
	for attempt := 0; ; attempt++ {
		cur, err := s.st.get(ctx, ri.r, ri.ns, ri.name)
		if err != nil && toStatus(err).status.Code == 404 && ri.sub == "" {
			ca.SetManagedFields(nil)
			e := entry(manager, metav1.ManagedFieldsOperationApply, apiVersion, "", applied)
			out, err := s.createObject(ctx, ri, cfgObj, manager, isDryRun(req), &e)
			if err != nil {
				return err
			}
			addWarnings(w, warnings)
			return s.respondObject(w, req, ri.r, 201, out)
		}
		if err != nil {
			return err
		}
		curMap := toMap(cur)
		var lastApplied map[string]any
		if la := accessor(cur).GetAnnotations()["kubectl.kubernetes.io/last-applied-configuration"]; la != "" {
			_ = json.Unmarshal([]byte(la), &lastApplied)
		}
		var paths [][]string
		leaves(applied, nil, &paths)
		var conflicts []string
		var entries []metav1.ManagedFieldsEntry
		var prevMine fieldSet
		others := fieldSet{}
		for _, e := range accessor(cur).GetManagedFields() {
			fs := decodeFields(e)
			if e.Manager == manager && e.Operation == metav1.ManagedFieldsOperationApply {
				prevMine = fs
				continue
			}
			for _, p := range paths {
				if !owns(fs, p) {
					continue
				}
				lv, _ := valueAt(curMap, p)
				cv, _ := valueAt(cfg, p)
				if subsetEqual(normalizeJSON(cv), normalizeJSON(lv)) {
					continue // shared ownership of an equal value
				}
				// Client-side apply to server-side apply upgrade: fields
				// kubectl applied client-side (recorded in the last-applied
				// annotation) move to the applier without conflict, as the
				// Kubernetes API server's last-applied manager does.
				csaUpgrade := e.Manager == "kubectl-client-side-apply" && lastApplied != nil && hasPath(lastApplied, p)
				if force || csaUpgrade || e.Operation == metav1.ManagedFieldsOperationUpdate && e.Manager == manager {
					removePath(fs, p)
					continue
				}
				conflicts = append(conflicts, fmt.Sprintf("conflict with %q: .%s", e.Manager, strings.ReplaceAll(strings.Join(p, "."), "f:", "")))
			}
			union(others, fs)
			if len(fs) > 0 {
				raw, _ := json.Marshal(fs)
				e.FieldsV1 = &metav1.FieldsV1{Raw: raw}
				entries = append(entries, e)
			}
		}
		if len(conflicts) > 0 {
			st := newStatus(409, metav1.StatusReasonConflict, nil, fmt.Sprintf("Apply failed with %d conflict(s): %s", len(conflicts), strings.Join(conflicts, "; ")))
			st.status.Details = &metav1.StatusDetails{Name: ri.name, Group: ri.r.group, Kind: ri.r.name}
			for _, c := range conflicts {
				st.status.Details.Causes = append(st.status.Details.Causes, metav1.StatusCause{Type: metav1.CauseTypeFieldManagerConflict, Message: c})
			}
			return st
		}
		cj, _ := json.Marshal(cur)
		mj, err := applyPatch(mtSMP, cj, cfgJSON, ri.r.newObj())
		if err != nil {
			return err
		}
		var merged map[string]any
		if err := json.Unmarshal(mj, &merged); err != nil {
			return errBadRequest("server-side apply: %v", err)
		}
		if prevMine != nil {
			var prevPaths [][]string
			leaves(prevMine, nil, &prevPaths)
			for _, p := range prevPaths {
				if !owns(applied, p) && !owns(others, p) {
					deleteAt(merged, p)
				}
			}
		}
		mj, _ = json.Marshal(merged)
		next, _, err := s.decodeObject(ri.r, "application/json", mj, "Ignore")
		if err != nil {
			return err
		}
		sub := ""
		if ri.sub == "status" {
			sub = "status"
		}
		entries = append(entries, entry(manager, metav1.ManagedFieldsOperationApply, apiVersion, sub, applied))
		accessor(next).SetManagedFields(entries)
		accessor(next).SetResourceVersion("")
		out, err := s.updateObject(ctx, ri, cur, next, manager, "", isDryRun(req))
		if err != nil {
			if attempt < 10 && toStatus(err).status.Reason == metav1.StatusReasonConflict && !strings.HasPrefix(toStatus(err).status.Message, "Apply failed") {
				continue
			}
			return err
		}
		addWarnings(w, warnings)
		return s.respondObject(w, req, ri.r, 200, out)
	}
}

// normalizeJSON makes numbers comparable between typed and decoded maps.
func normalizeJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// subsetEqual reports whether the applied value cfg agrees with the live
// value: every field cfg sets has the same value live (live may carry more,
// such as defaulted fields); lists match element by element.
func subsetEqual(cfg, live any) bool {
	switch c := cfg.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range c {
			if !subsetEqual(v, l[k]) {
				return false
			}
		}
		return true
	case []any:
		l, ok := live.([]any)
		if !ok || len(l) != len(c) {
			return false
		}
		for i := range c {
			if !subsetEqual(c[i], l[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(cfg, live)
}

func hasPath(m map[string]any, path []string) bool {
	_, ok := valueAt(m, path)
	return ok
}
