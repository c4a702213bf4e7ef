package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/berth/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

// ExtractOptions tune Root.Extract.
type ExtractOptions struct {
	// NoOverwriteDirNonDir refuses to replace a directory with a
	// non-directory or the other way round (Docker's
	// noOverwriteDirNonDir).
	NoOverwriteDirNonDir bool
	// Owner, when set, owns every entry (uid, gid) instead of the
	// archive's owners (docker cp -a gives the container's user).
	Owner *[2]int
	// SpoolDir holds the archive while it is checked; "" means os.TempDir().
	SpoolDir string
}

// Extract unpacks the tar stream rd (plain or gzip) into the directory
// dst of the root, the way PUT /containers/{id}/archive does. dst is
// resolved with every symlink followed and must be a directory. Entries
// are confined to dst: names with "..", and symlinks (in the archive or
// already on disk) are resolved as if dst were "/", so nothing is written
// outside it. Device nodes are refused; fifos, hard links within dst,
// modes, owners, times and user/security xattrs are kept.
//
// The whole archive is read and checked first (spooled to SpoolDir), so a
// malformed or hostile archive changes nothing. A failure while writing
// (a full disk) can leave the entries written so far.
func (r *Root) Extract(dst string, rd io.Reader, o ExtractOptions) error {
	dfd, err := r.open(dst, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if st, serr := r.lstatAt(dst, true); serr == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("extraction point %s is not a directory: %w", dst, errdefs.ErrInvalidArgument)
		}
		return err
	}
	defer unix.Close(dfd)

	plain, err := Decompress(rd)
	if err != nil {
		return err
	}
	defer plain.Close()
	spool, err := os.CreateTemp(o.SpoolDir, "berth-extract-")
	if err != nil {
		return fmt.Errorf("spooling the archive: %w", err)
	}
	os.Remove(spool.Name())
	defer spool.Close()
	if err := checkArchive(io.TeeReader(plain, spool)); err != nil {
		return err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return err
	}

	a := &applier{root: dfd, resolve: inRoot, plain: true, noOverwriteDirNonDir: o.NoOverwriteDirNonDir, owner: o.Owner}
	tr := tar.NewReader(spool)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("archive: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		if err := a.entry(hdr, tr); err != nil {
			if errors.Is(err, unix.EROFS) {
				return fmt.Errorf("extracting %q into %s: read-only file system: %w", hdr.Name, dst, errdefs.ErrInvalidArgument)
			}
			return fmt.Errorf("extracting %q into %s: %w", hdr.Name, dst, err)
		}
	}
	return a.finish()
}

// checkArchive reads a whole tar stream and refuses what Extract would:
// a malformed stream, names or hard link targets that climb out with "..",
// device nodes and unknown entry types, owners out of range.
func checkArchive(r io.Reader) error {
	tr := tar.NewReader(r)
	n := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("archive is not a valid tar stream (after %d entries): %v: %w", n, err, errdefs.ErrInvalidArgument)
		}
		n++
		if _, err := cleanPath(hdr.Name); err != nil {
			return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeFifo, tar.TypeXGlobalHeader:
		case tar.TypeLink:
			if t, err := cleanPath(hdr.Linkname); err != nil || t == "." {
				return fmt.Errorf("archive entry %q: hard link target %q is outside the archive: %w", hdr.Name, hdr.Linkname, errdefs.ErrInvalidArgument)
			}
		case tar.TypeChar, tar.TypeBlock:
			return fmt.Errorf("archive entry %q: device nodes cannot be copied into a container: %w", hdr.Name, errdefs.ErrInvalidArgument)
		default:
			return fmt.Errorf("archive entry %q: unsupported tar entry type %q: %w", hdr.Name, hdr.Typeflag, errdefs.ErrInvalidArgument)
		}
		if hdr.Typeflag == tar.TypeSymlink && hdr.Linkname == "" {
			return fmt.Errorf("archive entry %q: symlink with an empty target: %w", hdr.Name, errdefs.ErrInvalidArgument)
		}
		if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<32-2 || hdr.Gid > 1<<32-2 {
			return fmt.Errorf("archive entry %q: uid/gid %d/%d out of range: %w", hdr.Name, hdr.Uid, hdr.Gid, errdefs.ErrInvalidArgument)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return fmt.Errorf("archive entry %q is truncated: %v: %w", hdr.Name, err, errdefs.ErrInvalidArgument)
		}
	}
	// Read to the end so the spool holds the trailer too.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("reading the archive: %w", err)
	}
	return nil
}
