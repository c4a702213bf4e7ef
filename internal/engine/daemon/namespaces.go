package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/errdefs"
)

// Namespace sharing, as Docker does it and as a Kubernetes pod needs it:
// the pod's containers join the network, IPC (and, with
// shareProcessNamespace, PID) namespaces of its sandbox container.
//
//   - NetworkMode "container:X" joins X's network namespace and, as Docker
//     gives such a container X's hostname and /etc files, its UTS
//     namespace and X's /etc/hosts, /etc/resolv.conf and /etc/hostname.
//   - IpcMode "" or "private" (a namespace of its own and a private
//     /dev/shm), "shareable" (the same, with /dev/shm a tmpfs the daemon
//     mounts on the host so others can share it), "none" (no /dev/shm),
//     "host", "container:X" (X's namespace and /dev/shm; X must be
//     shareable or host, as in Docker).
//   - PidMode "", "host" or "container:X"; UTSMode "" or "host".
//
// The modes are checked at create (X must exist) and resolved at each
// start (X must be running), since X's namespaces live only as long as its
// process does.

// defaultShmSize is /dev/shm's size when ShmSize is not given (Docker's).
const defaultShmSize = 64 << 20

// joinedContainer returns X of a "container:X" mode, or "" and false.
func joinedContainer(mode string) (string, bool) {
	ref, ok := strings.CutPrefix(mode, "container:")
	return ref, ok
}

// checkNamespaceModes validates the namespace modes of a container being
// created (self is its name, which no mode may name). It returns the
// container whose network namespace it joins, if any.
func (d *Daemon) checkNamespaceModes(req api.CreateRequest, hc *api.HostConfig, self string) (*container.Container, error) {
	find := func(field, ref string) (*container.Container, error) {
		if ref == "" {
			return nil, fmt.Errorf("invalid %s %q: want container:<name|id>: %w", field, "container:", errdefs.ErrInvalidArgument)
		}
		if self != "" && strings.TrimPrefix(ref, "/") == self {
			return nil, fmt.Errorf("invalid %s container:%s: a container cannot join its own namespace: %w", field, ref, errdefs.ErrInvalidArgument)
		}
		t, err := d.ctrs.Get(ref)
		if err != nil {
			// Not ErrNotFound: a 404 to create means "no such image" to
			// the docker CLI, which would try to pull.
			return nil, fmt.Errorf("%s container:%s: no such container %s (create and start it first): %w", field, ref, ref, errdefs.ErrInvalidArgument)
		}
		return t, nil
	}
	if hc.IpcMode == "" {
		hc.IpcMode = "private" // Docker's default, shown by inspect
	}
	switch m := hc.IpcMode; {
	case m == "private", m == "shareable", m == "none", m == "host":
	case strings.HasPrefix(m, "container:"):
		ref, _ := joinedContainer(m)
		if _, err := find("IpcMode", ref); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("invalid IpcMode %q (want private, shareable, none, host or container:<name|id>): %w", m, errdefs.ErrInvalidArgument)
	}
	switch m := hc.PidMode; {
	case m == "", m == "host":
	case strings.HasPrefix(m, "container:"):
		ref, _ := joinedContainer(m)
		if _, err := find("PidMode", ref); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("invalid PidMode %q (want host or container:<name|id>): %w", m, errdefs.ErrInvalidArgument)
	}
	switch hc.UTSMode {
	case "", "host":
	default:
		return nil, fmt.Errorf("invalid UTSMode %q (want host, or nothing for a namespace of its own): %w", hc.UTSMode, errdefs.ErrInvalidArgument)
	}
	if hc.ShmSize < 0 {
		return nil, fmt.Errorf("invalid ShmSize %d: must be positive: %w", hc.ShmSize, errdefs.ErrInvalidArgument)
	}
	ref, ok := joinedContainer(hc.NetworkMode)
	if !ok {
		if hc.UTSMode == "host" && req.Hostname != "" {
			return nil, fmt.Errorf("conflicting options: hostname and UTSMode host: %w", errdefs.ErrInvalidArgument)
		}
		return nil, nil
	}
	// Docker's conflicts: these belong to the network namespace's owner.
	for _, c := range []struct {
		set  bool
		what string
	}{
		{req.Hostname != "", "hostname"},
		{len(hc.DNS)+len(hc.DNSSearch)+len(hc.DNSOptions) > 0, "dns"},
		{len(hc.ExtraHosts) > 0, "extra hosts"},
		{len(hc.PortBindings) > 0 || hc.PublishAllPorts, "port publishing"},
		{hc.UTSMode != "", "UTSMode"},
		{req.NetworkingConfig != nil && len(req.NetworkingConfig.EndpointsConfig) > 0, "network endpoints"},
	} {
		if c.set {
			return nil, fmt.Errorf("conflicting options: %s and the network mode %s (the container shares the network of %s): %w", c.what, hc.NetworkMode, ref, errdefs.ErrInvalidArgument)
		}
	}
	return find("NetworkMode", ref)
}

