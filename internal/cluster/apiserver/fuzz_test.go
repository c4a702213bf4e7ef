package apiserver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
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
			if got := len(cells(obj)); got != len(cols) {
				t.Fatalf("%s table: got %d cells, want %d", r.kind, got, len(cols))
			}
		}
	})
}

// FuzzDecodeEviction feeds arbitrary pods/eviction bodies, JSON and
// protobuf, to the decoder: errors are 400 or 413, never panics.
func FuzzDecodeEviction(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p"},"deleteOptions":{"gracePeriodSeconds":0}}`,
		"k8s\x00\n\x11\n\tpolicy/v1\x12\x08Eviction\x12\x03\n\x01p",
		"k8s\x00\x01\x02", `{"kind":1}`, ``, `null`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, proto bool) {
		req, _ := http.NewRequest("POST", "/api/v1/namespaces/n/pods/p/eviction", bytes.NewReader(body))
		if proto {
			req.Header.Set("Content-Type", "application/vnd.kubernetes.protobuf")
		}
		if _, err := decodeEviction(req); err != nil {
			if c := toStatus(err).status.Code; c != 400 && c != 413 {
				t.Fatalf("eviction decode error with code %d, want 400/413: %v", c, err)
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

// FuzzAPIRequest sends arbitrary requests to the real server (embedded
// etcd): whatever the method, path, content type and body, the answer is
// never a 500 and always a Status on errors.
func FuzzAPIRequest(f *testing.F) {
	seeds := []struct{ method, path, ct, body string }{
		{"POST", "/api/v1/namespaces/fuzz/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}`},
		{"PATCH", "/api/v1/namespaces/fuzz/configmaps/a", "application/json-patch+json", `[{"op":"add","path":"/data","value":{"a":"b"}}]`},
		{"PATCH", "/apis/apps/v1/namespaces/fuzz/deployments/d", "application/apply-patch+yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"},
		{"PUT", "/apis/apps/v1/namespaces/fuzz/deployments/d/scale", "application/json", `{"spec":{"replicas":"x"}}`},
		{"DELETE", "/api/v1/namespaces/fuzz/configmaps/a", "application/json", `{"propagationPolicy":"Sideways"}`},
		{"GET", "/api/v1/namespaces/fuzz/configmaps?limit=-1&continue=%%%", "", ""},
		{"GET", "/api/v1/watch/namespaces/fuzz/pods?resourceVersion=abc", "", ""},
		{"POST", "/api/v1/namespaces/fuzz/pods/p/binding", "application/json", `{"target":{}}`},
		{"PUT", "/api/v1/namespaces/fuzz/finalize", "application/json", `{"spec":{"finalizers":[1]}}`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.ct, []byte(s.body))
	}
	ensure := sync.Once{}
	f.Fuzz(func(t *testing.T, method, path, ct string, body []byte) {
		ensure.Do(func() {
			do(t, "POST", "/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"fuzz"}}`)
		})
		switch method {
		case "GET", "POST", "PUT", "PATCH", "DELETE":
		default:
			method = "POST"
		}
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n#") || strings.Contains(path, "watch") {
			return // not a request line an HTTP client can send / would block
		}
		u, err := url.Parse(testSrv.URL + path)
		if err != nil {
			return
		}
		if u.Query().Get("watch") != "" {
			return
		}
		req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", ct)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 && res.StatusCode != 503 {
			t.Fatalf("%s %s (%s): HTTP %d: %s", method, path, ct, res.StatusCode, b)
		}
		if res.StatusCode >= 400 && !bytes.Contains(b, []byte(`"kind":"Status"`)) {
			t.Fatalf("%s %s: error HTTP %d without a Status: %s", method, path, res.StatusCode, b)
		}
	})
}
