package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/berth/berth/internal/engine/archive"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer is one stored layer: its diff ID (the digest of its uncompressed
// tar), its chain ID (which names its snapshot) and the bytes of file
// content it holds.
type Layer struct {
	DiffID  digest.Digest
	ChainID digest.Digest
	Size    int64
}

// ChainID is the chain ID of diffID on top of the chain parent ("" for a
// bottom layer).
func ChainID(parent, diffID digest.Digest) digest.Digest {
	if parent == "" {
		return diffID
	}
	return identity.ChainID([]digest.Digest{parent, diffID})
}

// AddLayerDir stores dir, an overlay upper directory on the store's file
// system (a snapshot's UpperDir), as a layer on top of the chain parent
// ("" for a bottom layer). Its OCI layer tar is written once, as a blob
// whose digest is the diff ID; dir itself becomes the layer's snapshot
// (moved, not unpacked again). When the store already has the layer, dir
// is left in place for the caller to discard. A failure stores nothing.
func (s *Store) AddLayerDir(parent digest.Digest, dir string) (Layer, error) {
	if parent != "" && !s.snaps.HasLayer(parent) {
		return Layer{}, fmt.Errorf("parent layer %s: %w", parent, errdefs.ErrNotFound)
	}
	w, err := s.content.Writer()
	if err != nil {
		return Layer{}, err
	}
	defer w.Close()
	size, err := archive.WriteOverlayDiff(w, dir)
	if err != nil {
		return Layer{}, err
	}
	l := Layer{DiffID: w.Digest(), Size: size}
	l.ChainID = ChainID(parent, l.DiffID)
	newBlob := false
	if !s.content.Exists(l.DiffID) {
		if _, err := w.Commit(l.DiffID, -1); err != nil {
			return Layer{}, err
		}
		newBlob = true
	}
	if _, err := s.snaps.AdoptLayer(l.ChainID, dir, size); err != nil {
		if newBlob {
			s.content.Delete(l.DiffID)
		}
		return Layer{}, err
	}
	return l, nil
}

// AddContainerLayer stores a container's writable layer, the overlay
// upper directory upper over lowers (its image's layer dirs, top-most
// first), as a layer on top of the chain parent: its layer tar
// (archive.WriteContainerDiff) is stored and unpacked as AddLayer does;
// upper stays as it was. A failure stores nothing.
func (s *Store) AddContainerLayer(parent digest.Digest, upper string, lowers []string) (Layer, error) {
	pr, pw := io.Pipe()
	go func() {
		_, err := archive.WriteContainerDiff(pw, upper, lowers)
		pw.CloseWithError(err)
	}()
	l, err := s.AddLayer(parent, pr)
	pr.CloseWithError(io.ErrClosedPipe) // ends the writer if AddLayer stopped early
	return l, err
}

// AddLayer stores the uncompressed layer tar r on top of the chain parent
// ("" for a bottom layer): as a blob and unpacked into its snapshot, doing
// only what is missing. A failure stores nothing.
func (s *Store) AddLayer(parent digest.Digest, r io.Reader) (Layer, error) {
	if parent != "" && !s.snaps.HasLayer(parent) {
		return Layer{}, fmt.Errorf("parent layer %s: %w", parent, errdefs.ErrNotFound)
	}
	// Stage the tar as a blob first: the chain ID needs the diff ID.
	w, err := s.content.Writer()
	if err != nil {
		return Layer{}, err
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		return Layer{}, fmt.Errorf("layer tar: %w", err)
	}
	diffID := w.Digest()
	t := &txn{s: s}
	ok := false
	defer func() {
		if !ok {
			t.rollback()
		}
	}()
	if !s.content.Exists(diffID) {
		if _, err := w.Commit(diffID, -1); err != nil {
			return Layer{}, err
		}
		t.blobs = append(t.blobs, diffID)
	}
	blob, err := s.content.Open(diffID)
	if err != nil {
		return Layer{}, err
	}
	defer blob.Close()
	chain := ChainID(parent, diffID)
	size, err := t.addLayer(blob, "layer", diffID, chain)
	if err != nil {
		return Layer{}, err
	}
	ok = true
	return Layer{DiffID: diffID, ChainID: chain, Size: size}, nil
}

// HasLayers reports whether every layer of diffIDs (bottom first) is
// stored, blob and snapshot.
func (s *Store) HasLayers(diffIDs []digest.Digest) bool {
	for i, c := range ChainIDs(diffIDs) {
		if !s.snaps.HasLayer(c) || !s.hasLayerData(diffIDs[i]) {
			return false
		}
	}
	return true
}

// LayerDirsOf returns the snapshot dirs of the layers diffIDs (bottom
// first), top-most first, ready for overlay's lowerdir option.
func (s *Store) LayerDirsOf(diffIDs []digest.Digest) ([]string, error) {
	return s.LayerDirs(&Image{ID: "(layers)", Layers: diffIDs})
}

