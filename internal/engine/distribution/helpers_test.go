package distribution

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/content"
	"github.com/berth/berth/internal/engine/image"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: unpacking layers needs root")
	}
}

// tlayer is a test layer: its tar, gzip form and digests.
type tlayer struct {
	tar, gz  []byte
	diffID   digest.Digest
	gzDigest digest.Digest
}

func mkLayer(t testing.TB, files map[string]string) tlayer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	mt := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range names {
		if d := filepath.Dir(n); d != "." {
			tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt})
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[n])), ModTime: mt}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(buf.Bytes())
	zw.Close()
	return tlayer{tar: buf.Bytes(), gz: gz.Bytes(), diffID: digest.FromBytes(buf.Bytes()), gzDigest: digest.FromBytes(gz.Bytes())}
}

// timage is a test image as a registry holds it.
type timage struct {
	config, manifest []byte
	mediaType        string
	layers           []tlayer
	blobs            [][]byte // config and layer blobs
}

func (i timage) id() string            { return digest.FromBytes(i.config).String() }
func (i timage) digest() digest.Digest { return digest.FromBytes(i.manifest) }
func (i timage) desc(p *ocispec.Platform) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: i.mediaType, Digest: i.digest(), Size: int64(len(i.manifest)), Platform: p}
}

// mkImage builds a Docker schema 2 image of gzip layers for arch.
func mkImage(t testing.TB, arch string, layers ...tlayer) timage {
	t.Helper()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: arch},
		Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}, RootFS: ocispec.RootFS{Type: "layers"}}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
	}
	cb, _ := json.Marshal(cfg)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: MediaTypeDockerManifest,
		Config: ocispec.Descriptor{MediaType: MediaTypeDockerConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}}
	img := timage{config: cb, mediaType: MediaTypeDockerManifest, layers: layers, blobs: [][]byte{cb}}
	for _, l := range layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: image.MediaTypeDockerLayer, Digest: l.gzDigest, Size: int64(len(l.gz))})
		img.blobs = append(img.blobs, l.gz)
	}
	img.manifest, _ = json.Marshal(m)
	return img
}

// testRegistry is go-containerregistry's in-memory registry behind a
// counting, fault-injecting wrapper.
type testRegistry struct {
	t    testing.TB
	srv  *httptest.Server
	host string

	mu    sync.Mutex
	count map[string]int // "GET /v2/…" → requests
	// hook, if set, may answer a request itself (returning true).
	hook func(w http.ResponseWriter, r *http.Request) bool
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr := &testRegistry{t: t, count: map[string]int{}}
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.count[r.Method+" "+r.URL.Path]++
		hook := tr.hook
		tr.mu.Unlock()
		if hook != nil && hook(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	u, _ := url.Parse(tr.srv.URL)
	tr.host = u.Host
	return tr
}

func (r *testRegistry) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	r.mu.Lock()
	r.hook = h
	r.mu.Unlock()
}

func (r *testRegistry) requests(method, path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[method+" "+path]
}

// blobGets counts GETs of blob d in repo.
func (r *testRegistry) blobGets(repo string, d digest.Digest) int {
	return r.requests("GET", "/v2/"+repo+"/blobs/"+d.String())
}

func (r *testRegistry) resetCounts() {
	r.mu.Lock()
	r.count = map[string]int{}
	r.mu.Unlock()
}

// putBlob uploads b monolithically.
func (r *testRegistry) putBlob(repo string, b []byte) {
	r.t.Helper()
	u := r.srv.URL + "/v2/" + repo + "/blobs/uploads/?digest=" + digest.FromBytes(b).String()
	resp, err := http.Post(u, "application/octet-stream", bytes.NewReader(b))
	if err != nil || resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("test registry: blob upload: %v %v", err, resp)
	}
	resp.Body.Close()
}

func (r *testRegistry) putManifest(repo, ref string, b []byte, mediaType string) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, r.srv.URL+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(b))
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		body := ""
		if resp != nil {
			bb, _ := io.ReadAll(resp.Body)
			body = string(bb)
		}
		r.t.Fatalf("test registry: manifest upload: %v %v %s", err, resp, body)
	}
	resp.Body.Close()
}

// putImage uploads img's blobs and manifest as repo:tag.
func (r *testRegistry) putImage(repo, tag string, img timage) {
	r.t.Helper()
	for _, b := range img.blobs {
		r.putBlob(repo, b)
	}
	r.putManifest(repo, tag, img.manifest, img.mediaType)
}

func newStore(t testing.TB) (*image.Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := image.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func newClient(t testing.TB, s *image.Store, cfg Config) *Client {
	t.Helper()
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 10 * time.Millisecond
	}
	c, err := New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// recorder collects progress.
type recorder struct {
	mu    sync.Mutex
	lines []Progress
}

func (r *recorder) add(p Progress) {
	r.mu.Lock()
	r.lines = append(r.lines, p)
	r.mu.Unlock()
}

func (r *recorder) statuses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.lines {
		out = append(out, p.Status)
	}
	return out
}

func (r *recorder) has(status string) bool {
	for _, s := range r.statuses() {
		if strings.HasPrefix(s, status) {
			return true
		}
	}
	return false
}

// dialTo is a transport that sends every connection to addr, whatever
// host the request names (to give a loopback test server another name).
func dialTo(addr string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// readLayerFile reads a file of the unpacked layer stack of img.
func readLayerFile(t testing.TB, s *image.Store, img *image.Image, name string) string {
	t.Helper()
	dirs, err := s.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs { // top-most first
		if b, err := os.ReadFile(filepath.Join(d, name)); err == nil {
			return string(b)
		}
	}
	t.Fatalf("%s: in no layer of %s", name, img.ID)
	return ""
}

// leftovers lists what the store at root holds: images, unpacked layers,
// blobs, and ingest or staging leftovers.
func leftovers(t testing.TB, s *image.Store, root string) []string {
	t.Helper()
	var out []string
	for _, img := range s.List() {
		out = append(out, "image "+img.ID)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "snapshots", "layers"))
	for _, e := range ents {
		out = append(out, "layer dir "+e.Name())
	}
	s.Content().Walk(func(i content.Info) error {
		out = append(out, "blob "+i.Digest.String())
		return nil
	})
	ents, _ = os.ReadDir(filepath.Join(root, "content", "ingest"))
	for _, e := range ents {
		out = append(out, "ingest "+e.Name())
	}
	return out
}
