package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/build"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/errdefs"
)

func (d *Daemon) imageInUse(id string) bool {
	for _, c := range d.ctrs.List() {
		if c.ImageID == id {
			return true
		}
	}
	return false
}

func (d *Daemon) getImagesJSON(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.validate("dangling", "label", "reference", "before", "since")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	counts := map[string]int64{}
	for _, c := range d.ctrs.List() {
		counts[c.ImageID]++
	}
	// before and since name an image; the list keeps the ones created
	// before or after it.
	bounds := map[string]time.Time{}
	for _, k := range []string{"before", "since"} {
		for _, v := range f[k] {
			ref, err := d.images.Get(v)
			if err != nil {
				writeError(w, noSuchImage(v, err))
				return
			}
			if ref.Config.Created != nil {
				bounds[k] = *ref.Config.Created
			}
		}
	}
	out := []api.ImageSummary{}
	for _, img := range d.images.List() {
		img := img
		if !f.matchLabels("label", img.Config.Config.Labels) {
			continue
		}
		if b, ok := bounds["before"]; ok && (img.Config.Created == nil || !img.Config.Created.Before(b)) {
			continue
		}
		if b, ok := bounds["since"]; ok && (img.Config.Created == nil || !img.Config.Created.After(b)) {
			continue
		}
		dangling := len(img.RepoTags)+len(img.RepoDigests) == 0
		if !f.matchAny("dangling", func(v string) bool { return (v == "true" || v == "1") == dangling }) {
			continue
		}
		if refs, ok := f["reference"]; ok {
			// Like Docker, show only the names that match.
			var tags []string
			for _, t := range img.RepoTags {
				for _, v := range refs {
					if matchRef(v, t) {
						tags = append(tags, t)
						break
					}
				}
			}
			if len(tags) == 0 {
				continue
			}
			img.RepoTags = tags
		}
		out = append(out, imageSummary(&img, counts[img.ID]))
	}
	writeJSONResponse(w, 200, out)
}

// matchRef matches a reference filter ("busybox", "busybox:*", "repo/*")
// against a tag.
func matchRef(pattern, tag string) bool {
	repo, _, _ := strings.Cut(tag, ":")
	if i := strings.LastIndex(tag, ":"); i > strings.LastIndex(tag, "/") {
		repo = tag[:i]
	}
	if ok, _ := pathMatch(pattern, tag); ok {
		return true
	}
	ok, _ := pathMatch(pattern, repo)
	return ok
}

func imageSummary(img *image.Image, containers int64) api.ImageSummary {
	s := api.ImageSummary{ID: img.ID, RepoTags: img.RepoTags, RepoDigests: img.RepoDigests, Size: img.Size,
		Labels: img.Config.Config.Labels, Containers: containers}
	if img.Config.Created != nil {
		s.Created = img.Config.Created.Unix()
	}
	if s.RepoTags == nil {
		s.RepoTags = []string{}
	}
	if s.RepoDigests == nil {
		s.RepoDigests = []string{}
	}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	return s
}

func imageInspect(img *image.Image) api.ImageInspect {
	ic := img.Config.Config
	cfg := &api.Config{User: ic.User, Env: ic.Env, Cmd: ic.Cmd, Entrypoint: ic.Entrypoint, WorkingDir: ic.WorkingDir,
		Labels: ic.Labels, StopSignal: ic.StopSignal, Volumes: ic.Volumes, ExposedPorts: ic.ExposedPorts}
	in := api.ImageInspect{ID: img.ID, RepoTags: img.RepoTags, RepoDigests: img.RepoDigests, Config: cfg,
		Architecture: img.Config.Architecture, Variant: img.Config.Variant, Os: img.Config.OS, Size: img.Size,
		Author: img.Config.Author, GraphDriver: api.GraphDriver{Name: "overlay2", Data: map[string]string{}},
		RootFS: api.RootFS{Type: "layers", Layers: []string{}}, Metadata: map[string]any{"LastTagTime": time.Time{}}}
	if img.Config.Created != nil {
		in.Created = img.Config.Created.UTC().Format(time.RFC3339Nano)
	}
	for _, l := range img.Layers {
		in.RootFS.Layers = append(in.RootFS.Layers, l.String())
	}
	if in.RepoTags == nil {
		in.RepoTags = []string{}
	}
	if in.RepoDigests == nil {
		in.RepoDigests = []string{}
	}
	return in
}

// imageComment is the image config's "comment" (docker commit -m,
// docker import -m), which ocispec.Image does not carry.
func (d *Daemon) imageComment(img *image.Image) string {
	b, err := d.images.ConfigBlob(img)
	if err != nil {
		return ""
	}
	var c struct {
		Comment string `json:"comment"`
	}
	json.Unmarshal(b, &c)
	return c.Comment
}

