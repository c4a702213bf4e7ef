package apiserver

import (
	"testing"
)

// FuzzDecodeObject feeds arbitrary bodies through every decoder and the
// defaulting and validation that follow; none may panic.
func FuzzDecodeObject(f *testing.F) {
	seeds := []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}}}}}`,
		"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetPort: x}]}",
		"k8s\x00\n\x02v1\x12\x03Pod",
		`{"metadata":{"labels":{"":""},"ownerReferences":[{}]}}`,
		`[1,2,3]`, `null`, `{"spec":{"replicas":"x"}}`, "\xff\xfe",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(0))
	}
	s := New(Config{})
	mts := []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "application/apply-patch+yaml"}
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		r := resources[int(sel)%len(resources)]
		mt := mts[int(sel/32)%len(mts)]
		for _, validation := range []string{"Strict", "Ignore"} {
			obj, _, err := s.decodeObject(r, mt, body, validation)
			if err != nil {
				if st := toStatus(err); st.status.Code != 400 && st.status.Code != 415 {
					t.Fatalf("decode error with code %d, want 400/415: %v", st.status.Code, err)
				}
				continue
			}
			applyDefaults(obj)
			_ = validateObject(r, obj)
			_, _ = toScale(r, obj)
			cols, cells := columnsFor(r)
			if got := len(cells(obj)); r.kind != "HorizontalPodAutoscaler" && got != len(cols) {
				t.Fatalf("%s table: got %d cells, want %d", r.kind, got, len(cols))
			}
		}
	})
}

// FuzzApplyPatch applies arbitrary patches of every type to a live object;
// failures must be 4xx Status errors, never panics.
func FuzzApplyPatch(f *testing.F) {
	live := []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","labels":{"a":"b"}},"spec":{"replicas":1,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i","ports":[{"containerPort":80}]}]}}}}`)
	seeds := []string{
		`[{"op":"replace","path":"/spec/replicas","value":3}]`,
		`[{"op":"remove","path":"/spec/template/spec/containers/5"}]`,
		`[{"op":"move","from":"/spec","path":"/spec/x"}]`,
		`{"spec":{"replicas":null}}`,
		`{"spec":{"template":{"spec":{"containers":[{"name":"c","$patch":"delete"}]}}}}`,
		`{"$retainKeys":["spec"],"spec":{"$setElementOrder/containers":[{"name":"z"}]}}`,
		`{"metadata":{"$deleteFromPrimitiveList/finalizers":["x"]}}`,
		`[`, `"str"`, `{"spec":{"template":{"spec":{"containers":{"a":1}}}}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(2))
	}
	r := lookup("apps", "v1", "deployments")
	mts := []string{mtJSONPatch, mtMergePatch, mtSMP}
	f.Fuzz(func(t *testing.T, patch []byte, sel uint8) {
		out, err := applyPatch(mts[int(sel)%len(mts)], live, patch, r.newObj())
		if err != nil {
			if st := toStatus(err); st.status.Code < 400 || st.status.Code >= 500 {
				t.Fatalf("patch error with code %d: %v", st.status.Code, err)
			}
			return
		}
		s := New(Config{})
		if obj, _, err := s.decodeObject(r, "application/json", out, "Ignore"); err == nil {
			_ = validateObject(r, obj)
		}
	})
}
