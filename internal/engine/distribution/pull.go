package distribution

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
)

// Manifest media types.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeSchema1            = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeSchema1Signed      = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 16 << 20
)

var manifestAccept = strings.Join([]string{ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList,
	ocispec.MediaTypeImageManifest, MediaTypeDockerManifest}, ", ")

// PullOptions tune Pull.
type PullOptions struct {
	// Platform picks the manifest of a multi-platform image; nil means
	// this host's. Given explicitly, a single-platform image of another
	// platform is refused.
	Platform *ocispec.Platform
	// Auth are the registry credentials (nil: anonymous).
	Auth *api.AuthConfig
	// Progress receives Docker's pull progress (may be nil; calls are
	// serialised).
	Progress func(Progress)
}

// manifestDoc is the union of an image manifest and an index.
type manifestDoc struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	FSLayers      json.RawMessage      `json:"fsLayers"`
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}
func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

// parseManifest decodes b and settles its media type (from the response's
// Content-Type, else the document's mediaType field, else its shape).
func parseManifest(b []byte, contentType, what string) (manifestDoc, string, error) {
	var m manifestDoc
	if err := json.Unmarshal(b, &m); err != nil {
		return m, "", fmt.Errorf("%s: the registry sent invalid manifest JSON: %v: %w", what, err, errdefs.ErrInvalidArgument)
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "", "application/json", "text/plain", "application/octet-stream", "binary/octet-stream":
		mt = m.MediaType
	}
	if mt == "" {
		switch {
		case m.Manifests != nil:
			mt = ocispec.MediaTypeImageIndex
		case m.Config != nil:
			mt = ocispec.MediaTypeImageManifest
		case m.SchemaVersion == 1 || m.FSLayers != nil:
			mt = mediaTypeSchema1
		}
	}
	switch {
	case mt == mediaTypeSchema1 || mt == mediaTypeSchema1Signed:
		return m, mt, fmt.Errorf("%s: Docker Image manifest version 2, schema 1 is deprecated and not supported; push the image again with a current client: %w", what, errdefs.ErrNotImplemented)
	case isIndex(mt):
		if m.SchemaVersion != 2 {
			return m, mt, fmt.Errorf("%s: index has schemaVersion %d, want 2: %w", what, m.SchemaVersion, errdefs.ErrInvalidArgument)
		}
	case isManifest(mt):
		if m.SchemaVersion != 2 {
			return m, mt, fmt.Errorf("%s: manifest has schemaVersion %d, want 2: %w", what, m.SchemaVersion, errdefs.ErrInvalidArgument)
		}
		if m.Config == nil {
			return m, mt, fmt.Errorf("%s: manifest has no config: %w", what, errdefs.ErrInvalidArgument)
		}
		switch m.Config.MediaType {
		case MediaTypeDockerConfig, ocispec.MediaTypeImageConfig:
		default:
			return m, mt, fmt.Errorf("%s: unsupported media type %q for the config: not a container image: %w", what, m.Config.MediaType, errdefs.ErrNotImplemented)
		}
		if err := checkDesc(*m.Config, what+": config"); err != nil {
			return m, mt, err
		}
		for i, l := range m.Layers {
			if err := checkDesc(l, fmt.Sprintf("%s: layer %d", what, i)); err != nil {
				return m, mt, err
			}
			switch l.MediaType {
			case image.MediaTypeDockerLayer, image.MediaTypeDockerForeignLayer, image.MediaTypeDockerLayerTar,
				ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip,
				ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip: //nolint:staticcheck
			case ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck
				return m, mt, fmt.Errorf("%s: layer %s: zstd-compressed layers are not supported (media type %q): %w", what, l.Digest, l.MediaType, errdefs.ErrNotImplemented)
			default:
				return m, mt, fmt.Errorf("%s: layer %s: unsupported media type %q: %w", what, l.Digest, l.MediaType, errdefs.ErrNotImplemented)
			}
		}
	case mt == "":
		return m, mt, fmt.Errorf("%s: the registry sent a document with no media type that is neither a manifest nor an index: %w", what, errdefs.ErrInvalidArgument)
	default:
		return m, mt, fmt.Errorf("%s: unsupported media type %q: not a container image manifest or index: %w", what, mt, errdefs.ErrNotImplemented)
	}
	return m, mt, nil
}

