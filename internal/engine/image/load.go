package image

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/archive"
	"github.com/berth/berth/internal/engine/content"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of Docker's schema 2 that OCI archives may carry.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerLayerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	annotationImage    = "io.containerd.image.name"
)

func bad(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// staged is an archive extracted into a temporary directory.
type staged struct {
	dir   string
	files map[string]bool   // regular files, by clean archive name
	links map[string]string // symlinks and hard links: name → clean target
}

// stage extracts the archive's regular files into dir, verifying every
// blobs/sha256/<hex> entry against its name as it goes.
func stage(dir string, r io.Reader) (*staged, error) {
	rc, err := archive.Decompress(r)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	defer rc.Close()
	st := &staged{dir: dir, files: map[string]bool{}, links: map[string]string{}}
	tr := tar.NewReader(rc)
	last := "(start of archive)"
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, bad("archive: corrupt or truncated after entry %q: %v", last, err)
		}
		last = hdr.Name
		name := path.Clean(strings.TrimLeft(hdr.Name, "/"))
		if name == ".." || strings.HasPrefix(name, "../") {
			return nil, bad("archive entry %q: path climbs out of the archive", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			if st.files[name] || st.links[name] != "" {
				return nil, bad("archive entry %q: appears twice", hdr.Name)
			}
			if err := st.write(name, hdr, tr); err != nil {
				return nil, err
			}
			st.files[name] = true
		case tar.TypeSymlink:
			target := hdr.Linkname
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(name), target)
			}
			st.links[name] = path.Clean(strings.TrimLeft(target, "/"))
		case tar.TypeLink:
			st.links[name] = path.Clean(strings.TrimLeft(hdr.Linkname, "/"))
		}
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return nil, bad("archive: corrupt or truncated after entry %q: %v", last, err)
	}
	return st, nil
}

func (st *staged) write(name string, hdr *tar.Header, r io.Reader) error {
	p := filepath.Join(st.dir, "f", filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return bad("archive entry %q: cannot be staged: %v", hdr.Name, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return bad("archive entry %q: cannot be staged: %v", hdr.Name, err)
	}
	defer f.Close()
	var h hash.Hash
	var want digest.Digest
	if rest, ok := strings.CutPrefix(name, "blobs/sha256/"); ok {
		want = digest.NewDigestFromEncoded(digest.SHA256, rest)
		if want.Validate() != nil {
			return bad("archive entry %q: blob name is not a sha256 hex digest", hdr.Name)
		}
		h = digest.SHA256.Hash()
	}
	var w io.Writer = f
	if h != nil {
		w = io.MultiWriter(f, h)
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return bad("archive entry %q: truncated: %v", hdr.Name, err)
	}
	if n != hdr.Size {
		return bad("archive entry %q: truncated: got %d bytes, want %d", hdr.Name, n, hdr.Size)
	}
	if h != nil {
		if got := digest.NewDigest(digest.SHA256, h); got != want {
			return bad("archive entry %q: digest mismatch: content hashes to %s", hdr.Name, got)
		}
	}
	return nil
}

// resolve follows links to a staged regular file and returns its path.
func (st *staged) resolve(name string) (string, error) {
	orig := name
	name = path.Clean(strings.TrimLeft(name, "/"))
	for i := 0; i < 16; i++ {
		if st.files[name] {
			return filepath.Join(st.dir, "f", filepath.FromSlash(name)), nil
		}
		t, ok := st.links[name]
		if !ok {
			return "", bad("archive entry %q: missing from the archive", orig)
		}
		if t == ".." || strings.HasPrefix(t, "../") {
			return "", bad("archive entry %q: link points out of the archive", orig)
		}
		name = t
	}
	return "", bad("archive entry %q: too many levels of links", orig)
}

func (st *staged) has(name string) bool {
	_, err := st.resolve(name)
	return err == nil
}

func (st *staged) read(name string, max int64) ([]byte, error) {
	p, err := st.resolve(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, bad("archive entry %q: larger than %d bytes", name, max)
	}
	return b, nil
}

const maxJSON = 16 << 20

// pending is one image found in an archive, not yet verified.
type pending struct {
	configEntry    string
	config         []byte
	layers         []layerSrc
	names          []reference.Named
	manifestDigest digest.Digest
}

type layerSrc struct {
	entry string
	// compressed digest and size from an OCI descriptor, if any
	digest digest.Digest
	size   int64
}

func blobEntry(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func parseDocker(st *staged) ([]pending, error) {
	b, err := st.read("manifest.json", maxJSON)
	if err != nil {
		return nil, err
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, bad("archive entry %q: invalid JSON: %v", "manifest.json", err)
	}
	if len(entries) == 0 {
		return nil, bad("archive entry %q: lists no images", "manifest.json")
	}
	var out []pending
	for i, e := range entries {
		if e.Config == "" {
			return nil, bad("archive entry %q: image %d has no Config", "manifest.json", i)
		}
		cfg, err := st.read(e.Config, maxJSON)
		if err != nil {
			return nil, err
		}
		p := pending{configEntry: e.Config, config: cfg}
		for _, t := range e.RepoTags {
			n, err := reference.Parse(t)
			if err != nil {
				return nil, fmt.Errorf("archive entry %q: RepoTags: %w", "manifest.json", err)
			}
			p.names = append(p.names, n)
		}
		for _, l := range e.Layers {
			if !st.has(l) {
				return nil, bad("archive entry %q: layer %q is missing from the archive", "manifest.json", l)
			}
			p.layers = append(p.layers, layerSrc{entry: l})
		}
		out = append(out, p)
	}
	return out, nil
}

func readBlob(st *staged, desc ocispec.Descriptor, what string) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, bad("%s: invalid digest %q", what, desc.Digest)
	}
	b, err := st.read(blobEntry(desc.Digest), maxJSON)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != desc.Size {
		return nil, bad("archive entry %q: size %d, but %s says %d", blobEntry(desc.Digest), len(b), what, desc.Size)
	}
	if digest.FromBytes(b) != desc.Digest {
		return nil, bad("archive entry %q: digest mismatch", blobEntry(desc.Digest))
	}
	return b, nil
}

