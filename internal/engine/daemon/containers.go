package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/engine/runtime"
	"github.com/berth/berth/internal/engine/volume"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/units"
)

// minMemory is the smallest memory limit accepted, as Docker's.
const minMemory = 6 << 20

// CreateContainer validates req, merges it with the image's configuration
// and records a new container. Nothing runs until StartContainer.
func (d *Daemon) CreateContainer(name string, req api.CreateRequest) (*container.Container, error) {
	if req.Image == "" {
		return nil, fmt.Errorf("no image given (usage: berth create IMAGE [COMMAND]): %w", errdefs.ErrInvalidArgument)
	}
	img, err := d.images.Get(req.Image)
	if err != nil && errdefs.Is(err, errdefs.ErrNotFound) && isPauseImage(req.Image) {
		img, err = d.ensurePauseImage()
	}
	if err != nil {
		if errdefs.Is(err, errdefs.ErrNotFound) {
			return nil, fmt.Errorf("No such image: %s: %w", req.Image, errdefs.ErrNotFound)
		}
		return nil, err
	}
	hc := api.HostConfig{}
	if req.HostConfig != nil {
		hc = *req.HostConfig
	}
	if err := d.validateHostConfig(&hc); err != nil {
		return nil, err
	}
	generated := name == ""
	if !generated {
		if err := container.ValidateName(name); err != nil {
			return nil, err
		}
		name = strings.TrimPrefix(name, "/")
	} else {
		name = d.ctrs.GenerateName()
	}
	netTarget, err := d.checkNamespaceModes(req, &hc, name)
	if err != nil {
		return nil, err
	}
	cfg := mergeImageConfig(req.Config, img)
	if netTarget != nil {
		// Docker: a container sharing another's network has its hostname
		// (it joins that UTS namespace at start).
		netTarget.Mu.Lock()
		cfg.Hostname, cfg.Domainname = netTarget.Config.Hostname, netTarget.Config.Domainname
		netTarget.Mu.Unlock()
	}
	if len(cfg.Entrypoint)+len(cfg.Cmd) == 0 {
		return nil, fmt.Errorf("no command specified: image %s has no Entrypoint or Cmd (give a command after the image name): %w", req.Image, errdefs.ErrInvalidArgument)
	}
	if _, err := d.runtimeFor(hc.Runtime); err != nil {
		return nil, err
	}
	if hc.Runtime == "" {
		hc.Runtime = d.cfg.DefaultRuntime
	}
	switch hc.LogConfig.Type {
	case "":
		// Clients read logs through the API only for the drivers they
		// know to keep them (docker-py: json-file, journald): berth's log
		// has json-file's API behaviour and options (max-size, max-file).
		hc.LogConfig.Type = "json-file"
	case "json-file", "local", "berth":
	default:
		return nil, fmt.Errorf("log driver %q is not supported (berth keeps every container's log itself: use json-file, the default, with max-size and max-file): %w", hc.LogConfig.Type, errdefs.ErrNotImplemented)
	}
	if _, _, err := parseLogOpts(hc.LogConfig.Config, 0, 0); err != nil {
		return nil, err
	}
	args := append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...)
	c := &container.Container{
		ID:         d.ctrs.NewID(),
		Name:       name,
		Created:    time.Now().UTC(),
		ImageRef:   req.Image,
		ImageID:    img.ID,
		Config:     cfg,
		HostConfig: hc,
		Path:       args[0],
		Args:       args[1:],
		State:      api.State{Status: "created"},
		Runtime:    hc.Runtime,
	}
	c.CgroupsPath = d.cgroupsPath(c.ID)
	if c.Config.Hostname == "" {
		c.Config.Hostname = c.ShortID()
		if hc.UTSMode == "host" || hc.NetworkMode == "host" {
			// Docker: the host's name (a Kubernetes hostNetwork pod
			// shows the node's).
			if h, err := os.Hostname(); err == nil {
				c.Config.Hostname = h
			}
		}
	}
	mounts, err := mountSpecs(hc)
	if err != nil {
		return nil, err
	}
	c.Mounts = mounts
	if c.Networks, c.Ports, err = d.networkRequest(req, &c.HostConfig); err != nil {
		return nil, err
	}
	err = d.ctrs.Add(c)
	for i := 0; generated && errdefs.Is(err, errdefs.ErrConflict) && i < 20; i++ {
		// Another create took the same random name meanwhile.
		c.Name = d.ctrs.GenerateName()
		err = d.ctrs.Add(c)
	}
	if err != nil {
		return nil, err
	}
	// Claim creates the named and anonymous volumes and records this
	// container as their user, so `volume rm` refuses from now on.
	if err := d.volumes.Claim(c.ID, cfg.Volumes, mounts); err != nil {
		d.volumes.RemoveAnonymous(c.ID)
		d.volumes.ReleaseAll(c.ID)
		d.ctrs.Delete(c)
		return nil, err
	}
	d.containerEvent(c, "create", map[string]string{"name": c.Name, "image": c.ImageRef})
	d.prespawnShim(c)
	return c, nil
}