func checkDesc(d ocispec.Descriptor, what string) error {
	if err := d.Digest.Validate(); err != nil || d.Digest.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%s: invalid digest %q: expected sha256:<64 hex digits>: %w", what, d.Digest, errdefs.ErrInvalidArgument)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size %d: %w", what, d.Size, errdefs.ErrInvalidArgument)
	}
	return nil
}

// notFound translates a 404 for ref as Docker words it.
func notFound(ref reference.Named, err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return err
	}
	msg := registryMessage(terr)
	if hasCode(terr, transport.NameUnknownErrorCode) {
		return fmt.Errorf("repository %s not found: %s: %w", ref.FamiliarName(), msg, errdefs.ErrNotFound)
	}
	return fmt.Errorf("manifest for %s not found: %s: %w", ref.FamiliarString(), msg, errdefs.ErrNotFound)
}

// fetchManifest GETs manifest tagOrDigest of the session's repository.
// want (if set) is the digest the bytes must have.
func (s *session) fetchManifest(ctx context.Context, ref reference.Named, tagOrDigest string, want digest.Digest) ([]byte, string, digest.Digest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url("/manifests/"+tagOrDigest), nil)
	if err != nil {
		return nil, "", "", err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, "", "", s.c.explain(s.host, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, "", "", notFound(ref, transport.CheckError(resp, http.StatusOK))
	case http.StatusUnauthorized, http.StatusForbidden:
		e := s.c.explain(s.host, transport.CheckError(resp, http.StatusOK))
		return nil, "", "", fmt.Errorf("pull access denied for %s, repository does not exist or may require 'docker login': %w", ref.FamiliarName(), e)
	default:
		return nil, "", "", s.c.explain(s.host, transport.CheckError(resp, http.StatusOK))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, "", "", s.c.explain(s.host, err)
	}
	if len(b) > maxManifestSize {
		return nil, "", "", fmt.Errorf("manifest %s of %s: larger than %d bytes: %w", tagOrDigest, ref.FamiliarName(), maxManifestSize, errdefs.ErrInvalidArgument)
	}
	d := digest.FromBytes(b)
	if want != "" && d != want {
		return nil, "", "", fmt.Errorf("manifest %s of %s: digest mismatch: the registry sent content hashing to %s: %w", want, ref.FamiliarName(), d, errdefs.ErrInvalidArgument)
	}
	if h := digest.Digest(resp.Header.Get("Docker-Content-Digest")); want == "" && h != "" && h.Validate() == nil && h.Algorithm() == digest.SHA256 && h != d {
		return nil, "", "", fmt.Errorf("manifest %s of %s: digest mismatch: the registry says %s but sent content hashing to %s: %w", tagOrDigest, ref.FamiliarName(), h, d, errdefs.ErrInvalidArgument)
	}
	return b, resp.Header.Get("Content-Type"), d, nil
}

// fetchBlob GETs blob d, returning its body (the caller closes it).
func (s *session) fetchBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url("/blobs/"+d.String()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.do(req)
	if err != nil {
		return nil, err
	}
	if err := s.check(resp, http.StatusOK); err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return resp.Body, nil
}