func parseOCI(st *staged) ([]pending, error) {
	b, err := st.read("index.json", maxJSON)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, bad("archive entry %q: invalid JSON: %v", "index.json", err)
	}
	var out []pending
	byManifest := map[digest.Digest]int{}
	var walk func(descs []ocispec.Descriptor, where string, depth int, names []reference.Named) error
	walk = func(descs []ocispec.Descriptor, where string, depth int, inherited []reference.Named) error {
		if depth > 4 {
			return bad("archive entry %q: indexes nested too deep", where)
		}
		for _, d := range descs {
			names := append([]reference.Named(nil), inherited...)
			if n := d.Annotations[annotationImage]; n != "" {
				ref, err := reference.Parse(n)
				if err != nil {
					return fmt.Errorf("archive entry %q: annotation %s: %w", where, annotationImage, err)
				}
				names = append(names, ref)
			} else if n := d.Annotations[ocispec.AnnotationRefName]; strings.ContainsAny(n, ":/") {
				// A full name; a bare tag names no repository and is ignored.
				if ref, err := reference.Parse(n); err == nil {
					names = append(names, ref)
				}
			}
			switch d.MediaType {
			case ocispec.MediaTypeImageIndex, dockerManifestList:
				b, err := readBlob(st, d, where)
				if err != nil {
					return err
				}
				var sub ocispec.Index
				if err := json.Unmarshal(b, &sub); err != nil {
					return bad("archive entry %q: invalid JSON: %v", blobEntry(d.Digest), err)
				}
				// Take this platform's manifest (or the only one).
				var pick []ocispec.Descriptor
				for _, m := range sub.Manifests {
					if m.Platform == nil || (m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH) {
						if st.has(blobEntry(m.Digest)) {
							pick = append(pick, m)
							break
						}
					}
				}
				if len(pick) == 0 {
					return bad("archive entry %q: no manifest for linux/%s in the archive", blobEntry(d.Digest), runtime.GOARCH)
				}
				if err := walk(pick, blobEntry(d.Digest), depth+1, names); err != nil {
					return err
				}
			case ocispec.MediaTypeImageManifest, dockerManifest, "":
				if i, ok := byManifest[d.Digest]; ok {
					out[i].names = append(out[i].names, names...)
					continue
				}
				p, err := parseOCIManifest(st, d, where)
				if err != nil {
					return err
				}
				p.names = names
				byManifest[d.Digest] = len(out)
				out = append(out, p)
			default:
				return bad("archive entry %q: unsupported media type %q", where, d.MediaType)
			}
		}
		return nil
	}
	if err := walk(idx.Manifests, "index.json", 0, nil); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, bad("archive entry %q: lists no images", "index.json")
	}
	return out, nil
}

