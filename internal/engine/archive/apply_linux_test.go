package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

// ent is one tar entry for building test archives.
type ent struct {
	name, link string
	typ        byte
	body       string
	mode       int64
	uid, gid   int
	pax        map[string]string
}

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func dirent(name string) ent     { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeLink, link: target, mode: 0o644}
}

var mtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func mktar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Size: int64(len(e.body)), ModTime: mtime, PAXRecords: e.pax, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func needRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: unpacking layers (mknod, chown, trusted xattrs) needs root")
	}
}

// sandbox returns a layer dir and a sibling "outside" dir holding one file,
// plus a check that nothing outside the layer dir changed.
func sandbox(t testing.TB) (root string, check func()) {
	parent := t.TempDir()
	root = filepath.Join(parent, "root")
	outside := filepath.Join(parent, "outside")
	os.Mkdir(root, 0o755)
	os.Mkdir(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "keep"), []byte("keep"), 0o644)
	var pw syscall.Stat_t
	syscall.Stat("/etc/passwd", &pw)
	return root, func() {
		t.Helper()
		ents, _ := os.ReadDir(outside)
		if len(ents) != 1 || ents[0].Name() != "keep" {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("outside dir holds %v, want only [keep]", names)
		}
		if b, _ := os.ReadFile(filepath.Join(outside, "keep")); string(b) != "keep" {
			t.Errorf("outside/keep = %q, want \"keep\"", b)
		}
		pents, _ := os.ReadDir(parent)
		if len(pents) != 2 {
			t.Errorf("parent dir holds %d entries, want 2 (root, outside)", len(pents))
		}
		var pw2 syscall.Stat_t
		syscall.Stat("/etc/passwd", &pw2)
		if pw2.Nlink != pw.Nlink || pw2.Mtim != pw.Mtim {
			t.Errorf("/etc/passwd changed: nlink %d→%d", pw.Nlink, pw2.Nlink)
		}
	}
}

func TestApplyHostile(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name    string
		ents    func(root string) []ent
		wantErr string // substring; the entry name is checked separately
		entry   string
	}{
		{"dotdot", func(string) []ent { return []ent{file("../outside/evil", "x")} }, "climbs out", "../outside/evil"},
		{"dotdot inside path", func(string) []ent { return []ent{file("a/../../outside/evil", "x")} }, "climbs out", "a/../../outside/evil"},
		{"absolute dotdot", func(string) []ent { return []ent{file("/../outside/evil", "x")} }, "climbs out", "/../outside/evil"},
		{"dir dotdot", func(string) []ent { return []ent{dirent("../outside/d")} }, "climbs out", "../outside/d"},
		{"relative symlink escape", func(string) []ent {
			return []ent{symlink("l", "../outside"), file("l/evil", "x")}
		}, "leaves the layer root", "l/evil"},
		{"absolute symlink", func(root string) []ent {
			return []ent{symlink("l", filepath.Join(filepath.Dir(root), "outside")), file("l/evil", "x")}
		}, "leaves the layer root", "l/evil"},
		{"absolute symlink to /etc", func(string) []ent {
			return []ent{symlink("etc", "/etc"), file("etc/passwd", "root::0:0::/:/bin/sh\n")}
		}, "leaves the layer root", "etc/passwd"},
		{"nested symlink chain", func(string) []ent {
			return []ent{dirent("c"), symlink("b", "c/../../outside"), symlink("a", "b"), file("a/evil", "x")}
		}, "leaves the layer root", "a/evil"},
		{"symlink chain through dirs", func(string) []ent {
			return []ent{dirent("x/y"), symlink("x/y/up", "../.."), symlink("x/up2", "y/up/.."), file("x/up2/outside/evil", "x")}
		}, "leaves the layer root", "x/up2/outside/evil"},
		{"mkdir through symlink", func(string) []ent {
			return []ent{symlink("l", "../outside"), dirent("l/sub")}
		}, "leaves the layer root", "l/sub"},
		{"hardlink to /etc/passwd", func(string) []ent { return []ent{hardlink("h", "/etc/passwd")} }, "not in the layer", "h"},
		{"hardlink dotdot", func(string) []ent {
			return []ent{hardlink("h", "../../../../../../../../etc/passwd")}
		}, "climbs out", "h"},
		{"hardlink through symlink", func(string) []ent {
			return []ent{symlink("e", "/etc"), hardlink("h", "e/passwd")}
		}, "leaves the layer root", "h"},
		{"hardlink to outside file", func(string) []ent { return []ent{hardlink("h", "../outside/keep")} }, "climbs out", "h"},
		{"char device", func(string) []ent { return []ent{{name: "null", typ: tar.TypeChar, mode: 0o666}} }, "device nodes", "null"},
		{"block device", func(string) []ent { return []ent{{name: "sda", typ: tar.TypeBlock, mode: 0o660}} }, "device nodes", "sda"},
		{"fifo", func(string) []ent { return []ent{{name: "p", typ: tar.TypeFifo, mode: 0o644}} }, "device nodes", "p"},
		{"whiteout through symlink", func(string) []ent {
			return []ent{symlink("l", "../outside"), file("l/.wh.keep", "")}
		}, "leaves the layer root", "l/.wh.keep"},
		{"opaque through symlink", func(string) []ent {
			return []ent{symlink("l", "../outside"), file("l/.wh..wh..opq", "")}
		}, "leaves the layer root", "l/.wh..wh..opq"},
		{"whiteout of dotdot", func(string) []ent { return []ent{file(".wh..", "")} }, "names no file", ".wh.."},
		{"file under a file", func(string) []ent { return []ent{file("f", "x"), file("f/g", "y")} }, "not a directory", "f/g"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, check := sandbox(t)
			_, err := Apply(root, bytes.NewReader(mktar(t, tt.ents(root)...)))
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.wantErr)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("got %v, want errdefs.ErrInvalidArgument", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `"`+tt.entry+`"`) {
				t.Errorf("got %q, want it to name entry %q and contain %q", err, tt.entry, tt.wantErr)
			}
			check()
		})
	}
}

