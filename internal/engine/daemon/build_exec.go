package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth/berth/internal/engine/build"
	"github.com/berth/berth/internal/engine/network"
	"github.com/berth/berth/internal/engine/runtime"
	"github.com/berth/berth/internal/errdefs"
)

// buildExecutor runs the containers of RUN steps with the daemon's own
// machinery: the same hardened spec as `run` (namespaces, capabilities,
// seccomp, masked paths, cgroups), a shim, the default runtime and the
// default bridge network (as Docker's builder). They are not containers
// of the store, so `ps -a` never shows them; everything they use is gone
// when Run returns.
type buildExecutor struct{ d *Daemon }

var _ build.Executor = (*buildExecutor)(nil)

// buildBundleDir is where RUN containers' bundles live: short, since the
// shim's socket path must fit in 108 bytes.
func (d *Daemon) buildBundleDir(id string) string {
	return filepath.Join(d.cfg.ExecRoot, "build", strings.TrimPrefix(id, "build-")[:16])
}

func (e *buildExecutor) Run(ctx context.Context, p *build.Process) (code int, err error) {
	d := e.d
	rt, err := d.runtimeFor("")
	if err != nil {
		return 0, err
	}
	bundle := d.buildBundleDir(p.ID)
	if err := os.MkdirAll(bundle, 0o710); err != nil {
		return 0, err
	}
	started := false
	defer func() {
		if started {
			waitShimGone(bundle)
		}
		os.RemoveAll(bundle)
	}()
	// What a daemon that dies mid-step needs to clean up (cleanupBuilds).
	if err := os.WriteFile(filepath.Join(bundle, "id"), []byte(p.ID+"\n"+rt.Name+"\n"), 0o600); err != nil {
		return 0, err
	}

	var mounts []specs.Mount
	netns := ""
	switch p.Network {
	case "host":
		netns = "host"
		mounts = append(mounts, roBind("/etc/resolv.conf", "/etc/resolv.conf"), roBind("/etc/hosts", "/etc/hosts"))
	case "none":
	default:
		path, err := d.net.CreateNetNS(p.ID)
		if err != nil {
			return 0, fmt.Errorf("network of the RUN container: %w", err)
		}
		defer func() {
			if err := d.net.DisconnectAll(p.ID); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
				d.log.Warn("disconnecting a RUN container", "id", p.ID, "err", err)
			}
			if err := d.net.DeleteNetNS(p.ID); err != nil {
				d.log.Warn("deleting a RUN container's network namespace", "id", p.ID, "err", err)
			}
		}()
		ep, err := d.net.Connect(p.ID, path, network.DefaultNetwork, network.EndpointOpts{Hostname: p.Hostname})
		if err != nil {
			return 0, fmt.Errorf("network of the RUN container: %w", err)
		}
		netns = path
		hosts := filepath.Join(bundle, "hosts")
		if err := network.WriteHosts(hosts, []network.HostsEntry{{IP: ep.IP, Names: []string{p.Hostname}}}); err != nil {
			return 0, err
		}
		resolv := filepath.Join(bundle, "resolv.conf")
		if err := network.WriteResolvConf(resolv, []string{ep.DNS}, nil, nil); err != nil {
			return 0, err
		}
		hostname := filepath.Join(bundle, "hostname")
		if err := os.WriteFile(hostname, []byte(p.Hostname+"\n"), 0o644); err != nil {
			return 0, err
		}
		mounts = append(mounts, rwBind(hosts, "/etc/hosts"), rwBind(resolv, "/etc/resolv.conf"), rwBind(hostname, "/etc/hostname"))
	}
	for _, m := range p.Mounts {
		mounts = append(mounts, specs.Mount{Source: m.Source, Destination: m.Destination, Type: "bind",
			Options: []string{"rbind", "ro", "nosuid", "nodev"}})
	}

	uid, gid, groups, err := runtime.ResolveUser(p.Rootfs, p.User)
	if err != nil {
		return 0, fmt.Errorf("unable to find user %s: %w", p.User, err)
	}
	if err := runtime.LookPath(p.Rootfs, p.Cwd, envValue(p.Env, "PATH"), p.Args[0]); err != nil {
		return 0, err
	}
	spec, err := runtime.Generate(runtime.SpecOpts{
		ID: p.ID, Rootfs: p.Rootfs, Args: p.Args, Env: p.Env, Cwd: p.Cwd,
		UID: uid, GID: gid, AdditionalGids: groups, Hostname: p.Hostname,
		CgroupsPath: d.cgroupsPath(p.ID), CgroupV2: d.cgroupV2,
		NoNewPrivileges: true, NetNSPath: netns, Mounts: mounts,
		Annotations: map[string]string{"io.berth.build": "RUN"},
	})
	if err != nil {
		return 0, err
	}
	d.seccomp.Annotate(rt, spec)
	dests := make([]string, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		dests = append(dests, m.Destination)
	}
	cleanStubs, err := build.MountStubs(p.Rootfs, dests)
	if err != nil {
		return 0, err
	}
	defer cleanStubs()
	if err := writeJSON(filepath.Join(bundle, "config.json"), spec); err != nil {
		return 0, err
	}
	t, err := d.startTask(taskOpts{id: p.ID, bundle: bundle, runtime: rt, cgroupsPath: d.cgroupsPath(p.ID)})
	if err != nil {
		return 0, err
	}
	started = true
	att, err := t.h.Attach(nil, p.Output, p.Output)
	if err != nil {
		t.h.Shutdown()
		return 0, err
	}
	defer att.Close()
	if _, err := t.start(); err != nil {
		t.h.Shutdown()
		return 0, fmt.Errorf("starting the RUN container: %w", err)
	}
	d.seccomp.Learn(rt, p.ID, spec)
	st, err := t.wait(ctx)
	if err != nil {
		// The client went away or the build was cancelled: kill it all.
		kctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if kerr := rt.Kill(kctx, p.ID, syscall.SIGKILL, true); kerr != nil && !errdefs.Is(kerr, errdefs.ErrNotFound) {
			d.log.Warn("killing a cancelled RUN container", "id", p.ID, "err", kerr)
		}
		if _, werr := t.wait(kctx); werr != nil {
			d.log.Warn("waiting for a killed RUN container", "id", p.ID, "err", werr)
		}
		att.Wait()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, err
	}
	att.Wait()
	return st.code, nil
}

// cleanupBuilds kills the RUN containers an earlier daemon left running
// (it died mid-build) and removes their bundles; their snapshots go when
// the builder opens, their network namespaces when networks recover.
func (d *Daemon) cleanupBuilds() {
	dir := filepath.Join(d.cfg.ExecRoot, "build")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		bundle := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(bundle, "id"))
		if err == nil {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) == 2 {
				if rt, err := d.runtimeFor(lines[1]); err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := rt.Delete(ctx, lines[0], true)
					// The shim may delete the state itself as the process
					// dies: only state still there is a failure.
					if _, serr := os.Stat(filepath.Join(rt.Root, lines[0])); err != nil && serr == nil {
						d.log.Warn("removing a RUN container an interrupted build left", "id", lines[0], "err", err)
					}
					cancel()
				}
				waitShimGone(bundle)
			}
		}
		if err := os.RemoveAll(bundle); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("removing a build bundle", "dir", bundle, "err", err)
		}
	}
}
