package image

// Distribution metadata: what pull and push (internal/engine/distribution)
// need beyond the uncompressed layers and configs the rest of the store
// keeps.
//
//   - Compressed forms. A layer (diff ID) is kept uncompressed, as
//     everywhere in the store, and also in the compressed form a registry
//     served it in (or push made of it), by that blob's digest. dist.json
//     maps each diff ID to its forms, so that a pull skips layers it has by
//     either digest and a push neither recompresses nor changes a digest.
//   - Manifests. A pulled or pushed image keeps its manifest bytes as a
//     blob (record.Manifests), so that pushing an unmodified image sends
//     the very manifest, and digest, it was pulled with.
//   - Repositories. Each blob digest remembers the repositories known to
//     hold it, for a push's cross-repository mount.
//   - Leases. A pull in progress leases the layers it stored or counts on,
//     so that a concurrent rmi or prune leaves them alone until the image
//     record exists.
//   - Orphans. Layers a pull stored are kept when the pull fails (a retry
//     fetches only the rest); they are remembered so that `image prune`
//     can remove the ones no image came to use.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/archive"
	"github.com/berth/berth/internal/engine/content"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer media types a registry may serve (Docker schema 2 and OCI).
const (
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeDockerLayerTar     = "application/vnd.docker.image.rootfs.diff.tar"
)

// Compressed is one form of a layer as a registry holds it: the blob's
// digest, size and media type. For an uncompressed media type the digest
// is the layer's diff ID.
type Compressed struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType"`
}

// IsGzip reports whether the form is a gzip-compressed tar.
func (c Compressed) IsGzip() bool {
	switch c.MediaType {
	case MediaTypeDockerLayer, MediaTypeDockerForeignLayer, ocispec.MediaTypeImageLayerGzip,
		ocispec.MediaTypeImageLayerNonDistributableGzip: //nolint:staticcheck
		return true
	}
	return false
}

// distMeta is what dist.json holds.
type distMeta struct {
	// Forms: diff ID → the compressed forms known for that layer.
	Forms map[digest.Digest][]Compressed `json:"forms,omitempty"`
	// Repos: blob digest → repositories (normalised names) known to hold
	// it, oldest first.
	Repos map[digest.Digest][]string `json:"repos,omitempty"`
	// Pulled: chain ID → diff ID of each layer a pull stored.
	Pulled map[digest.Digest]digest.Digest `json:"pulled,omitempty"`
	// Sizes: diff ID → size of the uncompressed tar, for the layers kept
	// only in a compressed form (a pulled layer is not kept twice: save
	// and push decompress it when they need the tar).
	Sizes map[digest.Digest]int64 `json:"sizes,omitempty"`
}

// maxRepos bounds the repositories remembered per blob.
const maxRepos = 8

type dist struct {
	path   string
	mu     sync.Mutex
	meta   distMeta
	leases map[digest.Digest]int
}

func (d *dist) open(root string) error {
	d.path = filepath.Join(root, "dist.json")
	d.leases = map[digest.Digest]int{}
	b, err := os.ReadFile(d.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err == nil {
		if err := json.Unmarshal(b, &d.meta); err != nil {
			return fmt.Errorf("image store %s: %w", d.path, err)
		}
	}
	if d.meta.Forms == nil {
		d.meta.Forms = map[digest.Digest][]Compressed{}
	}
	if d.meta.Repos == nil {
		d.meta.Repos = map[digest.Digest][]string{}
	}
	if d.meta.Pulled == nil {
		d.meta.Pulled = map[digest.Digest]digest.Digest{}
	}
	if d.meta.Sizes == nil {
		d.meta.Sizes = map[digest.Digest]int64{}
	}
	return nil
}

// saveLocked writes dist.json atomically. Hold d.mu.
func (d *dist) saveLocked() error {
	b, err := json.Marshal(d.meta)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(d.path), "dist.json.tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), d.path)
}

func (d *dist) leased(x digest.Digest) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.leases[x] > 0
}

