package distribution

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/content"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/errdefs"
	"time"
)

var ctx = context.Background()

func TestPullSingleImage(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	l1 := mkLayer(t, map[string]string{"etc/os": "base\n", "bin/x": "x"})
	l2 := mkLayer(t, map[string]string{"app/hello": "hello\n"})
	img := mkImage(t, runtime.GOARCH, l1, l2)
	reg.putImage("team/app", "v1", img)
	s, _ := newStore(t)
	c := newClient(t, s, Config{})

	var rec recorder
	ref := reg.host + "/team/app:v1"
	got, err := c.Pull(ctx, ref, PullOptions{Progress: rec.add})
	if err != nil {
		t.Fatalf("Pull(%s): %v", ref, err)
	}
	if got.ID != img.id() {
		t.Errorf("image ID %s, want the config digest %s", got.ID, img.id())
	}
	if len(got.RepoTags) != 1 || got.RepoTags[0] != ref {
		t.Errorf("RepoTags %v, want [%s]", got.RepoTags, ref)
	}
	wantDigest := reg.host + "/team/app@" + img.digest().String()
	if len(got.RepoDigests) != 1 || got.RepoDigests[0] != wantDigest {
		t.Errorf("RepoDigests %v, want [%s]", got.RepoDigests, wantDigest)
	}
	if v := readLayerFile(t, s, got, "app/hello"); v != "hello\n" {
		t.Errorf("app/hello = %q", v)
	}
	if v := readLayerFile(t, s, got, "etc/os"); v != "base\n" {
		t.Errorf("etc/os = %q", v)
	}
	for _, want := range []string{"Pulling from team/app", "Pulling fs layer", "Downloading", "Verifying Checksum",
		"Download complete", "Extracting", "Pull complete", "Digest: " + img.digest().String(),
		"Status: Downloaded newer image for " + ref} {
		if !rec.has(want) {
			t.Errorf("progress lacks %q; got %q", want, rec.statuses())
		}
	}
	for _, p := range rec.lines {
		if p.Status == "Pulling fs layer" && p.ID != shortID(l1.gzDigest) && p.ID != shortID(l2.gzDigest) {
			t.Errorf("layer progress ID %q, want the short blob digest", p.ID)
		}
	}
	// Kept for push: the compressed blobs and the manifest; the tars are
	// not kept a second time, uncompressed, but read back from the gzip
	// forms, byte for byte.
	for _, d := range []digest.Digest{l1.gzDigest, l2.gzDigest, img.digest()} {
		if !s.Content().Exists(d) {
			t.Errorf("blob %s not kept", d)
		}
	}
	for _, d := range []digest.Digest{l1.diffID, l2.diffID} {
		if s.Content().Exists(d) {
			t.Errorf("layer %s is kept uncompressed besides its gzip form", d)
		}
		rc, size, err := s.OpenLayer(d)
		if err != nil {
			t.Fatalf("OpenLayer(%s): %v", d, err)
		}
		h := digest.SHA256.Digester()
		n, err := io.Copy(h.Hash(), rc)
		rc.Close()
		if err != nil || n != size || h.Digest() != d {
			t.Errorf("OpenLayer(%s): %d bytes (size says %d) hashing to %s, err %v", d, n, size, h.Digest(), err)
		}
	}

	// A second pull downloads nothing.
	reg.resetCounts()
	var rec2 recorder
	if _, err := c.Pull(ctx, ref, PullOptions{Progress: rec2.add}); err != nil {
		t.Fatal(err)
	}
	for _, l := range []tlayer{l1, l2} {
		if n := reg.blobGets("team/app", l.gzDigest); n != 0 {
			t.Errorf("second pull fetched layer %s %d times, want 0", shortID(l.gzDigest), n)
		}
	}
	if n := reg.blobGets("team/app", digest.FromBytes(img.config)); n != 0 {
		t.Errorf("second pull fetched the config %d times, want 0", n)
	}
	if !rec2.has("Already exists") || !rec2.has("Status: Image is up to date for "+ref) {
		t.Errorf("second pull progress %q: want Already exists and Image is up to date", rec2.statuses())
	}
	// By digest: also nothing, and the tag stays.
	if _, err := c.Pull(ctx, wantDigest, PullOptions{}); err != nil {
		t.Fatalf("pull by digest: %v", err)
	}
	if n := reg.blobGets("team/app", l1.gzDigest); n != 0 {
		t.Errorf("pull by digest fetched a layer")
	}
}