// shortID is Docker's 12-hex-digit short form of a digest.
func shortID(d digest.Digest) string {
	h := d.Encoded()
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// layerJob is one layer of a pull.
type layerJob struct {
	src   image.LayerSource
	id    string
	index int
	// downloaded, if set, is called once the layer's blob has arrived
	// (its unpacking may still be under way), to let the next download
	// start.
	downloaded func()
}

// Pull fetches the image refStr (Docker's reference rules: busybox means
// docker.io/library/busybox:latest; name@sha256:… pulls by digest) into
// the store and names it: the tag, and repository@digest as a
// RepoDigest. Layers already here (by diff ID or by blob digest) are not
// downloaded; the others are downloaded at most Config.MaxConcurrentDownloads
// at a time, each verified (blob digest and size, diff ID) and unpacked
// while it streams. A layer that completed stays when the pull fails, so
// a retry fetches only the rest; no image is recorded unless every layer
// is in.
func (c *Client) Pull(ctx context.Context, refStr string, opts PullOptions) (*image.Image, error) {
	ref, err := reference.Parse(refStr)
	if err != nil {
		return nil, err
	}
	progress := safe(opts.Progress)
	want := HostPlatform()
	if opts.Platform != nil {
		want = normalize(*opts.Platform)
	}
	s, err := c.open(ctx, ref, opts.Auth, "pull")
	if err != nil {
		return nil, err
	}
	tagOrDigest := ref.Tag()
	if ref.Digest() != "" {
		tagOrDigest = ref.Digest().String()
	}
	what := "manifest for " + ref.FamiliarString()
	mb, ct, md, err := s.fetchManifest(ctx, ref, tagOrDigest, ref.Digest())
	if err != nil {
		return nil, err
	}
	repoDigest := md
	m, mt, err := parseManifest(mb, ct, what)
	if err != nil {
		return nil, err
	}
	if isIndex(mt) {
		desc, err := pickManifest(m.Manifests, want)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref.FamiliarString(), err)
		}
		if err := checkDesc(desc, what); err != nil {
			return nil, err
		}
		what = fmt.Sprintf("manifest %s (%s) of %s", shortID(desc.Digest), FormatPlatform(want), ref.FamiliarString())
		if mb, ct, md, err = s.fetchManifest(ctx, ref, desc.Digest.String(), desc.Digest); err != nil {
			return nil, err
		}
		if desc.MediaType != "" && ct == "" {
			ct = desc.MediaType
		}
		if m, mt, err = parseManifest(mb, ct, what); err != nil {
			return nil, err
		}
		if !isManifest(mt) {
			return nil, fmt.Errorf("%s: the index entry is a %q, not an image manifest: %w", what, mt, errdefs.ErrNotImplemented)
		}
	}

	// The config: its digest is the image ID.
	cfgDesc := *m.Config
	release := c.store.Lease(cfgDesc.Digest, md)
	defer release()
	cb, err := c.store.Content().ReadAll(cfgDesc.Digest)
	if err != nil {
		if cfgDesc.Size > maxConfigSize {
			return nil, fmt.Errorf("%s: config is %d bytes, more than %d: %w", what, cfgDesc.Size, maxConfigSize, errdefs.ErrInvalidArgument)
		}
		body, err := s.fetchBlob(ctx, cfgDesc.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: config: %w", what, err)
		}
		cb, err = io.ReadAll(io.LimitReader(body, cfgDesc.Size+1))
		body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: config: %w", what, s.c.explain(s.host, err))
		}
		if int64(len(cb)) != cfgDesc.Size {
			return nil, fmt.Errorf("%s: config blob is %d bytes, but the manifest says %d: %w", what, len(cb), cfgDesc.Size, errdefs.ErrInvalidArgument)
		}
		if got := digest.FromBytes(cb); got != cfgDesc.Digest {
			return nil, fmt.Errorf("%s: config %s: digest mismatch: the blob hashes to %s: %w", what, cfgDesc.Digest, got, errdefs.ErrInvalidArgument)
		}
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return nil, fmt.Errorf("%s: config %s: invalid JSON: %v: %w", what, cfgDesc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if cfg.RootFS.Type != "layers" {
		return nil, fmt.Errorf("%s: config %s: rootfs.type is %q, want \"layers\": %w", what, cfgDesc.Digest, cfg.RootFS.Type, errdefs.ErrInvalidArgument)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%s: the config lists %d diff_ids but the manifest %d layers: %w", what, len(cfg.RootFS.DiffIDs), len(m.Layers), errdefs.ErrInvalidArgument)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("%s: config %s: invalid diff_id %q: %w", what, cfgDesc.Digest, d, errdefs.ErrInvalidArgument)
		}
	}
	if opts.Platform != nil && !isIndex(mt) && cfg.OS != "" {
		have := normalize(ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant})
		if rank(want, have) == 0 {
			return nil, fmt.Errorf("image with reference %s was found but does not match the specified platform: wanted %s, actual: %s: %w",
				ref.FamiliarString(), FormatPlatform(want), FormatPlatform(have), errdefs.ErrNotFound)
		}
	}

	pullingID := ref.Tag()
	if ref.Digest() != "" {
		pullingID = ref.Digest().String()
	}
	progress(Progress{ID: pullingID, Status: "Pulling from " + ref.Path(), Message: true})

	chain := image.ChainIDs(cfg.RootFS.DiffIDs)
	jobs := make([]layerJob, len(m.Layers))
	var leased []digest.Digest
	for i, l := range m.Layers {
		jobs[i] = layerJob{index: i, id: shortID(l.Digest), src: image.LayerSource{
			Compressed: image.Compressed{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType},
			DiffID:     cfg.RootFS.DiffIDs[i], ChainID: chain[i], Repo: ref.Repo().String()}}
		leased = append(leased, l.Digest, cfg.RootFS.DiffIDs[i], chain[i])
	}
	defer c.store.Lease(leased...)()

	if err := c.fetchLayers(ctx, s, jobs, progress); err != nil {
		return nil, err
	}

	p := image.PulledImage{Config: cb, Manifest: mb}
	p.Digest, _ = ref.Repo().WithDigest(repoDigest)
	if ref.Digest() == "" {
		p.Name = ref
	}
	img, changed, err := c.store.CommitPulled(p)
	if err != nil {
		return nil, err
	}
	progress(Progress{Status: "Digest: " + repoDigest.String(), Message: true})
	if changed {
		progress(Progress{Status: "Status: Downloaded newer image for " + ref.FamiliarString(), Message: true})
	} else {
		progress(Progress{Status: "Status: Image is up to date for " + ref.FamiliarString(), Message: true})
	}
	return img, nil
}