func parseOCIManifest(st *staged, d ocispec.Descriptor, where string) (pending, error) {
	b, err := readBlob(st, d, where)
	if err != nil {
		return pending{}, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return pending{}, bad("archive entry %q: invalid JSON: %v", blobEntry(d.Digest), err)
	}
	me := blobEntry(d.Digest)
	cfg, err := readBlob(st, m.Config, "manifest "+me)
	if err != nil {
		return pending{}, err
	}
	p := pending{configEntry: blobEntry(m.Config.Digest), config: cfg, manifestDigest: d.Digest}
	for _, l := range m.Layers {
		switch l.MediaType {
		case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, dockerLayerGzip, dockerLayerForeign,
			ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip: //nolint:staticcheck
		case ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck
			return pending{}, fmt.Errorf("archive entry %q: zstd layers are not supported: %w", me, errdefs.ErrNotImplemented)
		default:
			return pending{}, bad("archive entry %q: unsupported layer media type %q", me, l.MediaType)
		}
		if l.Digest.Validate() != nil {
			return pending{}, bad("archive entry %q: invalid layer digest %q", me, l.Digest)
		}
		if !st.has(blobEntry(l.Digest)) {
			return pending{}, bad("archive entry %q: layer %s is missing from the archive", me, l.Digest)
		}
		p.layers = append(p.layers, layerSrc{entry: blobEntry(l.Digest), digest: l.Digest, size: l.Size})
	}
	return p, nil
}

// verifyReader passes r through, hashing it, and at its end fails unless
// the hash is want. When everything read is also written to a content
// writer, the writer's running digest serves (sum), so that the bytes are
// hashed once.
type verifyReader struct {
	r    io.Reader
	h    hash.Hash            // nil when sum is set
	sum  func() digest.Digest // the digest of what was read, if not h's
	want digest.Digest
	n    int64 // bytes read
}

// newVerifyReader returns a verifyReader of r against want; w, if not
// nil, is the content writer that receives every byte read from r.
func newVerifyReader(r io.Reader, w *content.Writer, want digest.Digest) *verifyReader {
	if w != nil {
		return &verifyReader{r: io.TeeReader(r, w), sum: w.Digest, want: want}
	}
	return &verifyReader{r: r, h: digest.SHA256.Hash(), want: want}
}

// diffIDMismatch is the error for a layer tar that hashes to got where
// the image config says want.
func diffIDMismatch(got, want digest.Digest) error {
	return bad("layer content hashes to %s, but the image config's diff_id is %s", got, want)
}

func (v *verifyReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	if err == io.EOF {
		got := v.sum
		if v.h != nil {
			got = func() digest.Digest { return digest.NewDigest(digest.SHA256, v.h) }
		}
		if got := got(); got != v.want {
			return n, diffIDMismatch(got, v.want)
		}
	}
	return n, err
}

// txn records what an operation created, to undo it on failure.
type txn struct {
	s      *Store
	blobs  []digest.Digest
	layers []digest.Digest
}

func (t *txn) rollback() {
	for _, l := range t.layers {
		t.s.snaps.RemoveLayer(l)
	}
	for _, b := range t.blobs {
		t.s.content.Delete(b)
	}
}

func (t *txn) putBlob(b []byte, d digest.Digest) error {
	if t.s.content.Exists(d) {
		return nil
	}
	if _, err := t.s.content.Put(strings.NewReader(string(b)), d); err != nil {
		return err
	}
	t.blobs = append(t.blobs, d)
	return nil
}

// addLayer verifies the uncompressed stream r against diffID, keeps it as
// a blob and unpacks it as layer chainID, doing only what is missing.
func (t *txn) addLayer(r io.Reader, entry string, diffID, chainID digest.Digest) (int64, error) {
	s := t.s
	needBlob := !s.hasLayerData(diffID)
	needSnap := !s.snaps.HasLayer(chainID)
	var w *content.Writer
	if needBlob {
		var err error
		if w, err = s.content.Writer(); err != nil {
			return 0, err
		}
		defer w.Close()
	}
	vr := newVerifyReader(r, w, diffID)
	if needSnap {
		created, err := s.snaps.ApplyLayer(chainID, func(dir string) (int64, error) {
			n, err := archive.ApplyUncompressed(dir, vr)
			if err != nil {
				return n, fmt.Errorf("archive entry %q: %w", entry, err)
			}
			return n, nil
		})
		if err != nil {
			return 0, err
		}
		if created {
			t.layers = append(t.layers, chainID)
		}
	} else if _, err := io.Copy(io.Discard, vr); err != nil {
		return 0, fmt.Errorf("archive entry %q: %w", entry, err)
	}
	if needBlob {
		if _, err := w.Commit(diffID, -1); err != nil {
			return 0, fmt.Errorf("archive entry %q: %w", entry, err)
		}
		t.blobs = append(t.blobs, diffID)
	}
	return s.snaps.LayerSize(chainID)
}

