package daemon

import (
	"time"

	"github.com/berth/berth/internal/engine/container"
)

// recover reattaches to the shims of containers that were running when the
// previous daemon stopped, records the exits that happened meanwhile, and
// starts the containers whose restart policy asks for it.
func (d *Daemon) recover() {
	for _, c := range d.ctrs.List() {
		c.Mu.Lock()
		wasRunning := c.State.Running || c.State.Restarting
		c.Mu.Unlock()
		if wasRunning {
			if t, err := d.connectTask(c.ID, c.BundleDir()); err == nil {
				c.Mu.Lock()
				c.State.Running, c.State.Restarting = true, false
				if c.State.Paused {
					c.State.Status = "paused"
				} else {
					c.State.Status = "running"
				}
				if p := t.pid(); p > 0 {
					c.State.Pid = p
				}
				c.Save()
				c.Mu.Unlock()
				d.setTask(c.ID, t)
				d.wg.Add(1)
				go d.monitor(c, t)
				d.log.Info("reattached to running container", "id", c.ShortID(), "name", c.Name)
				continue
			}
			st, ok := readExitFile(c.BundleDir())
			if !ok {
				st = exitStatus{code: 255, at: time.Now().UTC()}
			}
			d.log.Info("container exited while the daemon was down", "id", c.ShortID(), "exitCode", st.code)
			d.handleExit(c, st)
			continue
		}
		// A shim spawned at create for a start that never came.
		if t, err := d.connectTask(c.ID, c.BundleDir()); err == nil {
			if err := t.h.Shutdown(); err != nil {
				d.log.Debug("stopping the shim of a created container", "id", c.ShortID(), "err", err)
			}
		}
		d.startOnBoot(c)
	}
}

// startOnBoot starts a stopped container whose policy is always, or
// unless-stopped when the user did not stop it, as Docker does at boot.
func (d *Daemon) startOnBoot(c *container.Container) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	p := c.HostConfig.RestartPolicy.Name
	if c.ManuallyStopped || (p != "always" && p != "unless-stopped") || c.State.Status == "created" {
		return
	}
	if err := d.startLocked(c); err != nil {
		d.log.Warn("starting container at boot", "id", c.ShortID(), "err", err)
	}
}
