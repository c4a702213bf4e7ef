package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func needRootDiff(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (whiteout devices, trusted.* xattrs, chown)")
	}
}

// listTar returns "name type mode uid:gid [->link] [body] [xattrs]" lines.
func listTar(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		line := fmt.Sprintf("%s %c %o %d:%d", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid)
		if h.Linkname != "" {
			line += " ->" + h.Linkname
		}
		if len(body) > 0 {
			line += " " + string(body)
		}
		var xa []string
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				xa = append(xa, strings.TrimPrefix(k, "SCHILY.xattr.")+"="+v)
			}
		}
		sort.Strings(xa)
		for _, x := range xa {
			line += " " + x
		}
		out = append(out, line)
	}
}

// TestWriteOverlayDiff builds an upper dir the way overlayfs leaves one
// (whiteout devices, an opaque directory, trusted.overlay.* noise) and
// checks the OCI tar it becomes, then that ApplyUncompressed turns that
// tar back into the same directory.
func TestWriteOverlayDiff(t *testing.T) {
	needRootDiff(t)
	up := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(up, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(up, "etc", "conf"), []byte("v2"), 0o640))
	must(os.Chown(filepath.Join(up, "etc", "conf"), 1000, 1001))
	must(unix.Mknod(filepath.Join(up, "etc", "gone"), unix.S_IFCHR, 0))
	must(os.MkdirAll(filepath.Join(up, "data"), 0o700))
	must(unix.Setxattr(filepath.Join(up, "data"), OverlayOpaqueXattr, []byte("y"), 0))
	must(unix.Setxattr(filepath.Join(up, "etc"), "trusted.overlay.origin", []byte{0, 1}, 0))
	must(os.WriteFile(filepath.Join(up, "data", "new"), []byte("n"), 0o644))
	must(os.Link(filepath.Join(up, "data", "new"), filepath.Join(up, "data", "link")))
	must(os.Symlink("../etc/conf", filepath.Join(up, "data", "sym")))
	must(unix.Setxattr(filepath.Join(up, "data", "new"), "user.note", []byte("hi"), 0))
	mt := time.Date(2021, 5, 6, 7, 8, 9, 500_000_000, time.UTC)
	for _, p := range []string{"etc/conf", "data/new", "data", "etc"} {
		must(os.Chtimes(filepath.Join(up, p), mt, mt))
	}

	var buf bytes.Buffer
	size, err := WriteOverlayDiff(&buf, up)
	if err != nil {
		t.Fatal(err)
	}
	if size != 3 {
		t.Errorf("content size %d, want 3 (v2 + n; the hard link counts once)", size)
	}
	got := listTar(t, buf.Bytes())
	want := []string{
		"data/ 5 700 0:0",
		"data/.wh..wh..opq 0 600 0:0",
		"data/link 0 644 0:0 n user.note=hi",
		"data/new 1 644 0:0 ->data/link",
		"data/sym 2 777 0:0 ->../etc/conf",
		"etc/ 5 755 0:0",
		"etc/conf 0 640 1000:1001 v2",
		"etc/.wh.gone 0 600 0:0", // entries sort by their name in the dir
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("layer tar:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Times are whole seconds, so the tar is the same on every write.
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "etc/conf" && !h.ModTime.Equal(mt.Round(time.Second)) {
			t.Errorf("etc/conf mtime %v, want %v", h.ModTime, mt.Round(time.Second))
		}
	}
	var again bytes.Buffer
	if _, err := WriteOverlayDiff(&again, up); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Errorf("a second write of the same dir differs (err %v)", err)
	}

	// Round trip: unpacking gives back the overlay form.
	back := t.TempDir()
	if _, err := ApplyUncompressed(back, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(back, "etc", "gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/gone after apply: %v, mode %o: want a 0/0 whiteout device", err, st.Mode)
	}
	if v, err := getxattr(filepath.Join(back, "data"), OverlayOpaqueXattr); err != nil || string(v) != "y" {
		t.Errorf("data opaque xattr after apply: %q, %v", v, err)
	}
	var names []string
	ents, _ := os.ReadDir(filepath.Join(back, "data"))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "link,new,sym" {
		t.Errorf("data after apply: %v", names)
	}
}

// TestWriteOverlayDiffRefusesRedirect: a redirect_dir rename has no tar
// form; writing it silently would lose the renamed directory's content.
func TestWriteOverlayDiffRefusesRedirect(t *testing.T) {
	needRootDiff(t)
	up := t.TempDir()
	os.Mkdir(filepath.Join(up, "moved"), 0o755)
	if err := unix.Setxattr(filepath.Join(up, "moved"), "trusted.overlay.redirect", []byte("/orig"), 0); err != nil {
		t.Skipf("cannot set trusted xattrs here: %v", err)
	}
	if _, err := WriteOverlayDiff(io.Discard, up); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("WriteOverlayDiff of a redirect dir: %v, want an error naming redirect", err)
	}
}
