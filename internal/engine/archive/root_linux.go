package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/berth/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

// PathStat describes one path of a container's file system, as Docker's
// X-Docker-Container-Path-Stat header carries it (base64 JSON). Mode has
// Go's os.FileMode bits, which is what Docker clients decode.
type PathStat struct {
	Name       string      `json:"name"`
	Size       int64       `json:"size"`
	Mode       os.FileMode `json:"mode"`
	Mtime      time.Time   `json:"mtime"`
	LinkTarget string      `json:"linkTarget"`
}

// Root is a directory treated as the "/" of a file system, the way a
// process chrooted there sees it: every path given to its methods is
// resolved beneath it (openat2 RESOLVE_IN_ROOT), so "..", absolute
// symlinks and symlinks that climb out all stay inside, and magic links
// (/proc/PID/root and the like) are refused. Opening a Root on
// /proc/PID/root gives the file system of a running container as its
// processes see it, volumes and tmpfs mounts included.
type Root struct {
	fd   int
	name string
}

// OpenRoot opens dir as a Root. Close it when done.
func OpenRoot(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening root %s: %w", dir, err)
	}
	return &Root{fd: fd, name: dir}, nil
}

// Close releases the root.
func (r *Root) Close() error { return unix.Close(r.fd) }

// inRoot is how every path of a Root is resolved.
const inRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// pathErr turns a resolution failure of p into an errdefs class.
func pathErr(p string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("no such file or directory: %s: %w", p, errdefs.ErrNotFound)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s: a parent is not a directory: %w", p, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s: too many levels of symbolic links (or a magic link): %w", p, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s: crosses a magic link: %w", p, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s: %v: %w", p, err, errdefs.ErrForbidden)
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%s: read-only file system: %w", p, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("%s: %w", p, err)
}

// open opens p beneath the root, following every symlink inside it.
func (r *Root) open(p string, flags uint64) (int, error) {
	rel := strings.TrimLeft(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	for {
		fd, err := unix.Openat2(r.fd, rel, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: inRoot})
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // a concurrent rename; the kernel asks to retry
		}
		if err != nil {
			return -1, pathErr(p, err)
		}
		return fd, nil
	}
}

// splitLast splits a clean absolute path into its parent and last
// component; "/" has no last component.
func splitLast(p string) (dir, base string) {
	p = path.Clean("/" + p)
	if p == "/" {
		return "/", ""
	}
	return path.Dir(p), path.Base(p)
}

// lstatAt stats p without following a final symlink (unless follow), with
// every parent resolved beneath the root.
func (r *Root) lstatAt(p string, follow bool) (unix.Stat_t, error) {
	var st unix.Stat_t
	dir, base := splitLast(p)
	if base == "" || follow {
		fd, err := r.open(p, unix.O_PATH)
		if err != nil {
			return st, err
		}
		defer unix.Close(fd)
		if err := unix.Fstat(fd, &st); err != nil {
			return st, pathErr(p, err)
		}
		return st, nil
	}
	pfd, err := r.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return st, err
	}
	defer unix.Close(pfd)
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, pathErr(p, err)
	}
	return st, nil
}

// Stat describes p as docker cp wants it: a final symlink is not followed
// (unless p ends in "/" or "/.") and its LinkTarget is the path it leads
// to, resolved inside the root.
func (r *Root) Stat(p string) (PathStat, error) {
	st, err := r.lstatAt(p, FollowsLast(p))
	if err != nil {
		return PathStat{}, err
	}
	ps := PathStat{Name: BaseName(p), Size: st.Size, Mode: fileMode(st.Mode),
		Mtime: time.Unix(st.Mtim.Unix()).UTC()}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if ps.LinkTarget, err = r.Resolve(p); err != nil {
			return PathStat{}, err
		}
	}
	return ps, nil
}

// Resolve returns the absolute path p leads to inside the root with every
// symlink followed, as the kernel would resolve it for a process whose
// root is this one. Components that do not exist are kept as they are.
func (r *Root) Resolve(p string) (string, error) {
	var done []string
	rest := splitPath(p)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		target, ok, err := r.readlink("/"+strings.Join(done, "/"), c)
		if err != nil {
			return "", err
		}
		if !ok {
			done = append(done, c)
			continue
		}
		if links++; links > 40 {
			return "", pathErr(p, unix.ELOOP)
		}
		if strings.HasPrefix(target, "/") {
			done = done[:0]
		}
		rest = append(splitPath(target), rest...)
	}
	return "/" + strings.Join(done, "/"), nil
}

func splitPath(p string) []string { return strings.Split(p, "/") }

// readlink reads the symlink base in dir; ok is false when it is not one
// (or does not exist).
func (r *Root) readlink(dir, base string) (string, bool, error) {
	pfd, err := r.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		if errdefs.Is(err, errdefs.ErrNotFound) {
			return "", false, nil
		}
		return "", false, err
	}
	defer unix.Close(pfd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(pfd, base, buf)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return "", false, nil
		}
		return "", false, pathErr(path.Join(dir, base), err)
	}
	return string(buf[:n]), true, nil
}

