package build

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/archive"
	"github.com/berth/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

// Everything here resolves paths inside a root directory with openat2
// RESOLVE_IN_ROOT: symlinks and ".." are followed as if the root were "/",
// so an image's or archive's symlinks can never lead a write outside it.

// unixDirFlags open a directory to resolve paths under.
const unixDirFlags = unix.O_PATH | unix.O_DIRECTORY

func openRoot(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

func openIn(root int, rel string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for {
		fd, err := unix.Openat2(root, rel, how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: "/" + strings.TrimPrefix(rel, "/"), Err: err}
		}
		return fd, nil
	}
}

func relOf(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return "."
	}
	return p[1:]
}

// mkdirAllIn creates the directory p (and its parents, 0755 root) inside
// the root file system rootfs.
func mkdirAllIn(rootfs, p string) error {
	root, err := openRoot(rootfs)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	w := &destWriter{root: root}
	_, err = w.mkdirAll(relOf(p), nil)
	return err
}

// owner is an explicit owner for what a COPY creates; nil keeps the
// source's (or root for created parents).
type owner struct{ uid, gid int }

// destWriter writes files into a root directory.
type destWriter struct {
	root int
	buf  []byte
	dirs []dirTime // copied directories whose mtime is set last
}

type dirTime struct {
	rel   string
	mtime time.Time
}

func (w *destWriter) close() { unix.Close(w.root) }

// stat follows symlinks inside the root.
func (w *destWriter) stat(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := openIn(w.root, rel, unix.O_PATH)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	err = unix.Fstat(fd, &st)
	return st, err
}

func (w *destWriter) isDir(rel string) bool {
	st, err := w.stat(rel)
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// mkdirAll opens directory rel, creating what is missing; created
// directories get mode 0755 and own (or root).
func (w *destWriter) mkdirAll(rel string, own *owner) (created bool, err error) {
	if rel == "." || rel == "" {
		return false, nil
	}
	if w.isDir(rel) {
		return false, nil
	}
	parent := path.Dir(rel)
	if _, err := w.mkdirAll(parent, nil); err != nil {
		return false, err
	}
	if err := w.mkdir(rel, 0o755, own, time.Time{}, false); err != nil {
		return false, err
	}
	return true, nil
}

// parent opens the directory holding rel and returns rel's last name.
func (w *destWriter) parent(rel string) (int, string, error) {
	fd, err := openIn(w.root, path.Dir(rel), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, "", err
	}
	return fd, path.Base(rel), nil
}

// mkdir makes directory rel (its parent exists). An existing directory is
// kept as it is; anything else in the way is an error, or replaced when
// replace (as untar does).
func (w *destWriter) mkdir(rel string, mode int64, own *owner, mtime time.Time, replace bool) error {
	pfd, base, err := w.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil
		}
		if !replace {
			return fmt.Errorf("cannot create directory /%s: a file is in the way (not a directory): %w", rel, errdefs.ErrInvalidArgument)
		}
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return fmt.Errorf("replace /%s with a directory: %w", rel, err)
		}
	}
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mkdir /%s: %w", rel, err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	uid, gid := 0, 0
	if own != nil {
		uid, gid = own.uid, own.gid
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, uint32(mode&0o7777)); err != nil {
		return err
	}
	if !mtime.IsZero() {
		w.dirs = append(w.dirs, dirTime{rel, mtime})
	}
	return nil
}

// removeExisting clears the way for a non-directory at base.
func removeExisting(pfd int, base, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("cannot overwrite directory /%s with a non-directory", rel)
	}
	return unix.Unlinkat(pfd, base, 0)
}

func times(mtime time.Time) []unix.Timespec {
	if mtime.IsZero() {
		mtime = time.Now()
	}
	t, _ := unix.TimeToTimespec(mtime)
	return []unix.Timespec{t, t}
}

