package registry

import (
	"strings"
	"testing"
)

// FuzzParseManifest: any bytes either parse into a manifest of a known
// type with valid descriptors or are refused with MANIFEST_INVALID.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"data":""}]}`), "application/vnd.oci.image.index.v1+json")
	f.Add([]byte(`{"schemaVersion":1,"fsLayers":[]}`), "")
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		m, err := parseManifest(body, ct)
		if err != nil {
			if re, ok := err.(*regError); !ok || re.code != errManifestInvalid {
				t.Fatalf("error %v is not MANIFEST_INVALID", err)
			}
			return
		}
		if !knownManifestType(m.mediaType) {
			t.Fatalf("accepted media type %q", m.mediaType)
		}
		if isManifestType(m.mediaType) && m.Config == nil {
			t.Fatal("accepted an image manifest without config")
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"0-0", "bytes 10-20/100", "bytes=1-2", "5-1", "-1-2", "", "9223372036854775807-9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, ok := parseContentRange(s)
		if ok && (start < 0 || end < start) {
			t.Fatalf("parseContentRange(%q) = %d, %d", s, start, end)
		}
	})
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/a/b/manifests/x", "/v2/a/blobs/uploads/", "/v2//blobs/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		kind, name, ref := parseRoute(p)
		if kind >= routeTags && kind != routeNone && name == "" && checkName(name) == nil {
			t.Fatalf("parseRoute(%q) = %d with an empty name", p, kind)
		}
		if strings.Contains(ref, "/") {
			t.Fatalf("parseRoute(%q): reference %q has a slash", p, ref)
		}
	})
}
