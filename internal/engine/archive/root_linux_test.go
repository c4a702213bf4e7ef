package archive

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

// containerRoot builds a small container-like tree in a sandbox: the root
// has its own etc/passwd, and symlinks that try to leave it.
func containerRoot(t *testing.T) (*Root, string, func()) {
	t.Helper()
	dir, check := sandbox(t)
	for p, body := range map[string]string{"etc/passwd": "inside\n", "data/a.txt": "a", "data/sub/b.txt": "bb"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644)
	}
	os.Symlink("/etc/passwd", filepath.Join(dir, "abs"))                                // absolute: the root's own file
	os.Symlink("../../../../../../etc/passwd", filepath.Join(dir, "up"))                // climbs: clamped at the root
	os.Symlink(filepath.Join(filepath.Dir(dir), "outside"), filepath.Join(dir, "host")) // a host path: inside the root it does not exist
	os.Symlink("/data", filepath.Join(dir, "datalink"))
	os.Link(filepath.Join(dir, "data/a.txt"), filepath.Join(dir, "data/a-hard"))
	r, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, dir, check
}

func TestRootStat(t *testing.T) {
	needRoot(t)
	r, _, check := containerRoot(t)
	defer check()
	tests := []struct {
		path, name, link string
		dir, symlink     bool
		size             int64
	}{
		{path: "/etc/passwd", name: "passwd", size: 7},
		{path: "/data", name: "data", dir: true},
		{path: "/data/", name: "data", dir: true},
		{path: "/data/.", name: ".", dir: true},
		{path: "/abs", name: "abs", symlink: true, link: "/etc/passwd"},
		{path: "/up", name: "up", symlink: true, link: "/etc/passwd"},
		{path: "/datalink", name: "datalink", symlink: true, link: "/data"},
		{path: "/datalink/", name: "datalink", dir: true},
		{path: "/datalink/sub/../a.txt", name: "a.txt", size: 1},
		{path: "/../../etc/passwd", name: "passwd", size: 7},
		{path: "/", name: "/", dir: true},
	}
	for _, tt := range tests {
		st, err := r.Stat(tt.path)
		if err != nil {
			t.Errorf("Stat(%q): %v", tt.path, err)
			continue
		}
		if st.Name != tt.name || st.Mode.IsDir() != tt.dir || (st.Mode&os.ModeSymlink != 0) != tt.symlink || st.LinkTarget != tt.link {
			t.Errorf("Stat(%q) = %+v, want name %q dir %v symlink %v link %q", tt.path, st, tt.name, tt.dir, tt.symlink, tt.link)
		}
		if !tt.dir && !tt.symlink && st.Size != tt.size {
			t.Errorf("Stat(%q).Size = %d, want %d", tt.path, st.Size, tt.size)
		}
	}
	for _, p := range []string{"/nope", "/host/keep", "/etc/passwd/x"} {
		if _, err := r.Stat(p); err == nil {
			t.Errorf("Stat(%q) succeeded; want an error (the host's files are not in the root)", p)
		} else if p != "/etc/passwd/x" && !errdefs.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want not found", p, err)
		}
	}
}

// tarEntries lists a tar's entries as "name" or "name -> link", with
// regular files' bodies.
func tarEntries(t *testing.T, b []byte) (names []string, bodies map[string]string) {
	t.Helper()
	bodies = map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the tar: %v", err)
		}
		n := h.Name
		switch h.Typeflag {
		case tar.TypeSymlink:
			n += " -> " + h.Linkname
		case tar.TypeLink:
			n += " => " + h.Linkname
		case tar.TypeReg:
			body, _ := io.ReadAll(tr)
			bodies[h.Name] = string(body)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names, bodies
}

