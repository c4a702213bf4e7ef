package distribution

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/content"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/errdefs"
)

// loadImage stores an image the way `load` does: uncompressed layers
// only, no manifest a registry ever saw.
func loadImage(t *testing.T, s *image.Store, tag string, layers ...tlayer) *image.Image {
	t.Helper()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}, RootFS: ocispec.RootFS{Type: "layers"}}
	files := map[string][]byte{}
	entry := map[string]any{"Config": "config.json", "RepoTags": []string{tag}}
	var names []string
	for i, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		n := string(rune('a'+i)) + "/layer.tar"
		files[n] = l.tar
		names = append(names, n)
	}
	entry["Layers"] = names
	files["config.json"], _ = json.Marshal(cfg)
	files["manifest.json"], _ = json.Marshal([]any{entry})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, b := range files {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	tw.Close()
	if _, err := s.Load(&buf, nil); err != nil {
		t.Fatal(err)
	}
	img, err := s.Get(tag)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// validateRemote reads ref back with go-containerregistry (an
// independent client) and checks every digest, size and diff ID.
func validateRemote(t *testing.T, ref string) digest.Digest {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("go-containerregistry cannot read the pushed %s: %v", ref, err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("pushed %s does not validate: %v", ref, err)
	}
	d, _ := img.Digest()
	return digest.Digest(d.String())
}

func blobCount(s *image.Store) int {
	n := 0
	s.Content().Walk(func(content.Info) error { n++; return nil })
	return n
}

func TestPushLoadedImageThenPull(t *testing.T) {
	needRoot(t)
	s, _ := newStore(t)
	c := newClient(t, s, Config{})
	l1 := mkLayer(t, map[string]string{"etc/os": "loaded\n"})
	l2 := mkLayer(t, map[string]string{"app/x": strings.Repeat("x", 50000)})
	reg := newRegistry(t)
	tag := reg.host + "/team/loaded:v1"
	img := loadImage(t, s, tag, l1, l2)

	var rec recorder
	res, err := c.Push(ctx, tag, PushOptions{Progress: rec.add})
	if err != nil {
		t.Fatalf("push of a loaded image: %v", err)
	}
	if len(res) != 1 || res[0].Tag != "v1" || res[0].Size <= 0 {
		t.Fatalf("push result %+v", res)
	}
	for _, want := range []string{"The push refers to repository [" + reg.host + "/team/loaded]", "Preparing", "Pushing", "Pushed",
		"v1: digest: " + res[0].Digest + " size: "} {
		if !rec.has(want) {
			t.Errorf("push progress lacks %q: %q", want, rec.statuses())
		}
	}
	var aux *PushResult
	for _, p := range rec.lines {
		if p.Aux != nil {
			aux = p.Aux
		}
		if p.Status == "Preparing" && p.ID != shortID(l1.diffID) && p.ID != shortID(l2.diffID) {
			t.Errorf("push layer ID %q, want the short diff ID", p.ID)
		}
	}
	if aux == nil || *aux != res[0] {
		t.Errorf("aux %+v, want %+v", aux, res[0])
	}
	if got := validateRemote(t, tag); got.String() != res[0].Digest {
		t.Errorf("registry serves %s, push reported %s", got, res[0].Digest)
	}
	after, _ := s.Get(tag)
	if want := reg.host + "/team/loaded@" + res[0].Digest; len(after.RepoDigests) != 1 || after.RepoDigests[0] != want {
		t.Errorf("RepoDigests after push %v, want [%s]", after.RepoDigests, want)
	}

	// Pull it into another store: the same image.
	s2, _ := newStore(t)
	c2 := newClient(t, s2, Config{})
	got, err := c2.Pull(ctx, tag, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != img.ID {
		t.Errorf("pulled back %s, pushed %s", got.ID, img.ID)
	}
	if v := readLayerFile(t, s2, got, "etc/os"); v != "loaded\n" {
		t.Errorf("etc/os = %q", v)
	}

	// A second push, to another registry, compresses nothing again and
	// sends the same manifest.
	n := blobCount(s)
	reg2 := newRegistry(t)
	if err := s.Tag(tag, reg2.host+"/other:v9"); err != nil {
		t.Fatal(err)
	}
	res2, err := c.Push(ctx, reg2.host+"/other:v9", PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res2[0].Digest != res[0].Digest {
		t.Errorf("second push digest %s, first %s: want the same manifest", res2[0].Digest, res[0].Digest)
	}
	if blobCount(s) != n {
		t.Errorf("second push stored %d new blobs, want 0 (no recompression)", blobCount(s)-n)
	}
	// Pushing again to the first: every layer is already there.
	var rec3 recorder
	if _, err := c.Push(ctx, tag, PushOptions{Progress: rec3.add}); err != nil {
		t.Fatal(err)
	}
	if rec3.has("Pushed") || !rec3.has("Layer already exists") {
		t.Errorf("re-push progress %q: want only Layer already exists", rec3.statuses())
	}
}

func TestPushOfPulledImageKeepsDigest(t *testing.T) {
	needRoot(t)
	src := newRegistry(t)
	layers := []tlayer{mkLayer(t, map[string]string{"a": "1"}), mkLayer(t, map[string]string{"b": "2"})}
	img := mkImage(t, runtime.GOARCH, layers...)
	// An OCI-typed copy too: the media types must survive.
	var om ocispec.Manifest
	json.Unmarshal(img.manifest, &om)
	om.MediaType, om.Config.MediaType = ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig
	for i := range om.Layers {
		om.Layers[i].MediaType = ocispec.MediaTypeImageLayerGzip
	}
	oci := img
	oci.manifest, _ = json.Marshal(om)
	oci.mediaType = ocispec.MediaTypeImageManifest
	src.putImage("docker", "v1", img)
	src.putImage("oci", "v1", oci)
	// and an index, whose platform manifest is what gets pushed
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{oci.desc(&ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH})}}
	ib, _ := json.Marshal(idx)
	src.putManifest("oci", "multi", ib, ocispec.MediaTypeImageIndex)

	s, _ := newStore(t)
	c := newClient(t, s, Config{})
	dst := newRegistry(t)
	for _, tc := range []struct {
		from, to string
		want     digest.Digest
	}{
		{src.host + "/docker:v1", dst.host + "/copy:docker", img.digest()},
		{src.host + "/oci:v1", dst.host + "/copy:oci", oci.digest()},
		{src.host + "/oci:multi", dst.host + "/copy:multi", oci.digest()},
	} {
		if _, err := c.Pull(ctx, tc.from, PullOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Tag(tc.from, tc.to); err != nil {
			t.Fatal(err)
		}
		n := blobCount(s)
		res, err := c.Push(ctx, tc.to, PushOptions{})
		if err != nil {
			t.Fatalf("push %s: %v", tc.to, err)
		}
		if res[0].Digest != tc.want.String() {
			t.Errorf("push of pulled %s as %s: digest %s, want the pulled manifest's %s", tc.from, tc.to, res[0].Digest, tc.want)
		}
		if blobCount(s) != n {
			t.Errorf("push of a pulled image stored %d blobs (recompressed?)", blobCount(s)-n)
		}
		validateRemote(t, tc.to)
		// Round trip: pull it back fresh.
		s2, _ := newStore(t)
		got, err := newClient(t, s2, Config{}).Pull(ctx, tc.to, PullOptions{})
		if err != nil || got.ID != img.id() {
			t.Errorf("pull back %s: %v, %v", tc.to, got, err)
		}
	}
}

// mountRegistry is a test registry that keeps blobs per repository and
// implements cross-repository mounts (go-containerregistry's shares
// every blob between repositories and does not mount).
type mountRegistry struct {
	*testRegistry
	mu    sync.Mutex
	blobs map[string]map[string]bool // repo → digests
}

func newMountRegistry(t *testing.T) *mountRegistry {
	m := &mountRegistry{testRegistry: newRegistry(t), blobs: map[string]map[string]bool{}}
	repoOf := func(p string) (string, string) {
		p = strings.TrimPrefix(p, "/v2/")
		i := strings.Index(p, "/blobs/")
		if i < 0 {
			return "", ""
		}
		return p[:i], p[i+len("/blobs/"):]
	}
	m.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		repo, rest := repoOf(r.URL.Path)
		if repo == "" {
			return false
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.blobs[repo] == nil {
			m.blobs[repo] = map[string]bool{}
		}
		switch {
		case (r.Method == http.MethodHead || r.Method == http.MethodGet) && !strings.HasPrefix(rest, "uploads"):
			if !m.blobs[repo][rest] {
				w.WriteHeader(http.StatusNotFound)
				return true
			}
		case r.Method == http.MethodPost && r.URL.Query().Get("mount") != "":
			d, from := r.URL.Query().Get("mount"), r.URL.Query().Get("from")
			if m.blobs[from][d] {
				m.blobs[repo][d] = true
				w.WriteHeader(http.StatusCreated)
				return true
			}
			q := r.URL.Query()
			q.Del("mount")
			q.Del("from")
			r.URL.RawQuery = q.Encode()
		case r.Method == http.MethodPut || (r.Method == http.MethodPost && r.URL.Query().Get("digest") != ""):
			m.blobs[repo][r.URL.Query().Get("digest")] = true
		}
		return false
	})
	return m
}

func TestPushMountsFromOtherRepository(t *testing.T) {
	needRoot(t)
	reg := newMountRegistry(t)
	s, _ := newStore(t)
	c := newClient(t, s, Config{})
	l := mkLayer(t, map[string]string{"m": strings.Repeat("m", 30000)})
	loadImage(t, s, reg.host+"/first:v1", l)
	var rec recorder
	if _, err := c.Push(ctx, reg.host+"/first:v1", PushOptions{Progress: rec.add}); err != nil {
		t.Fatal(err)
	}
	if !rec.has("Pushed") {
		t.Errorf("first push: %q", rec.statuses())
	}
	if err := s.Tag(reg.host+"/first:v1", reg.host+"/second:v1"); err != nil {
		t.Fatal(err)
	}
	var rec2 recorder
	if _, err := c.Push(ctx, reg.host+"/second:v1", PushOptions{Progress: rec2.add}); err != nil {
		t.Fatal(err)
	}
	if !rec2.has("Mounted from first") || rec2.has("Pushed") {
		t.Errorf("push to a second repository: %q; want Mounted from first", rec2.statuses())
	}
	validateRemote(t, reg.host+"/second:v1")

	// A pulled image remembers where its blobs came from.
	s2, _ := newStore(t)
	c2 := newClient(t, s2, Config{})
	if _, err := c2.Pull(ctx, reg.host+"/second:v1", PullOptions{}); err != nil {
		t.Fatal(err)
	}
	s2.Tag(reg.host+"/second:v1", reg.host+"/third:v1")
	var rec3 recorder
	if _, err := c2.Push(ctx, reg.host+"/third:v1", PushOptions{Progress: rec3.add}); err != nil {
		t.Fatal(err)
	}
	if !rec3.has("Mounted from second") {
		t.Errorf("push of a pulled image to another repository: %q; want Mounted from second", rec3.statuses())
	}
}

func TestPushAllTagsAndErrors(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	s, root := newStore(t)
	c := newClient(t, s, Config{})
	img := loadImage(t, s, reg.host+"/app:a", mkLayer(t, map[string]string{"f": "1"}))
	s.Tag(img.ID, reg.host+"/app:b")
	s.Tag(img.ID, reg.host+"/elsewhere:c")
	res, err := c.Push(ctx, reg.host+"/app", PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Tag != "a" || res[1].Tag != "b" || res[0].Digest != res[1].Digest {
		t.Errorf("push of a repository: %+v; want tags a and b with one digest", res)
	}
	_, err = c.Push(ctx, reg.host+"/app:nope", PushOptions{})
	if !errdefs.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "An image does not exist locally with the tag: "+reg.host+"/app:nope") {
		t.Errorf("push of a missing tag: %v", err)
	}
	_, err = c.Push(ctx, reg.host+"/app@"+digest.FromString("x").String(), PushOptions{})
	if !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("push of a digest reference: %v", err)
	}
	// A registry that refuses the manifest: the error says so.
	reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}`))
			return true
		}
		return false
	})
	_, err = c.Push(ctx, reg.host+"/app:a", PushOptions{})
	if err == nil || !strings.Contains(err.Error(), "manifest invalid") {
		t.Errorf("push refused by the registry: %v", err)
	}
	// rmi removes what push compressed.
	for _, n := range []string{reg.host + "/app:a", reg.host + "/app:b", reg.host + "/elsewhere:c"} {
		if _, err := s.RemoveImage(n, image.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if left := leftovers(t, s, root); len(left) != 0 {
		t.Errorf("after rmi of a pushed image: %v left", left)
	}
}
