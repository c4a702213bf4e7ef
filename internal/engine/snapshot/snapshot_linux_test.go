package snapshot

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/berth/berth/internal/engine/archive"
	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: overlay mounts need root")
	}
}

// layer builds a tar from name→content ("" with trailing / = dir).
func layer(t *testing.T, files ...string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		name, body := files[i], files[i+1]
		h := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(body))}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

func apply(t *testing.T, s *Store, chain digest.Digest, tarball []byte) string {
	t.Helper()
	created, err := s.ApplyLayer(chain, func(dir string) (int64, error) {
		return archive.Apply(dir, bytes.NewReader(tarball))
	})
	if err != nil || !created {
		t.Fatalf("ApplyLayer: created %v, %v", created, err)
	}
	return s.LayerDir(chain)
}

func ls(t *testing.T, dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestOverlayWhiteoutsAndRemount(t *testing.T) {
	needRoot(t)
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := digest.FromString("l1"), digest.FromString("l2")
	l1 := apply(t, s, c1, layer(t, "etc/", "", "etc/keep", "k", "etc/gone", "g", "cache/", "", "cache/old", "o"))
	l2 := apply(t, s, c2, layer(t, "etc/.wh.gone", "", "cache/", "", "cache/.wh..wh..opq", "", "cache/new", "n"))
	// Applying again is a no-op.
	if created, err := s.ApplyLayer(c1, func(string) (int64, error) { t.Fatal("apply ran twice"); return 0, nil }); created || err != nil {
		t.Errorf("second ApplyLayer: created %v, %v; want false, nil", created, err)
	}
	if n, _ := s.LayerSize(c1); n != 3 {
		t.Errorf("LayerSize = %d, want 3", n)
	}
	rootfs, err := s.Prepare("c1", []string{l2, l1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Remove("c1") })
	if !s.Mounted("c1") {
		t.Fatal("Mounted = false after Prepare")
	}
	if got := strings.Join(ls(t, filepath.Join(rootfs, "etc")), ","); got != "keep" {
		t.Errorf("etc = %q, want keep (gone whited out)", got)
	}
	if got := strings.Join(ls(t, filepath.Join(rootfs, "cache")), ","); got != "new" {
		t.Errorf("cache = %q, want new (opaque)", got)
	}
	os.WriteFile(filepath.Join(rootfs, "written"), []byte("data"), 0o644)
	if u, err := s.Usage("c1"); err != nil || u.Inodes < 2 || u.Size < 4 {
		t.Errorf("Usage = %+v, %v; want the written file counted", u, err)
	}
	if err := s.Unmount("c1"); err != nil || s.Mounted("c1") {
		t.Fatalf("Unmount: %v, mounted %v", err, s.Mounted("c1"))
	}
	// A new Store over the same root (daemon restart) remounts on demand.
	s2, _ := New(s.Root())
	rootfs2, err := s2.Mount("c1")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs2, "written")); string(b) != "data" {
		t.Errorf("after remount written = %q, want data", b)
	}
	if _, err := s2.Prepare("c1", []string{l1}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("Prepare with other lowers: got %v, want ErrAlreadyExists", err)
	}
	if err := s2.Remove("c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "containers", "c1")); !os.IsNotExist(err) {
		t.Errorf("container dir still exists after Remove: %v", err)
	}
	if err := s.RemoveLayer(c1); err != nil || s.HasLayer(c1) {
		t.Errorf("RemoveLayer: %v, HasLayer %v", err, s.HasLayer(c1))
	}
}

func TestManyLayers(t *testing.T) {
	needRoot(t)
	s, _ := New(t.TempDir())
	var lowers []string
	for i := 0; i < 100; i++ {
		d := apply(t, s, digest.FromString(fmt.Sprint(i)), layer(t, fmt.Sprintf("f%03d", i), "x"))
		lowers = append([]string{d}, lowers...)
	}
	if n := len(strings.Join(lowers, ":")); n < os.Getpagesize() {
		t.Fatalf("lower dirs take %d bytes, want more than a page to test the fallback", n)
	}
	rootfs, err := s.Prepare("many", lowers)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove("many")
	if n := len(ls(t, rootfs)); n != 100 {
		t.Errorf("rootfs has %d files, want 100", n)
	}
}

func TestZeroLayersAndBadInput(t *testing.T) {
	needRoot(t)
	s, _ := New(t.TempDir())
	rootfs, err := s.Prepare("empty", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove("empty")
	if err := os.WriteFile(filepath.Join(rootfs, "f"), nil, 0o644); err != nil {
		t.Errorf("write into empty rootfs: %v", err)
	}
	for _, id := range []string{"", "../x", "a/b", ".hidden"} {
		if _, err := s.Prepare(id, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Prepare(%q): got %v, want ErrInvalidArgument", id, err)
		}
	}
	if _, err := s.Prepare("x", []string{"/nonexistent/dir"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Prepare with missing lower: got %v, want ErrNotFound", err)
	}
	if _, err := s.Mount("missing"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Mount(missing): got %v, want ErrNotFound", err)
	}
	// A failed ApplyLayer leaves nothing.
	c := digest.FromString("bad")
	if _, err := s.ApplyLayer(c, func(string) (int64, error) { return 0, errors.New("boom") }); err == nil || s.HasLayer(c) {
		t.Errorf("failed ApplyLayer: err %v, HasLayer %v", err, s.HasLayer(c))
	}
	if got := ls(t, filepath.Join(s.Root(), "layers")); len(got) != 0 {
		t.Errorf("layers dir holds %v after failed apply, want nothing", got)
	}
}