func TestRootWriteTar(t *testing.T) {
	needRoot(t)
	r, _, check := containerRoot(t)
	defer check()
	tests := []struct {
		path, name string
		want       []string
	}{
		{"/data", "data", []string{"data/", "data/a-hard", "data/a.txt => data/a-hard", "data/sub/", "data/sub/b.txt"}},
		{"/data/.", ".", []string{"./", "./a-hard", "./a.txt => ./a-hard", "./sub/", "./sub/b.txt"}},
		{"/etc/passwd", "passwd", []string{"passwd"}},
		{"/up", "up", []string{"up -> ../../../../../../etc/passwd"}},
		{"/datalink/", "datalink", []string{"datalink/", "datalink/a-hard", "datalink/a.txt => datalink/a-hard", "datalink/sub/", "datalink/sub/b.txt"}},
		{"/up/../data/sub", "sub", []string{"sub/", "sub/b.txt"}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := r.WriteTar(&buf, tt.path, BaseName(tt.path)); err != nil {
			t.Errorf("WriteTar(%q): %v", tt.path, err)
			continue
		}
		got, bodies := tarEntries(t, buf.Bytes())
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("WriteTar(%q) = %q, want %q", tt.path, got, tt.want)
		}
		for n, b := range bodies {
			if strings.HasSuffix(n, "passwd") && b != "inside\n" {
				t.Errorf("WriteTar(%q): %s holds %q, want the root's own file", tt.path, n, b)
			}
		}
	}
	// Through a symlink to a host path: nothing of the host is reachable.
	if err := r.WriteTar(io.Discard, "/host/keep", "keep"); !errdefs.Is(err, errdefs.ErrNotFound) {
		t.Errorf("WriteTar(/host/keep) = %v, want not found", err)
	}
	// An export: the whole root without a top entry.
	var buf bytes.Buffer
	if err := r.WriteTar(&buf, "/", ""); err != nil {
		t.Fatal(err)
	}
	got, bodies := tarEntries(t, buf.Bytes())
	if !contains(got, "etc/passwd") || !contains(got, "host -> "+filepath.Join(filepath.Dir(r.name), "outside")) || bodies["etc/passwd"] != "inside\n" {
		t.Errorf("export = %q", got)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestRootExtract(t *testing.T) {
	needRoot(t)
	t.Run("normal", func(t *testing.T) {
		r, dir, check := containerRoot(t)
		defer check()
		tb := mktar(t, dirent("new"), file("new/f", "hello"), symlink("new/l", "/etc/passwd"), hardlink("new/h", "new/f"),
			ent{name: "new/p", typ: tar.TypeFifo, mode: 0o600}, file(".wh.notawhiteout", "x"))
		if err := r.Extract("/datalink", bytes.NewReader(tb), ExtractOptions{}); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "data/new/f")); string(b) != "hello" {
			t.Errorf("data/new/f = %q", b)
		}
		if l, _ := os.Readlink(filepath.Join(dir, "data/new/l")); l != "/etc/passwd" {
			t.Errorf("data/new/l -> %q", l)
		}
		if _, err := os.Stat(filepath.Join(dir, "data/.wh.notawhiteout")); err != nil {
			t.Errorf(".wh. names are plain files in a copy: %v", err)
		}
		fi, _ := os.Lstat(filepath.Join(dir, "data/new/p"))
		if fi == nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("fifo not created: %v", fi)
		}
	})
	t.Run("owner", func(t *testing.T) {
		r, dir, check := containerRoot(t)
		defer check()
		e := file("o", "x")
		e.uid, e.gid = 1234, 4321
		if err := r.Extract("/", bytes.NewReader(mktar(t, e)), ExtractOptions{Owner: &[2]int{7, 8}}); err != nil {
			t.Fatal(err)
		}
		var st = mustLstat(t, filepath.Join(dir, "o"))
		if st.Uid != 7 || st.Gid != 8 {
			t.Errorf("owner %d:%d, want 7:8", st.Uid, st.Gid)
		}
	})
	hostile := []struct {
		name string
		dst  string
		ents []ent
	}{
		{"symlink in archive", "/", []ent{symlink("l", "../../../outside"), file("l/evil", "x")}},
		{"absolute symlink in archive", "/", []ent{symlink("l", "/"), file("l/evil", "x")}},
		{"existing host symlink", "/", []ent{file("host/evil", "x")}},
		{"dst through host symlink", "/host", []ent{file("evil", "x")}},
		{"hard link through symlink", "/", []ent{symlink("e", "/etc"), hardlink("h", "e/passwd")}},
		{"chain", "/data", []ent{dirent("c"), symlink("b", "c/../../../outside"), symlink("a", "b"), file("a/evil", "x")}},
	}
	for _, tt := range hostile {
		t.Run(tt.name, func(t *testing.T) {
			r, _, check := containerRoot(t)
			r.Extract(tt.dst, bytes.NewReader(mktar(t, tt.ents...)), ExtractOptions{})
			check() // whatever happened, nothing outside the root changed
		})
	}
	refused := []struct {
		name, want string
		ents       []ent
	}{
		{"dotdot", "climbs out", []ent{file("ok", "x"), file("../evil", "x")}},
		{"device", "device nodes", []ent{file("ok", "x"), {name: "null", typ: tar.TypeChar, mode: 0o666}}},
		{"hard link out", "outside the archive", []ent{file("ok", "x"), hardlink("h", "../../etc/passwd")}},
		{"truncated", "truncated", nil},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r, dir, check := containerRoot(t)
			defer check()
			data := mktar(t, tt.ents...)
			if tt.ents == nil {
				data = mktar(t, file("ok", "x"), file("big", strings.Repeat("y", 4000)))[:2000]
			}
			err := r.Extract("/data", bytes.NewReader(data), ExtractOptions{})
			if err == nil || !errdefs.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an invalid-argument error containing %q", err, tt.want)
			}
			if _, err := os.Lstat(filepath.Join(dir, "data/ok")); err == nil {
				t.Errorf("a refused archive wrote data/ok; want nothing written")
			}
		})
	}
	t.Run("not a directory", func(t *testing.T) {
		r, _, check := containerRoot(t)
		defer check()
		err := r.Extract("/etc/passwd", bytes.NewReader(mktar(t, file("x", "y"))), ExtractOptions{})
		if !errdefs.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("got %v, want 'extraction point … is not a directory'", err)
		}
		if err := r.Extract("/nope", bytes.NewReader(mktar(t, file("x", "y"))), ExtractOptions{}); !errdefs.Is(err, errdefs.ErrNotFound) {
			t.Errorf("got %v, want not found", err)
		}
	})
	t.Run("no overwrite dir with non-dir", func(t *testing.T) {
		r, _, check := containerRoot(t)
		defer check()
		err := r.Extract("/", bytes.NewReader(mktar(t, file("data", "x"))), ExtractOptions{NoOverwriteDirNonDir: true})
		if !errdefs.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "cannot overwrite directory") {
			t.Errorf("got %v", err)
		}
	})
}

func FuzzExtract(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("skipping: extracting with owners needs root")
	}
	f.Add(mktar(f, file("a", "b"), dirent("d"), symlink("d/l", "../a"), hardlink("h", "a")))
	f.Add(mktar(f, symlink("l", "../outside"), file("l/evil", "x")))
	f.Add(mktar(f, symlink("l", "/"), file("l/evil", "x")))
	f.Add(mktar(f, file("host/evil", "x")))
	f.Add(mktar(f, hardlink("h", "/etc/passwd")))
	f.Add(mktar(f, dirent("c"), symlink("b", "c/../../outside"), symlink("a", "b"), file("a/evil", "x")))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _, check := containerRoot(t)
		r.Extract("/data", bytes.NewReader(data), ExtractOptions{SpoolDir: t.TempDir()})
		check()
	})
}

func mustLstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}