// LayerSizes returns the unpacked size of each of img's layers, bottom
// first (0 where unknown).
func (s *Store) LayerSizes(img *Image) []int64 {
	out := make([]int64, len(img.Layers))
	for i, c := range ChainIDs(img.Layers) {
		out[i], _ = s.snaps.LayerSize(c)
	}
	return out
}

// ConfigBlob returns the image's config exactly as stored (with fields
// ocispec.Image does not know, such as Docker's Healthcheck and OnBuild).
func (s *Store) ConfigBlob(img *Image) ([]byte, error) {
	return s.content.ReadAll(digest.Digest(img.ID))
}

// Committed is what Commit did.
type Committed struct {
	*Image
	// New says the image was not in the store before.
	New bool
}

// Commit stores config, an image config JSON whose rootfs.diff_ids are
// all stored layers (AddLayerDir, AddLayer, or an existing image's), as
// an image, and gives it the names tags (moving a name another image had).
// The config is kept byte for byte, so its digest is the image ID and
// Docker's extra fields survive. Committing an image that exists only
// adds the names; when nothing changes, nothing is written.
func (s *Store) Commit(config []byte, tags []string) (Committed, error) {
	var cfg ocispec.Image
	if err := json.Unmarshal(config, &cfg); err != nil {
		return Committed{}, fmt.Errorf("image config: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if cfg.RootFS.Type != "layers" {
		return Committed{}, fmt.Errorf("image config: rootfs.type is %q, want \"layers\": %w", cfg.RootFS.Type, errdefs.ErrInvalidArgument)
	}
	var names []reference.Named
	for _, t := range tags {
		n, err := reference.Parse(t)
		if err != nil {
			return Committed{}, err
		}
		if n.Digest() != "" {
			return Committed{}, fmt.Errorf("tag %q: expected a name with a tag, not a digest: %w", t, errdefs.ErrInvalidArgument)
		}
		names = append(names, n)
	}
	id := digest.FromBytes(config)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	chain := ChainIDs(cfg.RootFS.DiffIDs)
	var size int64
	for i, c := range chain {
		if !s.snaps.HasLayer(c) || !s.hasLayerData(cfg.RootFS.DiffIDs[i]) {
			return Committed{}, fmt.Errorf("image config: layer %s is not in the store (removed meanwhile?): %w", cfg.RootFS.DiffIDs[i], errdefs.ErrNotFound)
		}
		n, _ := s.snaps.LayerSize(c)
		size += n
	}
	t := &txn{s: s}
	if err := t.putBlob(config, id); err != nil {
		return Committed{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	undo := s.snapshotMetaLocked()
	changed := false
	isNew := s.images[id.String()] == nil
	if isNew {
		s.images[id.String()] = &record{ID: id.String(), Layers: cfg.RootFS.DiffIDs, Size: size, Added: time.Now().UTC(), config: cfg}
		changed = true
	}
	for _, n := range names {
		if s.refs[n.String()] != id.String() {
			s.setRefLocked(n.String(), id.String(), nil)
			changed = true
		}
	}
	if changed {
		if err := s.saveLocked(); err != nil {
			undo()
			t.rollback()
			return Committed{}, err
		}
	}
	return Committed{Image: s.images[id.String()].image(), New: isNew}, nil
}

// ReleaseLayers deletes those of layers (snapshot and blob) that no image
// uses and returns the bytes of unpacked content freed. The builder calls
// it for the layers only its cache referred to.
func (s *Store) ReleaseLayers(layers []Layer) (int64, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	usedChains, usedBlobs := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	s.mu.RLock()
	for _, r := range s.images {
		usedBlobs[digest.Digest(r.ID)] = true
		for _, l := range r.Layers {
			usedBlobs[l] = true
		}
		for _, c := range ChainIDs(r.Layers) {
			usedChains[c] = true
		}
	}
	s.mu.RUnlock()
	var freed int64
	var errs []error
	for _, l := range layers {
		if !usedChains[l.ChainID] && s.snaps.HasLayer(l.ChainID) {
			n, _ := s.snaps.LayerSize(l.ChainID)
			if err := s.snaps.RemoveLayer(l.ChainID); err != nil {
				errs = append(errs, err)
			} else {
				freed += n
			}
		}
		if !usedBlobs[l.DiffID] && s.content.Exists(l.DiffID) {
			if err := s.content.Delete(l.DiffID); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
				errs = append(errs, err)
			}
			usedBlobs[l.DiffID] = true
		}
	}
	return freed, errors.Join(errs...)
}

// TmpDir is a directory on the store's file system for work in progress;
// it is emptied when the store opens.
func (s *Store) TmpDir() string { return s.root + string(os.PathSeparator) + "tmp" }