// prespawnShim starts the shim of a container just created, in the
// background. A client creates, attaches, waits and starts in a row; the
// shim (a process that must come up and listen) is ready by the start
// instead of being waited for then. The shim only needs the bundle's
// config.json when the start runs the runtime, and everything it is given
// here is fixed at create.
func (d *Daemon) prespawnShim(c *container.Container) {
	opts, err := d.containerTaskOpts(c)
	if err != nil {
		return // the start reports it
	}
	l := d.live(c.ID)
	done := make(chan struct{})
	l.mu.Lock()
	l.preDone = done
	l.mu.Unlock()
	go func() {
		defer close(done)
		if err := os.MkdirAll(c.BundleDir(), 0o710); err != nil {
			return
		}
		t, err := d.startTask(opts)
		if err != nil {
			d.log.Debug("shim spawned at create", "id", c.ShortID(), "err", err)
			return
		}
		l.mu.Lock()
		l.pre = t
		l.mu.Unlock()
	}()
}

// dropPreShim stops a shim spawned at create that no start will use.
func (d *Daemon) dropPreShim(l *live) {
	if t := l.takePreShim(); t != nil {
		t.h.Shutdown()
	}
}

// containerTaskOpts are the shim options of c's main process.
func (d *Daemon) containerTaskOpts(c *container.Container) (taskOpts, error) {
	rt, err := d.runtimeFor(c.Runtime)
	if err != nil {
		return taskOpts{}, err
	}
	maxSize, maxFiles, _ := parseLogOpts(c.HostConfig.LogConfig.Config, d.defaultLogSize(), d.defaultLogFiles())
	return taskOpts{
		id: c.ID, bundle: c.BundleDir(), runtime: rt, cgroupsPath: c.CgroupsPath, logPath: c.LogPath(),
		logMaxSize: maxSize, logMaxFiles: maxFiles, tty: c.Config.Tty, stdin: c.Config.OpenStdin, stdinOnce: c.Config.StdinOnce,
	}, nil
}