func TestPullMultiPlatformIndex(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	base := mkLayer(t, map[string]string{"etc/os": "base\n"})
	host := mkImage(t, runtime.GOARCH, base, mkLayer(t, map[string]string{"arch": runtime.GOARCH}))
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	foreign := mkImage(t, other, base, mkLayer(t, map[string]string{"arch": other}))
	reg.putImage("multi", host.digest().String(), host)
	reg.putImage("multi", foreign.digest().String(), foreign)
	// An attestation manifest, as BuildKit adds: never picked.
	att := mkImage(t, "unknown", mkLayer(t, map[string]string{"att": "x"}))
	reg.putImage("multi", att.digest().String(), att)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{
			foreign.desc(&ocispec.Platform{OS: "linux", Architecture: other}),
			att.desc(&ocispec.Platform{OS: "unknown", Architecture: "unknown"}),
			host.desc(&ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		}}
	ib, _ := json.Marshal(idx)
	reg.putManifest("multi", "latest", ib, ocispec.MediaTypeImageIndex)

	s, _ := newStore(t)
	c := newClient(t, s, Config{})
	ref := reg.host + "/multi"
	got, err := c.Pull(ctx, ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != host.id() {
		t.Errorf("picked image %s, want this host's %s (%s)", got.ID, host.id(), runtime.GOARCH)
	}
	if v := readLayerFile(t, s, got, "arch"); v != runtime.GOARCH {
		t.Errorf("arch file %q", v)
	}
	// RepoDigests names the index, as Docker does.
	if want := reg.host + "/multi@" + digest.FromBytes(ib).String(); len(got.RepoDigests) != 1 || got.RepoDigests[0] != want {
		t.Errorf("RepoDigests %v, want [%s]", got.RepoDigests, want)
	}
	if n := reg.blobGets("multi", att.layers[0].gzDigest); n != 0 {
		t.Errorf("the attestation's blob was fetched")
	}

	// --platform picks the other; the shared base layer is not fetched again.
	reg.resetCounts()
	plat := ocispec.Platform{OS: "linux", Architecture: other}
	got2, err := c.Pull(ctx, ref+":latest", PullOptions{Platform: &plat})
	if err != nil {
		t.Fatal(err)
	}
	if got2.ID != foreign.id() || got2.Config.Architecture != other {
		t.Errorf("with --platform %s got %s (%s), want %s", FormatPlatform(plat), got2.ID, got2.Config.Architecture, foreign.id())
	}
	if n := reg.blobGets("multi", base.gzDigest); n != 0 {
		t.Errorf("shared base layer fetched %d times, want 0", n)
	}
	// The tag moved to the other platform's image, as in Docker.
	if cur, _ := s.Get(ref); cur.ID != foreign.id() {
		t.Errorf("tag points at %s, want %s", cur.ID, foreign.id())
	}

	// No manifest for the platform: a clear error listing what there is.
	plat = ocispec.Platform{OS: "linux", Architecture: "s390x"}
	_, err = c.Pull(ctx, ref, PullOptions{Platform: &plat})
	if !errdefs.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "no matching manifest for linux/s390x") ||
		!strings.Contains(err.Error(), "linux/"+other) {
		t.Errorf("pull for s390x: %v; want not found naming linux/s390x and the offered platforms", err)
	}
}

