package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth/berth/internal/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func rootfsTar(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

func importImage(t *testing.T, s *Store, ref string, files map[string]string, label string) *Image {
	t.Helper()
	img, err := s.Import(bytes.NewReader(rootfsTar(t, files)), ref, ocispec.ImageConfig{Cmd: []string{"sh"}, Labels: map[string]string{"l": label}})
	if err != nil {
		t.Fatalf("Import(%q): %v", ref, err)
	}
	return img
}

func TestImportGet(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	img := importImage(t, s, "imp:1", map[string]string{"hello": "world"}, "a")
	if len(img.Layers) != 1 || img.Size != 5 || len(img.RepoTags) != 1 || img.RepoTags[0] != "imp:1" {
		t.Errorf("imported image = %+v, want 1 layer of size 5 tagged imp:1", img)
	}
	dirs, err := s.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dirs[0], "hello")); string(b) != "world" {
		t.Errorf("layer file hello = %q, want world", b)
	}
	hex := strings.TrimPrefix(img.ID, "sha256:")
	for _, ref := range []string{"imp:1", "docker.io/library/imp:1", img.ID, hex, hex[:12], hex[:1], "sha256:" + hex[:5]} {
		got, err := s.Get(ref)
		if err != nil || got.ID != img.ID {
			t.Errorf("Get(%q) = %v, %v; want %s", ref, got, err, img.ID)
		}
	}
	for ref, want := range map[string]error{"imp": errdefs.ErrNotFound, "imp:2": errdefs.ErrNotFound, "Imp:1": errdefs.ErrInvalidArgument, "": errdefs.ErrInvalidArgument} {
		if _, err := s.Get(ref); !errors.Is(err, want) {
			t.Errorf("Get(%q): got %v, want %v", ref, err, want)
		}
	}
	// An empty tar still makes a working (one empty layer) image.
	empty, err := s.Import(bytes.NewReader(nil), "", ocispec.ImageConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if len(empty.RepoTags) != 0 {
		t.Errorf("untagged import has tags %v", empty.RepoTags)
	}
	if _, err := s.Import(bytes.NewReader([]byte("not a tar at all, just some text")), "bad:1", ocispec.ImageConfig{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Import(garbage): got %v, want ErrInvalidArgument", err)
	}
	if _, err := s.Get("bad:1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("failed import stored bad:1: %v", err)
	}
	if _, err := s.Import(bytes.NewReader(nil), "Bad", ocispec.ImageConfig{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Import(bad name): got %v, want ErrInvalidArgument", err)
	}
}

func TestAmbiguousPrefix(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	byFirst := map[byte][]string{}
	// 17 images: two must share their first hex digit.
	for i := 0; i < 17; i++ {
		img := importImage(t, s, "", map[string]string{"f": "x"}, fmt.Sprint(i))
		h := strings.TrimPrefix(img.ID, "sha256:")
		byFirst[h[0]] = append(byFirst[h[0]], img.ID)
	}
	for c, ids := range byFirst {
		if len(ids) < 2 {
			continue
		}
		if _, err := s.Get(string(c)); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "ambiguous") {
			t.Errorf("Get(%q) with %d matches: got %v, want an ambiguous ErrInvalidArgument", c, len(ids), err)
		}
		return
	}
	t.Fatal("no shared first digit among 17 IDs")
}

func TestTagRemove(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	a := importImage(t, s, "a:1", map[string]string{"a": "1"}, "a")
	b := importImage(t, s, "b:1", map[string]string{"a": "1"}, "b") // same layer as a
	if err := s.Tag("a:1", "a:2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("a:1", "other/repo:x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("a:1", "Bad"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Tag to bad name: got %v, want ErrInvalidArgument", err)
	}
	if err := s.Tag("nope", "x:1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Tag of missing image: got %v, want ErrNotFound", err)
	}
	img, _ := s.Get(a.ID)
	if got := strings.Join(img.RepoTags, ","); got != "a:1,a:2,other/repo:x" {
		t.Errorf("RepoTags = %q, want a:1,a:2,other/repo:x", got)
	}
	// Untag by name while other names remain.
	d, err := s.Remove("a:2", false, nil)
	if err != nil || len(d) != 1 || d[0].Untagged != "a:2" {
		t.Errorf("Remove(a:2) = %+v, %v; want [Untagged a:2]", d, err)
	}
	// By ID with names in two repositories: refused unless forced.
	if _, err := s.Remove(a.ID, false, nil); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Remove by ID with 2 repos: got %v, want ErrConflict", err)
	}
	// In use by a container: refused, naming it.
	usedBy := func(id string) (string, bool) {
		if id == a.ID {
			return "c0ffee1234567890", true
		}
		return "", false
	}
	if _, err := s.RemoveImage(a.ID, RemoveOptions{Force: true, UsedBy: usedBy}); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "c0ffee123456") {
		t.Errorf("Remove of image of a running container: got %v, want ErrConflict naming c0ffee123456", err)
	}
	if _, err := s.Remove("other/repo:x", false, func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveImage("a:1", RemoveOptions{UsedBy: usedBy}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Remove last name of used image: got %v, want ErrConflict", err)
	}
	chains := ChainIDs(a.Layers)
	d, err = s.Remove("a:1", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Deleted{{Untagged: "a:1"}, {Deleted: a.ID}}
	if fmt.Sprint(d) != fmt.Sprint(want) {
		t.Errorf("Remove(a:1) = %v, want %v (layer kept: b uses it)", d, want)
	}
	if !s.Snapshots().HasLayer(chains[0]) {
		t.Errorf("shared layer removed while b uses it")
	}
	if _, err := s.Get(a.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(removed) = %v, want ErrNotFound", err)
	}
	d, err = s.Remove(b.ID[7:15], false, nil)
	if err != nil || len(d) != 3 || d[2].Deleted != chains[0].String() {
		t.Errorf("Remove(b by prefix) = %v, %v; want untag, image, layer", d, err)
	}
	if s.Snapshots().HasLayer(chains[0]) || s.Content().Exists(a.Layers[0]) {
		t.Errorf("last user gone but layer snapshot/blob remain")
	}
	if len(s.List()) != 0 {
		t.Errorf("List = %v, want empty", s.List())
	}
}

func TestConcurrentUse(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	base := importImage(t, s, "base:1", map[string]string{"f": "x"}, "base")
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				name := fmt.Sprintf("t%d:%d", i, j)
				if err := s.Tag(base.ID, name); err != nil {
					errs <- err
				}
				if _, err := s.Get(name); err != nil {
					errs <- err
				}
				s.List()
				if _, err := s.Import(bytes.NewReader(rootfsTar(t, map[string]string{"g": name})), "imp"+name, ocispec.ImageConfig{}); err != nil {
					errs <- err
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	img, _ := s.Get(base.ID)
	if len(img.RepoTags) != 41 || len(s.List()) != 41 {
		t.Errorf("got %d tags on base and %d images, want 41 and 41", len(img.RepoTags), len(s.List()))
	}
}
