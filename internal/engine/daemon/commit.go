package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/archive"
	"github.com/berth/berth/internal/engine/build"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// CommitOptions are docker commit's.
type CommitOptions struct {
	Tag     string      // REPOSITORY[:TAG], "" for an untagged image
	Author  string      // -a
	Comment string      // -m
	Changes []string    // -c, one Dockerfile instruction each
	Pause   bool        // -p: freeze a running container meanwhile
	Config  *api.Config // the request body: config overrides
}

// commitConfig is the committed image's config: Docker's, with the
// comment and container fields Docker's image config has.
type commitConfig struct {
	dockerspec.DockerOCIImage
	Comment   string `json:"comment,omitempty"`
	Container string `json:"container,omitempty"`
}

// CommitContainer makes an image of a container, as docker commit: the
// container image's layers plus one made from its writable layer (none
// when it changed nothing), and the image config updated with the
// container's config, opts.Config and opts.Changes. It checks all input
// before writing anything and stores nothing when it fails.
func (d *Daemon) CommitContainer(ref string, opts CommitOptions) (*image.Image, error) {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return nil, err
	}
	var tags []string
	if opts.Tag != "" {
		n, err := reference.Parse(opts.Tag)
		if err != nil {
			return nil, err
		}
		if n.Digest() != "" {
			return nil, fmt.Errorf("invalid reference format: %q: a commit is named REPOSITORY[:TAG], not by digest: %w", opts.Tag, errdefs.ErrInvalidArgument)
		}
		tags = []string{n.String()}
	}
	img, err := d.images.Get(c.ImageID)
	if err != nil {
		return nil, fmt.Errorf("image %s of container %s: %w", c.ImageRef, c.ShortID(), err)
	}
	blob, err := d.images.ConfigBlob(img)
	if err != nil {
		return nil, err
	}
	var cfg commitConfig
	if err := json.Unmarshal(blob, &cfg.DockerOCIImage); err != nil {
		return nil, fmt.Errorf("config of image %s: %w", img.ID, err)
	}
	c.Mu.Lock()
	cc := c.Config
	c.Mu.Unlock()
	setImageConfig(&cfg.Config, mergeCommitConfig(opts.Config, cc))
	if err := build.ApplyChanges(&cfg.DockerOCIImage, opts.Changes); err != nil {
		return nil, err
	}

	if opts.Pause {
		c.Mu.Lock()
		pause := c.State.Running && !c.State.Paused
		c.Mu.Unlock()
		if pause {
			err := d.setPaused(c.ID, true)
			switch {
			case errdefs.Is(err, errdefs.ErrConflict):
				// Stopped or paused meanwhile: its files hold still.
			case err != nil:
				return nil, fmt.Errorf("pausing container %s for the commit: %w", c.ShortID(), err)
			default:
				defer func() {
					if err := d.setPaused(c.ID, false); err != nil {
						d.log.Warn("unpausing after a commit", "id", c.ID, "err", err)
					}
				}()
			}
		}
	}
	upper, lowers, release, err := d.writableLayer(c, img)
	if err != nil {
		return nil, err
	}
	defer release()
	changes, err := archive.OverlayChanges(upper, lowers)
	if err != nil {
		return nil, fmt.Errorf("the writable layer of container %s: %w", c.ShortID(), err)
	}
	empty := len(changes) == 0
	var layer image.Layer
	if !empty {
		var parent digest.Digest
		if chain := image.ChainIDs(img.Layers); len(chain) > 0 {
			parent = chain[len(chain)-1]
		}
		layer, err = d.images.AddContainerLayer(parent, upper, lowers)
		if err != nil {
			return nil, fmt.Errorf("storing the writable layer of container %s: %w", c.ShortID(), err)
		}
		cfg.RootFS.DiffIDs = append(append([]digest.Digest(nil), img.Layers...), layer.DiffID)
	}
	now := time.Now().UTC()
	cfg.Created = &now
	cfg.Author = opts.Author
	cfg.Comment = opts.Comment
	cfg.Container = c.ID
	cfg.History = append(cfg.History, ocispec.History{Created: &now, Author: opts.Author, Comment: opts.Comment,
		CreatedBy: strings.Join(cc.Cmd, " "), EmptyLayer: empty})
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	committed, err := d.images.Commit(b, tags)
	if err != nil {
		if !empty {
			d.images.ReleaseLayers([]image.Layer{layer})
		}
		return nil, err
	}
	d.containerEvent(c, "commit", map[string]string{"name": c.Name, "comment": opts.Comment, "imageID": committed.ID, "imageRef": opts.Tag})
	for _, t := range tags {
		d.events.publish("image", "tag", committed.ID, map[string]string{"name": t})
	}
	return committed.Image, nil
}