// Entries that look dangerous but are contained: they succeed and stay inside.
func TestApplyContained(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		ents  []ent
		check func(t *testing.T, root string)
	}{
		{"leading slash is relative", []ent{file("/etc/hostname", "box\n")}, func(t *testing.T, root string) {
			if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "box\n" {
				t.Errorf("etc/hostname = %q, want box", b)
			}
		}},
		{"file replaces symlink, not written through", []ent{symlink("f", "../outside/keep"), file("f", "new")}, func(t *testing.T, root string) {
			fi, err := os.Lstat(filepath.Join(root, "f"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Errorf("f: got %v %v, want a regular file", fi, err)
			}
		}},
		{"dir replaces symlink", []ent{symlink("d", "../outside"), dirent("d"), file("d/x", "1")}, func(t *testing.T, root string) {
			if fi, err := os.Lstat(filepath.Join(root, "d")); err != nil || !fi.IsDir() {
				t.Errorf("d: got %v %v, want a directory", fi, err)
			}
		}},
		{"symlink inside root is followed", []ent{dirent("usr/lib"), symlink("lib", "usr/lib"), file("lib/x.so", "so")}, func(t *testing.T, root string) {
			if b, _ := os.ReadFile(filepath.Join(root, "usr/lib/x.so")); string(b) != "so" {
				t.Errorf("usr/lib/x.so = %q, want so", b)
			}
		}},
		{"dangling absolute symlink is just a symlink", []ent{symlink("passwd", "/etc/passwd")}, func(t *testing.T, root string) {
			if l, _ := os.Readlink(filepath.Join(root, "passwd")); l != "/etc/passwd" {
				t.Errorf("readlink = %q, want /etc/passwd", l)
			}
		}},
		{"dotdot that stays inside", []ent{file("a/../b", "b")}, func(t *testing.T, root string) {
			if b, _ := os.ReadFile(filepath.Join(root, "b")); string(b) != "b" {
				t.Errorf("b = %q, want b", b)
			}
		}},
		{"trusted xattr from tar ignored", []ent{{name: "d", typ: tar.TypeDir, mode: 0o755,
			pax: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.k": "v"}}}, func(t *testing.T, root string) {
			buf := make([]byte, 8)
			if _, err := unix.Lgetxattr(filepath.Join(root, "d"), OverlayOpaqueXattr, buf); err == nil {
				t.Errorf("trusted.overlay.opaque was set from the tar, want ignored")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, check := sandbox(t)
			if _, err := Apply(root, bytes.NewReader(mktar(t, tt.ents...))); err != nil {
				t.Fatal(err)
			}
			tt.check(t, root)
			check()
		})
	}
}

func TestApplyNormal(t *testing.T) {
	needRoot(t)
	root, check := sandbox(t)
	setuid := file("bin/su", "su-binary")
	setuid.mode = 0o4755
	owned := file("home/u/f", "hello")
	owned.uid, owned.gid, owned.mode = 1000, 1001, 0o600
	xf := file("x", "x")
	xf.pax = map[string]string{"SCHILY.xattr.user.test": "val"}
	ents := []ent{
		dirent("bin"), setuid, dirent("home/u"), owned, symlink("bin/sh", "su"),
		hardlink("bin/su2", "bin/su"), xf,
		dirent("etc"), file("etc/.wh.gone", ""), dirent("var/cache"), file("var/cache/.wh..wh..opq", ""),
		file("var/cache/new", "n"), file(".wh..wh.plnk", ""),
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(mktar(t, ents...))
	zw.Close()
	size, err := Apply(root, &gz)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len("su-binary") + len("hello") + 1 + 1); size != want {
		t.Errorf("size = %d, want %d", size, want)
	}
	st := func(p string) *syscall.Stat_t {
		var s syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(root, p), &s); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		return &s
	}
	if s := st("bin/su"); s.Mode&0o7777 != 0o4755 {
		t.Errorf("bin/su mode = %o, want 4755", s.Mode&0o7777)
	}
	if s := st("home/u/f"); s.Uid != 1000 || s.Gid != 1001 || s.Mode&0o777 != 0o600 {
		t.Errorf("home/u/f = uid %d gid %d mode %o, want 1000 1001 600", s.Uid, s.Gid, s.Mode&0o777)
	}
	if s := st("home/u/f"); time.Unix(s.Mtim.Unix()).UTC() != mtime {
		t.Errorf("mtime = %v, want %v", time.Unix(s.Mtim.Unix()), mtime)
	}
	if s := st("bin"); time.Unix(s.Mtim.Unix()).UTC() != mtime {
		t.Errorf("dir mtime = %v, want %v (set after its children)", time.Unix(s.Mtim.Unix()), mtime)
	}
	if s1, s2 := st("bin/su"), st("bin/su2"); s1.Ino != s2.Ino || s1.Nlink != 2 {
		t.Errorf("hard link: inodes %d %d nlink %d, want same inode and nlink 2", s1.Ino, s2.Ino, s1.Nlink)
	}
	if l, _ := os.Readlink(filepath.Join(root, "bin/sh")); l != "su" {
		t.Errorf("bin/sh -> %q, want su", l)
	}
	if s := st("etc/gone"); s.Mode&syscall.S_IFMT != syscall.S_IFCHR || s.Rdev != 0 {
		t.Errorf("etc/gone mode %o rdev %d, want a 0/0 char device", s.Mode, s.Rdev)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(root, "var/cache"), OverlayOpaqueXattr, buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("var/cache opaque xattr = %q, %v; want y", buf[:n], err)
	}
	if n, err := unix.Lgetxattr(filepath.Join(root, "x"), "user.test", buf); err != nil || string(buf[:n]) != "val" {
		t.Errorf("x user.test = %q, %v; want val", buf[:n], err)
	}
	for _, p := range []string{"etc/.wh.gone", "var/cache/.wh..wh..opq", ".wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s exists, want whiteout markers consumed", p)
		}
	}
	check()
}

