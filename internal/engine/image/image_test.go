package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth/berth/internal/engine/content"
	"github.com/berth/berth/internal/errdefs"
)

func needRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: unpacking layers and mounting overlays needs root")
	}
}

var (
	testImagesOnce sync.Once
	testImagesDir  string
	testImagesErr  error
)

// testImages builds the archives of tests/testimages (an independent
// writer) once per test binary.
func testImages(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("skipping: /bin/busybox missing (apt-get install -y busybox-static)")
	}
	testImagesOnce.Do(func() {
		testImagesDir, testImagesErr = os.MkdirTemp("", "berth-testimages-")
		if testImagesErr != nil {
			return
		}
		root, _ := filepath.Abs("../../..")
		cmd := exec.Command("go", "run", "./tests/testimages", "-out", testImagesDir)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			testImagesErr = fmt.Errorf("go run ./tests/testimages: %v\n%s", err, out)
		}
	})
	if testImagesErr != nil {
		t.Fatal(testImagesErr)
	}
	return testImagesDir
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func load(t *testing.T, s *Store, path string) []Loaded {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := s.Load(f, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", filepath.Base(path), err)
	}
	return l
}

func tagsOf(s *Store) map[string]string {
	m := map[string]string{}
	for _, img := range s.List() {
		for _, t := range img.RepoTags {
			m[t] = img.ID
		}
		if len(img.RepoTags) == 0 {
			m["<none>:"+img.ID] = img.ID
		}
	}
	return m
}

func TestLoadSaveReload(t *testing.T) {
	needRoot(t)
	dir := testImages(t)
	s := newStore(t)
	for _, f := range []string{"busybox-docker.tar", "busybox-oci.tar", "layered.tar", "cfg.tar"} {
		load(t, s, filepath.Join(dir, f))
	}
	tags := tagsOf(s)
	for _, want := range []string{"busybox:latest", "busybox:oci", "layered:latest", "cfg:latest"} {
		if tags[want] == "" {
			t.Errorf("after load: no image %s; have %v", want, tags)
		}
	}
	if tags["busybox:latest"] != tags["busybox:oci"] {
		t.Errorf("docker and OCI busybox got IDs %s and %s, want the same (same config)", tags["busybox:latest"], tags["busybox:oci"])
	}
	if n := len(s.List()); n != 3 {
		t.Errorf("List has %d images, want 3", n)
	}
	// busybox and cfg share their one layer: one snapshot.
	layers, _ := s.Snapshots().Layers()
	if len(layers) != 3 { // busybox base, layered's two
		t.Errorf("got %d unpacked layers, want 3 (shared base unpacked once)", len(layers))
	}

	cfg, err := s.Get("cfg")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config.Config
	if strings.Join(c.Entrypoint, " ") != "/bin/sh -c" || c.WorkingDir != "/home/user" || c.User != "1000" ||
		c.Labels["berth.test"] != "cfg" || c.StopSignal != "SIGUSR1" || len(c.Env) != 2 {
		t.Errorf("cfg config = %+v, want the testimages settings", c)
	}
	if cfg.Size <= 0 || cfg.Created.IsZero() || len(cfg.Layers) != 1 {
		t.Errorf("cfg: size %d created %v layers %d, want >0, set, 1", cfg.Size, cfg.Created, len(cfg.Layers))
	}

	// The layered image's overlay shows whiteouts and the opaque dir.
	layered, _ := s.Get("layered:latest")
	dirs, err := s.LayerDirs(layered)
	if err != nil || len(dirs) != 2 {
		t.Fatalf("LayerDirs = %v, %v; want 2 dirs", dirs, err)
	}
	rootfs, err := s.Snapshots().Prepare("ctr1", dirs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Snapshots().Remove("ctr1")
	ents, _ := os.ReadDir(filepath.Join(rootfs, "data"))
	if len(ents) != 1 || ents[0].Name() != "c" {
		t.Errorf("/data holds %v, want only c (opaque)", ents)
	}
	for p, want := range map[string]bool{"etc/removeme": false, "keep": true, "added": true, "bin/sh": true, "etc/passwd": true} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", p, err == nil, want)
		}
	}

	// Save everything, load into a fresh store, compare.
	var buf bytes.Buffer
	if err := s.Save(&buf, []string{"busybox:latest", "busybox:oci", "layered", "cfg:latest"}); err != nil {
		t.Fatal(err)
	}
	saved := buf.Bytes()
	s2 := newStore(t)
	if _, err := s2.Load(bytes.NewReader(saved), nil); err != nil {
		t.Fatalf("reload saved archive: %v", err)
	}
	got, want := tagsOf(s2), tagsOf(s)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reloaded names → IDs = %v, want %v", got, want)
	}
	// The saved archive is also a valid OCI layout: load only that half.
	s3 := newStore(t)
	if _, err := s3.Load(bytes.NewReader(dropEntries(t, saved, "manifest.json", "repositories")), nil); err != nil {
		t.Fatalf("reload OCI half: %v", err)
	}
	if got := tagsOf(s3); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("OCI reload names → IDs = %v, want %v", got, want)
	}
	// gzip-compressed archives load too.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(saved)
	zw.Close()
	s4 := newStore(t)
	if _, err := s4.Load(&gz, nil); err != nil {
		t.Fatalf("load .tar.gz: %v", err)
	}
	// Save by ID is untagged, like Docker.
	buf.Reset()
	if err := s.Save(&buf, []string{tags["cfg:latest"][7:19]}); err != nil {
		t.Fatal(err)
	}
	s5 := newStore(t)
	l, err := s5.Load(&buf, nil)
	if err != nil || len(l) != 1 || l[0].ID != tags["cfg:latest"] || len(l[0].Names) != 0 {
		t.Errorf("load of save-by-ID = %+v, %v; want one untagged %s", l, err, tags["cfg:latest"])
	}

	// A reopened store (daemon restart) has the same images.
	s6, err := New(s.root)
	if err != nil {
		t.Fatal(err)
	}
	if got := tagsOf(s6); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reopened store = %v, want %v", got, want)
	}
}