// nsSetup is what a starting container's spec gets from its namespace
// modes: the namespaces to join ("" new, "host", or a path), the /dev/shm
// source and the /etc files of a joined network namespace.
type nsSetup struct {
	net, ipc, pid, uts string
	shm                string
	mounts             []specs.Mount
}

// runningTarget returns the running container a "container:X" mode names.
// The caller holds c.Mu; the target's lock is taken after it (a joiner
// never holds its own lock while the target waits on the joiner's).
func (d *Daemon) runningTarget(c *container.Container, field, ref string) (*container.Container, int, error) {
	t, err := d.ctrs.Get(ref)
	if err != nil {
		return nil, 0, fmt.Errorf("%s container:%s: no such container: %w", field, ref, errdefs.ErrNotFound)
	}
	if t.ID == c.ID {
		return nil, 0, fmt.Errorf("%s container:%s: a container cannot join its own namespace: %w", field, ref, errdefs.ErrInvalidArgument)
	}
	t.Mu.Lock()
	running, restarting, pid := t.State.Running, t.State.Restarting, t.State.Pid
	t.Mu.Unlock()
	if !running || restarting || pid <= 0 {
		return nil, 0, fmt.Errorf("cannot join the %s namespace of container %s (%s): it is not running (start it first): %w",
			nsWord(field), ref, t.ShortID(), errdefs.ErrConflict)
	}
	return t, pid, nil
}

func nsWord(field string) string {
	switch field {
	case "NetworkMode":
		return "network"
	case "IpcMode":
		return "IPC"
	case "PidMode":
		return "PID"
	}
	return field
}

// resolveNamespaces works out the namespaces of a starting container. The
// caller holds c.Mu. The network namespace of a container that has its own
// is set up by setupNetwork.
func (d *Daemon) resolveNamespaces(c *container.Container) (nsSetup, error) {
	hc := c.HostConfig
	var ns nsSetup
	if ref, ok := joinedContainer(hc.NetworkMode); ok {
		t, pid, err := d.runningTarget(c, "NetworkMode", ref)
		if err != nil {
			return ns, err
		}
		ns.net = fmt.Sprintf("/proc/%d/ns/net", pid)
		ns.uts = fmt.Sprintf("/proc/%d/ns/uts", pid)
		ns.mounts = d.joinedNetFiles(t)
	} else if hc.UTSMode == "host" {
		ns.uts = "host"
	}
	switch m := hc.IpcMode; {
	case m == "host":
		ns.ipc, ns.shm = "host", "/dev/shm"
	case m == "none":
		ns.shm = "none"
	case m == "shareable":
		shm, err := d.mountShm(c)
		if err != nil {
			return ns, err
		}
		ns.shm = shm
	case strings.HasPrefix(m, "container:"):
		ref, _ := joinedContainer(m)
		t, pid, err := d.runningTarget(c, "IpcMode", ref)
		if err != nil {
			return ns, err
		}
		t.Mu.Lock()
		donor := t.HostConfig.IpcMode
		t.Mu.Unlock()
		switch donor {
		case "host":
			ns.ipc, ns.shm = "host", "/dev/shm"
		case "shareable":
			ns.ipc, ns.shm = fmt.Sprintf("/proc/%d/ns/ipc", pid), shmDir(t)
		default:
			return ns, fmt.Errorf("cannot join the IPC namespace of container %s (%s): its IpcMode is %q, not shareable (create it with IpcMode \"shareable\"): %w",
				ref, t.ShortID(), donor, errdefs.ErrConflict)
		}
	default: // private: the spec's own tmpfs, ShmSize in buildSpec
	}
	if ref, ok := joinedContainer(hc.PidMode); ok {
		_, pid, err := d.runningTarget(c, "PidMode", ref)
		if err != nil {
			return ns, err
		}
		ns.pid = fmt.Sprintf("/proc/%d/ns/pid", pid)
	} else if hc.PidMode == "host" {
		ns.pid = "host"
	}
	return ns, nil
}