// fetchLayers brings every layer of jobs into the store, downloading the
// missing ones in parallel. The first failure cancels the rest.
func (c *Client) fetchLayers(ctx context.Context, s *session, jobs []layerJob, progress progressFunc) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var todo []layerJob
	for _, j := range jobs {
		if c.store.HasLayer(j.src.DiffID, j.src.ChainID) {
			c.store.RecordForm(j.src.DiffID, j.src.Compressed, j.src.Repo)
			progress(Progress{ID: j.id, Status: "Already exists"})
			continue
		}
		progress(Progress{ID: j.id, Status: "Pulling fs layer"})
		todo = append(todo, j)
	}
	for i, j := range todo {
		if i >= c.cfg.MaxConcurrentDownloads {
			progress(Progress{ID: j.id, Status: "Waiting"})
		}
	}
	sem := make(chan struct{}, c.cfg.MaxConcurrentDownloads)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for _, j := range todo {
		j := j
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		// The slot is a download's: it is given back once the blob is in,
		// while the end of its unpacking and its commit (an fsync) go on.
		var freeOnce sync.Once
		j.downloaded = func() { freeOnce.Do(func() { <-sem }) }
		go func() {
			defer wg.Done()
			defer j.downloaded()
			if err := c.fetchLayer(ctx, s, j, progress); err != nil {
				once.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// fetchLayer brings one layer in: from what is already here if it can,
// else from the registry, retrying a transfer that broke.
func (c *Client) fetchLayer(ctx context.Context, s *session, j layerJob, progress progressFunc) error {
	defer c.layerLock(j.src.Digest.String())()
	if c.store.HasLayer(j.src.DiffID, j.src.ChainID) {
		// Another pull brought it meanwhile.
		c.store.RecordForm(j.src.DiffID, j.src.Compressed, j.src.Repo)
		progress(Progress{ID: j.id, Status: "Download complete"})
		progress(Progress{ID: j.id, Status: "Pull complete"})
		return nil
	}
	// Kept here in some form, only not unpacked at this place in a chain:
	// unpack from the kept blob.
	for _, d := range []digest.Digest{j.src.DiffID, j.src.Digest} {
		if !c.store.Content().Exists(d) {
			continue
		}
		f, err := c.store.Content().Open(d)
		if err != nil {
			continue
		}
		src := j.src
		if d == j.src.DiffID && d != j.src.Digest {
			src.Compressed = image.Compressed{Digest: d, Size: f.Size(), MediaType: ocispec.MediaTypeImageLayer}
		}
		progress(Progress{ID: j.id, Status: "Extracting", Current: 0, Total: src.Size})
		err = c.store.IngestLayer(f, src)
		f.Close()
		if err != nil {
			return fmt.Errorf("layer %s: unpacking the kept blob: %w", j.src.Digest, err)
		}
		if d == j.src.DiffID && d != j.src.Digest {
			c.store.RecordForm(j.src.DiffID, j.src.Compressed, j.src.Repo)
		}
		progress(Progress{ID: j.id, Status: "Extracting", Current: src.Size, Total: src.Size})
		progress(Progress{ID: j.id, Status: "Pull complete"})
		return nil
	}
	delay := c.cfg.RetryDelay
	for attempt := 0; ; attempt++ {
		err := c.downloadLayer(ctx, s, j, progress)
		if err == nil {
			return nil
		}
		if attempt >= 2 || !retryable(err) || ctx.Err() != nil {
			return err
		}
		for wait := delay; wait > 0; {
			secs := int((wait + time.Second - 1) / time.Second)
			progress(Progress{ID: j.id, Status: fmt.Sprintf("Retrying in %d second%s", secs, plural(secs))})
			step := min(wait, time.Second)
			select {
			case <-time.After(step):
			case <-ctx.Done():
				return err
			}
			wait -= step
		}
		delay *= 2
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// retryable reports whether a layer transfer failed on the way (a broken
// connection, a registry that is briefly unavailable) rather than on
// what was sent.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, errdefs.ErrInvalidArgument) || errors.Is(err, errdefs.ErrNotImplemented) {
		return false
	}
	if errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var nerr net.Error
	return errors.As(err, &nerr)
}

// downloadLayer streams one layer from the registry into the store.
func (c *Client) downloadLayer(ctx context.Context, s *session, j layerJob, progress progressFunc) error {
	body, err := s.fetchBlob(ctx, j.src.Digest)
	if err != nil {
		return fmt.Errorf("layer %s: %w", j.src.Digest, err)
	}
	defer body.Close()
	pr := &progressReader{r: body, total: j.src.Size, report: func(n int64) {
		progress(Progress{ID: j.id, Status: "Downloading", Current: n, Total: j.src.Size})
	}, eof: j.downloaded}
	if err := c.store.IngestLayer(pr, j.src); err != nil {
		if pr.err != nil {
			// The transfer broke: what arrived says nothing about the blob.
			return fmt.Errorf("layer %s: %w", j.src.Digest, s.c.explain(s.host, pr.err))
		}
		return err
	}
	progress(Progress{ID: j.id, Status: "Verifying Checksum"})
	progress(Progress{ID: j.id, Status: "Download complete"})
	progress(Progress{ID: j.id, Status: "Extracting", Current: j.src.Size, Total: j.src.Size})
	progress(Progress{ID: j.id, Status: "Pull complete"})
	return nil
}

// progressReader reports bytes read at most every 100 ms, calls eof (if
// set) at the end of the body and remembers the read error (a broken
// transfer, as opposed to bad content).
type progressReader struct {
	r        io.Reader
	n        int64
	total    int64
	last     time.Time
	reported int64
	report   func(int64)
	eof      func()
	err      error
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	now := time.Now()
	if p.n != p.reported && (now.Sub(p.last) >= 100*time.Millisecond || p.n == p.total || err == io.EOF) {
		p.last, p.reported = now, p.n
		p.report(p.n)
	}
	if err == io.EOF && p.eof != nil {
		p.eof()
	}
	if err != nil && err != io.EOF {
		p.err = err
	}
	return n, err
}
