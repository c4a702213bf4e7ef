package daemon

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/runtime"
	"github.com/berth/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// UpdateContainer changes a container's resource limits and restart
// policy, as docker update does: the values given replace the recorded
// ones, a running container gets the new cgroup limits at once (through
// the runtime's update), a stopped one at its next start.
func (d *Daemon) UpdateContainer(ref string, u api.UpdateConfig) ([]string, error) {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return nil, err
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	hc, res, err := d.mergeUpdate(c.HostConfig, u)
	if err != nil {
		return nil, err
	}
	if c.State.Running {
		rt, err := d.runtimeFor(c.Runtime)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
		defer cancel()
		if err := rt.Update(ctx, c.ID, res); err != nil {
			return nil, fmt.Errorf("Cannot update container %s: %w", c.ShortID(), err)
		}
	}
	c.HostConfig = hc
	if err := c.Save(); err != nil {
		return nil, err
	}
	d.containerEvent(c, "update", map[string]string{"name": c.Name})
	return []string{}, nil
}

func (d *Daemon) postContainerUpdate(w http.ResponseWriter, r *http.Request) {
	var u api.UpdateConfig
	if err := decodeBody(r, &u); err != nil {
		writeError(w, err)
		return
	}
	warns, err := d.UpdateContainer(r.PathValue("id"), u)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSONResponse(w, 200, api.UpdateResponse{Warnings: warns})
}

// mergeUpdate applies an update to a container's host config and checks
// the result; res is what the runtime is given for a running container.
func (d *Daemon) mergeUpdate(old api.HostConfig, u api.UpdateConfig) (hc api.HostConfig, res *specs.LinuxResources, err error) {
	hc = old
	r := u.Resources
	set := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	set(&hc.Memory, r.Memory)
	set(&hc.MemorySwap, r.MemorySwap)
	set(&hc.MemoryReservation, r.MemoryReservation)
	set(&hc.CPUShares, r.CPUShares)
	set(&hc.CPUPeriod, r.CPUPeriod)
	set(&hc.CPUQuota, r.CPUQuota)
	set(&hc.NanoCPUs, r.NanoCPUs)
	if r.CpusetCpus != "" {
		hc.CpusetCpus = r.CpusetCpus
	}
	if r.BlkioWeight != 0 {
		hc.BlkioWeight = r.BlkioWeight
	}
	if r.PidsLimit != nil {
		v := *r.PidsLimit
		if v <= 0 {
			v = -1 // 0 and -1 both mean unlimited in an update
		}
		hc.PidsLimit = &v
	}
	if r.Memory > 0 && r.MemorySwap == 0 && old.MemorySwap > 0 && r.Memory > old.MemorySwap {
		return hc, nil, fmt.Errorf("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time: %w", errdefs.ErrInvalidArgument)
	}
	if u.RestartPolicy.Name != "" {
		if hc.AutoRemove && u.RestartPolicy.Name != "no" {
			return hc, nil, fmt.Errorf("Restart policy cannot be updated because AutoRemove is enabled for the container: %w", errdefs.ErrInvalidArgument)
		}
		hc.RestartPolicy = u.RestartPolicy
	}
	if err := d.validateHostConfig(&hc); err != nil {
		return hc, nil, err
	}
	opts := runtime.SpecOpts{Memory: hc.Memory, MemorySwap: hc.MemorySwap, MemoryReservation: hc.MemoryReservation,
		NanoCPUs: hc.NanoCPUs, CPUShares: hc.CPUShares, CPUQuota: hc.CPUQuota, CPUPeriod: hc.CPUPeriod,
		CpusetCpus: hc.CpusetCpus, BlkioWeight: hc.BlkioWeight, CgroupV2: d.cgroupV2}
	if hc.PidsLimit != nil {
		opts.PidsLimit = *hc.PidsLimit
	}
	res, err = runtime.Resources(opts)
	return hc, res, err
}
