package image

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/archive"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Import makes a one-layer image of a rootfs tarball (plain or gzip) with
// the given config, named ref (or untagged when ref is "").
func (s *Store) Import(r io.Reader, ref string, cfg ocispec.ImageConfig) (*Image, error) {
	var name reference.Named
	if ref != "" {
		n, err := reference.Parse(ref)
		if err != nil {
			return nil, err
		}
		if n.Digest() != "" {
			return nil, fmt.Errorf("import name %q: expected a name with a tag, not a digest: %w", ref, errdefs.ErrInvalidArgument)
		}
		name = n
	}
	rc, err := archive.Decompress(r)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer rc.Close()
	// Stage the uncompressed tar as a blob to learn its diff ID.
	w, err := s.content.Writer()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return nil, fmt.Errorf("import: reading the rootfs tarball: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	diffID := w.Digest()

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	t := &txn{s: s}
	ok := false
	defer func() {
		if !ok {
			t.rollback()
		}
	}()
	if !s.content.Exists(diffID) {
		if _, err := w.Commit(diffID, -1); err != nil {
			return nil, err
		}
		t.blobs = append(t.blobs, diffID)
	}
	blob, err := s.content.Open(diffID)
	if err != nil {
		return nil, err
	}
	defer blob.Close()
	size, err := t.addLayer(blob, "rootfs tarball", diffID, diffID)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	config := ocispec.Image{
		Created:  &now,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History:  []ocispec.History{{Created: &now, CreatedBy: "berth import", Comment: "Imported from tarball"}},
	}
	cb, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	id := digest.FromBytes(cb)
	if err := t.putBlob(cb, id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	undo := s.snapshotMetaLocked()
	if s.images[id.String()] == nil {
		s.images[id.String()] = &record{ID: id.String(), Layers: config.RootFS.DiffIDs, Size: size, Added: now, config: config}
	}
	if !name.IsZero() {
		s.setRefLocked(name.String(), id.String(), nil)
	}
	if err := s.saveLocked(); err != nil {
		undo()
		return nil, err
	}
	ok = true
	return s.images[id.String()].image(), nil
}

// Save writes the images named by refsOrIDs as one archive that both
// `docker load` and `podman load` accept: like Docker 25 it holds
// manifest.json and repositories and also an OCI layout (oci-layout,
// index.json), with every blob (configs, manifests and uncompressed layer
// tars) under blobs/sha256. An image named by name is saved with that
// name; one named by ID is saved untagged, as Docker does.
func (s *Store) Save(w io.Writer, refsOrIDs []string) error {
	if len(refsOrIDs) == 0 {
		return fmt.Errorf("save: expected at least one image name or ID: %w", errdefs.ErrInvalidArgument)
	}
	type item struct {
		rec  *record
		tags []reference.Named
	}
	var items []*item
	byID := map[string]*item{}
	// Hold off Remove (not readers) so the blobs stay while they are copied.
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	for _, ref := range refsOrIDs {
		r, byName, err := s.resolveLocked(ref)
		if err != nil {
			s.mu.RUnlock()
			return err
		}
		it := byID[r.ID]
		if it == nil {
			c := *r
			it = &item{rec: &c}
			byID[r.ID] = it
			items = append(items, it)
		}
		if byName {
			n, _ := reference.Parse(ref)
			if n.Digest() == "" {
				it.tags = append(it.tags, n)
			}
		}
	}
	s.mu.RUnlock()

	tw := tar.NewWriter(w)
	written := map[string]bool{}
	epoch := time.Unix(0, 0).UTC()
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(name string, size int64, r io.Reader) error {
		if written[name] {
			return nil
		}
		written[name] = true
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o444, Size: size, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	bytesFile := func(name string, b []byte) error { return file(name, int64(len(b)), strings.NewReader(string(b))) }
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	var manifest []dockerManifestEntry
	repos := map[string]map[string]string{}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	for _, it := range items {
		id := digest.Digest(it.rec.ID)
		cb, err := s.content.ReadAll(id)
		if err != nil {
			return fmt.Errorf("save %s: config: %w", it.rec.ID, err)
		}
		if err := bytesFile(blobEntry(id), cb); err != nil {
			return err
		}
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: id, Size: int64(len(cb))},
			Layers:    []ocispec.Descriptor{},
		}
		de := dockerManifestEntry{Config: blobEntry(id), Layers: []string{}}
		for _, l := range it.rec.Layers {
			blob, size, err := s.OpenLayer(l)
			if err != nil {
				return fmt.Errorf("save %s: layer %s: %w", it.rec.ID, l, err)
			}
			err = file(blobEntry(l), size, blob)
			blob.Close()
			if err != nil {
				return err
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l, Size: size})
			de.Layers = append(de.Layers, blobEntry(l))
		}
		mb, err := json.Marshal(m)
		if err != nil {
			return err
		}
		md := digest.FromBytes(mb)
		if err := bytesFile(blobEntry(md), mb); err != nil {
			return err
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))}
		if len(it.tags) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		for _, n := range it.tags {
			d := desc
			d.Annotations = map[string]string{annotationImage: n.String(), ocispec.AnnotationRefName: n.Tag()}
			idx.Manifests = append(idx.Manifests, d)
			de.RepoTags = append(de.RepoTags, n.FamiliarString())
			if repos[n.FamiliarName()] == nil {
				repos[n.FamiliarName()] = map[string]string{}
			}
			if len(it.rec.Layers) > 0 {
				repos[n.FamiliarName()][n.Tag()] = it.rec.Layers[len(it.rec.Layers)-1].Encoded()
			}
		}
		manifest = append(manifest, de)
	}
	ib, _ := json.Marshal(idx)
	mb, _ := json.Marshal(manifest)
	if err := bytesFile("index.json", ib); err != nil {
		return err
	}
	if err := bytesFile("manifest.json", mb); err != nil {
		return err
	}
	if err := bytesFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if len(repos) > 0 {
		rb, _ := json.Marshal(repos)
		if err := bytesFile("repositories", rb); err != nil {
			return err
		}
	}
	return tw.Close()
}