// mountSpecs parses the container's -v binds, --mount entries and --tmpfs
// paths.
func mountSpecs(hc api.HostConfig) ([]volume.MountSpec, error) {
	var out []volume.MountSpec
	for _, b := range hc.Binds {
		m, err := volume.ParseVolumeSpec(b)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	for _, am := range hc.Mounts {
		m := volume.MountSpec{Type: volume.MountType(am.Type), Source: am.Source, Target: am.Target, ReadOnly: am.ReadOnly}
		if o := am.BindOptions; o != nil {
			m.Propagation, m.NonRecursive = o.Propagation, o.NonRecursive
		}
		if o := am.VolumeOptions; o != nil {
			m.NoCopy, m.VolumeLabels = o.NoCopy, o.Labels
			if o.DriverConfig != nil {
				m.VolumeOptions = o.DriverConfig.Options
			}
		}
		if o := am.TmpfsOptions; o != nil {
			m.TmpfsSize, m.TmpfsMode = o.SizeBytes, o.Mode
		}
		v, err := m.Validate()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	for target, opts := range hc.Tmpfs {
		m, err := volume.ParseTmpfsOptions(target, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// cgroupsPath is the container's cgroup, the same path on v1 and v2.
func (d *Daemon) cgroupsPath(id string) string {
	return "/" + d.cfg.CgroupParent + "/" + id
}

func (d *Daemon) validateHostConfig(hc *api.HostConfig) error {
	if hc.Memory != 0 && hc.Memory < minMemory {
		return fmt.Errorf("Minimum memory limit allowed is 6MB (got %d bytes): %w", hc.Memory, errdefs.ErrInvalidArgument)
	}
	if hc.Memory < 0 {
		return fmt.Errorf("invalid memory limit %d: must be positive: %w", hc.Memory, errdefs.ErrInvalidArgument)
	}
	if hc.MemorySwap > 0 && hc.Memory > 0 && hc.MemorySwap < hc.Memory {
		return fmt.Errorf("Minimum memoryswap limit should be larger than memory limit, see usage: %w", errdefs.ErrInvalidArgument)
	}
	if hc.NanoCPUs < 0 {
		return fmt.Errorf("invalid --cpus value: must be positive: %w", errdefs.ErrInvalidArgument)
	}
	if hc.NanoCPUs > 0 && (hc.CPUQuota > 0 || hc.CPUPeriod > 0) {
		return fmt.Errorf("conflicting options: Nano CPUs and CPU Period/Quota cannot both be set: %w", errdefs.ErrInvalidArgument)
	}
	if ncpu := int64(numCPU()); hc.NanoCPUs > ncpu*1e9 {
		return fmt.Errorf("range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available: %w", ncpu, ncpu, errdefs.ErrInvalidArgument)
	}
	switch hc.RestartPolicy.Name {
	case "", "no":
		hc.RestartPolicy.Name = "no"
	case "always", "unless-stopped":
		if hc.RestartPolicy.MaximumRetryCount != 0 {
			return fmt.Errorf("maximum retry count cannot be used with restart policy %q: %w", hc.RestartPolicy.Name, errdefs.ErrInvalidArgument)
		}
	case "on-failure":
		if hc.RestartPolicy.MaximumRetryCount < 0 {
			return fmt.Errorf("invalid restart policy: maximum retry count cannot be negative: %w", errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("invalid restart policy %q (want no, always, unless-stopped or on-failure[:N]): %w", hc.RestartPolicy.Name, errdefs.ErrInvalidArgument)
	}
	if hc.AutoRemove && hc.RestartPolicy.Name != "no" {
		return fmt.Errorf("can't create 'AutoRemove' container with restart policy %q: %w", hc.RestartPolicy.Name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// mergeImageConfig fills the unset parts of cfg from the image, with
// Docker's rules: an Entrypoint given on the command line drops the image's
// Cmd; environment variables given override the image's by name.
func mergeImageConfig(cfg api.Config, img *image.Image) api.Config {
	ic := img.Config.Config
	if len(cfg.Entrypoint) == 0 {
		if cfg.Entrypoint == nil {
			cfg.Entrypoint = ic.Entrypoint
		} else {
			cfg.Entrypoint = nil // --entrypoint "" resets it
		}
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = ic.Cmd
		}
	}
	env := append([]string{}, ic.Env...)
	for _, e := range cfg.Env {
		k, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, o := range env {
			if ok, _, _ := strings.Cut(o, "="); ok == k {
				env[i], replaced = e, true
				break
			}
		}
		if !replaced {
			env = append(env, e)
		}
	}
	if !hasEnv(env, "PATH") {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	cfg.Env = env
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = ic.WorkingDir
	}
	if cfg.User == "" {
		cfg.User = ic.User
	}
	if cfg.StopSignal == "" {
		cfg.StopSignal = ic.StopSignal
	}
	if len(ic.Labels) > 0 {
		labels := map[string]string{}
		for k, v := range ic.Labels {
			labels[k] = v
		}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		cfg.Labels = labels
	}
	if cfg.Volumes == nil && len(ic.Volumes) > 0 {
		cfg.Volumes = ic.Volumes
	}
	if cfg.ExposedPorts == nil && len(ic.ExposedPorts) > 0 {
		cfg.ExposedPorts = ic.ExposedPorts
	}
	return cfg
}

func hasEnv(env []string, k string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, k+"=") {
			return true
		}
	}
	return false
}

// StartContainer starts a created or exited container. Starting a running
// container is a no-op, as in Docker.
func (d *Daemon) StartContainer(ref string) error {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if c.State.Running {
		if c.State.Paused {
			return fmt.Errorf("cannot start a paused container %s, try unpause instead: %w", c.ShortID(), errdefs.ErrConflict)
		}
		return nil
	}
	l := d.live(c.ID)
	if l.removing {
		return fmt.Errorf("container %s is marked for removal and cannot be started: %w", c.ShortID(), errdefs.ErrConflict)
	}
	l.cancelRestart()
	c.ManuallyStopped = false
	err = d.startLocked(c)
	if err != nil && c.HostConfig.AutoRemove {
		// As Docker: a --rm container that failed to start is removed,
		// or a client waiting for its removal would wait forever.
		go func() {
			if err := d.RemoveContainer(c.ID, true, true); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
				d.log.Warn("removing an auto-removed container that failed to start", "id", c.ShortID(), "err", err)
			}
		}()
	}
	return err
}

// startLocked does the work of a start. The caller holds c.Mu.
func (d *Daemon) startLocked(c *container.Container) (retErr error) {
	l := d.live(c.ID)
	t0 := time.Now()
	var tMount, tSpec, tShim time.Duration
	fail := func(code int, err error) error {
		d.dropPreShim(l)
		c.State.Running, c.State.Restarting = false, false
		c.State.Status = "exited"
		c.State.ExitCode = code
		c.State.Error = err.Error()
		c.State.FinishedAt = time.Now().UTC()
		c.Save()
		d.teardownNetwork(c)
		d.unmountShm(c)
		d.snaps.Unmount(c.ID)
		l.notify()
		return err
	}
	img, err := d.images.Get(c.ImageID)
	if err != nil {
		return fail(125, fmt.Errorf("image %s of container %s: %w", c.ImageRef, c.ShortID(), err))
	}
	lowers, err := d.images.LayerDirs(img)
	if err != nil {
		return fail(125, err)
	}
	rootfs, err := d.snaps.Prepare(c.ID, lowers)
	if err != nil {
		return fail(125, fmt.Errorf("mounting the root filesystem of %s: %w", c.ShortID(), err))
	}
	tMount = time.Since(t0)
	rt, err := d.runtimeFor(c.Runtime)
	if err != nil {
		return fail(125, err)
	}
	mounts, mountPoints, err := d.volumes.Resolve(c.ID, rootfs, c.Config.Volumes, c.Mounts)
	if err != nil {
		return fail(125, fmt.Errorf("mounts of container %s: %w", c.ShortID(), err))
	}
	c.MountPoints = c.MountPoints[:0]
	for _, mp := range mountPoints {
		c.MountPoints = append(c.MountPoints, api.MountPoint{Type: string(mp.Type), Name: mp.Name, Source: mp.Source,
			Destination: mp.Destination, Driver: mp.Driver, Mode: mp.Mode, RW: mp.RW, Propagation: mp.Propagation})
	}
	d.waitNetworkTeardown(l)
	ns, err := d.resolveNamespaces(c)
	if err != nil {
		return fail(125, fmt.Errorf("starting container %s: %w", c.ShortID(), err))
	}
	netMounts := ns.mounts
	if ns.net == "" {
		if ns.net, netMounts, err = d.setupNetwork(c); err != nil {
			return fail(125, fmt.Errorf("network of container %s: %w", c.ShortID(), err))
		}
	}
	spec, err := d.buildSpec(c, rootfs, ns, append(netMounts, mounts...))
	if err == nil {
		d.seccomp.Annotate(rt, spec)
	}
	if err != nil {
		code := 125
		if errors.Is(err, errdefs.ErrCommandNotFound) {
			code = 127
		} else if errors.Is(err, errdefs.ErrCommandNotExecutable) {
			code = 126
		}
		return fail(code, err)
	}
	if err := os.MkdirAll(c.BundleDir(), 0o710); err != nil {
		return fail(125, err)
	}
	// The shim spawned at create, if it came up; else the previous run's
	// shim must be gone before a new one takes the bundle.
	t := l.takePreShim()
	if t == nil {
		waitShimGone(c.BundleDir())
	}
	os.Remove(filepath.Join(c.BundleDir(), "exit.json"))
	if err := writeJSON(filepath.Join(c.BundleDir(), "config.json"), spec); err != nil {
		if t != nil {
			t.h.Shutdown()
		}
		return fail(125, err)
	}
	tSpec = time.Since(t0)
	if t == nil {
		opts, err := d.containerTaskOpts(c)
		if err == nil {
			t, err = d.startTask(opts)
		}
		if err != nil {
			return fail(125, err)
		}
	}
	tShim = time.Since(t0)
	// Clients that attached before the start get every byte of output.
	for _, a := range l.takePendingAttaches() {
		a(t)
	}
	// The process starts during the call: a quick one exits (the shim
	// timestamps it) before the call returns.
	startedAt := time.Now().UTC()
	pid, err := t.start()
	if err != nil {
		// The shim is left never started: stop it, or it would hold the
		// bundle.
		t.h.Shutdown()
		return fail(startErrorCode(err), fmt.Errorf("starting container %s: %w", c.ShortID(), err))
	}
	d.seccomp.Learn(rt, c.ID, spec)
	d.log.Debug("started container", "id", c.ShortID(), "mount", tMount, "spec", tSpec, "shim", tShim, "total", time.Since(t0))
	c.State = api.State{Status: "running", Running: true, Pid: pid, StartedAt: startedAt}
	if err := c.Save(); err != nil {
		d.log.Error("saving container state", "id", c.ID, "err", err)
	}
	d.setTask(c.ID, t)
	l.notify()
	d.containerEvent(c, "start", map[string]string{"name": c.Name, "image": c.ImageRef})
	d.wg.Add(1)
	go d.monitor(c, t)
	return nil
}

// waitShimGone waits (briefly) for the shim of a previous run to finish
// its cleanup, which it does after answering the exit; it removes its
// socket last. A socket nobody listens on is stale.
func waitShimGone(bundle string) {
	sock := filepath.Join(bundle, "shim.sock")
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if _, err := os.Stat(sock); err != nil {
			return
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			return
		}
		c.Close()
	}
}

func startErrorCode(err error) int {
	switch {
	case errors.Is(err, errdefs.ErrCommandNotFound):
		return 127
	case errors.Is(err, errdefs.ErrCommandNotExecutable):
		return 126
	}
	return 128
}

// buildSpec generates the container's OCI spec.
func (d *Daemon) buildSpec(c *container.Container, rootfs string, ns nsSetup, mounts []specs.Mount) (*specs.Spec, error) {
	cfg, hc := c.Config, c.HostConfig
	uid, gid, groups, err := runtime.ResolveUser(rootfs, cfg.User)
	if err != nil {
		return nil, fmt.Errorf("unable to find user %s: %w", cfg.User, err)
	}
	if len(hc.GroupAdd) > 0 {
		extra, err := runtime.ResolveGroups(rootfs, hc.GroupAdd)
		if err != nil {
			return nil, err
		}
		groups = append(groups, extra...)
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	if err := runtime.LookPath(rootfs, cwd, envValue(cfg.Env, "PATH"), c.Path); err != nil {
		return nil, fmt.Errorf("exec: %q: %w", c.Path, err)
	}
	opts := runtime.SpecOpts{
		ID: c.ID, Rootfs: rootfs, ReadonlyRootfs: hc.ReadonlyRootfs,
		Args: append([]string{c.Path}, c.Args...), Env: cfg.Env, Cwd: cwd,
		UID: uid, GID: gid, AdditionalGids: groups, Hostname: cfg.Hostname, Terminal: cfg.Tty,
		Memory: hc.Memory, MemorySwap: hc.MemorySwap, MemoryReservation: hc.MemoryReservation,
		NanoCPUs: hc.NanoCPUs, CPUShares: hc.CPUShares, CPUQuota: hc.CPUQuota, CPUPeriod: hc.CPUPeriod,
		CpusetCpus: hc.CpusetCpus, BlkioWeight: hc.BlkioWeight,
		CgroupsPath: c.CgroupsPath, CgroupV2: d.cgroupV2,
		CapAdd: hc.CapAdd, CapDrop: hc.CapDrop, Privileged: hc.Privileged,
		NoNewPrivileges: true, Sysctls: hc.Sysctls, Mounts: mounts,
		Annotations: map[string]string{"io.berth.container.name": c.Name},
	}
	if hc.PidsLimit != nil && *hc.PidsLimit > 0 {
		opts.PidsLimit = *hc.PidsLimit
	}
	if hc.OomScoreAdj != 0 {
		v := hc.OomScoreAdj
		opts.OOMScoreAdj = &v
	}
	opts.NetNSPath, opts.IPCNSPath, opts.PIDNSPath, opts.UTSNSPath = ns.net, ns.ipc, ns.pid, ns.uts
	opts.Shm, opts.ShmSize = ns.shm, hc.ShmSize
	opts.RootfsPropagation = rootfsPropagation(mounts)
	for _, so := range hc.SecurityOpt {
		switch so {
		case "seccomp=unconfined", "seccomp:unconfined":
			opts.SeccompUnconfined = true
		case "no-new-privileges=false", "no-new-privileges:false":
			opts.NoNewPrivileges = false
		case "no-new-privileges", "no-new-privileges=true", "no-new-privileges:true":
		default:
			return nil, fmt.Errorf("invalid --security-opt %q (supported: seccomp=unconfined, no-new-privileges[=true|false]): %w", so, errdefs.ErrInvalidArgument)
		}
	}
	return runtime.Generate(opts)
}

// rootfsPropagation is the root's propagation a container's binds need,
// as Docker sets it: shared when one of them propagates both ways, slave
// when one receives mounts from the host; else the runtime's default.
func rootfsPropagation(mounts []specs.Mount) string {
	out := ""
	for _, m := range mounts {
		for _, o := range m.Options {
			switch o {
			case "shared", "rshared":
				return "rshared"
			case "slave", "rslave":
				out = "rslave"
			}
		}
	}
	return out
}

func envValue(env []string, k string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, k+"="); ok {
			return v
		}
	}
	return ""
}

// monitor waits for the container's exit and applies what follows: state,
// unmount, restart policy, auto-removal.
func (d *Daemon) monitor(c *container.Container, t *task) {
	defer d.wg.Done()
	st, err := t.wait(d.ctx)
	if err != nil {
		// The daemon is shutting down: the shim keeps the container and
		// the next daemon reattaches.
		return
	}
	t.close()
	d.handleExit(c, st)
}

func (d *Daemon) handleExit(c *container.Container, st exitStatus) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	d.clearTask(c.ID)
	l := d.live(c.ID)
	c.State.Running, c.State.Paused = false, false
	c.State.Pid = 0
	c.State.Status = "exited"
	c.State.ExitCode = st.code
	c.State.OOMKilled = st.oomKilled
	c.State.FinishedAt = st.at
	d.teardownNetworkAsync(c, l)
	d.unmountShm(c)
	// An auto-removed container's removal unmounts it, in the background.
	if l.fsUsers == 0 && !c.HostConfig.AutoRemove { // else the last copy or export unmounts it
		if err := d.snaps.Unmount(c.ID); err != nil {
			d.log.Warn("unmounting rootfs", "id", c.ID, "err", err)
		}
	}
	d.log.Debug("container exited", "id", c.ShortID(), "code", st.code, "sinceExit", time.Since(st.at))
	if st.oomKilled {
		// Docker announces the OOM kill before the exit; a node agent
		// reports OOMKilled from it.
		d.containerEvent(c, "oom", map[string]string{"name": c.Name})
	}
	d.containerEvent(c, "die", map[string]string{"name": c.Name, "exitCode": fmt.Sprint(st.code)})
	if delay, ok := d.restartDelay(c, l); ok && !l.removing {
		c.State.Restarting = true
		c.State.Status = "restarting"
		c.Save()
		l.notify()
		l.scheduleRestart(delay, func() { d.restartByPolicy(c) })
		return
	}
	c.Save()
	l.notifyExit()
	if c.HostConfig.AutoRemove && !l.removing {
		go func() {
			if err := d.RemoveContainer(c.ID, true, true); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
				d.log.Warn("auto-removing container", "id", c.ID, "err", err)
			}
		}()
	}
}

func (d *Daemon) restartByPolicy(c *container.Container) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	l := d.live(c.ID)
	if !c.State.Restarting || l.removing || c.ManuallyStopped {
		return
	}
	c.RestartCount++
	if err := d.startLocked(c); err != nil {
		d.log.Warn("restarting container", "id", c.ID, "err", err)
		// startLocked recorded the failure; the policy decides again.
		st := exitStatus{code: c.State.ExitCode, at: time.Now().UTC()}
		c.Mu.Unlock()
		d.handleExit(c, st)
		c.Mu.Lock()
	}
}

// StopContainer sends the stop signal, waits up to timeout, then kills.
// timeout < 0 means the container's StopTimeout (default 10 s).
func (d *Daemon) StopContainer(ref string, timeout int, signal string) error {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	c.Mu.Lock()
	l := d.live(c.ID)
	c.ManuallyStopped = true
	if l.cancelRestart() {
		c.State.Restarting = false
		c.State.Status = "exited"
		c.Save()
		l.notifyExit()
	}
	running := c.State.Running
	c.Save()
	c.Mu.Unlock()
	if !running {
		return nil
	}
	if timeout < 0 {
		timeout = 10
		if c.Config.StopTimeout != nil {
			timeout = *c.Config.StopTimeout
		}
	}
	if signal == "" {
		signal = c.Config.StopSignal
	}
	sig := syscall.SIGTERM
	if signal != "" {
		if sig, err = ParseSignal(signal); err != nil {
			return err
		}
	}
	exited := l.exitChan()
	if c.State.Paused {
		d.unpauseQuiet(c)
	}
	if timeout != 0 {
		if err := d.signal(c, sig, false); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
			d.log.Warn("sending stop signal", "id", c.ID, "err", err)
		}
		select {
		case <-exited:
			d.containerEvent(c, "stop", map[string]string{"name": c.Name})
			return nil
		case <-time.After(time.Duration(timeout) * time.Second):
		}
	}
	if err := d.signal(c, syscall.SIGKILL, true); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
		return err
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("container %s did not exit 30s after SIGKILL: %w", c.ShortID(), errdefs.ErrUnavailable)
	}
	d.containerEvent(c, "stop", map[string]string{"name": c.Name})
	return nil
}