// writableLayer holds c's snapshot mounted (made if c never started) and
// returns its upper dir and its image's layer dirs, top-most first.
func (d *Daemon) writableLayer(c *container.Container, img *image.Image) (upper string, lowers []string, release func(), err error) {
	lowers, err = d.images.LayerDirs(img)
	if err != nil {
		return "", nil, nil, err
	}
	_, release, err = d.mountRootfs(c)
	if err != nil {
		return "", nil, nil, err
	}
	upper, err = d.snaps.UpperDir(c.ID)
	if err != nil {
		release()
		return "", nil, nil, err
	}
	return upper, lowers, release, nil
}

// mergeCommitConfig is Docker's merge for commit: the request's config
// (user) wins, the container's fills in what it leaves empty.
func mergeCommitConfig(user *api.Config, ctr api.Config) api.Config {
	if user == nil {
		return ctr
	}
	out := *user
	if out.User == "" {
		out.User = ctr.User
	}
	// Sets and labels are the union, the request's entries winning.
	if len(ctr.ExposedPorts) > 0 {
		out.ExposedPorts = union(ctr.ExposedPorts, out.ExposedPorts)
	}
	if len(out.Env) == 0 {
		out.Env = ctr.Env
	} else {
		env := append([]string(nil), out.Env...)
		for _, kv := range ctr.Env {
			k, _, _ := strings.Cut(kv, "=")
			found := false
			for _, u := range out.Env {
				if uk, _, _ := strings.Cut(u, "="); uk == k {
					found = true
					break
				}
			}
			if !found {
				env = append(env, kv)
			}
		}
		out.Env = env
	}
	if len(ctr.Labels) > 0 {
		out.Labels = union(ctr.Labels, out.Labels)
	}
	if len(out.Entrypoint) == 0 {
		if len(out.Cmd) == 0 {
			out.Cmd = ctr.Cmd
		}
		if out.Entrypoint == nil {
			out.Entrypoint = ctr.Entrypoint
		}
	}
	if out.WorkingDir == "" {
		out.WorkingDir = ctr.WorkingDir
	}
	if len(ctr.Volumes) > 0 {
		out.Volumes = union(ctr.Volumes, out.Volumes)
	}
	if out.StopSignal == "" {
		out.StopSignal = ctr.StopSignal
	}
	return out
}

// setImageConfig puts a container config's image-level fields into an
// image config.
func setImageConfig(ic *dockerspec.DockerOCIImageConfig, c api.Config) {
	ic.User = c.User
	ic.ExposedPorts = c.ExposedPorts
	ic.Env = c.Env
	ic.Cmd = c.Cmd
	ic.Entrypoint = c.Entrypoint
	ic.Volumes = c.Volumes
	ic.WorkingDir = c.WorkingDir
	ic.Labels = c.Labels
	ic.StopSignal = c.StopSignal
}

// ContainerChanges lists what a container changed in its file system
// (GET /containers/{id}/changes), as Docker's overlay driver does.
func (d *Daemon) ContainerChanges(ref string) ([]archive.Change, error) {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return nil, err
	}
	img, err := d.images.Get(c.ImageID)
	if err != nil {
		return nil, fmt.Errorf("image %s of container %s: %w", c.ImageRef, c.ShortID(), err)
	}
	upper, lowers, release, err := d.writableLayer(c, img)
	if err != nil {
		return nil, err
	}
	defer release()
	changes, err := archive.OverlayChanges(upper, lowers)
	if err != nil {
		return nil, fmt.Errorf("changes of container %s: %w", c.ShortID(), err)
	}
	if changes == nil {
		changes = []archive.Change{}
	}
	return changes, nil
}

// postCommit serves POST /commit.
func (d *Daemon) postCommit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ref := q.Get("container")
	if ref == "" {
		writeError(w, fmt.Errorf("commit needs container=NAME or ID: %w", errdefs.ErrInvalidArgument))
		return
	}
	opts := CommitOptions{Author: q.Get("author"), Comment: q.Get("comment"), Changes: q["changes"],
		Pause: q.Get("pause") == "" || boolParam(r, "pause")}
	// As Docker: a tag without a repository is ignored.
	if repo := q.Get("repo"); repo != "" {
		opts.Tag = repo
		if tag := q.Get("tag"); tag != "" {
			opts.Tag += ":" + tag
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, err)
		return
	}
	if s := strings.TrimSpace(string(body)); s != "" && s != "null" && s != "{}" {
		var cfg api.Config
		if err := json.Unmarshal(body, &cfg); err != nil {
			writeError(w, fmt.Errorf("commit: the request body is not a container config: %v: %w", err, errdefs.ErrInvalidArgument))
			return
		}
		opts.Config = &cfg
	}
	img, err := d.CommitContainer(ref, opts)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSONResponse(w, http.StatusCreated, map[string]string{"Id": img.ID})
}

// getContainerChanges serves GET /containers/{id}/changes.
func (d *Daemon) getContainerChanges(w http.ResponseWriter, r *http.Request) {
	changes, err := d.ContainerChanges(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSONResponse(w, http.StatusOK, changes)
}

// union is a new map with base's entries overridden by over's.
func union[V any](base, over map[string]V) map[string]V {
	m := maps.Clone(base)
	maps.Copy(m, over)
	return m
}