func TestParsePlatform(t *testing.T) {
	for in, want := range map[string]string{"linux/amd64": "linux/amd64", "arm64": "linux/arm64",
		"linux/arm": "linux/arm/v7", "linux/arm/v6": "linux/arm/v6", "linux/x86_64": "linux/amd64", "linux/aarch64/8": "linux/arm64", "linux/arm64/v9": "linux/arm64/v9"} {
		p, err := ParsePlatform(in)
		if err != nil || FormatPlatform(p) != want {
			t.Errorf("ParsePlatform(%q) = %s, %v; want %s", in, FormatPlatform(p), err, want)
		}
	}
	for _, in := range []string{"", "linux/", "a/b/c/d"} {
		if _, err := ParsePlatform(in); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParsePlatform(%q) = %v, want invalid argument", in, err)
		}
	}
	// An arm/v6 image serves an arm/v7 host, not the other way round.
	v7, v6 := ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}
	if rank(v7, v6) == 0 || rank(v6, v7) != 0 || rank(v7, v7) <= rank(v7, v6) {
		t.Errorf("arm variant ranking wrong: v7←v6 %d, v6←v7 %d, v7←v7 %d", rank(v7, v6), rank(v6, v7), rank(v7, v7))
	}
}

func TestPullTamperedBlobStoresNothing(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name   string
		tamper func(b []byte) []byte
		want   string
	}{
		// The gzip stream still decodes; only the digest says it is wrong.
		{"flipped byte in the gzip header", func(b []byte) []byte { b = append([]byte(nil), b...); b[4] ^= 0xff; return b }, "digest mismatch"},
		// A corrupt deflate stream: the digest explains it.
		{"flipped byte in the data", func(b []byte) []byte { b = append([]byte(nil), b...); b[len(b)/2] ^= 0xff; return b }, "digest mismatch"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }, "manifest says"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newRegistry(t)
			l := mkLayer(t, map[string]string{"f": strings.Repeat("data ", 5000)})
			img := mkImage(t, runtime.GOARCH, l)
			reg.putImage("x", "v1", img)
			bad := tc.tamper(l.gz)
			reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+l.gzDigest.String()) {
					w.Header().Set("Content-Length", fmt.Sprint(len(bad)))
					w.Write(bad)
					return true
				}
				return false
			})
			s, root := newStore(t)
			c := newClient(t, s, Config{})
			_, err := c.Pull(ctx, reg.host+"/x:v1", PullOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), l.gzDigest.String()) {
				t.Fatalf("pull of a tampered layer: %v; want an error naming %s and %q", err, l.gzDigest, tc.want)
			}
			if left := leftovers(t, s, root); len(left) != 0 {
				t.Errorf("a failed pull left %v; want nothing", left)
			}
		})
	}
}

func TestPullDiffIDMismatchStoresNothing(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	l := mkLayer(t, map[string]string{"f": "real"})
	other := mkLayer(t, map[string]string{"f": "claimed"})
	img := mkImage(t, runtime.GOARCH, l)
	// The config claims another diff ID than the layer's content has.
	var cfg ocispec.Image
	json.Unmarshal(img.config, &cfg)
	cfg.RootFS.DiffIDs[0] = other.diffID
	img.config, _ = json.Marshal(cfg)
	var m ocispec.Manifest
	json.Unmarshal(img.manifest, &m)
	m.Config.Digest, m.Config.Size = digest.FromBytes(img.config), int64(len(img.config))
	img.manifest, _ = json.Marshal(m)
	img.blobs[0] = img.config
	reg.putImage("x", "v1", img)
	s, root := newStore(t)
	c := newClient(t, s, Config{})
	_, err := c.Pull(ctx, reg.host+"/x:v1", PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "diff_id") || !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("pull with a wrong diff_id: %v; want invalid argument naming the diff_id", err)
	}
	if left := leftovers(t, s, root); len(left) != 0 {
		t.Errorf("a failed pull left %v; want nothing", left)
	}
}