// KillContainer sends sig to the container's init process.
func (d *Daemon) KillContainer(ref, signal string) error {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if signal != "" {
		if sig, err = ParseSignal(signal); err != nil {
			return err
		}
	}
	c.Mu.Lock()
	running := c.State.Running
	if sig == syscall.SIGKILL {
		// A kill is not a user stop: the restart policy still applies,
		// as in Docker.
		if l := d.live(c.ID); l.cancelRestart() {
			c.State.Restarting = false
			c.State.Status = "exited"
			c.Save()
			l.notifyExit()
		}
	}
	c.Mu.Unlock()
	if !running {
		return fmt.Errorf("Cannot kill container: %s: Container %s is not running: %w", ref, c.ID, errdefs.ErrConflict)
	}
	if err := d.signal(c, sig, sig == syscall.SIGKILL); err != nil {
		return err
	}
	d.containerEvent(c, "kill", map[string]string{"name": c.Name, "signal": fmt.Sprint(int(sig))})
	return nil
}

func (d *Daemon) signal(c *container.Container, sig syscall.Signal, all bool) error {
	rt, err := d.runtimeFor(c.Runtime)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	return rt.Kill(ctx, c.ID, sig, all)
}

// RestartContainer stops (with timeout) and starts the container.
func (d *Daemon) RestartContainer(ref string, timeout int, signal string) error {
	if err := d.StopContainer(ref, timeout, signal); err != nil {
		return err
	}
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	if err := d.StartContainer(c.ID); err != nil {
		return err
	}
	d.containerEvent(c, "restart", map[string]string{"name": c.Name})
	return nil
}

