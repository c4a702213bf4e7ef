// Package image owns berth's local image store: images (config, layers,
// names) kept as blobs in a content store plus JSON metadata written
// atomically, an index of name → image ID, and each layer unpacked once
// into an overlay snapshot. It loads and saves docker-save and OCI
// image-layout archives, imports rootfs tarballs, and tags and removes
// images with Docker's semantics.
//
// An image's ID is "sha256:" + the hex digest of its config blob, as in
// Docker. Names are kept normalised (docker.io/library/busybox:latest) and
// shown familiar (busybox:latest).
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/content"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/engine/snapshot"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/lazyre"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a stored image, ready for `images` and `image inspect`.
// Treat it as read-only: Config shares maps and slices with the store.
type Image struct {
	ID             string // sha256:<hex of the config digest>
	RepoTags       []string
	RepoDigests    []string
	Created        time.Time
	Size           int64 // sum of the unpacked layer sizes
	Config         ocispec.Image
	Layers         []digest.Digest // diff IDs, bottom first
	ManifestDigest digest.Digest
}

// Loaded is one image a Load stored.
type Loaded struct {
	ID    string
	Names []string // familiar names, e.g. busybox:latest
}

// Deleted is one line of what Remove did, as Docker reports it: either a
// name removed (Untagged) or an image or layer deleted (Deleted).
type Deleted struct {
	Untagged string `json:",omitempty"`
	Deleted  string `json:",omitempty"`
}

// record is what images.json keeps per image.
type record struct {
	ID             string          `json:"id"`
	RepoTags       []string        `json:"repoTags,omitempty"` // normalised
	RepoDigests    []string        `json:"repoDigests,omitempty"`
	Layers         []digest.Digest `json:"layers"`
	ManifestDigest digest.Digest   `json:"manifestDigest,omitempty"`
	// Manifests are the registry manifests kept (as blobs) for this
	// image, newest first: what a push re-sends unchanged (see dist.go).
	Manifests []digest.Digest `json:"manifests,omitempty"`
	Size      int64           `json:"size"`
	Added     time.Time       `json:"added"`

	config ocispec.Image
}

func (r *record) image() *Image {
	img := &Image{
		ID:             r.ID,
		Size:           r.Size,
		Config:         r.config,
		Layers:         append([]digest.Digest(nil), r.Layers...),
		ManifestDigest: r.ManifestDigest,
	}
	if r.config.Created != nil {
		img.Created = *r.config.Created
	}
	for _, t := range r.RepoTags {
		if n, err := reference.Parse(t); err == nil {
			img.RepoTags = append(img.RepoTags, n.FamiliarString())
		}
	}
	for _, t := range r.RepoDigests {
		if n, err := reference.ParseNamed(t); err == nil {
			img.RepoDigests = append(img.RepoDigests, n.FamiliarString())
		}
	}
	return img
}

// Store is the image store. It is safe for concurrent use: reads run in
// parallel; Load, Import, Tag and Remove are serialised.
type Store struct {
	root    string
	content *content.Store
	snaps   *snapshot.Store

	writeMu sync.Mutex // serialises mutations (held across a whole Load)

	mu     sync.RWMutex
	images map[string]*record // by ID
	refs   map[string]string  // normalised name → ID

	dist dist // distribution metadata and leases (dist.go)
}

// New opens (creating if needed) the image store under root: blobs in
// root/content, snapshots in root/snapshots, metadata in root/images.json.
func New(root string) (*Store, error) {
	cs, err := content.New(filepath.Join(root, "content"))
	if err != nil {
		return nil, err
	}
	ss, err := snapshot.New(filepath.Join(root, "snapshots"))
	if err != nil {
		return nil, err
	}
	os.RemoveAll(filepath.Join(root, "tmp"))
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		return nil, err
	}
	s := &Store{root: root, content: cs, snaps: ss, images: map[string]*record{}, refs: map[string]string{}}
	if err := s.dist.open(root); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.metaPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		var recs []*record
		if err := json.Unmarshal(b, &recs); err != nil {
			return nil, fmt.Errorf("image store %s: %w", s.metaPath(), err)
		}
		for _, r := range recs {
			cb, err := cs.ReadAll(digest.Digest(r.ID))
			if err != nil {
				return nil, fmt.Errorf("image store: config of image %s: %w", r.ID, err)
			}
			if err := json.Unmarshal(cb, &r.config); err != nil {
				return nil, fmt.Errorf("image store: config of image %s: %w", r.ID, err)
			}
			s.images[r.ID] = r
			for _, t := range r.RepoTags {
				s.refs[t] = r.ID
			}
			for _, t := range r.RepoDigests {
				s.refs[t] = r.ID
			}
		}
	}
	return s, nil
}

// Content is the store's blob store.
func (s *Store) Content() *content.Store { return s.content }

// Snapshots is the store's snapshot store, where containers Prepare their
// root file systems over LayerDirs.
func (s *Store) Snapshots() *snapshot.Store { return s.snaps }

func (s *Store) metaPath() string { return filepath.Join(s.root, "images.json") }

