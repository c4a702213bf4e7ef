package volume

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func newStore(t *testing.T, root string) *Store {
	t.Helper()
	s, warns, err := New(root)
	if err != nil {
		t.Fatalf("New(%s): %v", root, err)
	}
	if len(warns) > 0 {
		t.Fatalf("New(%s) warnings: %v", root, warns)
	}
	return s
}

func names(vs []*Volume) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func TestCreateGetIdempotent(t *testing.T) {
	s := newStore(t, t.TempDir())
	v, err := s.Create("data", map[string]string{"app": "web"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Driver != "local" || v.Scope != "local" || v.Mountpoint != filepath.Join(s.Root(), "data", "_data") || v.CreatedAt.IsZero() {
		t.Errorf("Create: got %+v", v)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() {
		t.Fatalf("mountpoint %s: %v", v.Mountpoint, err)
	}
	// Creating again returns the existing volume unchanged (labels too).
	again, err := s.Create("data", map[string]string{"other": "x"}, nil)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if !again.CreatedAt.Equal(v.CreatedAt) || again.Labels["app"] != "web" || len(again.Labels) != 1 {
		t.Errorf("second Create: got %+v, want the original %+v", again, v)
	}
	// The returned value is a copy.
	again.Labels["app"] = "changed"
	got, _ := s.Get("data")
	if got.Labels["app"] != "web" {
		t.Errorf("Get after mutating a returned copy: got label %q, want web", got.Labels["app"])
	}
	if _, err := s.Get("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(nope): got %v, want ErrNotFound", err)
	}
}

func TestCreateBadInput(t *testing.T) {
	s := newStore(t, t.TempDir())
	if _, err := s.Create("keep", nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts map[string]string
		want error
	}{
		{"a", nil, errdefs.ErrInvalidArgument},
		{"../etc", nil, errdefs.ErrInvalidArgument},
		{"a/b", nil, errdefs.ErrInvalidArgument},
		{".hidden", nil, errdefs.ErrInvalidArgument},
		{"-x", nil, errdefs.ErrInvalidArgument},
		{strings.Repeat("a", 256), nil, errdefs.ErrInvalidArgument},
		{"ok1", map[string]string{"size": "1g"}, errdefs.ErrInvalidArgument},
		{"ok2", map[string]string{"type": "nfs"}, errdefs.ErrNotImplemented},
		{"keep", map[string]string{"device": "/dev/sda"}, errdefs.ErrNotImplemented},
	} {
		_, err := s.Create(tc.name, nil, tc.opts)
		if !errors.Is(err, tc.want) {
			t.Errorf("Create(%q, %v): got %v, want %v", tc.name, tc.opts, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), tc.name[:min(len(tc.name), 10)]) {
			t.Errorf("Create(%q): error %q does not name the input", tc.name, err)
		}
	}
	vs, _ := s.List(nil)
	if got := names(vs); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("after bad creates: got volumes %v, want [keep]", got)
	}
	ents, _ := os.ReadDir(s.Root())
	if len(ents) != 1 {
		t.Errorf("after bad creates: root holds %d entries, want 1", len(ents))
	}
}

func TestAnonymousName(t *testing.T) {
	s := newStore(t, t.TempDir())
	v, err := s.Create("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := hex.DecodeString(v.Name); err != nil || len(b) != 32 {
		t.Errorf("anonymous name: got %q, want 64 hex digits", v.Name)
	}
	if !v.Anonymous {
		t.Errorf("anonymous volume: Anonymous = false")
	}
	w, _ := s.Create("", nil, nil)
	if w.Name == v.Name {
		t.Errorf("two anonymous volumes share the name %s", v.Name)
	}
}

func TestPersistenceAcrossStores(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	v, err := s.Create("db", map[string]string{"tier": "data"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.Mountpoint, "rows"), []byte("42"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Acquire("db", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Acquire("db", "c1"); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := s.Acquire("db", "c2"); err != nil {
		t.Fatal(err)
	}

	s2 := newStore(t, root) // a daemon restart
	got, err := s2.Get("db")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.UsedBy, []string{"c1", "c2"}) {
		t.Errorf("UsedBy after reopen: got %v, want [c1 c2]", got.UsedBy)
	}
	if got.Labels["tier"] != "data" || !got.CreatedAt.Equal(v.CreatedAt) {
		t.Errorf("after reopen: got %+v, want labels and creation time of %+v", got, v)
	}
	if b, err := os.ReadFile(filepath.Join(got.Mountpoint, "rows")); err != nil || string(b) != "42" {
		t.Errorf("data after reopen: got %q, %v, want 42", b, err)
	}
	err = s2.Remove("db", true)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "c1") || !strings.Contains(err.Error(), "c2") {
		t.Errorf("Remove in-use volume: got %v, want ErrConflict naming c1 and c2", err)
	}
	if _, err := os.Stat(filepath.Join(got.Mountpoint, "rows")); err != nil {
		t.Errorf("refused Remove changed the data: %v", err)
	}
	s2.Release("db", "c1")
	s2.Release("db", "c1") // releasing twice is no error
	if err := s2.Remove("db", false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Remove with c2 still using it: got %v, want ErrConflict", err)
	}
	if names, err := s2.ReleaseAll("c2"); err != nil || !slices.Equal(names, []string{"db"}) {
		t.Errorf("ReleaseAll(c2): got %v, %v, want [db]", names, err)
	}
	s3 := newStore(t, root)
	if got, _ := s3.Get("db"); len(got.UsedBy) != 0 {
		t.Errorf("UsedBy after releases and reopen: got %v, want none", got.UsedBy)
	}
	if err := s3.Remove("db", false); err != nil {
		t.Fatalf("Remove unused: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "db")); !os.IsNotExist(err) {
		t.Errorf("volume dir after Remove: got %v, want not exist", err)
	}
	if err := s3.Remove("db", false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Remove missing: got %v, want ErrNotFound", err)
	}
	if err := s3.Remove("db", true); err != nil {
		t.Errorf("Remove missing with force: got %v, want nil", err)
	}
	if err := s3.Acquire("db", "c1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Acquire missing: got %v, want ErrNotFound", err)
	}
}

func TestCorruptMetadataSkipped(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	s.Create("good", nil, nil)
	os.MkdirAll(filepath.Join(root, "bad", "_data"), 0o755)
	os.WriteFile(filepath.Join(root, "bad", metaFile), []byte("{not json"), 0o600)
	s2, warns, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].Error(), "bad") {
		t.Errorf("warnings: got %v, want one naming bad", warns)
	}
	vs, _ := s2.List(nil)
	if got := names(vs); !slices.Equal(got, []string{"good"}) {
		t.Errorf("List: got %v, want [good]", got)
	}
	// The unknown directory is neither adopted nor overwritten.
	if _, err := s2.Create("bad", nil, nil); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Create over an unknown dir: got %v, want ErrConflict", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "bad", metaFile)); string(b) != "{not json" {
		t.Errorf("unknown dir was changed")
	}
	if _, _, err := New("relative/root"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("New(relative): got %v, want ErrInvalidArgument", err)
	}
}