// joinedNetFiles are the /etc files of a container that shares t's
// network: t's own, or the host's when t runs on the host's network.
func (d *Daemon) joinedNetFiles(t *container.Container) []specs.Mount {
	t.Mu.Lock()
	mode := t.HostConfig.NetworkMode
	t.Mu.Unlock()
	switch {
	case mode == "host":
		resolv := roBind("/etc/resolv.conf", "/etc/resolv.conf")
		if p := filepath.Join(t.Dir(), "resolv.conf"); len(t.HostConfig.DNS)+len(t.HostConfig.DNSSearch)+len(t.HostConfig.DNSOptions) > 0 && fileExists(p) {
			resolv = rwBind(p, "/etc/resolv.conf") // t's own (hostModeResolvConf)
		}
		return []specs.Mount{resolv, roBind("/etc/hosts", "/etc/hosts")}
	case mode == "none":
		return nil
	case strings.HasPrefix(mode, "container:"):
		// t shares yet another container's files: the same bind mounts.
		ref, _ := joinedContainer(mode)
		if u, err := d.ctrs.Get(ref); err == nil && u.ID != t.ID {
			return d.joinedNetFiles(u)
		}
		return nil
	}
	var out []specs.Mount
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		p := filepath.Join(t.Dir(), f)
		if _, err := os.Stat(p); err == nil {
			out = append(out, rwBind(p, "/etc/"+f))
		}
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// netFilesDir is the directory whose hosts, resolv.conf and hostname a
// container uses (inspect's HostsPath and friends): its own, or those of
// the container whose network it shares.
func (d *Daemon) netFilesDir(c *container.Container) string {
	ref, ok := joinedContainer(c.HostConfig.NetworkMode)
	for i := 0; ok && i < 8; i++ {
		t, err := d.ctrs.Get(ref)
		if err != nil || t.ID == c.ID {
			break
		}
		if ref, ok = joinedContainer(t.HostConfig.NetworkMode); !ok {
			return t.Dir()
		}
	}
	return c.Dir()
}

// shmDir is where a shareable container's /dev/shm is mounted on the host.
func shmDir(c *container.Container) string { return filepath.Join(c.Dir(), "shm") }

// mountShm mounts a shareable container's /dev/shm tmpfs on the host
// (once: a restart reuses it).
func (d *Daemon) mountShm(c *container.Container) (string, error) {
	dir := shmDir(c)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if mounted(dir) {
		return dir, nil
	}
	size := c.HostConfig.ShmSize
	if size <= 0 {
		size = defaultShmSize
	}
	if err := unix.Mount("shm", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", size)); err != nil {
		return "", fmt.Errorf("mounting /dev/shm of shareable container %s: %w", c.ShortID(), err)
	}
	return dir, nil
}

// unmountShm unmounts a shareable container's /dev/shm (at exit and
// removal); containers that joined it keep their mount of it.
func (d *Daemon) unmountShm(c *container.Container) {
	if c.HostConfig.IpcMode != "shareable" {
		return
	}
	dir := shmDir(c)
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		d.log.Warn("unmounting /dev/shm", "id", c.ShortID(), "err", err)
	}
}

// mounted reports whether dir is a mount point (its device differs from
// its parent's).
func mounted(dir string) bool {
	var st, pst unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(filepath.Dir(dir), &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev
}