// RemoveOptions tune RemoveImage.
type RemoveOptions struct {
	// Force removes names that other images or containers depend on and
	// deletes an image referenced by several repositories.
	Force bool
	// UsedBy reports the container using image imageID, if any, and
	// whether it runs. Nil means no container uses any image.
	UsedBy func(imageID string) (containerID string, running bool)
}

// short truncates an ID to Docker's 12 hex digits.
func short(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	if len(h) > 12 && hexPrefixRe.MatchString(h) {
		h = h[:12]
	}
	return h
}

// Remove removes refOrID with Docker's semantics; inUse reports whether a
// container uses an image. See RemoveImage.
func (s *Store) Remove(refOrID string, force bool, inUse func(imageID string) bool) ([]Deleted, error) {
	opts := RemoveOptions{Force: force}
	if inUse != nil {
		opts.UsedBy = func(id string) (string, bool) {
			if inUse(id) {
				return "(a container)", false
			}
			return "", false
		}
	}
	return s.RemoveImage(refOrID, opts)
}

// RemoveImage removes refOrID as `docker rmi` does:
//   - by name: the name is untagged; the image itself is deleted only when
//     that was its last name (refused with errdefs.ErrConflict, naming the
//     container, if a container uses it, unless Force);
//   - by ID: an image with names in several repositories is refused
//     unless Force; its names are removed and it is deleted;
//   - an image used by a running container is never deleted; one used by
//     a stopped container is, with Force, only untagged (its layers stay
//     for the container);
//   - deleting an image frees the layers (blobs and snapshots) no other
//     image uses.
func (s *Store) RemoveImage(refOrID string, opts RemoveOptions) ([]Deleted, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, byName, err := s.resolveLocked(refOrID)
	if err != nil {
		return nil, err
	}
	user, running := "", false
	if opts.UsedBy != nil {
		user, running = opts.UsedBy(r.ID)
	}
	undo := s.snapshotMetaLocked()
	var out []Deleted
	untag := func(name string) {
		delete(s.refs, name)
		r.RepoTags = remove(r.RepoTags, name)
		r.RepoDigests = remove(r.RepoDigests, name)
		fam := name
		if n, err := reference.ParseNamed(name); err == nil {
			fam = n.FamiliarString()
		}
		out = append(out, Deleted{Untagged: fam})
	}
	names := append(append([]string(nil), r.RepoTags...), r.RepoDigests...)
	if byName {
		n, _ := reference.Parse(refOrID)
		if len(names) == 1 && user != "" && !opts.Force {
			return nil, fmt.Errorf("unable to remove repository reference %q (must force) - container %s is using its referenced image %s: %w",
				refOrID, short(user), short(r.ID), errdefs.ErrConflict)
		}
		untag(n.String())
		// With the last tag of a repository gone, its digests go too.
		if n.Digest() == "" {
			tagLeft := false
			for _, t := range r.RepoTags {
				if m, _ := reference.ParseNamed(t); m.Name() == n.Name() {
					tagLeft = true
				}
			}
			if !tagLeft {
				for _, d := range append([]string(nil), r.RepoDigests...) {
					if m, _ := reference.ParseNamed(d); m.Name() == n.Name() {
						untag(d)
					}
				}
			}
		}
		if len(r.RepoTags)+len(r.RepoDigests) > 0 || user != "" {
			// Still named, or kept (dangling) for its container.
			return out, s.commitLocked(undo, out)
		}
	} else {
		if user != "" && running {
			return nil, fmt.Errorf("unable to delete %s (cannot be forced) - image is being used by running container %s: %w", short(r.ID), short(user), errdefs.ErrConflict)
		}
		if user != "" && !opts.Force {
			return nil, fmt.Errorf("unable to delete %s (must be forced) - image is being used by stopped container %s: %w", short(r.ID), short(user), errdefs.ErrConflict)
		}
		repos := map[string]bool{}
		for _, t := range names {
			if m, err := reference.ParseNamed(t); err == nil {
				repos[m.Name()] = true
			}
		}
		if len(repos) > 1 && !opts.Force {
			return nil, fmt.Errorf("unable to delete %s (must be forced) - image is referenced in multiple repositories: %w", short(r.ID), errdefs.ErrConflict)
		}
		sort.Strings(names)
		for _, t := range names {
			untag(t)
		}
		if user != "" {
			return out, s.commitLocked(undo, out)
		}
	}
	// Delete the image and whatever only it used.
	delete(s.images, r.ID)
	if err := s.saveLocked(); err != nil {
		undo()
		return nil, err
	}
	out = append(out, Deleted{Deleted: r.ID})
	usedChains, usedBlobs := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for _, o := range s.images {
		usedBlobs[digest.Digest(o.ID)] = true
		for _, l := range o.Layers {
			usedBlobs[l] = true
		}
		for _, c := range ChainIDs(o.Layers) {
			usedChains[c] = true
		}
	}
	if !usedBlobs[digest.Digest(r.ID)] {
		s.content.Delete(digest.Digest(r.ID))
	}
	chain := ChainIDs(r.Layers)
	for i := len(chain) - 1; i >= 0; i-- {
		// A leased layer is one a pull in progress counts on.
		if !usedChains[chain[i]] && !s.dist.leased(chain[i]) {
			if err := s.snaps.RemoveLayer(chain[i]); err == nil {
				out = append(out, Deleted{Deleted: chain[i].String()})
			}
		}
		if !usedBlobs[r.Layers[i]] && !s.dist.leased(r.Layers[i]) {
			s.content.Delete(r.Layers[i])
			usedBlobs[r.Layers[i]] = true
		}
	}
	s.dropDistLocked(r)
	return out, nil
}