func TestPullBadManifests(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	l := mkLayer(t, map[string]string{"f": "x"})
	img := mkImage(t, runtime.GOARCH, l)
	reg.putImage("x", "good", img)
	serve := map[string]struct {
		body, contentType string
	}{
		"notjson":   {`{"schemaVersion": 2, "layers": [`, MediaTypeDockerManifest},
		"zstd":      {strings.Replace(string(img.manifest), image.MediaTypeDockerLayer, ocispec.MediaTypeImageLayerZstd, 1), MediaTypeDockerManifest},
		"oddlayer":  {strings.Replace(string(img.manifest), image.MediaTypeDockerLayer, "application/x-weird", 1), MediaTypeDockerManifest},
		"helm":      {strings.Replace(string(img.manifest), MediaTypeDockerConfig, "application/vnd.cncf.helm.config.v1+json", 1), MediaTypeDockerManifest},
		"schema1":   {`{"schemaVersion":1,"name":"x","tag":"schema1","fsLayers":[]}`, "application/vnd.docker.distribution.manifest.v1+prettyjws"},
		"other":     {`{"schemaVersion":2}`, "application/vnd.example.thing+json"},
		"baddigest": {strings.Replace(string(img.manifest), l.gzDigest.String(), "sha256:1234", 1), MediaTypeDockerManifest},
	}
	reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		for tag, m := range serve {
			if r.URL.Path == "/v2/x/manifests/"+tag {
				w.Header().Set("Content-Type", m.contentType)
				w.Write([]byte(m.body))
				return true
			}
		}
		return false
	})
	s, root := newStore(t)
	c := newClient(t, s, Config{})
	for tag, want := range map[string]struct {
		class error
		text  string
	}{
		"notjson":   {errdefs.ErrInvalidArgument, "invalid manifest JSON"},
		"zstd":      {errdefs.ErrNotImplemented, "zstd"},
		"oddlayer":  {errdefs.ErrNotImplemented, `unsupported media type "application/x-weird"`},
		"helm":      {errdefs.ErrNotImplemented, "not a container image"},
		"schema1":   {errdefs.ErrNotImplemented, "schema 1"},
		"other":     {errdefs.ErrNotImplemented, `unsupported media type "application/vnd.example.thing+json"`},
		"baddigest": {errdefs.ErrInvalidArgument, "invalid digest"},
		"missing":   {errdefs.ErrNotFound, "manifest for " + reg.host + "/x:missing not found: manifest unknown"},
	} {
		_, err := c.Pull(ctx, reg.host+"/x:"+tag, PullOptions{})
		if !errdefs.Is(err, want.class) || !strings.Contains(err.Error(), want.text) {
			t.Errorf("pull x:%s: %v; want %v containing %q", tag, err, want.class, want.text)
		}
	}
	_, err := c.Pull(ctx, reg.host+"/nosuchrepo:v1", PullOptions{})
	if !errdefs.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "repository "+reg.host+"/nosuchrepo not found: name unknown") {
		t.Errorf("pull of a missing repository: %v", err)
	}
	// Pull by a digest the registry answers with other content.
	_, err = c.Pull(ctx, reg.host+"/x@"+digest.FromString("other").String(), PullOptions{})
	if err == nil {
		t.Errorf("pull by an unknown digest succeeded")
	}
	if left := leftovers(t, s, root); len(left) != 0 {
		t.Errorf("failed pulls left %v; want nothing", left)
	}
}