func TestListFilters(t *testing.T) {
	s := newStore(t, t.TempDir())
	s.Create("web-data", map[string]string{"app": "web", "tier": "front"}, nil)
	s.Create("db-data", map[string]string{"app": "db"}, nil)
	s.Create("cache", nil, nil)
	s.Acquire("db-data", "c1")
	for _, tc := range []struct {
		f    map[string][]string
		want []string
	}{
		{nil, []string{"cache", "db-data", "web-data"}},
		{map[string][]string{"name": {"data"}}, []string{"db-data", "web-data"}},
		{map[string][]string{"name": {"cache", "web"}}, []string{"cache", "web-data"}},
		{map[string][]string{"label": {"app"}}, []string{"db-data", "web-data"}},
		{map[string][]string{"label": {"app=web"}}, []string{"web-data"}},
		{map[string][]string{"label": {"app=web", "app=db"}}, []string{"db-data", "web-data"}},
		{map[string][]string{"dangling": {"true"}}, []string{"cache", "web-data"}},
		{map[string][]string{"dangling": {"false"}}, []string{"db-data"}},
		{map[string][]string{"dangling": {"1"}, "label": {"app"}}, []string{"web-data"}},
		{map[string][]string{"driver": {"local"}}, []string{"cache", "db-data", "web-data"}},
		{map[string][]string{"driver": {"nfs"}}, nil},
	} {
		vs, err := s.List(tc.f)
		if err != nil {
			t.Errorf("List(%v): %v", tc.f, err)
			continue
		}
		if got := names(vs); !slices.Equal(got, tc.want) {
			t.Errorf("List(%v): got %v, want %v", tc.f, got, tc.want)
		}
	}
	for _, f := range []map[string][]string{{"colour": {"x"}}, {"dangling": {"maybe"}}} {
		if _, err := s.List(f); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("List(%v): got %v, want ErrInvalidArgument", f, err)
		}
	}
}

