package archive

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ChangeKind is Docker's kind of a file system change.
type ChangeKind int

// The kinds of change, with Docker's numbers (GET /containers/{id}/changes).
const (
	ChangeModify ChangeKind = 0
	ChangeAdd    ChangeKind = 1
	ChangeDelete ChangeKind = 2
)

// Change is one changed path of a container's file system.
type Change struct {
	Path string     `json:"Path"`
	Kind ChangeKind `json:"Kind"`
}

// String is docker diff's line: "C /etc", "A /etc/x", "D /y".
func (c Change) String() string {
	k := "C"
	switch c.Kind {
	case ChangeAdd:
		k = "A"
	case ChangeDelete:
		k = "D"
	}
	return k + " " + c.Path
}

// MountPlaceholders are the paths the OCI runtime creates in a container's
// root file system as mount points when the image lacks them. Docker keeps
// them in an "init" layer under the container's writable layer, so they
// are no change of the container; berth's runtime makes them in the
// writable layer, and OverlayChanges and WriteContainerDiff leave them out
// while they are still empty placeholders that no lower layer has.
var MountPlaceholders = map[string]bool{
	"/dev": true, "/dev/pts": true, "/dev/shm": true, "/dev/mqueue": true, "/dev/console": true,
	"/proc": true, "/sys": true, "/etc/hosts": true, "/etc/hostname": true, "/etc/resolv.conf": true,
	"/etc/mtab": true, "/.dockerenv": true,
}

// placeholderIn reports whether name (absolute) in upper, whose stat is
// st, is one of MountPlaceholders left as the runtime made it.
func placeholderIn(upper, name string, st *unix.Stat_t, lowers []string) bool {
	if !MountPlaceholders[name] {
		return false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if st.Size != 0 {
			return false
		}
	case unix.S_IFDIR:
		if n, err := os.ReadDir(filepath.Join(upper, name)); err == nil && len(n) > 0 {
			return false
		}
	default:
		return false
	}
	_, inLower := lowerStat(lowers, name)
	return !inLower
}

// OverlayChanges lists what the overlay upper directory upper changes
// against lowers (the lower dirs, top-most first), as Docker's overlay
// driver does: a whiteout is a deletion; an entry found in a lower dir is
// a modification, but a directory only when it is opaque or its type,
// mode or owner differ, or when something inside it was added or
// deleted (copy-up and the runtime's mount points touch directories'
// times); anything else is an addition. MountPlaceholders are left out.
// Paths are absolute, parents before children, in lexical order.
func OverlayChanges(upper string, lowers []string) ([]Change, error) {
	var changes []Change
	changedDirs := map[string]bool{}
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != upper && errors.Is(err, fs.ErrNotExist) {
				return nil // removed by the running container meanwhile
			}
			return err
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := "/" + filepath.ToSlash(rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if placeholderIn(upper, name, &st, lowers) {
			if isDir {
				return filepath.SkipDir
			}
			return nil
		}
		ch := Change{Path: name, Kind: ChangeAdd}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			ch.Kind = ChangeDelete
		} else if low, ok := lowerStat(lowers, name); ok {
			if isDir && !opaqueDir(p) && low.Mode == st.Mode && low.Uid == st.Uid && low.Gid == st.Gid {
				return nil // only the parent of a change; recorded below if so
			}
			ch.Kind = ChangeModify
		}
		if isDir {
			changedDirs[name] = true
		}
		if ch.Kind != ChangeModify {
			if parent := path.Dir(name); parent != "/" && !changedDirs[parent] {
				changes = append(changes, Change{Path: parent, Kind: ChangeModify})
				changedDirs[parent] = true
			}
		}
		changes = append(changes, ch)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return changes, nil
}

// lowerStat stats rel in the top-most lower dir that has it. A whiteout,
// or an opaque directory, whiteout or non-directory on the way to rel in
// a higher lower dir, hides what the ones below have.
func lowerStat(lowers []string, rel string) (unix.Stat_t, bool) {
	for _, l := range lowers {
		var st unix.Stat_t
		err := unix.Lstat(filepath.Join(l, rel), &st)
		if err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
				return st, false
			}
			return st, true
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return st, false
		}
		if hidesBelow(l, rel) {
			return unix.Stat_t{}, false
		}
	}
	return unix.Stat_t{}, false
}

// hidesBelow reports whether the lower dir l hides rel in the dirs under
// it: an ancestor of rel in l is opaque, a whiteout or not a directory.
func hidesBelow(l, rel string) bool {
	for a := path.Dir(rel); a != "/" && a != "."; a = path.Dir(a) {
		p := filepath.Join(l, a)
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || opaqueDir(p) {
			return true
		}
	}
	return false
}

func opaqueDir(p string) bool {
	v, err := getxattr(p, OverlayOpaqueXattr)
	return err == nil && string(v) == "y"
}
