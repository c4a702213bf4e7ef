package volume

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth/berth/internal/errdefs"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: copies ownership and device nodes, mounts")
	}
}

// tree lists every path under dir (relative), for "nothing changed" checks.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != dir {
			r, _ := filepath.Rel(dir, p)
			out = append(out, r)
		}
		return nil
	})
	return out
}

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "run", "lock"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "var"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "usr", "lib"), 0o755))
	must(os.WriteFile(filepath.Join(root, "file"), nil, 0o644))
	must(os.Symlink("/run", filepath.Join(root, "var", "run")))         // Debian's layout
	must(os.Symlink("../run/lock", filepath.Join(root, "var", "lock"))) // relative
	must(os.Symlink("/etc", filepath.Join(root, "data")))               // absolute: the container's /etc
	must(os.Symlink("../../../../../../etc", filepath.Join(root, "escape")))
	must(os.Symlink("/usr/../..", filepath.Join(root, "escape2")))
	must(os.Symlink("loop", filepath.Join(root, "loop")))
	must(os.Symlink("/", filepath.Join(root, "slash")))
	must(os.Symlink("/proc/self", filepath.Join(root, "me")))
	must(os.Symlink("nothere/../../../etc", filepath.Join(root, "ghost")))
	for _, tc := range []struct{ in, want, err string }{
		{in: "/data", want: "/etc"},
		{in: "/data/sub", want: "/etc/sub"},
		{in: "/var/run/docker.sock", want: "/run/docker.sock"},
		{in: "/var/lock/x", want: "/run/lock/x"},
		{in: "/new/a/b", want: "/new/a/b"},
		{in: "/usr/lib", want: "/usr/lib"},
		{in: "/escape", err: "leads outside the container's root"},
		{in: "/escape/x", err: "leads outside the container's root"},
		{in: "/escape2", err: "leads outside the container's root"},
		{in: "/loop", err: "too many levels of symbolic links"},
		{in: "/slash", err: "destination can't be '/'"},
		{in: "/me/fd", err: "mounts over /proc"},
		{in: "/file/x", err: "is not a directory"},
		{in: "/ghost", err: "does not exist"},
	} {
		got, err := resolveInRoot(root, tc.in)
		if tc.err != "" {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("resolveInRoot(%s): got %q, %v, want ErrInvalidArgument saying %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolveInRoot(%s): got %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
}

// hostileSetup makes base/rootfs with symlinks aiming at base/outside and
// /etc, for checking nothing is created outside rootfs.
func hostileSetup(t *testing.T) (base, rootfs string) {
	base = t.TempDir()
	rootfs = filepath.Join(base, "a", "b", "rootfs")
	os.MkdirAll(rootfs, 0o755)
	os.MkdirAll(filepath.Join(base, "outside"), 0o755)
	os.Symlink("../../../outside", filepath.Join(rootfs, "up"))
	os.Symlink(filepath.Join(base, "outside"), filepath.Join(rootfs, "abs")) // host path: in-root it is rootfs/<base>/outside
	os.Symlink("/etc", filepath.Join(rootfs, "etclink"))
	return base, rootfs
}

func TestResolveRefusesHostileTargets(t *testing.T) {
	base, rootfs := hostileSetup(t)
	s := newStore(t, filepath.Join(base, "volumes"))
	hostBind := filepath.Join(base, "hostdir")
	os.Mkdir(hostBind, 0o755)
	marker := "berth-volume-test-" + filepath.Base(base)
	for _, tc := range []struct {
		name string
		m    MountSpec
		want string
	}{
		{"relative symlink climbing out", MountSpec{Type: TypeVolume, Source: "vol1", Target: "/up/" + marker}, "leads outside"},
		{"bind through climbing symlink", MountSpec{Type: TypeBind, Source: hostBind, Target: "/up"}, "leads outside"},
		{"tmpfs through climbing symlink", MountSpec{Type: TypeTmpfs, Target: "/up/x"}, "leads outside"},
		{"dot-dot in the target", MountSpec{Type: TypeVolume, Source: "vol1", Target: "/x/../../" + marker}, "must not contain '..'"},
	} {
		before := tree(t, base)
		_, _, err := s.Resolve("c1", rootfs, nil, []MountSpec{tc.m})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalidArgument saying %q", tc.name, err, tc.want)
		}
		if after := tree(t, base); !slices.Equal(before, after) {
			t.Errorf("%s: files changed:\n before %v\n after  %v", tc.name, before, after)
		}
	}
	vs, _ := s.List(nil)
	if len(vs) != 0 {
		t.Errorf("refused resolves left volumes %v", names(vs))
	}

	// Absolute symlinks are the container's paths: they land inside rootfs.
	mounts, _, err := s.Resolve("c2", rootfs, nil, []MountSpec{
		{Type: TypeTmpfs, Target: "/etclink/" + marker},
		{Type: TypeTmpfs, Target: "/abs/" + marker},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantDst := []string{"/etc/" + marker, filepath.Join(base, "outside", marker)}
	for i, m := range mounts {
		if m.Destination != wantDst[i] {
			t.Errorf("mount %d: destination %s, want %s", i, m.Destination, wantDst[i])
		}
		if _, err := os.Stat(filepath.Join(rootfs, m.Destination)); err != nil {
			t.Errorf("target %s not created inside rootfs: %v", m.Destination, err)
		}
	}
	if _, err := os.Lstat("/etc/" + marker); !os.IsNotExist(err) {
		t.Errorf("/etc/%s on the host: got %v, want not exist", marker, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(base, "outside")); len(ents) != 0 {
		t.Errorf("created outside the rootfs: %v", ents)
	}
}

func TestEnsureTargetRefusesSymlinkRace(t *testing.T) {
	base, rootfs := hostileSetup(t)
	// As if "up" became a symlink after resolution: the walk must not follow it.
	for _, file := range []bool{false, true} {
		err := ensureTarget(rootfs, "/up/x", file)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ensureTarget(/up/x, file=%v): got %v, want ErrInvalidArgument", file, err)
		}
		if err := ensureTarget(rootfs, "/up", true); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ensureTarget(/up, file): got %v, want ErrInvalidArgument (a symlink)", err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(base, "outside")); len(ents) != 0 {
		t.Errorf("created outside the rootfs: %v", ents)
	}
	if err := ensureTarget(rootfs, "/f/g", true); err != nil {
		t.Fatalf("ensureTarget(/f/g, file): %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(rootfs, "f", "g")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("file target: got %v, %v, want a regular file", fi, err)
	}
	if err := ensureTarget(rootfs, "/f/g/h", false); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("dir under a file: got %v, want ErrInvalidArgument", err)
	}
	if err := ensureTarget(rootfs, "/f", true); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("file over a dir: got %v, want ErrInvalidArgument", err)
	}
}

func TestResolveMountsAndBinds(t *testing.T) {
	base := t.TempDir()
	rootfs := filepath.Join(base, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	s := newStore(t, filepath.Join(base, "volumes"))
	hostDir := filepath.Join(base, "host")
	os.Mkdir(hostDir, 0o755)
	hostFile := filepath.Join(base, "host.sock")
	os.WriteFile(hostFile, nil, 0o644)
	autoDir := filepath.Join(base, "auto", "made")

	mounts := []MountSpec{
		mustParse(t, ParseVolumeSpec, "db:/var/lib/db/sub"),
		mustParse(t, ParseVolumeSpec, hostDir+":/srv:ro,rslave"),
		mustParse(t, ParseVolumeSpec, hostFile+":/run/app.sock"),
		mustParse(t, ParseVolumeSpec, autoDir+":/auto"),
		mustParse(t, ParseTmpfs, "/tmp:size=1m,mode=1777,exec"),
		mustParse(t, ParseVolumeSpec, "/anon"),
		mustParse(t, ParseMountSpec, "type=bind,src="+hostDir+",dst=/var,bind-nonrecursive"),
	}
	image := map[string]struct{}{"/anon": {}, "/imgvol": {}, "/srv": {}}
	oci, mps, err := s.Resolve("c1", rootfs, image, mounts)
	if err != nil {
		t.Fatal(err)
	}
	db, _ := s.Get("db")
	byDst := map[string]specs.Mount{}
	for _, m := range oci {
		byDst[m.Destination] = m
	}
	anon := byDst["/anon"].Source
	img := byDst["/imgvol"].Source
	want := map[string]specs.Mount{
		"/var/lib/db/sub": {Destination: "/var/lib/db/sub", Type: "bind", Source: db.Mountpoint, Options: []string{"rbind", "rprivate", "rw"}},
		"/srv":            {Destination: "/srv", Type: "bind", Source: hostDir, Options: []string{"rbind", "rslave", "ro"}},
		"/run/app.sock":   {Destination: "/run/app.sock", Type: "bind", Source: hostFile, Options: []string{"rbind", "rprivate", "rw"}},
		"/auto":           {Destination: "/auto", Type: "bind", Source: autoDir, Options: []string{"rbind", "rprivate", "rw"}},
		"/tmp":            {Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "size=1048576", "mode=1777"}},
		"/var":            {Destination: "/var", Type: "bind", Source: hostDir, Options: []string{"bind", "rprivate", "rw"}},
		"/anon":           {Destination: "/anon", Type: "bind", Source: anon, Options: []string{"rbind", "rprivate", "rw"}},
		"/imgvol":         {Destination: "/imgvol", Type: "bind", Source: img, Options: []string{"rbind", "rprivate", "rw"}},
	}
	if len(oci) != len(want) {
		t.Errorf("got %d mounts, want %d: %+v", len(oci), len(want), oci)
	}
	for d, w := range want {
		if g := byDst[d]; g.Type != w.Type || g.Source != w.Source || !slices.Equal(g.Options, w.Options) {
			t.Errorf("mount %s:\n got %+v\nwant %+v", d, g, w)
		}
	}
	// Parents first: /var before /var/lib/db/sub.
	iv, isub := -1, -1
	for i, m := range oci {
		switch m.Destination {
		case "/var":
			iv = i
		case "/var/lib/db/sub":
			isub = i
		}
	}
	if iv > isub {
		t.Errorf("mount order: /var at %d after /var/lib/db/sub at %d", iv, isub)
	}
	if fi, err := os.Stat(autoDir); err != nil || !fi.IsDir() {
		t.Errorf("-v bind source not created: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(rootfs, "run", "app.sock")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("file bind target: got %v, %v, want a regular file", fi, err)
	}
	// Inspect view.
	var dbMP MountPoint
	for _, mp := range mps {
		if mp.Destination == "/var/lib/db/sub" {
			dbMP = mp
		}
	}
	if dbMP.Name != "db" || dbMP.Driver != "local" || !dbMP.RW || dbMP.Type != TypeVolume {
		t.Errorf("mount point of db: got %+v", dbMP)
	}
	// Volumes are claimed: anonymous ones owned by c1, all used by c1.
	if got := s.UsedBy("c1"); len(got) != 3 {
		t.Errorf("UsedBy(c1): got %v, want db and two anonymous volumes", got)
	}
	// A second start reuses the same anonymous volumes.
	oci2, _, err := s.Resolve("c1", rootfs, image, mounts)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range oci2 {
		if m.Destination == "/anon" && m.Source != anon {
			t.Errorf("second start: /anon from %s, want the same volume %s", m.Source, anon)
		}
	}
	if vs, _ := s.List(nil); len(vs) != 3 {
		t.Errorf("after two starts: %d volumes, want 3", len(vs))
	}
	if err := s.Remove("db", false); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "c1") {
		t.Errorf("Remove(db) in use: got %v, want ErrConflict naming c1", err)
	}
	removed, err := s.RemoveAnonymous("c1")
	if err != nil || len(removed) != 2 {
		t.Errorf("RemoveAnonymous(c1): got %v, %v, want two", removed, err)
	}
}

func mustParse(t *testing.T, parse func(string) (MountSpec, error), s string) MountSpec {
	t.Helper()
	m, err := parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return m
}

func TestResolveBadInputChangesNothing(t *testing.T) {
	base := t.TempDir()
	rootfs := filepath.Join(base, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	s := newStore(t, filepath.Join(base, "volumes"))
	missing := filepath.Join(base, "missing")
	for _, tc := range []struct {
		name   string
		mounts []MountSpec
		want   string
	}{
		{"--mount bind of a missing source", []MountSpec{
			{Type: TypeVolume, Source: "newvol", Target: "/a"},
			mustParse(t, ParseMountSpec, "type=bind,source="+missing+",target=/b"),
		}, "bind source path does not exist: " + missing},
		{"duplicate target", []MountSpec{
			{Type: TypeVolume, Source: "newvol", Target: "/a"},
			{Type: TypeTmpfs, Target: "/a/"},
		}, "duplicate mount point: /a"},
	} {
		before := tree(t, base)
		_, _, err := s.Resolve("c1", rootfs, nil, tc.mounts)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalidArgument saying %q", tc.name, err, tc.want)
		}
		if err := s.Claim("c1", nil, tc.mounts); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: Claim got %v, want ErrInvalidArgument", tc.name, err)
		}
		if after := tree(t, base); !slices.Equal(before, after) {
			t.Errorf("%s: files changed:\n before %v\n after  %v", tc.name, before, after)
		}
	}
	// Two targets that resolve to one place.
	os.Symlink("/b", filepath.Join(rootfs, "a"))
	_, _, err := s.Resolve("c1", rootfs, nil, []MountSpec{{Type: TypeTmpfs, Target: "/a"}, {Type: TypeTmpfs, Target: "/b"}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "both resolve to /b") {
		t.Errorf("aliased targets: got %v, want ErrInvalidArgument", err)
	}
	// A volume that cannot be created undoes the ones created before it.
	_, _, err = s.Resolve("c1", rootfs, nil, []MountSpec{
		{Type: TypeVolume, Source: "first", Target: "/x"},
		{Type: TypeVolume, Source: "second", Target: "/y", VolumeOptions: map[string]string{"type": "nfs"}},
	})
	if !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("volume with driver options: got %v, want ErrNotImplemented", err)
	}
	if vs, _ := s.List(nil); len(vs) != 0 {
		t.Errorf("after failed resolves: volumes %v, want none", names(vs))
	}
}

func TestPopulateFromImage(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	rootfs := filepath.Join(base, "rootfs")
	data := filepath.Join(rootfs, "data")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(data, "sub"), 0o750))
	must(os.WriteFile(filepath.Join(data, "conf"), []byte("hello"), 0o640))
	must(os.Chown(filepath.Join(data, "conf"), 1234, 5678))
	must(os.WriteFile(filepath.Join(data, "suid"), []byte("#!"), 0o755))
	must(unix.Chmod(filepath.Join(data, "suid"), 0o4755))
	must(os.Link(filepath.Join(data, "conf"), filepath.Join(data, "sub", "hard")))
	must(os.Symlink("/etc/passwd", filepath.Join(data, "link")))
	must(os.Lchown(filepath.Join(data, "link"), 42, 43))
	must(unix.Mkfifo(filepath.Join(data, "fifo"), 0o600))
	must(unix.Mknod(filepath.Join(data, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Chmod(filepath.Join(data, "null"), 0o666)) // past the umask
	must(os.Chown(data, 1000, 1000))
	must(os.Chmod(data, 0o710))
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(data, "conf"), old, old))
	if err := unix.Setxattr(filepath.Join(data, "conf"), "user.berth", []byte("x"), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
		t.Fatal(err)
	}

	root := filepath.Join(base, "volumes")
	s := newStore(t, root)
	oci, _, err := s.Resolve("c1", rootfs, nil, []MountSpec{{Type: TypeVolume, Source: "vol", Target: "/data"}})
	if err != nil {
		t.Fatal(err)
	}
	mp := oci[0].Source
	st := func(rel string) *syscall.Stat_t {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(mp, rel))
		if err != nil {
			t.Fatalf("volume %s: %v", rel, err)
		}
		return fi.Sys().(*syscall.Stat_t)
	}
	for _, tc := range []struct {
		rel           string
		uid, gid      uint32
		mode          uint32
		checkTimeFrom string
	}{
		{".", 1000, 1000, unix.S_IFDIR | 0o710, ""},
		{"sub", 0, 0, unix.S_IFDIR | 0o750, ""},
		{"conf", 1234, 5678, unix.S_IFREG | 0o640, "conf"},
		{"suid", 0, 0, unix.S_IFREG | 0o4755, ""},
		{"link", 42, 43, unix.S_IFLNK | 0o777, ""},
		{"fifo", 0, 0, unix.S_IFIFO | 0o600, ""},
		{"null", 0, 0, unix.S_IFCHR | 0o666, ""},
	} {
		s := st(tc.rel)
		if s.Uid != tc.uid || s.Gid != tc.gid || s.Mode != tc.mode {
			t.Errorf("%s: got uid %d gid %d mode %o, want %d %d %o", tc.rel, s.Uid, s.Gid, s.Mode, tc.uid, tc.gid, tc.mode)
		}
	}
	if got := st("conf").Mtim.Sec; got != old.Unix() {
		t.Errorf("conf mtime: got %d, want %d", got, old.Unix())
	}
	if st("conf").Ino != st("sub/hard").Ino {
		t.Errorf("hard link not preserved")
	}
	if st("null").Rdev != unix.Mkdev(1, 3) {
		t.Errorf("device number: got %x", st("null").Rdev)
	}
	if l, _ := os.Readlink(filepath.Join(mp, "link")); l != "/etc/passwd" {
		t.Errorf("symlink: got %q, want /etc/passwd", l)
	}
	if b, _ := os.ReadFile(filepath.Join(mp, "conf")); string(b) != "hello" {
		t.Errorf("conf content: got %q", b)
	}
	if v, err := unix.Getxattr(filepath.Join(mp, "conf"), "user.berth", make([]byte, 8)); err == nil && v != 1 {
		t.Errorf("xattr not copied")
	}

	// Copied once: the volume's data now wins over the image's.
	must(os.WriteFile(filepath.Join(mp, "conf"), []byte("changed"), 0o640))
	must(os.WriteFile(filepath.Join(data, "new-in-image"), nil, 0o644))
	s2 := newStore(t, root) // daemon restart
	if _, _, err := s2.Resolve("c1", rootfs, nil, []MountSpec{{Type: TypeVolume, Source: "vol", Target: "/data"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.Resolve("c2", rootfs, nil, []MountSpec{{Type: TypeVolume, Source: "vol", Target: "/data"}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(mp, "conf")); string(b) != "changed" {
		t.Errorf("after restarts: conf %q, want changed (not copied again)", b)
	}
	if _, err := os.Lstat(filepath.Join(mp, "new-in-image")); !os.IsNotExist(err) {
		t.Errorf("a non-empty volume was populated again")
	}
	// The same container emptying its volume does not get it refilled.
	emptyDir(mp)
	if _, _, err := s2.Resolve("c1", rootfs, nil, []MountSpec{{Type: TypeVolume, Source: "vol", Target: "/data"}}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(mp); len(ents) != 0 {
		t.Errorf("restart of c1 refilled its emptied volume: %d entries", len(ents))
	}
	// nocopy: a new volume stays empty.
	oci, _, err = s2.Resolve("c3", rootfs, nil, []MountSpec{mustParse(t, ParseVolumeSpec, "fresh:/data:nocopy")})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(oci[0].Source); len(ents) != 0 {
		t.Errorf("nocopy volume has %d entries, want 0", len(ents))
	}
}
