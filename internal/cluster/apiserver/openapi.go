package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strings"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"

	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// schemaGen builds OpenAPI schemas from the k8s.io/api Go types by
// reflection: JSON tags give the field names, SwaggerDoc() the
// descriptions, patchStrategy/patchMergeKey tags the patch extensions.
type schemaGen struct {
	v2    bool
	defs  map[string]any
	names map[reflect.Type]string
}

func newSchemaGen(v2 bool) *schemaGen {
	return &schemaGen{v2: v2, defs: map[string]any{}, names: map[reflect.Type]string{}}
}

var (
	tTime       = reflect.TypeOf(metav1.Time{})
	tMicroTime  = reflect.TypeOf(metav1.MicroTime{})
	tDuration   = reflect.TypeOf(metav1.Duration{})
	tQuantity   = reflect.TypeOf(apiresource.Quantity{})
	tIntOrStr   = reflect.TypeOf(intstr.IntOrString{})
	tRawExt     = reflect.TypeOf(runtime.RawExtension{})
	tFieldsV1   = reflect.TypeOf(metav1.FieldsV1{})
	tTypeMeta   = reflect.TypeOf(metav1.TypeMeta{})
	swaggerIfce = reflect.TypeOf((*interface{ SwaggerDoc() map[string]string })(nil)).Elem()
)

// defName is the OpenAPI definition name of a Go type, e.g.
// "io.k8s.api.core.v1.Pod".
func defName(t reflect.Type) string {
	p := t.PkgPath()
	if rest, ok := strings.CutPrefix(p, "k8s.io/"); ok {
		p = "io.k8s." + rest
	}
	return strings.ReplaceAll(p, "/", ".") + "." + t.Name()
}

func (g *schemaGen) ref(name string) string {
	if g.v2 {
		return "#/definitions/" + name
	}
	return "#/components/schemas/" + name
}

// schemaOf returns the schema of t, registering struct types as definitions.
func (g *schemaGen) schemaOf(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case tTime:
		return map[string]any{"type": "string", "format": "date-time"}
	case tMicroTime:
		return map[string]any{"type": "string", "format": "date-time"}
	case tDuration:
		return map[string]any{"type": "string"}
	case tQuantity:
		if g.v2 {
			return map[string]any{"type": "string"}
		}
		return map[string]any{"x-kubernetes-int-or-string": true, "anyOf": []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}}
	case tIntOrStr:
		if g.v2 {
			return map[string]any{"type": "string", "format": "int-or-string"}
		}
		return map[string]any{"x-kubernetes-int-or-string": true, "anyOf": []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}}
	case tRawExt, tFieldsV1:
		return map[string]any{"type": "object"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int32, reflect.Int16, reflect.Int8, reflect.Uint16, reflect.Uint8:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Int, reflect.Int64, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number", "format": "double"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": g.schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schemaOf(t.Elem())}
	case reflect.Interface:
		return map[string]any{"type": "object"}
	case reflect.Struct:
		name := defName(t)
		if _, ok := g.names[t]; !ok {
			g.names[t] = name
			g.defs[name] = map[string]any{} // placeholder for recursion
			g.defs[name] = g.structSchema(t)
		}
		return map[string]any{"$ref": g.ref(name)}
	}
	return map[string]any{"type": "object"}
}

func docsOf(t reflect.Type) map[string]string {
	if t.Implements(swaggerIfce) {
		return reflect.Zero(t).Interface().(interface{ SwaggerDoc() map[string]string }).SwaggerDoc()
	}
	if reflect.PointerTo(t).Implements(swaggerIfce) {
		return reflect.New(t).Interface().(interface{ SwaggerDoc() map[string]string }).SwaggerDoc()
	}
	return nil
}

func (g *schemaGen) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	docs := docsOf(t)
	var walk func(t reflect.Type, docs map[string]string)
	walk = func(t reflect.Type, docs map[string]string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft == tTypeMeta {
					props["apiVersion"] = map[string]any{"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}
					props["kind"] = map[string]any{"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}
					continue
				}
				walk(ft, docsOf(ft))
				continue
			}
			if name == "" {
				name = f.Name
			}
			s := g.schemaOf(f.Type)
			desc := docs[name]
			if _, isRef := s["$ref"]; isRef && !g.v2 {
				s = map[string]any{"allOf": []any{s}}
				if desc != "" {
					s["description"] = desc
				}
				s["default"] = map[string]any{}
			} else if desc != "" {
				s["description"] = desc
			}
			if ps := f.Tag.Get("patchStrategy"); ps != "" {
				s["x-kubernetes-patch-strategy"] = ps
			}
			if mk := f.Tag.Get("patchMergeKey"); mk != "" {
				s["x-kubernetes-patch-merge-key"] = mk
			}
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Struct && f.Type.Kind() != reflect.Pointer && f.Type.Kind() != reflect.Bool {
				required = append(required, name)
			}
			props[name] = s
		}
	}
	walk(t, docs)
	out := map[string]any{"type": "object", "properties": props}
	if d := docs[""]; d != "" {
		out["description"] = d
	}
	if len(required) > 0 {
		sort.Strings(required)
		out["required"] = required
	}
	return out
}

func gvkExt(r *resource) []any {
	return []any{map[string]any{"group": r.group, "version": r.version, "kind": r.kind}}
}

