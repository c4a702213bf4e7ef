package archive

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOverlayChanges(t *testing.T) {
	needRootDiff(t)
	lower, upper := t.TempDir(), t.TempDir()
	old := time.Unix(1_600_000_000, 0)
	mk := func(root, rel string, dir bool, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc", "usr", "usr/lib", "var", "opq"} {
		mk(lower, d, true, "")
	}
	mk(lower, "etc/passwd", false, "root")
	mk(lower, "usr/lib/libc.so", false, "elf")
	mk(lower, "var/gone", false, "x")
	mk(lower, "opq/old", false, "x")
	// The container: modified /etc/passwd, added /etc/new and /newdir/f,
	// deleted /var/gone, replaced /opq by an opaque dir, and /usr only
	// copied up (same as below: not a change).
	for _, d := range []string{"etc", "usr", "var", "newdir", "opq"} {
		mk(upper, d, true, "")
	}
	mk(upper, "etc/passwd", false, "root\nuser")
	mk(upper, "etc/new", false, "n")
	mk(upper, "newdir/f", false, "f")
	if err := unix.Mknod(filepath.Join(upper, "var/gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "opq"), OverlayOpaqueXattr, []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	// The runtime's mount points, made in the writable layer: not changes
	// while empty, and only when no lower layer has them.
	mk(upper, "proc", true, "")
	mk(upper, "etc/hosts", false, "")
	mk(upper, "etc/resolv.conf", false, "nameserver 10.0.0.1") // written: a change
	// Same mode, size and mtime as below: /usr is only a parent dir copy.
	for _, root := range []string{lower, upper} {
		for _, d := range []string{"usr", "var", "etc"} {
			os.Chtimes(filepath.Join(root, d), old, old)
		}
	}
	got, err := OverlayChanges(upper, []string{lower})
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{"/etc", ChangeModify}, // the parent of an addition
		{"/etc/new", ChangeAdd},
		{"/etc/passwd", ChangeModify},
		{"/etc/resolv.conf", ChangeAdd},
		{"/newdir", ChangeAdd},
		{"/newdir/f", ChangeAdd},
		{"/opq", ChangeModify},
		{"/var", ChangeModify}, // unchanged itself, but the parent of a deletion
		{"/var/gone", ChangeDelete},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changes:\n got %v\nwant %v", got, want)
	}
	if s := (Change{"/x", ChangeDelete}).String(); s != "D /x" {
		t.Errorf("String = %q", s)
	}
}

func TestWriteContainerDiffSkipsPlaceholders(t *testing.T) {
	needRootDiff(t)
	lower, upper := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(upper, "etc"), 0o755)
	os.MkdirAll(filepath.Join(upper, "sys"), 0o755)
	os.WriteFile(filepath.Join(upper, "etc/hosts"), nil, 0o644)
	os.WriteFile(filepath.Join(upper, "etc/app.conf"), []byte("x"), 0o644)
	var buf bytes.Buffer
	if _, err := WriteContainerDiff(&buf, upper, []string{lower}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range listTar(t, buf.Bytes()) {
		names = append(names, strings.Fields(l)[0])
	}
	if want := []string{"etc/", "etc/app.conf"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("layer entries %v, want %v", names, want)
	}
}

// A path that a higher lower layer hides (an opaque directory, a
// whiteout) is new when the container makes it again.
func TestOverlayChangesHiddenBelow(t *testing.T) {
	needRootDiff(t)
	bottom, top, upper := t.TempDir(), t.TempDir(), t.TempDir()
	for _, root := range []string{bottom, top, upper} {
		os.MkdirAll(filepath.Join(root, "opt"), 0o755)
	}
	os.WriteFile(filepath.Join(bottom, "opt/old"), []byte("b"), 0o644)
	os.WriteFile(filepath.Join(bottom, "gone"), []byte("b"), 0o644)
	os.WriteFile(filepath.Join(bottom, "kept"), []byte("b"), 0o644)
	if err := unix.Setxattr(filepath.Join(top, "opt"), OverlayOpaqueXattr, []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"opt/old", "gone", "kept"} {
		os.WriteFile(filepath.Join(upper, f), []byte("u"), 0o644)
	}
	got, err := OverlayChanges(upper, []string{top, bottom})
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{"/gone", ChangeAdd}, {"/kept", ChangeModify}, {"/opt", ChangeModify}, {"/opt/old", ChangeAdd}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changes:\n got %v\nwant %v", got, want)
	}
}