// writeFile writes a regular file rel with content r.
func (w *destWriter) writeFile(rel string, r io.Reader, mode int64, uid, gid int, mtime time.Time) error {
	pfd, base, err := w.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := removeExisting(pfd, base, rel); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create /%s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	if w.buf == nil {
		w.buf = make([]byte, 128<<10)
	}
	if _, err := io.CopyBuffer(f, r, w.buf); err != nil {
		return fmt.Errorf("write /%s: %w", rel, err)
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, uint32(mode&0o7777)); err != nil {
		return err
	}
	return unix.UtimesNanoAt(pfd, base, times(mtime), unix.AT_SYMLINK_NOFOLLOW)
}

func (w *destWriter) symlink(rel, target string, uid, gid int, mtime time.Time) error {
	pfd, base, err := w.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := removeExisting(pfd, base, rel); err != nil {
		return err
	}
	if err := unix.Symlinkat(target, pfd, base); err != nil {
		return fmt.Errorf("symlink /%s: %w", rel, err)
	}
	if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	return unix.UtimesNanoAt(pfd, base, times(mtime), unix.AT_SYMLINK_NOFOLLOW)
}

// hardlink links rel to target (both inside the root).
func (w *destWriter) hardlink(rel, target string) error {
	tfd, tbase, err := w.parent(target)
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	pfd, base, err := w.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := removeExisting(pfd, base, rel); err != nil {
		return err
	}
	return unix.Linkat(tfd, tbase, pfd, base, 0)
}