// saveLocked writes images.json atomically. Hold s.mu.
func (s *Store) saveLocked() error {
	recs := make([]*record, 0, len(s.images))
	for _, r := range s.images {
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.root, "images.json.tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), s.metaPath()); err != nil {
		return err
	}
	if d, err := os.Open(s.root); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ChainIDs returns the chain IDs of layers (diff IDs, bottom first).
func ChainIDs(layers []digest.Digest) []digest.Digest {
	return identity.ChainIDs(append([]digest.Digest(nil), layers...))
}

// List returns every image, newest first.
func (s *Store) List() []Image {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Image, 0, len(s.images))
	for _, r := range s.images {
		out = append(out, *r.image())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

var hexPrefixRe = lazyre.New(`^[a-f0-9]{1,64}$`)

// Get finds an image by name (busybox, busybox:latest,
// docker.io/library/busybox:latest, name@sha256:…), by ID (sha256:<hex>
// or the bare hex) or by a unique ID prefix, as Docker does. A name wins
// over an ID prefix. An ambiguous prefix is errdefs.ErrInvalidArgument; no
// match is errdefs.ErrNotFound.
func (s *Store) Get(refOrID string) (*Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, _, err := s.resolveLocked(refOrID)
	if err != nil {
		return nil, err
	}
	return r.image(), nil
}

// resolveLocked finds refOrID; byName reports whether it matched a name
// (as opposed to an ID or ID prefix). Hold s.mu.
func (s *Store) resolveLocked(refOrID string) (r *record, byName bool, err error) {
	if refOrID == "" {
		return nil, false, fmt.Errorf("image name or ID: expected a value, got \"\": %w", errdefs.ErrInvalidArgument)
	}
	if d, err := digest.Parse(refOrID); err == nil {
		if r := s.images[d.String()]; r != nil {
			return r, false, nil
		}
	}
	if n, err := reference.Parse(refOrID); err == nil {
		if id, ok := s.refs[n.String()]; ok {
			return s.images[id], true, nil
		}
	}
	prefix := strings.TrimPrefix(refOrID, "sha256:")
	if hexPrefixRe.MatchString(prefix) {
		var found []*record
		for id, r := range s.images {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), prefix) {
				found = append(found, r)
			}
		}
		switch len(found) {
		case 1:
			return found[0], false, nil
		case 0:
		default:
			return nil, false, fmt.Errorf("image ID prefix %q is ambiguous: it matches %d images: %w", refOrID, len(found), errdefs.ErrInvalidArgument)
		}
	}
	if _, err := reference.Parse(refOrID); err != nil && !hexPrefixRe.MatchString(prefix) {
		return nil, false, err
	}
	return nil, false, fmt.Errorf("no such image: %s: %w", refOrID, errdefs.ErrNotFound)
}

// LayerDirs returns the unpacked snapshot dirs of img's layers, top-most
// first, ready for overlay's lowerdir option.
func (s *Store) LayerDirs(img *Image) ([]string, error) {
	chain := ChainIDs(img.Layers)
	dirs := make([]string, 0, len(chain))
	for i := len(chain) - 1; i >= 0; i-- {
		if !s.snaps.HasLayer(chain[i]) {
			return nil, fmt.Errorf("image %s: layer %s is not unpacked: %w", img.ID, chain[i], errdefs.ErrNotFound)
		}
		dirs = append(dirs, s.snaps.LayerDir(chain[i]))
	}
	return dirs, nil
}

// Tag gives the image srcRefOrID the name dstRef (moving the name if
// another image had it).
func (s *Store) Tag(srcRefOrID, dstRef string) error {
	dst, err := reference.Parse(dstRef)
	if err != nil {
		return err
	}
	if dst.Digest() != "" {
		return fmt.Errorf("tag %q: expected a name with a tag, not a digest: %w", dstRef, errdefs.ErrInvalidArgument)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _, err := s.resolveLocked(srcRefOrID)
	if err != nil {
		return err
	}
	undo := s.snapshotMetaLocked()
	s.setRefLocked(dst.String(), r.ID, nil)
	if err := s.saveLocked(); err != nil {
		undo()
		return err
	}
	return nil
}

// snapshotMetaLocked returns a function restoring the in-memory metadata
// to what it is now (used when writing images.json fails).
func (s *Store) snapshotMetaLocked() func() {
	images := map[string]*record{}
	for id, r := range s.images {
		c := *r
		c.RepoTags = append([]string(nil), r.RepoTags...)
		c.RepoDigests = append([]string(nil), r.RepoDigests...)
		c.Manifests = append([]digest.Digest(nil), r.Manifests...)
		images[id] = &c
	}
	refs := map[string]string{}
	for k, v := range s.refs {
		refs[k] = v
	}
	return func() { s.images, s.refs = images, refs }
}

// setRefLocked points the normalised name at image id, taking it from
// the image that had it. Hold s.mu.
func (s *Store) setRefLocked(name, id string, progress func(string)) {
	if old, ok := s.refs[name]; ok {
		if old == id {
			return
		}
		if r := s.images[old]; r != nil {
			r.RepoTags = remove(r.RepoTags, name)
			r.RepoDigests = remove(r.RepoDigests, name)
			if progress != nil {
				fam := name
				if n, err := reference.ParseNamed(name); err == nil {
					fam = n.FamiliarString()
				}
				progress(fmt.Sprintf("The image %s already exists, renaming the old one with ID %s to empty string", fam, old))
			}
		}
	}
	s.refs[name] = id
	r := s.images[id]
	n, _ := reference.ParseNamed(name)
	if n.Tag() == "" && n.Digest() != "" {
		r.RepoDigests = appendUnique(r.RepoDigests, name)
	} else {
		r.RepoTags = appendUnique(r.RepoTags, name)
	}
}

func remove(list []string, s string) []string {
	out := list[:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
