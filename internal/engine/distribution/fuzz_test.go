package distribution

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzParseManifest feeds registry answers to the manifest parser: it
// must never panic, and what it accepts as an image manifest must have a
// config and well-formed descriptors.
func FuzzParseManifest(f *testing.F) {
	img := mkImage(f, "amd64", mkLayer(f, map[string]string{"f": "x"}))
	f.Add(img.manifest, MediaTypeDockerManifest)
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}`), ocispec.MediaTypeImageIndex)
	f.Add([]byte(`{"schemaVersion":1,"fsLayers":[]}`), "")
	f.Add([]byte(`{`), "application/json")
	f.Fuzz(func(t *testing.T, b []byte, ct string) {
		m, mt, err := parseManifest(b, ct, "fuzz")
		if err != nil {
			return
		}
		switch {
		case isManifest(mt):
			if m.Config == nil || checkDesc(*m.Config, "config") != nil {
				t.Fatalf("accepted a manifest with config %+v", m.Config)
			}
			for _, l := range m.Layers {
				if checkDesc(l, "layer") != nil {
					t.Fatalf("accepted a layer %+v", l)
				}
			}
		case isIndex(mt):
			pickManifest(m.Manifests, HostPlatform())
		default:
			t.Fatalf("accepted media type %q", mt)
		}
	})
}
