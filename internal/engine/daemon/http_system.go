package daemon

import (
	"fmt"
	"net/http"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/errdefs"
)

// getSystemDF serves GET /system/df (docker system df): the disk used by
// images, containers' writable layers and volumes.
func (d *Daemon) getSystemDF(w http.ResponseWriter, r *http.Request) {
	du := api.DiskUsage{Images: []api.ImageSummary{}, Containers: []api.ContainerSummary{}, Volumes: []api.Volume{}, BuildCache: []any{}}
	du.LayersSize, _ = d.images.Usage()
	counts := map[string]int64{}
	imageSize := map[string]int64{}
	for _, c := range d.ctrs.List() {
		counts[c.ImageID]++
	}
	// A layer used by several images is shared: SharedSize counts it.
	layerUsers := map[string]int{}
	images := d.images.List()
	for _, img := range images {
		for _, l := range img.Layers {
			layerUsers[l.String()]++
		}
	}
	for _, img := range images {
		img := img
		s := imageSummary(&img, counts[img.ID])
		if len(img.Layers) > 0 {
			per := img.Size / int64(len(img.Layers))
			for _, l := range img.Layers {
				if layerUsers[l.String()] > 1 {
					s.SharedSize += per
				}
			}
		}
		imageSize[img.ID] = img.Size
		du.Images = append(du.Images, s)
	}
	for _, c := range d.ctrs.List() {
		c.Mu.Lock()
		s := summarize(c)
		c.Mu.Unlock()
		s.SizeRw, s.SizeRootFs = d.containerSizes(c, imageSize[c.ImageID])
		du.Containers = append(du.Containers, s)
	}
	vols, err := d.volumes.List(nil)
	if err != nil {
		writeError(w, err)
		return
	}
	for _, v := range vols {
		size, _ := d.volumes.Size(v.Name)
		du.Volumes = append(du.Volumes, volumeJSON(v, true, size))
	}
	writeJSONResponse(w, 200, du)
}

// containerSizes are a container's writable layer and that plus its
// image (Docker's SizeRw and SizeRootFs).
func (d *Daemon) containerSizes(c *container.Container, imageSize int64) (int64, int64) {
	var rw int64
	if u, err := d.snaps.Usage(c.ID); err == nil {
		rw = u.Size
	}
	return rw, rw + imageSize
}

// notFound answers a route berth does not serve, in Docker's JSON shape.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, fmt.Errorf("page not found: %s %s: %w", r.Method, r.URL.Path, errdefs.ErrNotFound))
}