// PauseContainer freezes every process of the container.
func (d *Daemon) PauseContainer(ref string) error {
	return d.setPaused(ref, true)
}

// UnpauseContainer thaws a paused container.
func (d *Daemon) UnpauseContainer(ref string) error {
	return d.setPaused(ref, false)
}

func (d *Daemon) setPaused(ref string, pause bool) error {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if !c.State.Running {
		return fmt.Errorf("container %s is not running: %w", c.ShortID(), errdefs.ErrConflict)
	}
	if c.State.Paused == pause {
		if pause {
			return fmt.Errorf("container %s is already paused: %w", c.ShortID(), errdefs.ErrConflict)
		}
		return fmt.Errorf("container %s is not paused: %w", c.ShortID(), errdefs.ErrConflict)
	}
	rt, err := d.runtimeFor(c.Runtime)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	action := "pause"
	if pause {
		err = rt.Pause(ctx, c.ID)
	} else {
		action = "unpause"
		err = rt.Resume(ctx, c.ID)
	}
	if err != nil {
		return fmt.Errorf("%s container %s: %w", action, c.ShortID(), err)
	}
	c.State.Paused = pause
	c.State.Status = "running"
	if pause {
		c.State.Status = "paused"
	}
	c.Save()
	d.live(c.ID).notify()
	d.containerEvent(c, action, map[string]string{"name": c.Name})
	return nil
}

