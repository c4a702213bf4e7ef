package daemon

import (
	"fmt"
	"net/http"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/volume"
	"github.com/berth/berth/internal/errdefs"
)

func volumeJSON(v *volume.Volume, withUsage bool, size int64) api.Volume {
	out := api.Volume{Name: v.Name, Driver: v.Driver, Mountpoint: v.Mountpoint, Labels: v.Labels, Scope: "local",
		Options: v.Options, CreatedAt: v.CreatedAt.UTC().Format(time.RFC3339)}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.Options == nil {
		out.Options = map[string]string{}
	}
	if withUsage {
		out.UsageData = &api.VolumeUsage{Size: size, RefCount: int64(len(v.UsedBy))}
	}
	return out
}

func (d *Daemon) getVolumes(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.validate(volume.ListFilterKeys...)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	vols, err := d.volumes.List(f)
	if err != nil {
		writeError(w, err)
		return
	}
	out := api.VolumeListResponse{Volumes: []api.Volume{}, Warnings: []string{}}
	for _, v := range vols {
		out.Volumes = append(out.Volumes, volumeJSON(v, false, 0))
	}
	writeJSONResponse(w, 200, out)
}

func (d *Daemon) postVolumesCreate(w http.ResponseWriter, r *http.Request) {
	var req api.VolumeCreateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Driver != "" && req.Driver != volume.DriverLocal {
		writeError(w, fmt.Errorf("volume driver %q is not supported (berth has the %q driver): %w", req.Driver, volume.DriverLocal, errdefs.ErrNotImplemented))
		return
	}
	v, err := d.volumes.Create(req.Name, req.Labels, req.DriverOpts)
	if err != nil {
		writeError(w, err)
		return
	}
	d.events.publish("volume", "create", v.Name, map[string]string{"driver": v.Driver})
	writeJSONResponse(w, http.StatusCreated, volumeJSON(v, false, 0))
}

func (d *Daemon) getVolume(w http.ResponseWriter, r *http.Request) {
	v, err := d.volumes.Get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	size, _ := d.volumes.Size(v.Name)
	writeJSONResponse(w, 200, volumeJSON(v, true, size))
}

func (d *Daemon) deleteVolume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := d.volumes.Remove(name, boolParam(r, "force")); err != nil {
		writeError(w, err)
		return
	}
	d.events.publish("volume", "destroy", name, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) postVolumesPrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.validate(append([]string{"all"}, volume.PruneFilterKeys...)...)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	all := false
	if v := f["all"]; len(v) > 0 && (v[0] == "true" || v[0] == "1") {
		all = true
	}
	delete(f, "all")
	rep, err := d.volumes.Prune(all, f)
	if err != nil {
		writeError(w, err)
		return
	}
	out := api.VolumePruneReport{VolumesDeleted: rep.Removed, SpaceReclaimed: uint64(rep.SpaceReclaimed)}
	if out.VolumesDeleted == nil {
		out.VolumesDeleted = []string{}
	}
	for _, n := range rep.Removed {
		d.events.publish("volume", "destroy", n, nil)
	}
	writeJSONResponse(w, 200, out)
}
