package distribution

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
)

// PushOptions tune Push.
type PushOptions struct {
	// Auth are the registry credentials (nil: anonymous).
	Auth *api.AuthConfig
	// Progress receives Docker's push progress (may be nil; calls are
	// serialised).
	Progress func(Progress)
}

// maxMountSources bounds the repositories a push asks to mount from.
const maxMountSources = 4

// Push sends the local image refStr (repository:tag) to its registry; a
// repository without a tag pushes every local tag of it, as the Docker
// API does. An image pulled or pushed before is sent with the very
// manifest it has (so its digest stays); otherwise its layers are
// gzip-compressed once (kept for the next push) into a Docker schema 2
// manifest. Blobs the registry has are not sent again; blobs another
// repository of the same registry holds are mounted from it.
func (c *Client) Push(ctx context.Context, refStr string, opts PushOptions) ([]PushResult, error) {
	ref, err := reference.ParseNamed(refStr)
	if err != nil {
		return nil, err
	}
	if ref.Digest() != "" {
		return nil, fmt.Errorf("push %s: cannot push a digest reference; give a tag: %w", ref.FamiliarString(), errdefs.ErrInvalidArgument)
	}
	progress := safe(opts.Progress)
	type target struct {
		ref reference.Named
		img *image.Image
	}
	var targets []target
	if ref.Tag() != "" {
		img, err := c.store.Get(ref.String())
		if err != nil {
			if errdefs.Is(err, errdefs.ErrNotFound) {
				return nil, fmt.Errorf("An image does not exist locally with the tag: %s: %w", ref.FamiliarString(), errdefs.ErrNotFound)
			}
			return nil, err
		}
		targets = append(targets, target{ref, img})
	} else {
		for _, img := range c.store.List() {
			img := img
			for _, t := range img.RepoTags {
				if n, err := reference.Parse(t); err == nil && n.Name() == ref.Name() {
					targets = append(targets, target{n, &img})
				}
			}
		}
		sort.Slice(targets, func(i, j int) bool { return targets[i].ref.Tag() < targets[j].ref.Tag() })
		if len(targets) == 0 {
			return nil, fmt.Errorf("An image does not exist locally with the tag: %s: %w", ref.FamiliarName(), errdefs.ErrNotFound)
		}
	}

	// Ask for pull access to the repositories blobs can be mounted from.
	var extra []string
	seen := map[string]bool{ref.Path(): true}
	for _, t := range targets {
		for _, l := range t.img.Layers {
			for _, f := range c.store.LayerForms(l) {
				for _, r := range c.store.BlobRepos(f.Digest) {
					n, err := reference.ParseNamed(r)
					if err != nil || n.Domain() != ref.Domain() || seen[n.Path()] || len(extra) >= maxMountSources {
						continue
					}
					seen[n.Path()] = true
					extra = append(extra, "repository:"+n.Path()+":pull")
				}
			}
		}
	}
	s, err := c.open(ctx, ref, opts.Auth, "pull,push", extra...)
	if err != nil {
		return nil, err
	}
	progress(Progress{Status: "The push refers to repository [" + ref.Name() + "]", Message: true})
	var results []PushResult
	for _, t := range targets {
		res, err := c.pushTag(ctx, s, t.ref, t.img, progress)
		if err != nil {
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

// pushLayer is one layer of a push.
type pushLayer struct {
	desc ocispec.Descriptor
	id   string // short diff ID, as Docker shows pushed layers
}

// plan is the manifest a push sends and the blobs it needs.
type plan struct {
	manifest  []byte
	mediaType string
	config    ocispec.Descriptor
	layers    []pushLayer
}

func (c *Client) pushTag(ctx context.Context, s *session, ref reference.Named, img *image.Image, progress progressFunc) (PushResult, error) {
	for _, l := range img.Layers {
		progress(Progress{ID: shortID(l), Status: "Preparing"})
	}
	exists := &blobCache{s: s, known: map[digest.Digest]bool{}}
	p, err := c.planPush(ctx, img, exists)
	if err != nil {
		return PushResult{}, err
	}
	repoName := ref.Repo().String()

	// Layers, at most MaxConcurrentUploads at a time.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, l := range p.layers {
		if i >= c.cfg.MaxConcurrentUploads {
			progress(Progress{ID: l.id, Status: "Waiting"})
		}
	}
	sem := make(chan struct{}, c.cfg.MaxConcurrentUploads)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	done := map[digest.Digest]bool{}
	for _, l := range p.layers {
		l := l
		if done[l.desc.Digest] {
			continue
		}
		done[l.desc.Digest] = true
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.pushBlob(ctx, s, l, exists, repoName, progress); err != nil {
				once.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return PushResult{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return PushResult{}, err
	}
	// The config, then the manifest.
	if err := c.pushBlob(ctx, s, pushLayer{desc: p.config}, exists, repoName, nil); err != nil {
		return PushResult{}, fmt.Errorf("config %s: %w", p.config.Digest, err)
	}
	md, err := s.putManifest(ctx, ref.Tag(), p.manifest, p.mediaType)
	if err != nil {
		return PushResult{}, err
	}
	repoDigest, _ := ref.Repo().WithDigest(md)
	if err := c.store.AddRepoDigest(img.ID, repoDigest); err != nil {
		return PushResult{}, err
	}
	res := PushResult{Tag: ref.Tag(), Digest: md.String(), Size: len(p.manifest)}
	progress(Progress{Status: fmt.Sprintf("%s: digest: %s size: %d", res.Tag, res.Digest, res.Size), Message: true})
	progress(Progress{Aux: &res})
	return res, nil
}

// planPush picks the manifest to send: a kept one whose blobs are here or
// already in the registry, else a new Docker schema 2 manifest of gzip
// layers (compressing, in parallel, the layers that have no gzip form).
func (c *Client) planPush(ctx context.Context, img *image.Image, exists *blobCache) (*plan, error) {
	cb, err := c.store.Content().ReadAll(digest.Digest(img.ID))
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", img.ID, err)
	}
	for _, md := range c.store.ImageManifests(img.ID) {
		mb, err := c.store.Content().ReadAll(md)
		if err != nil {
			continue
		}
		m, mt, err := parseManifest(mb, "", "kept manifest "+md.String())
		if err != nil || !isManifest(mt) || m.Config.Digest.String() != img.ID || len(m.Layers) != len(img.Layers) {
			continue
		}
		usable := true
		for _, l := range m.Layers {
			if c.store.Content().Exists(l.Digest) {
				continue
			}
			if ok, err := exists.has(ctx, l.Digest); err != nil {
				return nil, err
			} else if !ok {
				usable = false
				break
			}
		}
		if !usable {
			continue
		}
		p := &plan{manifest: mb, mediaType: mt, config: *m.Config}
		for i, l := range m.Layers {
			p.layers = append(p.layers, pushLayer{desc: l, id: shortID(img.Layers[i])})
		}
		return p, nil
	}

	forms := make([]image.Compressed, len(img.Layers))
	errs := make([]error, len(img.Layers))
	sem := make(chan struct{}, c.cfg.MaxConcurrentUploads)
	var wg sync.WaitGroup
	for i, l := range img.Layers {
		i, l := i, l
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			forms[i], errs[i] = c.store.CompressLayer(l)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: MediaTypeDockerManifest,
		Config:    ocispec.Descriptor{MediaType: MediaTypeDockerConfig, Digest: digest.Digest(img.ID), Size: int64(len(cb))},
		Layers:    []ocispec.Descriptor{},
	}
	p := &plan{mediaType: MediaTypeDockerManifest, config: m.Config}
	for i, f := range forms {
		d := ocispec.Descriptor{MediaType: image.MediaTypeDockerLayer, Digest: f.Digest, Size: f.Size}
		m.Layers = append(m.Layers, d)
		p.layers = append(p.layers, pushLayer{desc: d, id: shortID(img.Layers[i])})
	}
	mb, err := json.MarshalIndent(m, "", "   ")
	if err != nil {
		return nil, err
	}
	if _, err := c.store.AddManifest(img.ID, mb); err != nil {
		return nil, err
	}
	p.manifest = mb
	return p, nil
}

// blobCache remembers which blobs the target repository has.
type blobCache struct {
	s     *session
	mu    sync.Mutex
	known map[digest.Digest]bool
}

func (b *blobCache) has(ctx context.Context, d digest.Digest) (bool, error) {
	b.mu.Lock()
	v, ok := b.known[d]
	b.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := b.s.headBlob(ctx, d)
	if err != nil {
		return false, err
	}
	b.set(d, v)
	return v, nil
}

func (b *blobCache) set(d digest.Digest, v bool) {
	b.mu.Lock()
	b.known[d] = v
	b.mu.Unlock()
}

// pushBlob makes sure the target repository has blob l: it is there
// already, or mounted from another repository of the registry, or
// uploaded from the store. progress nil means a blob shown to no one
// (the config).
func (c *Client) pushBlob(ctx context.Context, s *session, l pushLayer, exists *blobCache, repoName string, progress progressFunc) error {
	if progress == nil {
		progress = func(Progress) {}
	}
	d := l.desc.Digest
	ok, err := exists.has(ctx, d)
	if err != nil {
		return err
	}
	if ok {
		progress(Progress{ID: l.id, Status: "Layer already exists"})
		c.store.AddBlobRepo(d, repoName)
		return nil
	}
	location := ""
	for _, r := range c.store.BlobRepos(d) {
		from, err := reference.ParseNamed(r)
		if err != nil || from.Domain() != s.domain || from.Path() == s.repo {
			continue
		}
		mounted, loc, err := s.mount(ctx, d, from.Path())
		if err != nil {
			return err
		}
		if mounted {
			progress(Progress{ID: l.id, Status: "Mounted from " + from.Path()})
			exists.set(d, true)
			c.store.AddBlobRepo(d, repoName)
			return nil
		}
		location = loc
		break
	}
	if !c.store.Content().Exists(d) {
		return fmt.Errorf("blob %s: not kept here and not in the registry; remove the image and pull or load it again: %w", d, errdefs.ErrNotFound)
	}
	delay := c.cfg.RetryDelay
	for attempt := 0; ; attempt++ {
		err = c.upload(ctx, s, l, location, progress)
		if err == nil {
			break
		}
		if attempt >= 2 || !retryable(err) || ctx.Err() != nil {
			return err
		}
		location = ""
		progress(Progress{ID: l.id, Status: "Retrying"})
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay *= 2
	}
	progress(Progress{ID: l.id, Status: "Pushed"})
	exists.set(d, true)
	c.store.AddBlobRepo(d, repoName)
	return nil
}

func (c *Client) upload(ctx context.Context, s *session, l pushLayer, location string, progress progressFunc) error {
	d := l.desc.Digest
	f, err := c.store.Content().Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	if location == "" {
		if location, err = s.startUpload(ctx); err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
	}
	pr := &progressReader{r: f, total: f.Size(), report: func(n int64) {
		progress(Progress{ID: l.id, Status: "Pushing", Current: n, Total: f.Size()})
	}}
	if err := s.putBlob(ctx, location, d, f.Size(), pr); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	return nil
}

// headBlob reports whether the repository has blob d.
func (s *session) headBlob(ctx context.Context, d digest.Digest) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.url("/blobs/"+d.String()), nil)
	if err != nil {
		return false, err
	}
	resp, err := s.do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("blob %s: %w", d, s.c.explain(s.host, transport.CheckError(resp, http.StatusOK)))
}

// location resolves an upload Location header against the request.
func location(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("the registry answered %s %s without a Location header", resp.Request.Method, resp.Request.URL.Path)
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("the registry sent an invalid upload Location %q: %v", loc, err)
	}
	return u.String(), nil
}