func (s *Store) commitLocked(undo func(), _ []Deleted) error {
	if err := s.saveLocked(); err != nil {
		undo()
		return err
	}
	return nil
}

// Prune deletes dangling images (no names) that no container uses and
// returns what it deleted. usedBy may be nil.
func (s *Store) Prune(usedBy func(imageID string) (containerID string, running bool)) ([]Deleted, error) {
	s.mu.RLock()
	var ids []string
	for id, r := range s.images {
		if len(r.RepoTags)+len(r.RepoDigests) == 0 {
			ids = append(ids, id)
		}
	}
	s.mu.RUnlock()
	sort.Strings(ids)
	var out []Deleted
	for _, id := range ids {
		if usedBy != nil {
			if c, _ := usedBy(id); c != "" {
				continue
			}
		}
		d, err := s.RemoveImage(id, RemoveOptions{UsedBy: usedBy})
		if err != nil {
			if errdefs.Is(err, errdefs.ErrNotFound) || errdefs.Is(err, errdefs.ErrConflict) {
				continue
			}
			return out, err
		}
		out = append(out, d...)
	}
	return out, nil
}

// Usage is the disk use of the store's unpacked layers and blobs.
func (s *Store) Usage() (layers, blobs int64) {
	ls, _ := s.snaps.Layers()
	for _, l := range ls {
		n, _ := s.snaps.LayerSize(l)
		layers += n
	}
	filepath.Walk(filepath.Join(s.root, "content", "blobs"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			blobs += fi.Size()
		}
		return nil
	})
	return layers, blobs
}