// Lease keeps the layers and blobs named by digests (diff IDs, chain IDs,
// blob digests) from being removed by rmi or prune until release is
// called. A pull leases what it stores or counts on until its image is
// recorded.
func (s *Store) Lease(digests ...digest.Digest) (release func()) {
	s.dist.mu.Lock()
	for _, x := range digests {
		s.dist.leases[x]++
	}
	s.dist.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.dist.mu.Lock()
			for _, x := range digests {
				if s.dist.leases[x]--; s.dist.leases[x] <= 0 {
					delete(s.dist.leases, x)
				}
			}
			s.dist.mu.Unlock()
		})
	}
}

// HasLayer reports whether the layer with diffID, at chain position
// chainID, is complete here: unpacked, and its tar kept (see hasLayerData).
func (s *Store) HasLayer(diffID, chainID digest.Digest) bool {
	return s.hasLayerData(diffID) && s.snaps.HasLayer(chainID)
}

// hasLayerData reports whether the tar of layer diffID is kept: as a blob,
// or as a compressed form whose blob is here and whose uncompressed size is
// known.
func (s *Store) hasLayerData(diffID digest.Digest) bool {
	if s.content.Exists(diffID) {
		return true
	}
	_, _, ok := s.keptForm(diffID)
	return ok
}

// keptForm returns a compressed form of layer diffID whose blob is here,
// when the layer has no uncompressed blob, with the tar's size.
func (s *Store) keptForm(diffID digest.Digest) (Compressed, int64, bool) {
	s.dist.mu.Lock()
	size, sized := s.dist.meta.Sizes[diffID]
	forms := append([]Compressed(nil), s.dist.meta.Forms[diffID]...)
	s.dist.mu.Unlock()
	if !sized {
		return Compressed{}, 0, false
	}
	for i := len(forms) - 1; i >= 0; i-- {
		if forms[i].Digest != diffID && s.content.Exists(forms[i].Digest) {
			return forms[i], size, true
		}
	}
	return Compressed{}, 0, false
}