// mount asks the registry to mount blob d from repository from. It
// either mounts it or opens an upload session.
func (s *session) mount(ctx context.Context, d digest.Digest, from string) (bool, string, error) {
	q := url.Values{"mount": {d.String()}, "from": {from}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url("/blobs/uploads/?"+q.Encode()), nil)
	if err != nil {
		return false, "", err
	}
	resp, err := s.do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
		return true, "", nil
	case http.StatusAccepted:
		loc, err := location(resp)
		return false, loc, err
	}
	// Some registries refuse mounts outright; upload instead.
	return false, "", nil
}

func (s *session) startUpload(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url("/blobs/uploads/"), nil)
	if err != nil {
		return "", err
	}
	resp, err := s.do(req)
	if err != nil {
		return "", err
	}
	if err := s.check(resp, http.StatusAccepted); err != nil {
		return "", err
	}
	resp.Body.Close()
	return location(resp)
}

// putBlob streams the blob to an upload session (PATCH) and closes the
// session with its digest (PUT).
func (s *session) putBlob(ctx context.Context, loc string, d digest.Digest, size int64, r io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, io.NopCloser(r))
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.do(req)
	if err != nil {
		return err
	}
	if err := s.check(resp, http.StatusAccepted, http.StatusNoContent); err != nil {
		return err
	}
	resp.Body.Close()
	next, err := location(resp)
	if err != nil {
		next = loc
	}
	u, err := url.Parse(next)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	req, err = http.NewRequestWithContext(ctx, http.MethodPut, u.String(), http.NoBody)
	if err != nil {
		return err
	}
	resp, err = s.do(req)
	if err != nil {
		return err
	}
	if err := s.check(resp, http.StatusCreated, http.StatusNoContent, http.StatusOK); err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// putManifest uploads manifest b under tag and returns its digest.
func (s *session) putManifest(ctx context.Context, tag string, b []byte, mediaType string) (digest.Digest, error) {
	md := digest.FromBytes(b)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.url("/manifests/"+tag), bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.ContentLength = int64(len(b))
	req.Header.Set("Content-Type", mediaType)
	resp, err := s.do(req)
	if err != nil {
		return "", err
	}
	if err := s.check(resp, http.StatusCreated, http.StatusOK, http.StatusAccepted); err != nil {
		return "", fmt.Errorf("manifest %s: %w", tag, err)
	}
	resp.Body.Close()
	if h := digest.Digest(resp.Header.Get("Docker-Content-Digest")); h != "" && h.Algorithm() == digest.SHA256 && h != md {
		return "", fmt.Errorf("manifest %s: the registry stored it as %s, but it hashes to %s", tag, h, md)
	}
	return md, nil
}