// buildDoc builds the v3 (or v2) document for resources rs.
func buildDoc(rs []*resource, v2 bool) map[string]any {
	g := newSchemaGen(v2)
	paths := map[string]any{}
	for _, r := range rs {
		if r.newObj == nil {
			continue // metrics.k8s.io has no k8s.io/api Go type to reflect: no schema
		}
		t := reflect.TypeOf(r.newObj()).Elem()
		g.schemaOf(t)
		name := defName(t)
		if def, ok := g.defs[name].(map[string]any); ok {
			def["x-kubernetes-group-version-kind"] = gvkExt(r)
		}
		base := "/api/" + r.version
		if r.group != "" {
			base = "/apis/" + r.group + "/" + r.version
		}
		coll := base + "/" + r.name
		if r.namespaced {
			coll = base + "/namespaces/{namespace}/" + r.name
		}
		item := coll + "/{name}"
		refSchema := map[string]any{"$ref": g.ref(name)}
		body := func(types ...string) map[string]any {
			c := map[string]any{}
			for _, ct := range types {
				c[ct] = map[string]any{"schema": refSchema}
			}
			return map[string]any{"content": c, "required": true}
		}
		resp := map[string]any{"200": map[string]any{"description": "OK", "content": map[string]any{"application/json": map[string]any{"schema": refSchema}}}}
		if v2 {
			resp = map[string]any{"200": map[string]any{"description": "OK", "schema": refSchema}}
		}
		params := func(names ...string) []any {
			var ps []any
			for _, n := range names {
				p := map[string]any{"name": n, "in": "query", "type": "string", "uniqueItems": true}
				if !v2 {
					p = map[string]any{"name": n, "in": "query", "schema": map[string]any{"type": "string", "uniqueItems": true}}
				}
				ps = append(ps, p)
			}
			return ps
		}
		op := func(id, action string, withBody []string, qp ...string) map[string]any {
			o := map[string]any{"operationId": id + r.kind, "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvkExt(r)[0], "responses": resp, "parameters": params(qp...)}
			if len(withBody) > 0 {
				if v2 {
					o["consumes"] = withBody
					o["parameters"] = append(o["parameters"].([]any), map[string]any{"name": "body", "in": "body", "required": true, "schema": map[string]any{"type": "object"}})
				} else {
					o["requestBody"] = body(withBody...)
				}
			}
			return o
		}
		paths[coll] = map[string]any{
			"get":  op("list", "list", nil, "labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch"),
			"post": op("create", "post", []string{"*/*"}, "dryRun", "fieldManager", "fieldValidation"),
		}
		paths[item] = map[string]any{
			"get":    op("read", "get", nil),
			"put":    op("replace", "put", []string{"*/*"}, "dryRun", "fieldManager", "fieldValidation"),
			"patch":  op("patch", "patch", []string{"application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"}, "dryRun", "fieldManager", "fieldValidation", "force"),
			"delete": op("delete", "delete", nil, "dryRun", "gracePeriodSeconds", "propagationPolicy"),
		}
	}
	if v2 {
		return map[string]any{"swagger": "2.0", "info": map[string]any{"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "definitions": g.defs}
	}
	return map[string]any{"openapi": "3.0.0", "info": map[string]any{"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "components": map[string]any{"schemas": g.defs}}
}

func gvPath(group, version string) string {
	if group == "" {
		return "api/" + version
	}
	return "apis/" + group + "/" + version
}

func (s *Server) buildOpenAPI() {
	s.openapiV3 = map[string][]byte{}
	idx := map[string]any{}
	seen := map[string]bool{}
	for _, r := range resources {
		p := gvPath(r.group, r.version)
		if seen[p] || r.metrics {
			continue
		}
		seen[p] = true
		b, _ := json.Marshal(buildDoc(resourcesOf(r.group, r.version), false))
		s.openapiV3[p] = b
		h := sha256.Sum256(b)
		idx[p] = map[string]any{"serverRelativeURL": "/openapi/v3/" + p + "?hash=" + strings.ToUpper(hex.EncodeToString(h[:16]))}
	}
	s.openapiIdx, _ = json.Marshal(map[string]any{"paths": idx})
	s.openapiV2, _ = json.Marshal(buildDoc(resources, true))
	if doc, err := openapi_v2.ParseDocument(s.openapiV2); err == nil {
		s.openapiV2pb, _ = proto.Marshal(doc)
	} else {
		s.log.Warn("openapi v2 protobuf form unavailable", "err", err)
	}
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, req *http.Request) {
	s.openapiOnce.Do(s.buildOpenAPI)
	p := req.URL.Path
	switch {
	case p == "/openapi/v3" || p == "/openapi/v3/":
		writeRaw(w, 200, "application/json", s.openapiIdx)
	case strings.HasPrefix(p, "/openapi/v3/"):
		doc, ok := s.openapiV3[strings.TrimPrefix(p, "/openapi/v3/")]
		if !ok {
			writeError(w, newStatus(404, metav1.StatusReasonNotFound, nil, "the server could not find the requested resource"))
			return
		}
		w.Header().Set("Cache-Control", "public, immutable")
		writeRaw(w, 200, "application/json", doc)
	case p == "/openapi/v2" || p == "/swagger-2.0.0.pb-v1" || p == "/swagger.json":
		if strings.Contains(req.Header.Get("Accept"), "protobuf") && s.openapiV2pb != nil {
			writeRaw(w, 200, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf", s.openapiV2pb)
			return
		}
		writeRaw(w, 200, "application/json", s.openapiV2)
	default:
		writeError(w, newStatus(404, metav1.StatusReasonNotFound, nil, "the server could not find the requested resource"))
	}
}