func parseConfig(b []byte, entry string) (ocispec.Image, error) {
	var c ocispec.Image
	if err := json.Unmarshal(b, &c); err != nil {
		return c, bad("archive entry %q: invalid image config JSON: %v", entry, err)
	}
	if c.RootFS.Type != "layers" {
		return c, bad("archive entry %q: rootfs.type is %q, want \"layers\"", entry, c.RootFS.Type)
	}
	for _, d := range c.RootFS.DiffIDs {
		if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
			return c, bad("archive entry %q: invalid diff_id %q", entry, d)
		}
	}
	return c, nil
}

// Load stores the images of a `docker save` archive (manifest.json, with
// layers as <id>/layer.tar or blobs/sha256/<hex>) or of an OCI image
// layout archive (oci-layout, index.json, blobs), either of them plain or
// gzip-compressed. Every blob digest and every layer's diff ID is
// verified, and each new layer is unpacked once into its snapshot. A
// corrupt, truncated or inconsistent archive stores nothing; the error
// names the archive entry and what was wrong. progress (may be nil)
// receives Docker-like lines ("Loaded image: busybox:latest").
func (s *Store) Load(r io.Reader, progress func(string)) ([]Loaded, error) {
	if progress == nil {
		progress = func(string) {}
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	st, err := stage(tmp, r)
	if err != nil {
		return nil, err
	}
	var imgs []pending
	switch {
	case st.has("manifest.json"):
		imgs, err = parseDocker(st)
	case st.has("index.json"):
		imgs, err = parseOCI(st)
	default:
		err = bad("archive: has neither manifest.json nor index.json: expected a docker-save or OCI image layout archive")
	}
	if err != nil {
		return nil, err
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	t := &txn{s: s}
	ok := false
	defer func() {
		if !ok {
			t.rollback()
		}
	}()
	recs := make([]*record, len(imgs))
	for i, p := range imgs {
		cfg, err := parseConfig(p.config, p.configEntry)
		if err != nil {
			return nil, err
		}
		if len(cfg.RootFS.DiffIDs) != len(p.layers) {
			return nil, bad("archive entry %q: config lists %d diff_ids, the manifest %d layers", p.configEntry, len(cfg.RootFS.DiffIDs), len(p.layers))
		}
		id := digest.FromBytes(p.config)
		if err := t.putBlob(p.config, id); err != nil {
			return nil, err
		}
		chain := ChainIDs(cfg.RootFS.DiffIDs)
		rec := &record{ID: id.String(), Layers: cfg.RootFS.DiffIDs, ManifestDigest: p.manifestDigest, Added: time.Now().UTC(), config: cfg}
		for j, l := range p.layers {
			progress(fmt.Sprintf("Loading layer %s", cfg.RootFS.DiffIDs[j].Encoded()[:12]))
			size, err := s.loadLayer(t, st, l, cfg.RootFS.DiffIDs[j], chain[j])
			if err != nil {
				return nil, err
			}
			rec.Size += size
		}
		recs[i] = rec
	}

	// Everything is verified and unpacked: commit the metadata.
	s.mu.Lock()
	defer s.mu.Unlock()
	undo := s.snapshotMetaLocked()
	var loaded []Loaded
	for i, rec := range recs {
		if old := s.images[rec.ID]; old == nil {
			s.images[rec.ID] = rec
		}
		l := Loaded{ID: rec.ID}
		for _, n := range imgs[i].names {
			s.setRefLocked(n.String(), rec.ID, progress)
			l.Names = append(l.Names, n.FamiliarString())
		}
		loaded = append(loaded, l)
	}
	if err := s.saveLocked(); err != nil {
		undo()
		return nil, err
	}
	ok = true
	for _, l := range loaded {
		if len(l.Names) == 0 {
			progress("Loaded image ID: " + l.ID)
		}
		for _, n := range l.Names {
			progress("Loaded image: " + n)
		}
	}
	return loaded, nil
}

func (s *Store) loadLayer(t *txn, st *staged, l layerSrc, diffID, chainID digest.Digest) (int64, error) {
	p, err := st.resolve(l.entry)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if l.digest != "" {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		if fi.Size() != l.size {
			return 0, bad("archive entry %q: size %d, but the manifest says %d", l.entry, fi.Size(), l.size)
		}
	}
	rc, err := archive.Decompress(f)
	if err != nil {
		return 0, fmt.Errorf("archive entry %q: %w", l.entry, err)
	}
	defer rc.Close()
	return t.addLayer(rc, l.entry, diffID, chainID)
}
