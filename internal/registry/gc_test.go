package registry

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// gcFixture pushes content gc must keep and content it must remove.
type gcFixture struct {
	kept, gone, untagged, child, referrer image
	index                                 []byte
	orphan                                digest.Digest
}

func newGCFixture(t *testing.T, e *env) gcFixture {
	var f gcFixture
	f.kept = newImage(t, 2, nil)
	e.expect(e.pushImage("a", "v1", f.kept), 201, "")
	f.gone = newImage(t, 1, nil)
	e.expect(e.pushImage("a", "gone", f.gone), 201, "")
	e.expect(e.do("DELETE", "/v2/a/manifests/"+f.gone.digest.String(), nil), 202, "")
	f.orphan = e.pushBlob("b", randBytes(333))
	f.untagged = newImage(t, 1, nil)
	e.expect(e.pushImage("c", f.untagged.digest.String(), f.untagged), 201, "")
	// repository d: a tagged index whose child and the child's referrer are untagged
	f.child = newImage(t, 1, nil)
	e.expect(e.pushImage("d", f.child.digest.String(), f.child), 201, "")
	f.referrer = newImage(t, 1, func(m *v1.Manifest) {
		s := f.child.desc()
		m.Subject = &s
		m.ArtifactType = "application/vnd.example.sig"
	})
	e.expect(e.pushImage("d", f.referrer.digest.String(), f.referrer), 201, "")
	f.index, _ = json.Marshal(v1.Index{Versioned: specsVersioned2, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{f.child.desc()}})
	e.expect(e.do("PUT", "/v2/d/manifests/latest", bytes.NewReader(f.index), "Content-Type", v1.MediaTypeImageIndex), 201, "")
	return f
}

func TestGC(t *testing.T) {
	e := newEnv(t, Options{})
	f := newGCFixture(t, e)

	if _, err := GC(e.root, GCOptions{}); err == nil || !strings.Contains(err.Error(), "in use by a running registry") {
		t.Fatalf("gc while the registry serves the root: %v, want a refusal", err)
	}
	e.srv.Close()
	e.reg.Close()

	before := e.files()
	var out bytes.Buffer
	st, err := GC(e.root, GCOptions{DryRun: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	e.expectSameFiles(before, "gc --dry-run")
	// the deleted image's layer and manifest, and the orphan
	if st.Blobs != 3 || st.Manifests != 0 || !strings.Contains(out.String(), "would remove blob "+f.orphan.String()) {
		t.Errorf("dry run: %+v\n%s", st, out.String())
	}

	out.Reset()
	st2, err := GC(e.root, GCOptions{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if st2.Blobs != st.Blobs || st2.BlobBytes != st.BlobBytes {
		t.Errorf("gc removed %+v, the dry run said %+v", st2, st)
	}
	for _, d := range []digest.Digest{f.orphan, f.gone.digest, digest.FromBytes(f.gone.layers[0])} {
		mustExist(t, e.reg.st.blobPath(d), false)
		if !strings.Contains(out.String(), "removed blob "+d.String()) {
			t.Errorf("gc output does not list %s:\n%s", d, out.String())
		}
	}
	mustExist(t, e.reg.st.layerLink("b", f.orphan), false)

	// everything still referenced pulls after a restart
	e2 := newEnv(t, Options{Root: e.root})
	for _, c := range []struct {
		repo string
		im   image
	}{{"a", f.kept}, {"c", f.untagged}, {"d", f.child}, {"d", f.referrer}} {
		e2.expect(e2.do("GET", "/v2/"+c.repo+"/manifests/"+c.im.digest.String(), nil), 200, "")
		e2.expect(e2.do("GET", "/v2/"+c.repo+"/blobs/"+digest.FromBytes(c.im.config).String(), nil), 200, "")
		for _, l := range c.im.layers {
			e2.expect(e2.do("GET", "/v2/"+c.repo+"/blobs/"+digest.FromBytes(l).String(), nil), 200, "")
		}
	}
}

func TestGCDeleteUntagged(t *testing.T) {
	e := newEnv(t, Options{})
	f := newGCFixture(t, e)
	e.srv.Close()
	e.reg.Close()
	var out bytes.Buffer
	st, err := GC(e.root, GCOptions{DeleteUntagged: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	// only c's untagged image goes: d's child is in a tagged index, and
	// the referrer's subject is kept
	if st.Manifests != 1 || !strings.Contains(out.String(), "removed manifest c@"+f.untagged.digest.String()) {
		t.Errorf("gc --delete-untagged: %+v\n%s", st, out.String())
	}
	mustExist(t, e.reg.st.blobPath(f.untagged.digest), false)
	mustExist(t, e.reg.st.blobPath(digest.FromBytes(f.untagged.layers[0])), false)
	for _, d := range []digest.Digest{f.child.digest, f.referrer.digest, digest.FromBytes(f.child.layers[0]), digest.FromBytes(f.referrer.layers[0]), f.kept.digest} {
		mustExist(t, e.reg.st.blobPath(d), true)
	}
	e2 := newEnv(t, Options{Root: e.root})
	e2.expect(e2.do("GET", "/v2/c/manifests/"+f.untagged.digest.String(), nil), 404, "MANIFEST_UNKNOWN")
	r := e2.do("GET", "/v2/d/referrers/"+f.child.digest.String(), nil)
	if !strings.Contains(string(r.body), f.referrer.digest.String()) {
		t.Errorf("referrer lost: %s", r.body)
	}
}

func TestGCNotARegistry(t *testing.T) {
	if _, err := GC(t.TempDir(), GCOptions{}); err == nil || !strings.Contains(err.Error(), "not a registry root") {
		t.Errorf("gc of an empty directory: %v", err)
	}
}
