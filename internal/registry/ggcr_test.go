package registry

import (
	"bytes"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestGGCRRoundTrip pushes images and an index with go-containerregistry's
// client (what crane and ko use) and pulls them back byte for byte.
func TestGGCRRoundTrip(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "htpasswd")
	writeHtpasswd(t, pw, map[string]string{"ci": "pw"})
	var logs bytes.Buffer
	e := newEnv(t, Options{Htpasswd: pw, Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	host := strings.TrimPrefix(e.srv.URL, "http://")
	auth := remote.WithAuth(&authn.Basic{Username: "ci", Password: "pw"})
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(host+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	img, err := random.Image(100_000, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref("team/app:v1"), img, auth); err != nil {
		t.Fatalf("remote.Write: %v", err)
	}
	if err := remote.Write(ref("team/app:v1"), img, remote.WithAuth(&authn.Basic{Username: "ci", Password: "wrong"})); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("push with a wrong password: %v, want 401 Unauthorized", err)
	}
	got, err := remote.Image(ref("team/app:v1"), auth)
	if err != nil {
		t.Fatalf("remote.Image: %v", err)
	}
	sameImage(t, img, got)

	// an image pulled from the registry is pushed to another repository:
	// go-containerregistry mounts its layers instead of uploading them
	if err := remote.Write(ref("other/copy:v1"), got, auth); err != nil {
		t.Fatalf("remote.Write of a mounted copy: %v", err)
	}
	mounts := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "path=/v2/other/copy/blobs/uploads/") && strings.Contains(l, "mount=") && strings.Contains(l, "status=201") {
			mounts++
		}
	}
	if mounts != 4 { // three layers and the config
		t.Errorf("%d blobs mounted into other/copy, want 4", mounts)
	}
	cp, err := remote.Image(ref("other/copy:v1"), auth)
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, img, cp)

	// an OCI index of two images
	idx, err := random.Index(5000, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref("team/multi:latest"), idx, auth); err != nil {
		t.Fatalf("remote.WriteIndex: %v", err)
	}
	gotIdx, err := remote.Index(ref("team/multi:latest"), auth)
	if err != nil {
		t.Fatal(err)
	}
	wantD, _ := idx.Digest()
	gotD, _ := gotIdx.Digest()
	if wantD != gotD {
		t.Errorf("index digest %s, want %s", gotD, wantD)
	}
	im, _ := gotIdx.IndexManifest()
	for _, m := range im.Manifests {
		child, err := gotIdx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := idx.Image(m.Digest)
		sameImage(t, want, child)
	}

	// an OCI artifact referring to the image, found by the referrers API
	subj, _ := remote.Get(ref("team/app:v1"), auth)
	art := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	art = mutate.ConfigMediaType(art, "application/vnd.example.sbom")
	art = mutate.Subject(art, subj.Descriptor).(ggcr.Image)
	artD, _ := art.Digest()
	if err := remote.Write(ref("team/app@"+artD.String()), art, auth); err != nil {
		t.Fatalf("remote.Write of a referrer: %v", err)
	}
	refs, err := remote.Referrers(ref("team/app@"+subj.Digest.String()).(name.Digest), auth)
	if err != nil {
		t.Fatalf("remote.Referrers: %v", err)
	}
	rm, _ := refs.IndexManifest()
	if len(rm.Manifests) != 1 || rm.Manifests[0].Digest != artD || rm.Manifests[0].ArtifactType != "application/vnd.example.sbom" {
		t.Errorf("referrers: %+v", rm.Manifests)
	}

	tags, err := remote.List(ref("team/app:v1").Context(), auth)
	if err != nil || strings.Join(tags, ",") != "v1" {
		t.Errorf("remote.List: %v %v", tags, err)
	}
	if err := remote.Delete(ref("team/app@"+subj.Digest.String()), auth); err != nil {
		t.Fatalf("remote.Delete: %v", err)
	}
	if _, err := remote.Image(ref("team/app:v1"), auth); err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Errorf("pull after delete: %v, want MANIFEST_UNKNOWN", err)
	}
}

// sameImage compares manifests, configs and every layer's bytes.
func sameImage(t *testing.T, want, got ggcr.Image) {
	t.Helper()
	wm, _ := want.RawManifest()
	gm, err := got.RawManifest()
	if err != nil || string(wm) != string(gm) {
		t.Fatalf("manifest differs (%v)", err)
	}
	wc, _ := want.RawConfigFile()
	gc, err := got.RawConfigFile()
	if err != nil || string(wc) != string(gc) {
		t.Fatalf("config differs (%v)", err)
	}
	wl, _ := want.Layers()
	gl, err := got.Layers()
	if err != nil || len(wl) != len(gl) {
		t.Fatalf("%d layers, want %d (%v)", len(gl), len(wl), err)
	}
	for i := range wl {
		a, _ := readLayer(wl[i])
		b, err := readLayer(gl[i])
		if err != nil || a != b {
			t.Fatalf("layer %d differs (%v)", i, err)
		}
	}
}

func readLayer(l ggcr.Layer) (string, error) {
	rc, err := l.Compressed()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}
