// Package snapshot owns berth's overlayfs snapshots: every image layer is
// unpacked once into <root>/layers/<chainID hex>/fs (so identical layer
// stacks share it), and every container gets <root>/containers/<id>/
// {upper,work,merged} with an overlay mounted on merged whose lower dirs
// are its image's layers.
//
// Lifecycle of a container snapshot: Prepare (create and mount) → Unmount
// and Mount as often as needed (the upper dir survives unmounts and daemon
// restarts) → Remove (unmount and delete everything).
package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/lazyre"
	"github.com/opencontainers/go-digest"
)

// Store holds layer and container snapshots under one root. It is safe for
// concurrent use.
type Store struct {
	root  string
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

// New opens (creating if needed) the snapshot store under root, removing
// the leftovers of layers whose unpacking or removal was interrupted.
func New(root string) (*Store, error) {
	for _, d := range []string{"layers", "containers", "empty"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("snapshot store %s: %w", root, err)
		}
	}
	os.Chmod(filepath.Join(root, "empty"), 0o755)
	ents, _ := os.ReadDir(filepath.Join(root, "layers"))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".") {
			os.RemoveAll(filepath.Join(root, "layers", e.Name()))
		}
	}
	return &Store{root: root, locks: map[string]*keyLock{}}, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) lock(key string) func() {
	s.mu.Lock()
	l := s.locks[key]
	if l == nil {
		l = &keyLock{}
		s.locks[key] = l
	}
	l.refs++
	s.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, key)
		}
		s.mu.Unlock()
	}
}

func checkChainID(chainID digest.Digest) error {
	if err := chainID.Validate(); err != nil || chainID.Algorithm() != digest.SHA256 {
		return fmt.Errorf("layer chain ID %q: expected sha256:<64 hex digits>: %w", chainID, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (s *Store) layerRoot(chainID digest.Digest) string {
	return filepath.Join(s.root, "layers", chainID.Encoded())
}

// LayerDir is the unpacked file system of layer chainID.
func (s *Store) LayerDir(chainID digest.Digest) string {
	return filepath.Join(s.layerRoot(chainID), "fs")
}

// HasLayer reports whether layer chainID is unpacked.
func (s *Store) HasLayer(chainID digest.Digest) bool {
	if checkChainID(chainID) != nil {
		return false
	}
	_, err := os.Stat(s.LayerDir(chainID))
	return err == nil
}

// ApplyLayer unpacks layer chainID once: unless it is already there it
// calls apply with an empty directory, records the size apply returns and
// moves the directory into place atomically. On error nothing is kept.
// created reports whether apply ran.
func (s *Store) ApplyLayer(chainID digest.Digest, apply func(dir string) (size int64, err error)) (created bool, err error) {
	if err := checkChainID(chainID); err != nil {
		return false, err
	}
	defer s.lock("layer/" + chainID.Encoded())()
	if s.HasLayer(chainID) {
		return false, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "layers"), chainID.Encoded()+".tmp-")
	if err != nil {
		return false, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	fsDir := filepath.Join(tmp, "fs")
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		return false, err
	}
	size, err := apply(fsDir)
	if err != nil {
		return false, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "size"), []byte(strconv.FormatInt(size, 10)), 0o600); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, s.layerRoot(chainID)); err != nil {
		return false, err
	}
	ok = true
	return true, nil
}

// AdoptLayer makes dir, an unpacked layer in overlay form on the store's
// file system (such as the upper dir of a container snapshot), the layer
// chainID by moving it into place, so a layer a build produced is never
// unpacked again. If the layer already exists, dir is left where it is and
// created is false; the caller discards it.
func (s *Store) AdoptLayer(chainID digest.Digest, dir string, size int64) (created bool, err error) {
	if err := checkChainID(chainID); err != nil {
		return false, err
	}
	defer s.lock("layer/" + chainID.Encoded())()
	if s.HasLayer(chainID) {
		return false, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "layers"), chainID.Encoded()+".tmp-")
	if err != nil {
		return false, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.WriteFile(filepath.Join(tmp, "size"), []byte(strconv.FormatInt(size, 10)), 0o600); err != nil {
		return false, err
	}
	if err := os.Rename(dir, filepath.Join(tmp, "fs")); err != nil {
		return false, fmt.Errorf("layer %s: adopt %s: %w", chainID, dir, err)
	}
	if err := os.Rename(tmp, s.layerRoot(chainID)); err != nil {
		// Give dir back so the caller's cleanup finds it.
		os.Rename(filepath.Join(tmp, "fs"), dir)
		return false, err
	}
	ok = true
	return true, nil
}

// LayerSize is the size ApplyLayer recorded for layer chainID.
func (s *Store) LayerSize(chainID digest.Digest) (int64, error) {
	if err := checkChainID(chainID); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(s.layerRoot(chainID), "size"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("layer %s: %w", chainID, errdefs.ErrNotFound)
		}
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// RemoveLayer deletes layer chainID. Removing a missing layer is not an error.
func (s *Store) RemoveLayer(chainID digest.Digest) error {
	if err := checkChainID(chainID); err != nil {
		return err
	}
	defer s.lock("layer/" + chainID.Encoded())()
	dead := s.layerRoot(chainID) + ".rm"
	if err := os.Rename(s.layerRoot(chainID), dead); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(dead)
}

// Layers lists the unpacked layers' chain IDs.
func (s *Store) Layers() ([]digest.Digest, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "layers"))
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

