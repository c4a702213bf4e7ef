package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/berth/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

// Whiteout names from the OCI image spec.
const (
	WhiteoutPrefix = ".wh."
	WhiteoutMeta   = ".wh..wh."
	WhiteoutOpaque = ".wh..wh..opq"
)

// OverlayOpaqueXattr marks an overlay directory as opaque.
const OverlayOpaqueXattr = "trusted.overlay.opaque"

// Apply unpacks one layer tar (plain or gzip-compressed, detected by
// magic) into dir and returns the number of bytes of regular file content
// written. See ApplyUncompressed.
func Apply(dir string, r io.Reader) (int64, error) {
	rc, err := Decompress(r)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return ApplyUncompressed(dir, rc)
}

// ApplyUncompressed unpacks the uncompressed layer tar r into dir, an
// overlay lower dir of its own:
//   - ".wh.NAME" becomes an overlay whiteout (a 0/0 character device NAME);
//   - ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory;
//   - leading "/" is taken relative to dir; "..", symlinks that lead out
//     of dir or are absolute, hard links to targets outside dir, and
//     device nodes and fifos are refused with an error that names the
//     entry (errdefs.ErrInvalidArgument);
//   - modes (with setuid/setgid/sticky), owners, mtimes and user.*,
//     security.* and POSIX ACL xattrs are kept.
//
// It reads r to its end (so a caller hashing the stream sees all of it).
// On error dir holds a partial layer; the caller discards it.
func ApplyUncompressed(dir string, r io.Reader) (int64, error) {
	rootfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("layer dir %s: %w", dir, err)
	}
	defer unix.Close(rootfd)
	a := &applier{root: rootfd}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a.size, fmt.Errorf("layer tar: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		if err := a.entry(hdr, tr); err != nil {
			return a.size, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return a.size, fmt.Errorf("layer tar: %w", err)
	}
	if err := a.finish(); err != nil {
		return a.size, err
	}
	return a.size, nil
}

type dirTime struct {
	rel          string
	atime, mtime time.Time
}

type applier struct {
	root int
	size int64
	dirs []dirTime
	buf  []byte // for copyFile

	// The settings of Root.Extract (docker cp); all zero for a layer.
	resolve              uint64 // openat2 resolve flags; 0 means beneath the root
	plain                bool   // no whiteouts: ".wh." names are files; fifos allowed
	noOverwriteDirNonDir bool
	owner                *[2]int // uid, gid given to every entry instead of the archive's
}

func hostile(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// cleanPath turns a tar name into a clean path relative to the root,
// refusing any that climbs out with "..".
func cleanPath(name string) (string, error) {
	p := strings.TrimLeft(name, "/")
	if p == "" {
		return ".", nil
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", hostile("path %q climbs out of the layer root", name)
	}
	return c, nil
}

func openErr(rel string, err error) error {
	switch {
	case errors.Is(err, unix.EXDEV):
		return hostile("path %q leaves the layer root (through an absolute or escaping symlink)", rel)
	case errors.Is(err, unix.ELOOP):
		return hostile("path %q: too many levels of symlinks", rel)
	case errors.Is(err, unix.ENOTDIR):
		return hostile("path %q: a parent is not a directory", rel)
	}
	return fmt.Errorf("path %q: %w", rel, err)
}

// openDir opens the directory rel beneath the root, following symlinks only
// while they stay beneath it.
func (a *applier) openDir(rel string) (int, error) {
	resolve := a.resolve
	if resolve == 0 {
		resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS
	}
	fd, err := unix.Openat2(a.root, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolve,
	})
	if err != nil {
		return -1, openErr(rel, err)
	}
	return fd, nil
}