// dropEntries rewrites a tar without the named entries.
func dropEntries(t *testing.T, data []byte, names ...string) []byte {
	return rewrite(t, data, func(h *tar.Header, b []byte) ([]byte, bool) {
		for _, n := range names {
			if h.Name == n {
				return nil, false
			}
		}
		return b, true
	})
}

func rewrite(t *testing.T, data []byte, f func(*tar.Header, []byte) ([]byte, bool)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		nb, keep := f(h, b)
		if !keep {
			continue
		}
		h.Size = int64(len(nb))
		tw.WriteHeader(h)
		tw.Write(nb)
	}
	tw.Close()
	return out.Bytes()
}

func TestLoadCorruptStoresNothing(t *testing.T) {
	needRoot(t)
	dir := testImages(t)
	legacy, _ := os.ReadFile(filepath.Join(dir, "busybox-docker.tar"))
	blobs, _ := os.ReadFile(filepath.Join(dir, "layered.tar"))
	oci, _ := os.ReadFile(filepath.Join(dir, "busybox-oci.tar"))
	tests := []struct {
		name  string
		data  []byte
		want  error
		entry string // the error must name this
	}{
		{"truncated", legacy[:len(legacy)/2], errdefs.ErrInvalidArgument, "layer.tar"},
		{"not a tar", []byte("hello, this is not an archive at all"), errdefs.ErrInvalidArgument, ""},
		{"empty", nil, errdefs.ErrInvalidArgument, "manifest.json"},
		{"legacy layer corrupted", rewrite(t, legacy, func(h *tar.Header, b []byte) ([]byte, bool) {
			if strings.HasSuffix(h.Name, "layer.tar") {
				b = append([]byte(nil), b...)
				b[600] ^= 1 // inside the first entry's content
			}
			return b, true
		}), errdefs.ErrInvalidArgument, "layer.tar"},
		{"legacy layer corrupted, fresh store", rewrite(t, legacy, func(h *tar.Header, b []byte) ([]byte, bool) {
			if strings.HasSuffix(h.Name, "layer.tar") {
				b = append([]byte(nil), b...)
				b[600] ^= 1
			}
			return b, true
		}), errdefs.ErrInvalidArgument, "layer.tar"},
		{"blob digest mismatch", rewrite(t, blobs, func(h *tar.Header, b []byte) ([]byte, bool) {
			if h.Size > 4096 && strings.HasPrefix(h.Name, "blobs/sha256/") {
				b = append([]byte(nil), b...)
				b[700] ^= 1
			}
			return b, true
		}), errdefs.ErrInvalidArgument, "blobs/sha256/"},
		{"missing layer", dropEntries(t, blobs, func() string {
			var m []dockerManifestEntry
			rewrite(t, blobs, func(h *tar.Header, b []byte) ([]byte, bool) {
				if h.Name == "manifest.json" {
					json.Unmarshal(b, &m)
				}
				return b, true
			})
			return m[0].Layers[1]
		}()), errdefs.ErrInvalidArgument, "manifest.json"},
		{"bad manifest json", rewrite(t, blobs, func(h *tar.Header, b []byte) ([]byte, bool) {
			if h.Name == "manifest.json" {
				return []byte("[{"), true
			}
			return b, true
		}), errdefs.ErrInvalidArgument, "manifest.json"},
		{"bad repo tag", rewrite(t, blobs, func(h *tar.Header, b []byte) ([]byte, bool) {
			if h.Name == "manifest.json" {
				return bytes.Replace(b, []byte("layered:latest"), []byte("Layered:latest"), 1), true
			}
			return b, true
		}), errdefs.ErrInvalidArgument, "manifest.json"},
		{"oci missing blob", rewrite(t, oci, func(h *tar.Header, b []byte) ([]byte, bool) {
			return b, !(strings.HasPrefix(h.Name, "blobs/") && h.Size > 100000)
		}), errdefs.ErrInvalidArgument, "blobs/sha256/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			// A "fresh store" case starts empty, so its layers are unpacked and then rolled back.
			if !strings.HasSuffix(tt.name, "fresh store") {
				load(t, s, filepath.Join(dir, "cfg.tar")) // something already stored
			}
			before := tagsOf(s)
			layersBefore, _ := s.Snapshots().Layers()
			countBlobs := func() int {
				n := 0
				s.Content().Walk(func(content.Info) error { n++; return nil })
				return n
			}
			blobsBefore := countBlobs()
			_, err := s.Load(bytes.NewReader(tt.data), nil)
			if err == nil {
				t.Fatal("got no error")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			if tt.entry != "" && !strings.Contains(err.Error(), tt.entry) {
				t.Errorf("got %q, want it to name %q", err, tt.entry)
			}
			if got := tagsOf(s); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Errorf("images after failed load = %v, want %v", got, before)
			}
			if l, _ := s.Snapshots().Layers(); len(l) != len(layersBefore) {
				t.Errorf("%d layers after failed load, want %d", len(l), len(layersBefore))
			}
			if n := countBlobs(); n != blobsBefore {
				t.Errorf("%d blobs after failed load, want %d", n, blobsBefore)
			}
			if ents, _ := os.ReadDir(filepath.Join(s.root, "tmp")); len(ents) != 0 {
				t.Errorf("tmp holds %d entries after failed load, want 0", len(ents))
			}
		})
	}
}
