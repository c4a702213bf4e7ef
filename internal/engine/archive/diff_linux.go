package archive

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

	"github.com/berth/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

// WriteOverlayDiff writes dir, an overlayfs upper directory (or a layer
// unpacked by Apply, which has the same form), as an OCI layer tar to w
// and returns the number of bytes of regular file content in it. It is
// the inverse of ApplyUncompressed:
//   - an overlay whiteout (a 0/0 character device NAME) becomes ".wh.NAME";
//   - a directory with trusted.overlay.opaque=y gets ".wh..wh..opq";
//   - hard links within dir stay hard links; sockets are skipped;
//   - owners, modes, whole-second mtimes and the xattrs an image may carry
//     (user.*, security.* but SELinux labels, POSIX ACLs) are kept;
//     overlay's own trusted.* attributes are not.
//
// Entries come in lexical order and times are rounded to seconds, so the
// same directory always gives the same tar (and diff ID). A directory
// using overlay features that have no tar form (redirect_dir, metacopy)
// is refused.
func WriteOverlayDiff(w io.Writer, dir string) (int64, error) {
	return writeDiff(&differ{root: dir, tw: tar.NewWriter(w), links: map[[2]uint64]string{}})
}

// WriteContainerDiff is WriteOverlayDiff for a container's writable layer
// upper over lowers (top-most first): the runtime's MountPlaceholders are
// left out, as OverlayChanges leaves them out.
func WriteContainerDiff(w io.Writer, upper string, lowers []string) (int64, error) {
	return writeDiff(&differ{root: upper, tw: tar.NewWriter(w), links: map[[2]uint64]string{}, lowers: lowers, skipPlaceholders: true})
}

func writeDiff(d *differ) (int64, error) {
	if err := d.walk(""); err != nil {
		return d.size, err
	}
	if err := d.tw.Close(); err != nil {
		return d.size, err
	}
	return d.size, nil
}

type differ struct {
	root  string
	tw    *tar.Writer
	size  int64
	links map[[2]uint64]string // (dev, ino) → first name, for hard links
	buf   []byte
	// skipPlaceholders leaves out MountPlaceholders (lowers decide).
	skipPlaceholders bool
	lowers           []string
}

func (d *differ) walk(rel string) error {
	f, err := os.Open(filepath.Join(d.root, rel))
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		child := path.Join(rel, n)
		if rel == "" {
			child = n
		}
		isDir, err := d.entry(child)
		if err != nil {
			return fmt.Errorf("layer diff %q: %w", child, err)
		}
		if isDir {
			if err := d.walk(child); err != nil {
				return err
			}
		}
	}
	return nil
}

func getxattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// xattrs returns the attributes of p worth carrying in a layer, and
// reports whether p is an opaque overlay directory.
func xattrs(p string) (map[string]string, bool, error) {
	var buf []byte
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			err = nil
		}
		return nil, false, err
	}
	buf = make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, false, err
	}
	var out map[string]string
	opaque := false
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		switch {
		case name == OverlayOpaqueXattr:
			v, err := getxattr(p, name)
			if err != nil {
				return nil, false, err
			}
			opaque = string(v) == "y"
		case name == "trusted.overlay.redirect" || name == "trusted.overlay.metacopy":
			return nil, false, fmt.Errorf("overlay attribute %s has no layer tar form (mount overlays with redirect_dir=off,metacopy=off): %w", name, errdefs.ErrNotImplemented)
		case xattrAllowed(name):
			v, err := getxattr(p, name)
			if err != nil {
				return nil, false, err
			}
			if out == nil {
				out = map[string]string{}
			}
			out[name] = string(v)
		}
	}
	return out, opaque, nil
}

// entry writes rel's header (and content) and reports whether it is a
// directory to descend into.
func (d *differ) entry(rel string) (bool, error) {
	p := filepath.Join(d.root, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false, err
	}
	if d.skipPlaceholders && placeholderIn(d.root, "/"+rel, &st, d.lowers) {
		return false, nil
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec).Round(time.Second),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			// An overlay whiteout.
			dir, base := path.Split(rel)
			hdr.Name = dir + WhiteoutPrefix + base
			hdr.Typeflag = tar.TypeReg
			hdr.Mode = 0o600
			return false, d.tw.WriteHeader(hdr)
		}
		hdr.Typeflag = tar.TypeChar
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		hdr.Typeflag = tar.TypeBlock
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		return false, nil // tar has no form for sockets; Docker skips them too
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return false, err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFREG:
		if st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := d.links[key]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return false, d.tw.WriteHeader(hdr)
			}
			d.links[key] = rel
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	default:
		return false, fmt.Errorf("unsupported file type %o", st.Mode&unix.S_IFMT)
	}
	xa, opaque, err := xattrs(p)
	if err != nil {
		return false, err
	}
	for k, v := range xa {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = v
	}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return false, err
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		f, err := os.Open(p)
		if err != nil {
			return false, err
		}
		if d.buf == nil {
			d.buf = make([]byte, 128<<10)
		}
		n, err := io.CopyBuffer(d.tw, io.LimitReader(f, hdr.Size), d.buf)
		f.Close()
		d.size += n
		if err != nil {
			return false, err
		}
		if n != hdr.Size {
			return false, fmt.Errorf("file changed size while being read (%d of %d bytes)", n, hdr.Size)
		}
	}
	if opaque {
		oh := &tar.Header{Name: rel + "/" + WhiteoutOpaque, Typeflag: tar.TypeReg, Mode: 0o600,
			Uid: hdr.Uid, Gid: hdr.Gid, ModTime: hdr.ModTime}
		if err := d.tw.WriteHeader(oh); err != nil {
			return false, err
		}
	}
	return hdr.Typeflag == tar.TypeDir, nil
}