// mkdirAll opens directory rel, creating missing components (0755, root).
func (a *applier) mkdirAll(rel string) (int, error) {
	fd, err := a.openDir(rel)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fd, err := a.openDir(p)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return -1, err
		}
		pfd, err := a.openDir(path.Dir(p))
		if err != nil {
			return -1, err
		}
		err = unix.Mkdirat(pfd, parts[i], 0o755)
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("mkdir %q: %w", p, err)
		}
	}
	return a.openDir(rel)
}

// removeAt removes name (recursively) from the directory pfd, never
// following a symlink.
func removeAt(pfd int, name string) error {
	err := unix.Unlinkat(pfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	// os.RemoveAll works with *at calls and O_NOFOLLOW below the parent,
	// which /proc/self/fd names without a path walk.
	return os.RemoveAll(fmt.Sprintf("/proc/self/fd/%d/%s", pfd, name))
}

func timespecs(atime, mtime time.Time) []unix.Timespec {
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	if atime.IsZero() {
		atime = mtime
	}
	at, _ := unix.TimeToTimespec(atime)
	mt, _ := unix.TimeToTimespec(mtime)
	return []unix.Timespec{at, mt}
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanPath(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<32-2 || hdr.Gid > 1<<32-2 {
		return hostile("uid/gid %d/%d out of range", hdr.Uid, hdr.Gid)
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return hostile("the layer root must be a directory, got type %q", hdr.Typeflag)
		}
		uid, gid := a.ids(hdr)
		if err := unix.Fchown(a.root, uid, gid); err != nil {
			return err
		}
		if err := unix.Fchmod(a.root, uint32(hdr.Mode&0o7777)); err != nil {
			return err
		}
		a.dirs = append(a.dirs, dirTime{".", hdr.AccessTime, hdr.ModTime})
		return nil
	}
	dir, base := path.Dir(rel), path.Base(rel)

	if !a.plain && strings.HasPrefix(base, WhiteoutPrefix) {
		return a.whiteout(hdr, dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeFifo:
		if !a.plain {
			return hostile("device nodes and fifos are not allowed in a layer (type %q)", hdr.Typeflag)
		}
	case tar.TypeChar, tar.TypeBlock:
		return hostile("device nodes and fifos are not allowed in a layer (type %q)", hdr.Typeflag)
	case tar.TypeDir, tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeLink:
	default:
		return hostile("unsupported tar entry type %q", hdr.Typeflag)
	}

	pfd, err := a.mkdirAll(dir)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)

	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if a.noOverwriteDirNonDir && isDir != (hdr.Typeflag == tar.TypeDir) {
			if isDir {
				return hostile("cannot overwrite directory %q with a non-directory", rel)
			}
			return hostile("cannot overwrite non-directory %q with a directory", rel)
		}
		if !(hdr.Typeflag == tar.TypeDir && isDir) {
			if err := removeAt(pfd, base); err != nil {
				return fmt.Errorf("replace existing %q: %w", rel, err)
			}
		}
	}

	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := a.meta(fd, hdr, mode); err != nil {
			return err
		}
		a.dirs = append(a.dirs, dirTime{rel, hdr.AccessTime, hdr.ModTime})
		return nil

	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), rel)
		defer f.Close()
		n, err := a.copyFile(f, r, hdr.Size)
		a.size += n
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if err := a.meta(fd, hdr, mode); err != nil {
			return err
		}
		return unix.UtimesNanoAt(pfd, base, timespecs(hdr.AccessTime, hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW)

	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return hostile("symlink with an empty target")
		}
		// A symlink may point anywhere: it is never followed while
		// unpacking (later entries resolve beneath the root only).
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return err
		}
		uid, gid := a.ids(hdr)
		if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		return unix.UtimesNanoAt(pfd, base, timespecs(hdr.AccessTime, hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW)

	case tar.TypeLink:
		target, err := cleanPath(hdr.Linkname)
		if err != nil {
			return hostile("hard link target %q climbs out of the layer root", hdr.Linkname)
		}
		if target == "." {
			return hostile("hard link to the layer root")
		}
		tfd, err := a.openDir(path.Dir(target))
		if errors.Is(err, unix.ENOENT) {
			return hostile("hard link target %q is not in the layer", hdr.Linkname)
		}
		if err != nil {
			return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
		}
		defer unix.Close(tfd)
		var tst unix.Stat_t
		if err := unix.Fstatat(tfd, path.Base(target), &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return hostile("hard link target %q is not in the layer", hdr.Linkname)
		}
		if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
			return hostile("hard link target %q is a directory", hdr.Linkname)
		}
		if err := unix.Linkat(tfd, path.Base(target), pfd, base, 0); err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		return nil

	case tar.TypeFifo:
		if err := unix.Mkfifoat(pfd, base, 0o600); err != nil {
			return err
		}
		fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		uid, gid := a.ids(hdr)
		if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
			return err
		}
		return unix.UtimesNanoAt(pfd, base, timespecs(hdr.AccessTime, hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// copyBufSize is the size of the writes that fill an unpacked file: big
// writes cost the kernel less per byte than io.Copy's 32 KiB.
const copyBufSize = 256 << 10

// copyFile writes the size bytes of r, a file's content in the tar, to f.
func (a *applier) copyFile(f *os.File, r io.Reader, size int64) (int64, error) {
	if size <= 32<<10 {
		return io.Copy(f, r)
	}
	if a.buf == nil {
		a.buf = make([]byte, copyBufSize)
	}
	// Not f's ReadFrom: that copies through a 32 KiB buffer of its own.
	return io.CopyBuffer(struct{ io.Writer }{f}, r, a.buf)
}

// ids is the owner an entry gets.
func (a *applier) ids(hdr *tar.Header) (int, int) {
	if a.owner != nil {
		return a.owner[0], a.owner[1]
	}
	return hdr.Uid, hdr.Gid
}

// meta sets owner, mode (after chown, which clears setuid) and xattrs.
func (a *applier) meta(fd int, hdr *tar.Header, mode uint32) error {
	uid, gid := a.ids(hdr)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || !xattrAllowed(name) {
			continue
		}
		if err := unix.Fsetxattr(fd, name, []byte(v), 0); err != nil &&
			!errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	return nil
}

// xattrAllowed keeps the xattrs an image may carry. trusted.* (which
// includes overlay's own trusted.overlay.*) could change how overlay sees
// the layer, so it is never taken from a tar.
func xattrAllowed(name string) bool {
	return strings.HasPrefix(name, "user.") ||
		(strings.HasPrefix(name, "security.") && name != "security.selinux") ||
		name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

func (a *applier) whiteout(hdr *tar.Header, dir, base string) error {
	pfd, err := a.mkdirAll(dir)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if base == WhiteoutOpaque {
		if err := unix.Fsetxattr(pfd, OverlayOpaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %q opaque: %w", dir, err)
		}
		return nil
	}
	if strings.HasPrefix(base, WhiteoutMeta) {
		return nil // other AUFS metadata carries nothing for overlay
	}
	name := strings.TrimPrefix(base, WhiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return hostile("whiteout %q names no file", base)
	}
	if err := removeAt(pfd, name); err != nil {
		return fmt.Errorf("whiteout %q: %w", name, err)
	}
	if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("whiteout %q: %w", name, err)
	}
	return unix.UtimesNanoAt(pfd, name, timespecs(hdr.AccessTime, hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW)
}

// finish sets directory times last, deepest first, since adding entries
// changed them.
func (a *applier) finish() error {
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		if d.rel == "." {
			if err := unix.UtimesNanoAt(a.root, ".", timespecs(d.atime, d.mtime), 0); err != nil {
				return err
			}
			continue
		}
		pfd, err := a.openDir(path.Dir(d.rel))
		if err != nil {
			continue // replaced by a later entry
		}
		unix.UtimesNanoAt(pfd, path.Base(d.rel), timespecs(d.atime, d.mtime), unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(pfd)
	}
	return nil
}