func TestPruneAndRemoveAnonymous(t *testing.T) {
	s := newStore(t, t.TempDir())
	s.Create("named", nil, nil)
	s.Create("kept", map[string]string{"keep": "yes"}, nil)
	used, _ := s.Create("used", nil, nil)
	s.Acquire(used.Name, "c9")
	anon, _ := s.Create("", nil, nil)
	os.WriteFile(filepath.Join(anon.Mountpoint, "f"), []byte("12345"), 0o644)

	rep, err := s.Prune(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Removed, []string{anon.Name}) || rep.SpaceReclaimed != 5 {
		t.Errorf("Prune(anonymous): got %+v, want [%s] and 5 bytes", rep, anon.Name)
	}
	rep, err = s.Prune(true, map[string][]string{"label!": {"keep"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Removed, []string{"named"}) {
		t.Errorf("Prune(all, label!=keep): got %v, want [named]", rep.Removed)
	}
	rep, _ = s.Prune(true, map[string][]string{"label": {"keep=yes"}})
	if !slices.Equal(rep.Removed, []string{"kept"}) {
		t.Errorf("Prune(all, label=keep=yes): got %v, want [kept]", rep.Removed)
	}
	if _, err := s.Prune(true, map[string][]string{"until": {"1h"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Prune(until): got %v, want ErrInvalidArgument", err)
	}
	vs, _ := s.List(nil)
	if got := names(vs); !slices.Equal(got, []string{"used"}) {
		t.Errorf("after prunes: got %v, want [used]", got)
	}

	// rm -v: the container's own anonymous volumes go, shared ones stay.
	s.mu.Lock()
	own, _, _ := s.createLocked("", nil, nil, "c1", "/data")
	shared, _, _ := s.createLocked("", nil, nil, "c1", "/logs")
	other, _, _ := s.createLocked("", nil, nil, "c2", "/data")
	s.mu.Unlock()
	for _, n := range []string{own.Name, shared.Name, "used"} {
		s.Acquire(n, "c1")
	}
	s.Acquire(shared.Name, "c3") // --volumes-from
	s.Acquire(other.Name, "c2")
	removed, err := s.RemoveAnonymous("c1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{own.Name}) {
		t.Errorf("RemoveAnonymous(c1): got %v, want [%s]", removed, own.Name)
	}
	for _, n := range []string{shared.Name, other.Name, "used"} {
		if _, err := s.Get(n); err != nil {
			t.Errorf("volume %s after RemoveAnonymous(c1): %v", n, err)
		}
	}
	if v, _ := s.Get(shared.Name); !slices.Equal(v.UsedBy, []string{"c3"}) {
		t.Errorf("shared volume UsedBy: got %v, want [c3]", v.UsedBy)
	}
	if got := s.UsedBy("c1"); !slices.Equal(got, []string{"used"}) {
		t.Errorf("UsedBy(c1): got %v, want [used]", got)
	}
}

func TestMetadataWriteIsAtomic(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	s.Create("v1", nil, nil)
	for i := 0; i < 20; i++ {
		s.Acquire("v1", "c")
		s.Release("v1", "c")
	}
	ents, _ := os.ReadDir(filepath.Join(root, "v1"))
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, []string{"_data", metaFile}) {
		t.Errorf("volume dir: got %v, want [_data %s] (no temp files left)", got, metaFile)
	}
	// A write that cannot happen leaves the in-memory state unchanged.
	if os.Geteuid() != 0 { // root ignores directory permissions
		os.Chmod(filepath.Join(root, "v1"), 0o500)
		defer os.Chmod(filepath.Join(root, "v1"), 0o755)
		if err := s.Acquire("v1", "c"); err == nil {
			t.Fatalf("Acquire with an unwritable dir: got nil error")
		}
		if v, _ := s.Get("v1"); len(v.UsedBy) != 0 {
			t.Errorf("after a failed save: UsedBy %v, want none", v.UsedBy)
		}
	}
}