var idRe = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func (s *Store) containerDir(id string) (string, error) {
	if !idRe.MatchString(id) {
		return "", fmt.Errorf("snapshot id %q: expected 1-128 of [A-Za-z0-9_.-], not starting with a symbol: %w", id, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(s.root, "containers", id), nil
}

// Usage is the disk use of a container's writable layer.
type Usage struct {
	Size   int64
	Inodes int64
}

// Prepare creates the snapshot id over lowerDirs (top-most first, as
// overlay's lowerdir option wants them) and mounts it, returning the
// mounted root file system. With no lower dirs an empty one is used.
// Preparing an existing snapshot mounts it again if needed, keeping its
// upper dir; lowerDirs must then be the same.
func (s *Store) Prepare(id string, lowerDirs []string) (rootfs string, err error) {
	dir, err := s.containerDir(id)
	if err != nil {
		return "", err
	}
	for _, l := range lowerDirs {
		if !filepath.IsAbs(l) {
			return "", fmt.Errorf("snapshot %s: lower dir %q: expected an absolute path: %w", id, l, errdefs.ErrInvalidArgument)
		}
		if st, err := os.Stat(l); err != nil || !st.IsDir() {
			return "", fmt.Errorf("snapshot %s: lower dir %q: %w", id, l, errdefs.ErrNotFound)
		}
	}
	if len(lowerDirs) == 0 {
		lowerDirs = []string{filepath.Join(s.root, "empty")}
	}
	defer s.lock("ctr/" + id)()
	if prev, err := s.readLowers(dir); err == nil {
		if strings.Join(prev, "\x00") != strings.Join(lowerDirs, "\x00") {
			return "", fmt.Errorf("snapshot %s exists with other lower dirs: %w", id, errdefs.ErrAlreadyExists)
		}
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		for _, d := range []string{"upper", "work", "merged"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				return "", err
			}
		}
		b, _ := json.Marshal(lowerDirs)
		tmp := filepath.Join(dir, "lowers.tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, filepath.Join(dir, "lowers.json")); err != nil {
			return "", err
		}
	}
	return s.mountLocked(id, dir)
}

func (s *Store) readLowers(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "lowers.json"))
	if err != nil {
		return nil, err
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s/lowers.json: %w", dir, err)
	}
	return l, nil
}

// Mount mounts the existing snapshot id again (after Unmount or a daemon
// restart) and returns its root file system.
func (s *Store) Mount(id string) (string, error) {
	dir, err := s.containerDir(id)
	if err != nil {
		return "", err
	}
	defer s.lock("ctr/" + id)()
	return s.mountLocked(id, dir)
}

func (s *Store) mountLocked(id, dir string) (string, error) {
	lowers, err := s.readLowers(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("snapshot %s: %w", id, errdefs.ErrNotFound)
		}
		return "", err
	}
	merged := filepath.Join(dir, "merged")
	if mounted(dir) {
		return merged, nil
	}
	if err := mountOverlay(dir, lowers); err != nil {
		return "", fmt.Errorf("snapshot %s: mount overlay: %w", id, err)
	}
	return merged, nil
}

// UpperDir is the writable directory of snapshot id: what its container
// changed, in overlay form.
func (s *Store) UpperDir(id string) (string, error) {
	dir, err := s.containerDir(id)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "upper"), nil
}

// Mounted reports whether snapshot id is mounted.
func (s *Store) Mounted(id string) bool {
	dir, err := s.containerDir(id)
	if err != nil {
		return false
	}
	return mounted(dir)
}

// Unmount unmounts snapshot id, keeping its contents. Unmounting a
// snapshot that is not mounted is not an error.
func (s *Store) Unmount(id string) error {
	dir, err := s.containerDir(id)
	if err != nil {
		return err
	}
	defer s.lock("ctr/" + id)()
	return unmount(dir)
}

// Remove unmounts snapshot id and deletes it. Removing a missing snapshot
// is not an error.
func (s *Store) Remove(id string) error {
	dir, err := s.containerDir(id)
	if err != nil {
		return err
	}
	defer s.lock("ctr/" + id)()
	if err := unmount(dir); err != nil {
		return fmt.Errorf("snapshot %s: %w", id, err)
	}
	return os.RemoveAll(dir)
}

// List returns the ids of the container snapshots.
func (s *Store) List() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "containers"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && idRe.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Usage measures snapshot id's writable layer.
func (s *Store) Usage(id string) (Usage, error) {
	dir, err := s.containerDir(id)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	seen := map[uint64]bool{}
	err = filepath.WalkDir(filepath.Join(dir, "upper"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == filepath.Join(dir, "upper") {
				return fmt.Errorf("snapshot %s: %w", id, errdefs.ErrNotFound)
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		ino := inode(fi)
		if seen[ino] {
			return nil
		}
		seen[ino] = true
		u.Inodes++
		if fi.Mode().IsRegular() || fi.IsDir() || fi.Mode()&fs.ModeSymlink != 0 {
			u.Size += fi.Size()
		}
		return nil
	})
	return u, err
}

// LayerUsage measures an unpacked layer's directory.
func (s *Store) LayerUsage(chainID digest.Digest) (int64, error) { return s.LayerSize(chainID) }