// fileMode converts a stat mode to Go's os.FileMode bits.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// pseudoFS are file systems whose contents are the kernel's, not the
// container's: a tar of a directory lists their mount point but never
// walks into them.
var pseudoFS = map[int64]bool{
	unix.PROC_SUPER_MAGIC: true, unix.SYSFS_MAGIC: true, unix.CGROUP_SUPER_MAGIC: true,
	unix.CGROUP2_SUPER_MAGIC: true, unix.DEVPTS_SUPER_MAGIC: true, 0x19800202: true, // mqueue
	unix.DEBUGFS_MAGIC: true, unix.SECURITYFS_MAGIC: true, unix.BPF_FS_MAGIC: true,
	unix.TRACEFS_MAGIC: true, unix.BINFMTFS_MAGIC: true,
}

// WriteTar writes p as a tar archive, the way Docker's GET
// /containers/{id}/archive does: a directory is walked recursively with
// its entries named name/…; anything else is one entry called name. With
// name "" a directory's entries are written without a top directory (an
// export). A final symlink is archived as a link unless p ends in "/" or
// "/.". Symlinks are never followed during the walk, sockets are skipped,
// and pseudo file systems (proc, sysfs, cgroup…) are not walked into.
func (r *Root) WriteTar(w io.Writer, p, name string) error {
	tw := tar.NewWriter(w)
	t := &tarWalk{tw: tw, links: map[[2]uint64]string{}}
	dir, base := splitLast(p)
	var err error
	if base == "" || FollowsLast(p) {
		fd, oerr := r.open(p, unix.O_PATH)
		if oerr != nil {
			return oerr
		}
		err = t.addFD(fd, name, p)
	} else {
		pfd, oerr := r.open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
		if oerr != nil {
			return oerr
		}
		err = t.addAt(pfd, base, name, true)
		unix.Close(pfd)
	}
	if err != nil {
		return err
	}
	return tw.Close()
}

type tarWalk struct {
	tw    *tar.Writer
	links map[[2]uint64]string // (dev, ino) of multiply linked files → first name
}

// addFD archives the object behind an O_PATH fd (consumed) as name.
func (t *tarWalk) addFD(fd int, name, p string) error {
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return pathErr(p, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return pathErr(p, err)
		}
		return t.dir(dfd, &st, name)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return t.entry(&st, name, "", -1) // never opened: a device or fifo may block or act
	}
	// A regular file reached through a followed link: reopen the O_PATH
	// fd for reading, without resolving a path again.
	rfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr(p, err)
	}
	defer unix.Close(rfd)
	return t.entry(&st, name, "", rfd)
}

// addAt archives entry base of the directory pfd as name. top says it is
// the path the caller asked for (errors are returned, not skipped).
func (t *tarWalk) addAt(pfd int, base, name string, top bool) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if top {
			return pathErr(base, err)
		}
		return nil // vanished meanwhile
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		dfd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if top {
				return pathErr(base, err)
			}
			return nil
		}
		return t.dir(dfd, &st, name)
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(pfd, base, buf)
		if err != nil {
			return nil
		}
		return t.entry(&st, name, string(buf[:n]), -1)
	case unix.S_IFREG:
		// O_NONBLOCK: if a fifo replaced the file meanwhile, opening it
		// must not hang the copy; the type is checked again on the fd.
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			if top {
				return pathErr(base, err)
			}
			return nil
		}
		defer unix.Close(fd)
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil
		}
		return t.entry(&st, name, "", fd)
	case unix.S_IFSOCK:
		return nil
	}
	return t.entry(&st, name, "", -1)
}

// dir archives the directory dfd (consumed) and what it holds.
func (t *tarWalk) dir(dfd int, st *unix.Stat_t, name string) error {
	f := os.NewFile(uintptr(dfd), name)
	defer f.Close()
	if name != "" {
		if err := t.entry(st, name, "", -1); err != nil {
			return err
		}
	}
	var sfs unix.Statfs_t
	if unix.Fstatfs(dfd, &sfs) == nil && pseudoFS[int64(sfs.Type)] {
		return nil
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("reading directory %s: %w", name, err)
	}
	sort.Strings(names)
	for _, n := range names {
		child := n
		if name != "" {
			child = strings.TrimSuffix(name, "/") + "/" + n
		}
		if err := t.addAt(dfd, n, child, false); err != nil {
			return err
		}
	}
	return nil
}

// entry writes one header (and a regular file's content from fd).
func (t *tarWalk) entry(st *unix.Stat_t, name, link string, fd int) error {
	h := &tar.Header{Name: name, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()), Format: tar.FormatPAX}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		h.Typeflag = tar.TypeDir
		if !strings.HasSuffix(h.Name, "/") {
			h.Name += "/"
		}
	case unix.S_IFLNK:
		h.Typeflag, h.Linkname = tar.TypeSymlink, link
	case unix.S_IFREG:
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		if st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := t.links[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
				fd = -1
			} else {
				t.links[key] = name
			}
		}
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	default:
		return nil
	}
	if err := t.tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg || h.Size == 0 {
		return nil
	}
	// Exactly Size bytes: a file that shrinks meanwhile is padded with
	// zeros, one that grows is cut, so the archive stays well formed.
	var n int64
	if fd >= 0 {
		n, _ = io.Copy(t.tw, io.LimitReader(fdReader(fd), h.Size))
	}
	if n < h.Size {
		if _, err := io.CopyN(t.tw, zeros{}, h.Size-n); err != nil {
			return err
		}
	}
	return nil
}

// fdReader reads a file descriptor it does not own.
type fdReader int

func (f fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// SameDir reports whether the root is the directory dir (same device and
// inode), e.g. that /proc/PID/root is still the container's root file
// system and not the root of a process that reused the PID.
func (r *Root) SameDir(dir string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(r.fd, &a) != nil || unix.Stat(dir, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}