func TestApplyCorrupt(t *testing.T) {
	needRoot(t)
	good := mktar(t, file("a", strings.Repeat("x", 2000)))
	tests := []struct {
		name string
		data []byte
	}{
		{"truncated", good[:700]},
		{"garbage header", append(bytes.Repeat([]byte{0xff}, 512), good...)},
		{"zstd", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, good...)},
		{"bad gzip", []byte{0x1f, 0x8b, 0x08, 0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, check := sandbox(t)
			if _, err := Apply(root, bytes.NewReader(tt.data)); err == nil {
				t.Errorf("got no error for %s archive", tt.name)
			}
			check()
		})
	}
}

func FuzzApply(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("skipping: unpacking layers needs root")
	}
	f.Add(mktar(f, file("a", "b"), dirent("d"), symlink("d/l", "../a"), hardlink("h", "a")))
	f.Add(mktar(f, symlink("l", "../outside"), file("l/evil", "x")))
	f.Add(mktar(f, symlink("l", "/"), file("l/evil", "x")))
	f.Add(mktar(f, file("../outside/evil", "x")))
	f.Add(mktar(f, hardlink("h", "/etc/passwd")))
	f.Add(mktar(f, dirent("c"), symlink("b", "c/../../outside"), symlink("a", "b"), file("a/evil", "x")))
	f.Add(mktar(f, file("etc/.wh.x", ""), file("v/.wh..wh..opq", "")))
	f.Fuzz(func(t *testing.T, data []byte) {
		root, check := sandbox(t)
		Apply(root, bytes.NewReader(data))
		check()
	})
}