// finish sets copied directories' mtimes, deepest first.
func (w *destWriter) finish() {
	for i := len(w.dirs) - 1; i >= 0; i-- {
		d := w.dirs[i]
		pfd, base, err := w.parent(d.rel)
		if err != nil {
			continue
		}
		unix.UtimesNanoAt(pfd, base, times(d.mtime), unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(pfd)
	}
	w.dirs = nil
}

// rootSource reads a mounted image root file system (COPY --from).
type rootSource struct {
	root int
	name string // for messages: "stage builder", "image alpine"
}

func newRootSource(dir, name string) (*rootSource, error) {
	fd, err := openRoot(dir)
	if err != nil {
		return nil, err
	}
	return &rootSource{root: fd, name: name}, nil
}

func (s *rootSource) close() { unix.Close(s.root) }

func statInfo(st *unix.Stat_t) fileInfo {
	fi := fileInfo{mode: int64(st.Mode & 0o7777), uid: int(st.Uid), gid: int(st.Gid), size: st.Size,
		mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fi.typ = tar.TypeDir
	case unix.S_IFREG:
		fi.typ = tar.TypeReg
	case unix.S_IFLNK:
		fi.typ = tar.TypeSymlink
	}
	return fi
}

func (s *rootSource) lstat(p string) (fileInfo, error) {
	if p == "." {
		var st unix.Stat_t
		if err := unix.Fstat(s.root, &st); err != nil {
			return fileInfo{}, err
		}
		return statInfo(&st), nil
	}
	pfd, err := openIn(s.root, path.Dir(p), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fileInfo{}, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, path.Base(p), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fileInfo{}, &os.PathError{Op: "stat", Path: "/" + p, Err: err}
	}
	fi := statInfo(&st)
	if fi.typ == tar.TypeSymlink {
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(pfd, path.Base(p), buf)
		if err != nil {
			return fileInfo{}, err
		}
		fi.link = string(buf[:n])
	}
	return fi, nil
}

func (s *rootSource) readDir(p string) ([]string, error) {
	fd, err := openIn(s.root, p, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

func (s *rootSource) open(p string) (io.ReadCloser, error) {
	fd, err := openIn(s.root, p, unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

// MountStubs records which of dests (absolute paths a container mounts
// over) are missing from rootfs, so the files and directories a runtime
// creates as mount points can be removed after the container exits: they
// must not end up in a layer. Cleanup removes those still empty and puts
// back the mtimes of the directories that held them.
func MountStubs(rootfs string, dests []string) (cleanup func(), err error) {
	root, err := openRoot(rootfs)
	if err != nil {
		return nil, err
	}
	type parentTime struct {
		rel   string
		mtime unix.Timespec
	}
	var missing []string
	var parents []parentTime
	seen := map[string]bool{}
	for _, d := range dests {
		rel := relOf(d)
		if rel == "." {
			continue
		}
		comps := strings.Split(rel, "/")
		for i := range comps {
			p := strings.Join(comps[:i+1], "/")
			fd, err := openIn(root, p, unix.O_PATH|unix.O_NOFOLLOW)
			if err == nil {
				unix.Close(fd)
				continue
			}
			if !errors.Is(err, unix.ENOENT) {
				break
			}
			// p and everything below it are stubs-to-be.
			parent := path.Dir(p)
			if !seen[parent] {
				seen[parent] = true
				if fd, err := openIn(root, parent, unix.O_PATH|unix.O_DIRECTORY); err == nil {
					var st unix.Stat_t
					if unix.Fstat(fd, &st) == nil {
						parents = append(parents, parentTime{parent, st.Mtim})
					}
					unix.Close(fd)
				}
			}
			for k := i; k < len(comps); k++ {
				q := strings.Join(comps[:k+1], "/")
				if !seen[q] {
					seen[q] = true
					missing = append(missing, q)
				}
			}
			break
		}
	}
	return func() {
		defer unix.Close(root)
		// Deepest first, so directories are empty when their turn comes.
		sort.Slice(missing, func(a, b int) bool {
			return strings.Count(missing[a], "/") > strings.Count(missing[b], "/")
		})
		for _, m := range missing {
			pfd, err := openIn(root, path.Dir(m), unix.O_RDONLY|unix.O_DIRECTORY)
			if err != nil {
				continue
			}
			base := path.Base(m)
			var st unix.Stat_t
			if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				switch st.Mode & unix.S_IFMT {
				case unix.S_IFREG:
					if st.Size == 0 {
						unix.Unlinkat(pfd, base, 0)
					}
				case unix.S_IFDIR:
					unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR) // fails unless empty
				}
			}
			unix.Close(pfd)
		}
		for _, p := range parents {
			if p.rel == "." {
				continue
			}
			pfd, err := openIn(root, path.Dir(p.rel), unix.O_RDONLY|unix.O_DIRECTORY)
			if err != nil {
				continue
			}
			unix.UtimesNanoAt(pfd, path.Base(p.rel), []unix.Timespec{p.mtime, p.mtime}, unix.AT_SYMLINK_NOFOLLOW)
			unix.Close(pfd)
		}
	}, nil
}

// pruneUpper removes from a snapshot's upper dir the directories overlay
// copied up without a change that stays (empty, not opaque, with the same
// owner, mode and mtime as below), and reports whether nothing is left.
// lowers are the layer dirs under it, top-most first.
func pruneUpper(upper string, lowers []string) (empty bool, err error) {
	var prune func(rel string) (bool, error)
	prune = func(rel string) (bool, error) {
		dir := filepath.Join(upper, rel)
		f, err := os.Open(dir)
		if err != nil {
			return false, err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return false, err
		}
		left := 0
		for _, n := range names {
			child := filepath.Join(rel, n)
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(upper, child), &st); err != nil {
				return false, err
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				left++
				continue
			}
			gone, err := prune(child)
			if err != nil {
				return false, err
			}
			if !gone {
				left++
			}
		}
		if left > 0 || rel == "" {
			return left == 0, nil
		}
		// An empty directory: drop it if it only mirrors the one below.
		if v, err := getxattr(dir, archive.OverlayOpaqueXattr); err == nil && string(v) == "y" {
			return false, nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(dir, &st); err != nil {
			return false, err
		}
		low, ok := lowerDir(lowers, rel)
		if !ok || low.Mode != st.Mode || low.Uid != st.Uid || low.Gid != st.Gid || low.Mtim != st.Mtim {
			return false, nil
		}
		if err := unix.Rmdir(dir); err != nil {
			return false, nil
		}
		return true, nil
	}
	return prune("")
}

func getxattr(p, name string) ([]byte, error) {
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// lowerDir finds directory rel in the layers (top-most first), as overlay
// shows it: the first layer that has it, unless a whiteout hides it.
func lowerDir(lowers []string, rel string) (unix.Stat_t, bool) {
	var st unix.Stat_t
	for _, l := range lowers {
		lfd, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		fd, err := unix.Openat2(lfd, rel, &unix.OpenHow{
			Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS})
		unix.Close(lfd)
		if err != nil {
			continue
		}
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return st, false
		}
		return st, st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	return st, false
}