func TestPullResumesAfterFailure(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	var layers []tlayer
	for i := 0; i < 4; i++ {
		layers = append(layers, mkLayer(t, map[string]string{fmt.Sprintf("l%d", i): strings.Repeat(fmt.Sprint(i), 10000)}))
	}
	img := mkImage(t, runtime.GOARCH, layers...)
	reg.putImage("r", "v1", img)
	broken := layers[2].gzDigest
	var mu sync.Mutex
	fail := true
	reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if fail && strings.HasSuffix(r.URL.Path, "/blobs/"+broken.String()) {
			http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}`, http.StatusInternalServerError)
			return true
		}
		return false
	})
	s, _ := newStore(t)
	c := newClient(t, s, Config{MaxConcurrentDownloads: 1})
	ref := reg.host + "/r:v1"
	_, err := c.Pull(ctx, ref, PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), broken.String()) {
		t.Fatalf("pull with a failing layer: %v; want the registry's error naming the layer", err)
	}
	if _, err := s.Get(ref); !errdefs.Is(err, errdefs.ErrNotFound) {
		t.Errorf("after a failed pull the image exists: %v", err)
	}
	chain := image.ChainIDs([]digest.Digest{layers[0].diffID, layers[1].diffID, layers[2].diffID, layers[3].diffID})
	for i := 0; i < 2; i++ {
		if !s.HasLayer(layers[i].diffID, chain[i]) {
			t.Errorf("verified layer %d not kept for a retry", i)
		}
	}
	if s.Snapshots().HasLayer(chain[2]) {
		t.Errorf("the failed layer is unpacked")
	}

	// The retry fetches only what is missing.
	mu.Lock()
	fail = false
	mu.Unlock()
	reg.resetCounts()
	if _, err := c.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		want := 0
		if i >= 2 {
			want = 1
		}
		if n := reg.blobGets("r", l.gzDigest); n != want {
			t.Errorf("retry fetched layer %d %d times, want %d", i, n, want)
		}
	}

	// A failed pull's layers go with image prune if no image came to use them.
	reg2 := newRegistry(t)
	orphan := mkLayer(t, map[string]string{"orphan": "o"})
	missing := mkLayer(t, map[string]string{"never": "n"})
	img2 := mkImage(t, runtime.GOARCH, orphan, missing)
	reg2.putBlob("o", img2.config)
	reg2.putBlob("o", orphan.gz)
	reg2.putManifest("o", "v1", img2.manifest, img2.mediaType)
	if _, err := c.Pull(ctx, reg2.host+"/o:v1", PullOptions{}); err == nil {
		t.Fatal("pull with a missing blob succeeded")
	}
	before, _ := s.Snapshots().Layers()
	deleted, err := s.PruneLayers()
	if err != nil || len(deleted) != 1 {
		t.Errorf("PruneLayers = %v, %v; want the one orphan", deleted, err)
	}
	after, _ := s.Snapshots().Layers()
	if len(after) != len(before)-1 || s.Content().Exists(orphan.gzDigest) || s.Content().Exists(orphan.diffID) {
		t.Errorf("orphan not removed: layers %d → %d", len(before), len(after))
	}
	if img, err := s.Get(ref); err != nil || len(img.Layers) != 4 {
		t.Errorf("PruneLayers touched a used image: %v", err)
	} else if _, err := s.LayerDirs(img); err != nil {
		t.Errorf("PruneLayers removed a used layer: %v", err)
	}
}

func TestPullRetriesBrokenTransfer(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	l := mkLayer(t, map[string]string{"big": strings.Repeat("0123456789", 20000)})
	img := mkImage(t, runtime.GOARCH, l)
	reg.putImage("b", "v1", img)
	var mu sync.Mutex
	breaks := 1
	reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if breaks > 0 && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+l.gzDigest.String()) {
			breaks--
			// Promise the whole blob, send half, hang up.
			w.Header().Set("Content-Length", fmt.Sprint(len(l.gz)))
			w.Write(l.gz[:len(l.gz)/2])
			return true
		}
		return false
	})
	s, _ := newStore(t)
	c := newClient(t, s, Config{})
	var rec recorder
	if _, err := c.Pull(ctx, reg.host+"/b:v1", PullOptions{Progress: rec.add}); err != nil {
		t.Fatalf("pull over a transfer that broke once: %v", err)
	}
	if n := reg.blobGets("b", l.gzDigest); n != 2 {
		t.Errorf("layer fetched %d times, want 2 (one broken, one retry)", n)
	}
	if !rec.has("Retrying") {
		t.Errorf("no Retrying in the progress: %q", rec.statuses())
	}
}

func TestConcurrentPullsShareDownloads(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	base := mkLayer(t, map[string]string{"base": strings.Repeat("b", 100000)})
	a := mkImage(t, runtime.GOARCH, base, mkLayer(t, map[string]string{"a": "a"}))
	b := mkImage(t, runtime.GOARCH, base, mkLayer(t, map[string]string{"b": "b"}))
	reg.putImage("a", "v1", a)
	reg.putImage("b", "v1", b)
	s, _ := newStore(t)
	c := newClient(t, s, Config{})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		i := i
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Pull(ctx, reg.host+"/"+string(rune('a'+i%2))+":v1", PullOptions{})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.blobGets("a", base.gzDigest) + reg.blobGets("b", base.gzDigest); n != 1 {
		t.Errorf("shared layer downloaded %d times by concurrent pulls, want 1", n)
	}
	// rmi of one leaves the other whole; rmi of both leaves nothing.
	if _, err := s.RemoveImage(reg.host+"/a:v1", image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	bi, err := s.Get(reg.host + "/b:v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LayerDirs(bi); err != nil || !s.Content().Exists(base.gzDigest) {
		t.Errorf("rmi of a removed b's shared layer: %v", err)
	}
	if _, err := s.RemoveImage(reg.host+"/b:v1", image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	var blobs []string
	s.Content().Walk(func(i content.Info) error { blobs = append(blobs, i.Digest.String()); return nil })
	if len(blobs) != 0 {
		t.Errorf("after removing every pulled image, blobs remain: %v", blobs)
	}
}

// A layer kept here under another chain (the same layer over another
// base) is unpacked from the kept blob, not downloaded.
func TestPullReusesKeptLayerElsewhereInTheStack(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	shared := mkLayer(t, map[string]string{"shared": "s"})
	base := mkLayer(t, map[string]string{"base": "b"})
	a := mkImage(t, runtime.GOARCH, shared)
	b := mkImage(t, runtime.GOARCH, base, shared)
	reg.putImage("a", "v1", a)
	reg.putImage("b", "v1", b)
	s, _ := newStore(t)
	c := newClient(t, s, Config{})
	if _, err := c.Pull(ctx, reg.host+"/a:v1", PullOptions{}); err != nil {
		t.Fatal(err)
	}
	reg.resetCounts()
	got, err := c.Pull(ctx, reg.host+"/b:v1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets("b", shared.gzDigest); n != 0 {
		t.Errorf("layer kept here was downloaded %d times", n)
	}
	if n := reg.blobGets("b", base.gzDigest); n != 1 {
		t.Errorf("new layer downloaded %d times, want 1", n)
	}
	if v := readLayerFile(t, s, got, "shared"); v != "s" {
		t.Errorf("shared = %q", v)
	}
}

// A download slot is given back once the layer's blob has arrived: with
// one slot, the second layer's download starts while the first is still
// being finished (here held up in its progress report, which comes after
// it is stored).
func TestPullFreesDownloadSlotWhenBlobIsIn(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	l1 := mkLayer(t, map[string]string{"one": strings.Repeat("1", 300000)})
	l2 := mkLayer(t, map[string]string{"two": strings.Repeat("2", 300000)})
	img := mkImage(t, runtime.GOARCH, l1, l2)
	reg.putImage("slots", "v1", img)
	secondGet := make(chan struct{})
	var once sync.Once
	reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+l2.gzDigest.String()) {
			once.Do(func() { close(secondGet) })
		}
		return false
	})
	s, _ := newStore(t)
	c := newClient(t, s, Config{MaxConcurrentDownloads: 1})
	var mu sync.Mutex
	var waited, timedOut bool
	_, err := c.Pull(ctx, reg.host+"/slots:v1", PullOptions{Progress: func(p Progress) {
		if p.ID != shortID(l1.gzDigest) || p.Status != "Verifying Checksum" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		waited = true
		select {
		case <-secondGet:
		case <-time.After(5 * time.Second):
			timedOut = true
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !waited || timedOut {
		t.Errorf("the second layer's download did not start while the first was being finished (reported: %v, timed out: %v)", waited, timedOut)
	}
}
