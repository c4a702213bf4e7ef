package volumes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// checkRelPath accepts a path inside a volume: relative, without ".."
// elements, not starting with ".." (names like "..data" belong to the
// atomic writer), not empty and without NUL bytes.
func checkRelPath(p string) error {
	switch {
	case p == "":
		return errors.New("path is empty")
	case strings.ContainsRune(p, 0):
		return errors.New("path contains a NUL byte")
	case filepath.IsAbs(p):
		return fmt.Errorf("path %q must be relative to the volume", p)
	case strings.HasPrefix(p, ".."):
		return fmt.Errorf("path %q must not start with \"..\"", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return fmt.Errorf("path %q must not contain \"..\"", p)
		}
	}
	switch c := filepath.Clean(p); {
	case c == ".":
		return fmt.Errorf("path %q names the volume itself, not a file in it", p)
	case strings.HasPrefix(c, ".."):
		return fmt.Errorf("path %q must not start with \"..\"", p) // "./..data"
	}
	return nil
}

// within reports whether p is root or below it (both already resolved).
func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

// resolveSubPath returns the host path of sub inside the volume at root,
// following symlinks but refusing any that lead out of the volume (a
// container could plant such a link in an emptyDir to reach host files).
// With create, missing directories are made one element at a time, each
// checked before the next. The engine binds the returned path later, so
// a container that swaps a directory for a symlink in between could
// still race this check; the kubelet closes that gap with file
// descriptors, which the engine's bind API cannot take.
func resolveSubPath(root, sub string, create bool) (string, error) {
	if err := checkRelPath(sub); err != nil {
		return "", err
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	cur := realRoot
	for _, el := range strings.Split(filepath.Clean(sub), "/") {
		next := filepath.Join(cur, el)
		resolved, err := filepath.EvalSymlinks(next)
		if errors.Is(err, os.ErrNotExist) {
			if !create {
				return "", fmt.Errorf("%s does not exist in the volume", strings.TrimPrefix(next, realRoot+"/"))
			}
			if _, lerr := os.Lstat(next); lerr == nil {
				return "", fmt.Errorf("%s is a dangling symlink", strings.TrimPrefix(next, realRoot+"/"))
			}
			if err := os.Mkdir(next, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
				return "", err
			}
			resolved, err = filepath.EvalSymlinks(next)
		}
		if err != nil {
			return "", err
		}
		if !within(realRoot, resolved) {
			return "", fmt.Errorf("it leads out of the volume (to %s)", resolved)
		}
		cur = resolved
	}
	return cur, nil
}
