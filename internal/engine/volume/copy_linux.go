package volume

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth/berth/internal/errdefs"
)

// ensureTarget makes sure the mount target rel (resolved by resolveInRoot:
// absolute, clean, symlink-free as far as it exists) exists inside root:
// a directory, or a file when file is set. It walks from root one
// component at a time with O_NOFOLLOW, so a symlink met on the way (one
// that appeared after resolution) is refused, never followed; nothing is
// created outside root.
func ensureTarget(root, rel string, file bool) error {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container root %s: %w", root, err)
	}
	defer func() { unix.Close(fd) }()
	comps := strings.Split(strings.TrimPrefix(rel, "/"), "/")
	for i, c := range comps {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("mount target %s: unexpected component %q: %w", rel, c, errdefs.ErrInvalidArgument)
		}
		if i == len(comps)-1 && file {
			return ensureFile(fd, rel, c)
		}
		nfd, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(fd, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("mount target %s: creating %s: %w", rel, c, err)
			}
			nfd, err = unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return fmt.Errorf("mount target %s: %s is not a directory (or is a symlink): %w", rel, "/"+filepath.Join(comps[:i+1]...), errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return fmt.Errorf("mount target %s: %w", rel, err)
		}
		unix.Close(fd)
		fd = nfd
	}
	return nil
}

func ensureFile(dirfd int, rel, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		fd, err = unix.Openat(dirfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if errors.Is(err, unix.EEXIST) {
			fd, err = unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return fmt.Errorf("mount target %s: %w", rel, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("mount target %s: %w", rel, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return fmt.Errorf("mount target %s is a directory, cannot bind-mount a file on it: %w", rel, errdefs.ErrInvalidArgument)
	case unix.S_IFLNK:
		return fmt.Errorf("mount target %s is a symlink: %w", rel, errdefs.ErrInvalidArgument)
	}
	return nil
}

// copyTree copies the directory src into the existing, empty directory
// dst, preserving ownership, permission bits (setuid included), times,
// symlinks (as links, never followed), hard links, device nodes, FIFOs and
// extended attributes (file capabilities among them). dst takes src's own
// owner and mode. A src that is not a directory copies nothing.
func copyTree(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	c := &copier{links: map[[2]uint64]string{}}
	if err := c.dirContents(src, dst); err != nil {
		return err
	}
	return c.attrs(src, dst, fi.Sys().(*syscall.Stat_t), false)
}

type copier struct {
	links map[[2]uint64]string // (dev, ino) of a multiply-linked file -> its copy
}

func (c *copier) dirContents(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := c.entry(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) entry(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		if err := c.dirContents(src, dst); err != nil {
			return err
		}
		return c.attrs(src, dst, st, false)
	case unix.S_IFREG:
		if st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := c.links[key]; ok {
				return os.Link(first, dst)
			}
			c.links[key] = dst
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
		return c.attrs(src, dst, st, false)
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
		return c.attrs(src, dst, st, true)
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", dst, err)
		}
		return c.attrs(src, dst, st, false)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// attrs gives dst src's owner, then mode (chown clears setuid bits), then
// extended attributes (chown clears file capabilities), then times.
func (c *copier) attrs(src, dst string, st *syscall.Stat_t, symlink bool) error {
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if !symlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %s: %w", dst, err)
	}
	return nil
}

func copyXattrs(src, dst string) error {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size <= 0 {
		return nil // no xattrs, or a file system without them
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(src, buf)
	if err != nil {
		return nil
	}
	for _, name := range strings.Split(string(buf[:size]), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") || name == "security.selinux" {
			continue
		}
		n, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			continue
		}
		val := make([]byte, n)
		if n, err = unix.Lgetxattr(src, name, val); err != nil {
			continue
		}
		if err := unix.Lsetxattr(dst, name, val[:n], 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setting xattr %s on %s: %w", name, dst, err)
		}
	}
	return nil
}