// OpenLayer returns the uncompressed tar of layer diffID and its size:
// the kept blob, or a kept compressed form, decompressed as it is read.
func (s *Store) OpenLayer(diffID digest.Digest) (io.ReadCloser, int64, error) {
	if f, err := s.content.Open(diffID); err == nil {
		return f, f.Size(), nil
	} else if !errdefs.Is(err, errdefs.ErrNotFound) {
		return nil, 0, err
	}
	c, size, ok := s.keptForm(diffID)
	if !ok {
		return nil, 0, fmt.Errorf("layer %s: not kept here: %w", diffID, errdefs.ErrNotFound)
	}
	f, err := s.content.Open(c.Digest)
	if err != nil {
		return nil, 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	dr, err := archive.Decompress(f)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("layer %s: kept form %s: %w", diffID, c.Digest, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{dr, closers{dr, f}}, size, nil
}

// closers closes each of its members, returning the first error.
type closers []io.Closer

func (cs closers) Close() error {
	var first error
	for _, c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// LayerForms returns the compressed forms known for layer diffID, newest
// first. Local reports whether the form's blob is kept here.
func (s *Store) LayerForms(diffID digest.Digest) []LayerForm {
	s.dist.mu.Lock()
	forms := append([]Compressed(nil), s.dist.meta.Forms[diffID]...)
	s.dist.mu.Unlock()
	out := make([]LayerForm, 0, len(forms))
	for i := len(forms) - 1; i >= 0; i-- {
		out = append(out, LayerForm{Compressed: forms[i], Local: s.content.Exists(forms[i].Digest)})
	}
	return out
}

// LayerForm is a compressed form of a layer and whether its blob is here.
type LayerForm struct {
	Compressed
	Local bool
}

// RecordForm remembers that layer diffID has the compressed form c, held
// by repository repo (a normalised name; "" for none).
func (s *Store) RecordForm(diffID digest.Digest, c Compressed, repo string) error {
	s.dist.mu.Lock()
	defer s.dist.mu.Unlock()
	changed := s.recordFormLocked(diffID, c)
	if repo != "" && s.addRepoLocked(c.Digest, repo) {
		changed = true
	}
	if !changed {
		return nil
	}
	return s.dist.saveLocked()
}

// recordFormLocked makes c the newest form of diffID and reports whether
// that changed anything. Hold s.dist.mu.
func (s *Store) recordFormLocked(diffID digest.Digest, c Compressed) bool {
	forms := s.dist.meta.Forms[diffID]
	if n := len(forms); n > 0 && forms[n-1] == c {
		return false
	}
	for i, f := range forms {
		if f.Digest == c.Digest {
			forms = append(forms[:i:i], forms[i+1:]...)
			break
		}
	}
	s.dist.meta.Forms[diffID] = append(forms, c)
	return true
}

// addRepoLocked makes repo the newest holder of blob d and reports
// whether that changed anything. Hold s.dist.mu.
func (s *Store) addRepoLocked(d digest.Digest, repo string) bool {
	old := s.dist.meta.Repos[d]
	if n := len(old); n > 0 && old[n-1] == repo {
		return false
	}
	repos := remove(append([]string(nil), old...), repo)
	repos = append(repos, repo)
	if len(repos) > maxRepos {
		repos = repos[len(repos)-maxRepos:]
	}
	s.dist.meta.Repos[d] = repos
	return true
}

// BlobRepos returns the repositories (normalised names, newest first)
// known to hold blob d.
func (s *Store) BlobRepos(d digest.Digest) []string {
	s.dist.mu.Lock()
	defer s.dist.mu.Unlock()
	repos := s.dist.meta.Repos[d]
	out := make([]string, 0, len(repos))
	for i := len(repos) - 1; i >= 0; i-- {
		out = append(out, repos[i])
	}
	return out
}

// AddBlobRepo remembers that repository repo holds blob d.
func (s *Store) AddBlobRepo(d digest.Digest, repo string) error {
	s.dist.mu.Lock()
	defer s.dist.mu.Unlock()
	if !s.addRepoLocked(d, repo) {
		return nil
	}
	return s.dist.saveLocked()
}

// LayerSource is one layer blob as a registry serves it.
type LayerSource struct {
	Compressed               // the blob: digest, size, media type
	DiffID     digest.Digest // of the uncompressed tar, from the image config
	ChainID    digest.Digest // of the layer stack up to this layer
	Repo       string        // normalised repository it comes from ("" for none)
}

// IngestLayer reads one layer blob (r yields exactly its bytes) in a
// single pass: it verifies the blob's size and digest and the diff ID of
// the uncompressed tar, keeps the blob and the uncompressed tar, and
// unpacks the layer into snapshot ChainID while the bytes arrive, each
// only if missing. Nothing of the layer is kept unless everything
// verified; once verified it is kept even if the pull that asked for it
// fails later (see PruneLayers). zstd layers are refused with
// errdefs.ErrNotImplemented.
//
// The work is split in three stages that run at once (see pipeline.go): a
// goroutine reads the blob, hashes it, keeps it and gunzips it into
// chunks; another hashes the chunks of the tar; the caller's goroutine
// unpacks them. All are finished when IngestLayer returns.
func (s *Store) IngestLayer(r io.Reader, src LayerSource) error {
	for _, d := range []digest.Digest{src.Digest, src.DiffID, src.ChainID} {
		if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
			return bad("layer digest %q: expected sha256:<64 hex digits>", d)
		}
	}
	// The tar is kept once: as the compressed blob the registry served
	// (save and push decompress it), or as itself when it came so.
	uncompressed := src.Digest == src.DiffID
	needBlob := uncompressed && !s.content.Exists(src.DiffID)
	needForm := !uncompressed && !s.content.Exists(src.Digest)

	// compressed bytes → size and digest check (+ the kept blob)
	var formW, blobW *content.Writer
	var err error
	if needForm {
		if formW, err = s.content.Writer(); err != nil {
			return err
		}
		defer formW.Close()
	}
	if needBlob {
		if blobW, err = s.content.Writer(); err != nil {
			return err
		}
		defer blobW.Close()
	}
	cr := &countHash{r: io.LimitReader(r, src.Size+1)}
	if formW != nil {
		cr.w = formW // it hashes what it is given
	} else {
		cr.h = digest.SHA256.Hash()
	}
	p := newPipeline()
	defer p.halt(false) // before the writers close
	blobDone := make(chan struct{})
	var blobErr error
	var blobOnce sync.Once
	finishBlob := func(err error) { blobOnce.Do(func() { blobErr = err; close(blobDone) }) }
	// readRest reads the blob to its end (the pipeline's first stage does,
	// once it runs); checkBlob waits for that and checks the blob.
	readRest := func() {
		_, err := io.Copy(io.Discard, cr)
		finishBlob(err)
	}
	checkBlob := func() error {
		<-blobDone
		if blobErr != nil {
			return fmt.Errorf("layer %s: reading the blob: %w", src.Digest, blobErr)
		}
		if cr.n != src.Size {
			return bad("layer %s: blob is %d bytes, but the manifest says %d", src.Digest, cr.n, src.Size)
		}
		if got := cr.digest(); got != src.Digest {
			return bad("layer %s: digest mismatch: the blob hashes to %s", src.Digest, got)
		}
		return nil
	}
	// A failure midway (a corrupt gzip stream, say) is more clearly
	// explained by the blob's digest when that is what is wrong.
	explain := func(err error) error {
		if errors.Is(err, errdefs.ErrNotImplemented) {
			return err
		}
		p.halt(true)
		if berr := checkBlob(); berr != nil && !errors.Is(berr, io.ErrUnexpectedEOF) {
			return berr
		}
		return err
	}

	// gunzip (Decompress peeks at the blob's first bytes here) …
	dr, err := archive.Decompress(cr)
	if err != nil {
		if !errors.Is(err, errdefs.ErrNotImplemented) {
			readRest()
		}
		return explain(fmt.Errorf("layer %s: %w", src.Digest, err))
	}
	tarQ := p.queue()
	p.run(func() {
		defer finishBlob(errStopped) // unless readRest did: stopped early, or a panic
		fill(dr, tarQ)
		dr.Close()
		// The rest of the blob (nothing, unless it goes on past the gzip
		// stream), also when the unpacking failed and explain wants the
		// digest.
		if !p.stopped() || p.drain.Load() {
			readRest()
		}
	})
	// … → diff ID check (+ the kept uncompressed tar) …
	verified := p.queue()
	var tarSize int64
	p.run(func() { tarSize = verifyStage(tarQ, verified, blobW, src.DiffID) })
	// … → unpack
	vr := &queueReader{q: verified}
	defer vr.release()
	applied := false
	created, err := s.snaps.ApplyLayer(src.ChainID, func(dir string) (int64, error) {
		applied = true
		n, err := archive.ApplyUncompressed(dir, vr)
		if err != nil {
			return n, explain(fmt.Errorf("layer %s: %w", src.Digest, err))
		}
		return n, checkBlob()
	})
	if err != nil {
		return err
	}
	if !applied {
		if _, err := io.Copy(io.Discard, vr); err != nil {
			return explain(fmt.Errorf("layer %s: %w", src.Digest, err))
		}
		if err := checkBlob(); err != nil {
			return err
		}
	}
	p.wait() // tarSize and the writers are settled
	undo := func() {
		if created {
			s.snaps.RemoveLayer(src.ChainID)
		}
	}
	if blobW != nil {
		if _, err := blobW.Commit(src.DiffID, -1); err != nil {
			undo()
			return err
		}
	}
	if formW != nil {
		if _, err := formW.Commit(src.Digest, src.Size); err != nil {
			undo()
			return err
		}
	}
	s.dist.mu.Lock()
	defer s.dist.mu.Unlock()
	s.recordFormLocked(src.DiffID, src.Compressed)
	if !uncompressed {
		s.dist.meta.Sizes[src.DiffID] = tarSize
	}
	if src.Repo != "" {
		s.addRepoLocked(src.Digest, src.Repo)
	}
	if created || needBlob || needForm {
		s.dist.meta.Pulled[src.ChainID] = src.DiffID
	}
	return s.dist.saveLocked()
}

// verifyStage passes the tar's chunks from in to out, hashing them (or
// writing them to w, a content writer that hashes them) and, at the tar's
// end, ends out with an error unless the hash is want. It returns the
// tar's size.
func verifyStage(in, out *queue, w *content.Writer, want digest.Digest) int64 {
	var h hash.Hash
	if w == nil {
		h = digest.SHA256.Hash()
	}
	var n int64
	for {
		select {
		case c, ok := <-in.ch:
			if !ok {
				err := in.err
				if err == nil {
					var got digest.Digest
					if w != nil {
						got = w.Digest()
					} else {
						got = digest.NewDigest(digest.SHA256, h)
					}
					if got != want {
						err = diffIDMismatch(got, want)
					}
				}
				out.close(err)
				return n
			}
			n += int64(c.n)
			if w != nil {
				if _, err := w.Write(c.bytes()); err != nil {
					c.free()
					out.close(err)
					return n
				}
			} else {
				h.Write(c.bytes())
			}
			if !out.put(c) {
				out.close(errStopped)
				return n
			}
		case <-in.p.stop:
			out.close(errStopped)
			return n
		}
	}
}

// countHash reads r, counting what it yields and copying it to w, a
// content writer that hashes it, or hashing it into h when there is no w.
type countHash struct {
	r io.Reader
	h hash.Hash
	w *content.Writer
	n int64
}

// digest is the digest of what was read so far.
func (c *countHash) digest() digest.Digest {
	if c.w != nil {
		return c.w.Digest()
	}
	return digest.NewDigest(digest.SHA256, c.h)
}

func (c *countHash) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		if c.h != nil {
			c.h.Write(p[:n])
		}
		c.n += int64(n)
		if c.w != nil {
			if _, werr := c.w.Write(p[:n]); werr != nil {
				return n, werr
			}
		}
	}
	return n, err
}