// imagesByName routes /images/{name}/json|tag|history|push and
// DELETE /images/{name}, where name may contain slashes.
func (d *Daemon) imagesByName(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/images/")
	if r.Method == http.MethodDelete {
		d.deleteImage(w, r, p)
		return
	}
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		writeError(w, fmt.Errorf("page not found: %s %s: %w", r.Method, r.URL.Path, errdefs.ErrNotFound))
		return
	}
	name, action := p[:i], p[i+1:]
	switch {
	case r.Method == http.MethodGet && action == "json":
		img, err := d.images.Get(name)
		if err != nil {
			writeError(w, noSuchImage(name, err))
			return
		}
		in := imageInspect(img)
		in.Comment = d.imageComment(img)
		writeJSONResponse(w, 200, in)
	case r.Method == http.MethodGet && action == "get":
		// docker-py's Image.save: one image, as GET /images/get?names=.
		q := r.URL.Query()
		q.Set("names", name)
		r.URL.RawQuery = q.Encode()
		d.getImagesGet(w, r)
	case r.Method == http.MethodGet && action == "history":
		img, err := d.images.Get(name)
		if err != nil {
			writeError(w, noSuchImage(name, err))
			return
		}
		writeJSONResponse(w, 200, imageHistory(img, d.images.LayerSizes(img)))
	case r.Method == http.MethodPost && action == "tag":
		repo, tag := r.URL.Query().Get("repo"), r.URL.Query().Get("tag")
		if repo == "" {
			writeError(w, fmt.Errorf("repository name must have at least one component: %w", errdefs.ErrInvalidArgument))
			return
		}
		dst := repo
		if tag != "" {
			dst += ":" + tag
		}
		if err := d.images.Tag(name, dst); err != nil {
			writeError(w, noSuchImage(name, err))
			return
		}
		d.events.publish("image", "tag", name, map[string]string{"name": dst})
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodPost && action == "push":
		d.postImagePush(w, r, name)
	default:
		writeError(w, fmt.Errorf("page not found: %s %s: %w", r.Method, r.URL.Path, errdefs.ErrNotFound))
	}
}

func noSuchImage(name string, err error) error {
	if errdefs.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("No such image: %s: %w", name, errdefs.ErrNotFound)
	}
	return err
}

// imageHistory answers /history; sizes are the layers' (bottom first),
// given to the history entries that are not empty_layer, in order.
func imageHistory(img *image.Image, sizes []int64) []api.HistoryItem {
	out := []api.HistoryItem{}
	layerOf := make([]int, len(img.Config.History))
	for i, n := 0, 0; i < len(img.Config.History); i++ {
		layerOf[i] = -1
		if !img.Config.History[i].EmptyLayer {
			layerOf[i] = n
			n++
		}
	}
	for i := len(img.Config.History) - 1; i >= 0; i-- {
		h := img.Config.History[i]
		it := api.HistoryItem{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: []string{}}
		if l := layerOf[i]; l >= 0 && l < len(sizes) {
			it.Size = sizes[l]
		}
		if h.Created != nil {
			it.Created = h.Created.Unix()
		}
		if i == len(img.Config.History)-1 {
			it.ID, it.Tags = img.ID, img.RepoTags
		}
		out = append(out, it)
	}
	if len(out) == 0 {
		out = append(out, api.HistoryItem{ID: img.ID, Tags: img.RepoTags, Size: img.Size})
	}
	return out
}

func (d *Daemon) deleteImage(w http.ResponseWriter, r *http.Request, name string) {
	res, err := d.images.RemoveImage(name, image.RemoveOptions{Force: boolParam(r, "force"), UsedBy: d.imageUsedBy})
	if err != nil {
		writeError(w, noSuchImage(name, err))
		return
	}
	out := []api.ImageDeleteItem{}
	for _, x := range res {
		out = append(out, api.ImageDeleteItem{Untagged: x.Untagged, Deleted: x.Deleted})
		if x.Deleted != "" {
			d.events.publish("image", "delete", x.Deleted, map[string]string{"name": name})
		} else {
			d.events.publish("image", "untag", x.Untagged, map[string]string{"name": x.Untagged})
		}
	}
	writeJSONResponse(w, 200, out)
}

// imageUsedBy names a container using the image (a running one first),
// for rmi's conflict rules and message.
func (d *Daemon) imageUsedBy(id string) (string, bool) {
	found := ""
	for _, c := range d.ctrs.List() {
		if c.ImageID != id {
			continue
		}
		c.Mu.Lock()
		running := c.State.Running
		c.Mu.Unlock()
		if running {
			return c.ShortID(), true
		}
		found = c.ShortID()
	}
	return found, false
}

// streamJSON writes progress messages as a JSON stream.
type streamJSON struct {
	enc *json.Encoder
	fl  http.Flusher
}

func newStreamJSON(w http.ResponseWriter) *streamJSON {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	s := &streamJSON{enc: json.NewEncoder(w)}
	s.fl, _ = w.(http.Flusher)
	return s
}