func (d *Daemon) unpauseQuiet(c *container.Container) {
	if err := d.setPaused(c.ID, false); err != nil {
		d.log.Warn("unpausing before stop", "id", c.ID, "err", err)
	}
}

// RemoveContainer deletes a container and everything it owns: snapshot,
// bundle, logs, cgroup. A running container needs force.
func (d *Daemon) RemoveContainer(ref string, force, volumes bool) error {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	c.Mu.Lock()
	l := d.live(c.ID)
	if l.removing {
		c.Mu.Unlock()
		return fmt.Errorf("removal of container %s is already in progress: %w", c.ShortID(), errdefs.ErrConflict)
	}
	if (c.State.Running || c.State.Restarting) && !force {
		c.Mu.Unlock()
		if c.State.Restarting {
			return fmt.Errorf("You cannot remove a restarting container %s. Stop the container before attempting removal or force remove: %w", c.ID, errdefs.ErrConflict)
		}
		return fmt.Errorf("You cannot remove a running container %s. Stop the container before attempting removal or force remove: %w", c.ID, errdefs.ErrConflict)
	}
	l.removing = true
	l.cancelRestart()
	running := c.State.Running
	c.State.Restarting = false
	c.Mu.Unlock()
	if running {
		exited := l.exitChan()
		if c.State.Paused {
			d.unpauseQuiet(c)
		}
		if err := d.signal(c, syscall.SIGKILL, true); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
			d.log.Warn("killing container for removal", "id", c.ID, "err", err)
		} else {
			d.containerEvent(c, "kill", map[string]string{"signal": "9"})
		}
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			l.removing = false
			return fmt.Errorf("container %s did not exit after SIGKILL; not removed: %w", c.ShortID(), errdefs.ErrUnavailable)
		}
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	d.dropPreShim(l)
	var errs []error
	// The shim deletes the runtime's state when the process exits and then
	// writes exit.json; only without that record can runtime state remain.
	if _, clean := readExitFile(c.BundleDir()); !clean && c.State.Status != "created" {
		if rt, err := d.runtimeFor(c.Runtime); err == nil {
			ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
			if err := rt.Delete(ctx, c.ID, true); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
				d.log.Debug("runtime delete", "id", c.ID, "err", err)
			}
			cancel()
		}
	}
	// `run --rm` waits for the removal: for an auto-removed container the
	// slow parts (the writable layer's unmount and deletion, its
	// directories) run after the removal is announced, since nothing can
	// name them once the record is gone. A daemon that stops first finishes
	// them at its next start (sweepSnapshots, container.NewStore).
	var later []func() error
	if c.HostConfig.AutoRemove {
		id := c.ID
		later = append(later, func() error { return d.snaps.Remove(id) })
	} else if err := d.snaps.Remove(c.ID); err != nil {
		errs = append(errs, fmt.Errorf("removing snapshot: %w", err))
	}
	d.execs.removeContainer(c.ID)
	// An exit already started the teardown in the background; otherwise
	// (never started, or the daemon restarted) do it here.
	l.mu.Lock()
	pending := l.netDone != nil
	l.mu.Unlock()
	if !pending {
		d.teardownNetwork(c)
	}
	d.unmountShm(c)
	if volumes {
		if _, err := d.volumes.RemoveAnonymous(c.ID); err != nil {
			errs = append(errs, fmt.Errorf("removing anonymous volumes: %w", err))
		}
	}
	if _, err := d.volumes.ReleaseAll(c.ID); err != nil {
		errs = append(errs, fmt.Errorf("releasing volumes: %w", err))
	}
	if c.HostConfig.AutoRemove {
		later = append(later, d.ctrs.Discard(c)) // moved aside at once
	} else if err := d.ctrs.Delete(c); err != nil {
		errs = append(errs, err)
	}
	if len(later) > 0 {
		d.bg.Add(1)
		go func(id string) {
			defer d.bg.Done()
			for _, f := range later {
				if err := f(); err != nil {
					d.log.Warn("cleaning up after an auto-removed container", "id", id, "err", err)
				}
			}
		}(c.ID)
	}
	c.State.Status = "removed"
	l.notifyRemoved()
	d.forget(c.ID)
	d.containerEvent(c, "destroy", map[string]string{"name": c.Name})
	d.log.Debug("removed container", "id", c.ShortID(), "sinceExit", time.Since(c.State.FinishedAt))
	return errors.Join(errs...)
}