// CompressLayer makes a gzip form of layer diffID from its kept
// uncompressed tar (for pushing a loaded, imported or built image),
// keeps it and records it, so that the next push reuses it. A gzip form
// already kept is returned as is.
func (s *Store) CompressLayer(diffID digest.Digest) (Compressed, error) {
	for _, f := range s.LayerForms(diffID) {
		if f.Local && f.IsGzip() {
			return f.Compressed, nil
		}
	}
	src, _, err := s.OpenLayer(diffID)
	if err != nil {
		return Compressed{}, fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer src.Close()
	w, err := s.content.Writer()
	if err != nil {
		return Compressed{}, err
	}
	defer w.Close()
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return Compressed{}, err
	}
	h := digest.SHA256.Hash()
	if _, err := io.Copy(zw, io.TeeReader(src, h)); err != nil {
		return Compressed{}, fmt.Errorf("compressing layer %s: %w", diffID, err)
	}
	if err := zw.Close(); err != nil {
		return Compressed{}, fmt.Errorf("compressing layer %s: %w", diffID, err)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != diffID {
		return Compressed{}, fmt.Errorf("layer %s: the kept tar hashes to %s; the store is damaged (remove the image and load or pull it again)", diffID, got)
	}
	c := Compressed{Digest: w.Digest(), Size: w.Size(), MediaType: MediaTypeDockerLayer}
	if _, err := w.Commit(c.Digest, c.Size); err != nil {
		return Compressed{}, err
	}
	s.dist.mu.Lock()
	defer s.dist.mu.Unlock()
	s.recordFormLocked(diffID, c)
	return c, s.dist.saveLocked()
}

// PulledImage is what a pull records once all its layers are stored.
type PulledImage struct {
	Config   []byte // the config blob (its digest is the image ID)
	Manifest []byte // the platform manifest, kept for push
	// Name is the tag pulled (zero for a pull by digest only); Digest is
	// repository@digest of what was pulled (index or manifest), as
	// RepoDigests shows it.
	Name   reference.Named
	Digest reference.Named
}

// CommitPulled stores the config and manifest of a pulled image whose
// layers IngestLayer stored (or were here), records the image and points
// p.Name and p.Digest at it. changed reports whether either name pointed
// elsewhere or nowhere before (Docker's "Downloaded newer image" as
// opposed to "Image is up to date").
func (s *Store) CommitPulled(p PulledImage) (img *Image, changed bool, err error) {
	cfg, err := parseConfig(p.Config, "image config")
	if err != nil {
		return nil, false, err
	}
	id := digest.FromBytes(p.Config)
	md := digest.FromBytes(p.Manifest)
	chain := ChainIDs(cfg.RootFS.DiffIDs)

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var size int64
	for i, diffID := range cfg.RootFS.DiffIDs {
		if !s.HasLayer(diffID, chain[i]) {
			return nil, false, fmt.Errorf("image %s: layer %s is missing from the store: %w", id, diffID, errdefs.ErrNotFound)
		}
		n, err := s.snaps.LayerSize(chain[i])
		if err != nil {
			return nil, false, err
		}
		size += n
	}
	t := &txn{s: s}
	ok := false
	defer func() {
		if !ok {
			t.rollback()
		}
	}()
	if err := t.putBlob(p.Config, id); err != nil {
		return nil, false, err
	}
	if err := t.putBlob(p.Manifest, md); err != nil {
		return nil, false, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	undo := s.snapshotMetaLocked()
	r := s.images[id.String()]
	dirty := r == nil || len(r.Manifests) == 0 || r.Manifests[0] != md
	if r == nil {
		r = &record{ID: id.String(), Layers: cfg.RootFS.DiffIDs, Size: size, Added: time.Now().UTC(), config: cfg}
		s.images[r.ID] = r
	}
	r.ManifestDigest = md
	r.Manifests = append([]digest.Digest{md}, remove2(r.Manifests, md)...)
	for _, n := range []reference.Named{p.Name, p.Digest} {
		if n.IsZero() {
			continue
		}
		if s.refs[n.String()] != r.ID {
			changed = true
		}
		s.setRefLocked(n.String(), r.ID, nil)
	}
	if dirty || changed {
		if err := s.saveLocked(); err != nil {
			undo()
			return nil, false, err
		}
	}
	ok = true
	return r.image(), changed, nil
}

func remove2(list []digest.Digest, d digest.Digest) []digest.Digest {
	out := make([]digest.Digest, 0, len(list))
	for _, x := range list {
		if x != d {
			out = append(out, x)
		}
	}
	return out
}

// ImageManifests returns the manifests kept for image id (newest first)
// whose blobs are here.
func (s *Store) ImageManifests(id string) []digest.Digest {
	s.mu.RLock()
	r := s.images[id]
	var list []digest.Digest
	if r != nil {
		list = append(list, r.Manifests...)
	}
	s.mu.RUnlock()
	out := list[:0]
	for _, d := range list {
		if s.content.Exists(d) {
			out = append(out, d)
		}
	}
	return out
}

// AddManifest keeps manifest (which must describe image id) for image id,
// newest first, and returns its digest.
func (s *Store) AddManifest(id string, manifest []byte) (digest.Digest, error) {
	md := digest.FromBytes(manifest)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.images[id]
	if r == nil {
		return "", fmt.Errorf("no such image: %s: %w", id, errdefs.ErrNotFound)
	}
	if !s.content.Exists(md) {
		if _, err := s.content.Put(bytes.NewReader(manifest), md); err != nil {
			return "", err
		}
	}
	undo := s.snapshotMetaLocked()
	r.Manifests = append([]digest.Digest{md}, remove2(r.Manifests, md)...)
	if err := s.saveLocked(); err != nil {
		undo()
		return "", err
	}
	return md, nil
}

// AddRepoDigest adds name@digest (ref must carry a digest) to image id's
// RepoDigests.
func (s *Store) AddRepoDigest(id string, ref reference.Named) error {
	if ref.Digest() == "" {
		return fmt.Errorf("repository digest %q: expected name@sha256:…: %w", ref.String(), errdefs.ErrInvalidArgument)
	}
	ref, _ = ref.WithDigest(ref.Digest())
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.images[id] == nil {
		return fmt.Errorf("no such image: %s: %w", id, errdefs.ErrNotFound)
	}
	undo := s.snapshotMetaLocked()
	s.setRefLocked(ref.String(), id, nil)
	if err := s.saveLocked(); err != nil {
		undo()
		return err
	}
	return nil
}

// dropDistLocked forgets (and deletes the blobs of) the compressed forms
// and manifests of the just-deleted image r that no remaining image uses.
// Hold s.writeMu and s.mu.
func (s *Store) dropDistLocked(r *record) {
	usedDiff, usedChain, usedManifest := map[digest.Digest]bool{}, map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for _, o := range s.images {
		for _, l := range o.Layers {
			usedDiff[l] = true
		}
		for _, c := range ChainIDs(o.Layers) {
			usedChain[c] = true
		}
		for _, m := range o.Manifests {
			usedManifest[m] = true
		}
	}
	for _, m := range r.Manifests {
		if !usedManifest[m] && !s.dist.leased(m) {
			s.content.Delete(m)
		}
	}
	s.dist.mu.Lock()
	defer s.dist.mu.Unlock()
	for _, l := range r.Layers {
		if usedDiff[l] || s.dist.leases[l] > 0 {
			continue
		}
		s.dropFormsLocked(l)
	}
	for _, c := range ChainIDs(r.Layers) {
		if !usedChain[c] && s.dist.leases[c] == 0 {
			delete(s.dist.meta.Pulled, c)
		}
	}
	s.dist.saveLocked()
}

// dropFormsLocked deletes the kept compressed forms of layer diffID.
// Hold s.dist.mu.
func (s *Store) dropFormsLocked(diffID digest.Digest) {
	for _, f := range s.dist.meta.Forms[diffID] {
		if f.Digest != diffID && s.dist.leases[f.Digest] == 0 {
			s.content.Delete(f.Digest)
		}
		delete(s.dist.meta.Repos, f.Digest)
	}
	delete(s.dist.meta.Forms, diffID)
	delete(s.dist.meta.Sizes, diffID)
}

// PruneLayers removes the layers pulls stored that no image uses and no
// pull in progress leases: what failed pulls left for a retry.
func (s *Store) PruneLayers() ([]Deleted, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	usedDiff, usedChain := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for _, o := range s.images {
		usedDiff[digest.Digest(o.ID)] = true
		for _, l := range o.Layers {
			usedDiff[l] = true
		}
		for _, c := range ChainIDs(o.Layers) {
			usedChain[c] = true
		}
	}
	s.mu.RUnlock()
	s.dist.mu.Lock()
	defer s.dist.mu.Unlock()
	var chains []digest.Digest
	for c := range s.dist.meta.Pulled {
		chains = append(chains, c)
	}
	sort.Slice(chains, func(i, j int) bool { return chains[i] < chains[j] })
	var out []Deleted
	for _, c := range chains {
		diffID := s.dist.meta.Pulled[c]
		if usedChain[c] || s.dist.leases[c] > 0 || s.dist.leases[diffID] > 0 {
			continue
		}
		if err := s.snaps.RemoveLayer(c); err != nil {
			return out, err
		}
		out = append(out, Deleted{Deleted: c.String()})
		delete(s.dist.meta.Pulled, c)
		if !usedDiff[diffID] {
			s.content.Delete(diffID)
			s.dropFormsLocked(diffID)
		}
	}
	return out, s.dist.saveLocked()
}