func (s *streamJSON) send(m api.JSONMessage) {
	s.enc.Encode(m)
	if s.fl != nil {
		s.fl.Flush()
	}
}

func (s *streamJSON) fail(err error) {
	s.send(api.JSONMessage{Error: errorMessage(err), ErrorDetail: &api.ErrorDetail{Message: errorMessage(err), Kind: errdefs.Kind(err)}})
}

func (d *Daemon) postImagesLoad(w http.ResponseWriter, r *http.Request) {
	quiet := boolParam(r, "quiet")
	s := newStreamJSON(w)
	loaded, err := d.images.Load(r.Body, func(msg string) {
		// quiet (the docker CLI's default when stdout is not a terminal)
		// drops the progress but keeps the result lines, as dockerd does.
		if !quiet || strings.HasPrefix(msg, "Loaded image") {
			s.send(api.JSONMessage{Stream: msg + "\n"})
		}
	})
	if err != nil {
		s.fail(err)
		return
	}
	for _, l := range loaded {
		// The store's progress already said "Loaded image: NAME".
		if len(l.Names) == 0 {
			s.send(api.JSONMessage{Stream: "Loaded image ID: " + l.ID + "\n"})
		}
		d.events.publish("image", "load", l.ID, map[string]string{"name": strings.Join(l.Names, ",")})
	}
}

func (d *Daemon) getImagesGet(w http.ResponseWriter, r *http.Request) {
	names := r.URL.Query()["names"]
	if len(names) == 0 {
		writeError(w, fmt.Errorf("no images given to save (usage: berth save -o FILE IMAGE...): %w", errdefs.ErrInvalidArgument))
		return
	}
	for _, n := range names {
		if _, err := d.images.Get(n); err != nil {
			writeError(w, noSuchImage(n, err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-tar")
	if err := d.images.Save(w, names); err != nil {
		d.log.Warn("saving images", "err", err)
		// Headers are gone; break the stream so the client sees a failure.
		panic(http.ErrAbortHandler)
	}
}

// postImagesCreate is `pull` (fromImage=) or `import` (fromSrc=-).
func (d *Daemon) postImagesCreate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("fromSrc") != "-" {
		if q.Get("fromImage") != "" {
			d.postImagesPull(w, r)
			return
		}
		writeError(w, fmt.Errorf("images/create needs fromImage=NAME (pull) or fromSrc=- (import from the request body): %w", errdefs.ErrInvalidArgument))
		return
	}
	ref := q.Get("repo")
	if ref != "" && q.Get("tag") != "" {
		ref += ":" + q.Get("tag")
	}
	// --change takes commit's instructions, applied by the builder.
	var changed dockerspec.DockerOCIImage
	if err := build.ApplyChanges(&changed, q["changes"]); err != nil {
		writeError(w, err)
		return
	}
	s := newStreamJSON(w)
	img, err := d.images.Import(r.Body, ref, changed.Config.ImageConfig)
	if err != nil {
		s.fail(err)
		return
	}
	d.events.publish("image", "import", img.ID, map[string]string{"name": ref})
	s.send(api.JSONMessage{Status: img.ID})
}

func (d *Daemon) postImagesPrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.validate("dangling", "label", "until")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	danglingOnly := true
	if v := f["dangling"]; len(v) > 0 && (v[0] == "false" || v[0] == "0") {
		danglingOnly = false
	}
	rep := api.PruneReport{ImagesDeleted: []api.ImageDeleteItem{}}
	for _, img := range d.images.List() {
		img := img
		// An image pulled by digest only has a name: not dangling.
		if (danglingOnly && len(img.RepoTags)+len(img.RepoDigests) > 0) || d.imageInUse(img.ID) || !f.matchLabels("label", img.Config.Config.Labels) {
			continue
		}
		res, err := d.images.Remove(img.ID, true, d.imageInUse)
		if err != nil {
			continue
		}
		for _, x := range res {
			rep.ImagesDeleted = append(rep.ImagesDeleted, api.ImageDeleteItem{Untagged: x.Untagged, Deleted: x.Deleted})
		}
		rep.SpaceReclaimed += uint64(img.Size)
	}
	// Layers that failed pulls kept for a retry, if no image came to use them.
	if layers, err := d.images.PruneLayers(); err == nil {
		for _, x := range layers {
			rep.ImagesDeleted = append(rep.ImagesDeleted, api.ImageDeleteItem{Deleted: x.Deleted})
		}
	} else {
		d.log.Warn("pruning layers of failed pulls", "err", err)
	}
	writeJSONResponse(w, 200, rep)
}

func (d *Daemon) getImagesSearch(w http.ResponseWriter, r *http.Request) {
	writeError(w, fmt.Errorf("search is not supported: berth does not query Docker Hub; list local images with `images`: %w", errdefs.ErrNotImplemented))
}