// RenameContainer gives the container a new name.
func (d *Daemon) RenameContainer(ref, name string) error {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	if err := container.ValidateName(name); err != nil {
		return err
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	old := c.Name
	if err := d.ctrs.Rename(c, strings.TrimPrefix(name, "/")); err != nil {
		return err
	}
	if err := c.Save(); err != nil {
		return err
	}
	d.containerEvent(c, "rename", map[string]string{"oldName": "/" + old})
	return nil
}

// Container returns the record for ref.
func (d *Daemon) Container(ref string) (*container.Container, error) { return d.ctrs.Get(ref) }

// Containers returns every record.
func (d *Daemon) Containers() []*container.Container { return d.ctrs.List() }

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// parseLogOpts reads max-size and max-file, falling back to the defaults.
func parseLogOpts(o map[string]string, defSize int64, defFiles int) (int64, int, error) {
	size, files := defSize, defFiles
	if v, ok := o["max-size"]; ok {
		n, err := units.RAMInBytes(v)
		if err != nil || n <= 0 {
			return 0, 0, fmt.Errorf("invalid log option max-size=%q (want a size such as 10m): %w", v, errdefs.ErrInvalidArgument)
		}
		size = n
	}
	if v, ok := o["max-file"]; ok {
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err != nil || n < 1 {
			return 0, 0, fmt.Errorf("invalid log option max-file=%q (want a whole number ≥ 1): %w", v, errdefs.ErrInvalidArgument)
		}
		files = n
	}
	for k := range o {
		if k != "max-size" && k != "max-file" {
			return 0, 0, fmt.Errorf("unknown log option %q (supported: max-size, max-file): %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return size, files, nil
}

func (d *Daemon) defaultLogSize() int64 {
	n, _, _ := parseLogOpts(map[string]string{"max-size": d.cfg.LogOpts["max-size"]}, 0, 0)
	return n
}

func (d *Daemon) defaultLogFiles() int {
	_, n, _ := parseLogOpts(map[string]string{"max-file": d.cfg.LogOpts["max-file"]}, 0, 0)
	return n
}

// sweepSnapshots removes the container snapshots no container owns: the
// writable layers of auto-removed containers whose background removal a
// stopping daemon did not finish, and build steps of a daemon that died.
func (d *Daemon) sweepSnapshots() {
	ids, err := d.snaps.List()
	if err != nil {
		return
	}
	for _, id := range ids {
		if c, err := d.ctrs.Get(id); err == nil && c.ID == id {
			continue
		}
		if err := d.snaps.Remove(id); err != nil {
			d.log.Warn("removing an orphaned snapshot", "id", id, "err", err)
		} else {
			d.log.Info("removed an orphaned snapshot", "id", id)
		}
	}
}
