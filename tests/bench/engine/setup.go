package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth/berth/internal/engine/cgroups"
)

// cleanups runs registered undo steps in reverse order, once.
type cleanups struct {
	mu    sync.Mutex
	steps []cleanupStep
	notes []string // problems found while cleaning up, for the report
}

type cleanupStep struct {
	name string
	fn   func() error
}

func (c *cleanups) add(name string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, cleanupStep{name, fn})
}

func (c *cleanups) note(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

// run runs and forgets every step, newest first.
func (c *cleanups) run() {
	c.mu.Lock()
	steps := c.steps
	c.steps = nil
	c.mu.Unlock()
	for i := len(steps) - 1; i >= 0; i-- {
		logf("cleanup: %s", steps[i].name)
		if err := steps[i].fn(); err != nil {
			c.note("cleanup %s: %v", steps[i].name, err)
			logf("cleanup %s: %v", steps[i].name, err)
		}
	}
}

// setupOCI prepares a bare OCI runtime: its own state root and a bundle that
// runs `true` on the shared rootfs.
func setupOCI(ctx context.Context, work, name, rootfs string, cl *cleanups) *engine {
	e := &engine{Name: name, Kind: ociEngine}
	bin, err := exec.LookPath(name)
	if err != nil {
		e.Err = fmt.Errorf("%s not installed: %w", name, err)
		return e
	}
	e.bin = bin
	e.rootfs = rootfs
	e.dir = filepath.Join(work, name)
	e.stateRoot = filepath.Join(work, name, "state")
	e.bundles = filepath.Join(work, name, "bundles")
	e.trueB = filepath.Join(e.bundles, "true")
	if v, err := output(ctx, nil, bin, "--version"); err == nil {
		e.Version = firstLine(v)
	}
	if err := os.MkdirAll(e.stateRoot, 0o700); err != nil {
		e.Err = err
		return e
	}
	if err := writeBundle(e.trueB, rootfs, []string{"true"}, name); err != nil {
		e.Err = err
		return e
	}
	cl.add(name+" containers", func() error {
		// Everything this runtime still knows about under our state root.
		out, _ := output(context.Background(), nil, bin, "--root", e.stateRoot, "list", "-q")
		var ids []string
		for _, id := range strings.Fields(out) {
			ids = append(ids, id)
		}
		ids = append(ids, e.running...)
		return e.remove(context.Background(), dedupe(ids))
	})
	return e
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// loadSpecTemplate reads the default spec of `crun spec` (or `runc spec`).
func loadSpecTemplate(ctx context.Context, work string) error {
	dir := filepath.Join(work, "spec")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for _, rt := range []string{"crun", "runc"} {
		if _, err := exec.LookPath(rt); err != nil {
			errs = append(errs, err)
			continue
		}
		c := command(ctx, nil, rt, "spec")
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			errs = append(errs, cmdError(c.Args, err, string(out)))
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		specTemplate = b
		return nil
	}
	return fmt.Errorf("no OCI runtime to write a default spec: %w", errors.Join(errs...))
}

// The berth daemon's own default network: a bridge and subnet no other
// daemon on the host uses, removed when the daemon stops (--cleanup).
const (
	benchBridge       = "bbench0"
	benchBridgeSubnet = "10.251.0.0/24"
)

// setupBerth starts a berth daemon with its own root, exec root, socket and
// default bridge under work (started with --cleanup, so that stopping it
// removes its bridges and nftables table), waits for it and loads the
// busybox archive. Its `run` gets --network none, like docker's and
// podman's, so that the engine figures compare like with like; the
// networking step measures the bridge.
func setupBerth(ctx context.Context, work, binDir, archive string, cl *cleanups) (*engine, *daemonProc) {
	e := &engine{Name: "berth", Kind: cliEngine, runArgs: []string{"--network", "none"}, monitor: "berth-shim"}
	bin := filepath.Join(binDir, "berth")
	if _, err := os.Stat(bin); err != nil {
		e.Err = fmt.Errorf("berth binary: %w (run make build)", err)
		return e, nil
	}
	dir := filepath.Join(work, "berth")
	e.dir = dir
	root, execRoot, sock := filepath.Join(dir, "root"), filepath.Join(dir, "exec"), filepath.Join(dir, "berth.sock")
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.Err = err
		return e, nil
	}
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		e.Err = err
		return e, nil
	}
	e.prefix = []string{bin, "-H", "unix://" + sock}
	if v, err := output(ctx, nil, bin, "--version"); err == nil {
		e.Version = firstLine(v)
	}
	d, err := startDaemon("berth daemon", nil, filepath.Join(dir, "daemon.log"),
		bin, "daemon", "--root", root, "--exec-root", execRoot, "--socket", sock, "--config", cfg,
		"--bridge", benchBridge, "--bridge-subnet", benchBridgeSubnet, "--cleanup")
	if err != nil {
		e.Err = err
		return e, nil
	}
	cl.add("berth daemon", func() error {
		var errs []error
		if out, err := output(context.Background(), nil, e.cli("ps", "-aq")...); err == nil {
			if ids := strings.Fields(out); len(ids) > 0 {
				errs = append(errs, e.remove(context.Background(), ids))
			}
		} else if !d.exited() {
			errs = append(errs, err)
		}
		errs = append(errs, d.stop(15*time.Second))
		return errors.Join(errs...)
	})
	if err := waitFor(20*time.Second, d, func() error {
		_, err := output(ctx, nil, e.cli("ps", "-q")...)
		return err
	}); err != nil {
		e.Err = fmt.Errorf("berth daemon: %w (log: %s)", err, tail(filepath.Join(dir, "daemon.log")))
		return e, d
	}
	if _, err := output(ctx, nil, e.cli("load", "-i", archive)...); err != nil {
		e.Err = err
	}
	return e, d
}

// setupBerthSpec prepares the row "crun on berth's spec": crun running
// the config.json berth's daemon wrote for `run --network none busybox
// true` (its capabilities, seccomp profile with the compiled filter
// cached, masked paths, cgroup, namespaces), on the bare runtimes' rootfs.
// Beside bare crun on `crun spec`'s minimal spec it shows what the
// hardening costs the runtime itself, and beside berth what berth adds.
func setupBerthSpec(ctx context.Context, work, rootfs string, berth, crun *engine, cl *cleanups) *engine {
	e := &engine{Name: "crun-berth-spec", Kind: ociEngine, runRmOnly: true, bin: crun.bin, Version: crun.Version, rootfs: rootfs}
	e.dir = filepath.Join(work, e.Name)
	e.stateRoot = filepath.Join(e.dir, "state")
	e.bundles = filepath.Join(e.dir, "bundles")
	e.trueB = filepath.Join(e.bundles, "true")
	// The first container teaches berth the compiled seccomp filter
	// (internal/engine/runtime's SeccompCache); the spec of the second
	// carries it, as every later one does.
	if _, err := output(ctx, nil, berth.cli("run", "--rm", "--network", "none", "busybox", "true")...); err != nil {
		e.Err = fmt.Errorf("berth run for its spec: %w", err)
		return e
	}
	var out strings.Builder
	if _, err := timed(ctx, nil, &out, berth.cli("create", "--network", "none", "busybox", "true")...); err != nil {
		e.Err = fmt.Errorf("berth create for its spec: %w", err)
		return e
	}
	id := lastLine(out.String())
	defer output(context.Background(), nil, berth.cli("rm", "-f", id)...)
	if _, err := output(ctx, nil, berth.cli("start", "-a", id)...); err != nil {
		e.Err = fmt.Errorf("berth start for its spec: %w", err)
		return e
	}
	if len(id) < 12 {
		e.Err = fmt.Errorf("berth create printed %q, not a container id", id)
		return e
	}
	b, err := os.ReadFile(filepath.Join(berth.dir, "exec", "c", id[:12], "config.json"))
	if err != nil {
		e.Err = fmt.Errorf("berth's spec: %w", err)
		return e
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		e.Err = fmt.Errorf("berth's spec: %w", err)
		return e
	}
	if a, _ := m["annotations"].(map[string]any); a["run.oci.seccomp_bpf_data"] == nil {
		e.Err = fmt.Errorf("berth's spec carries no compiled seccomp filter (run.oci.seccomp_bpf_data); its row would time libseccomp, not what berth runs")
		return e
	}
	m["root"] = map[string]any{"path": rootfs, "readonly": true}
	if linux, ok := m["linux"].(map[string]any); ok {
		linux["cgroupsPath"] = "/bbench-berth-spec/true"
	}
	if b, err = json.MarshalIndent(m, "", "\t"); err == nil {
		if err = os.MkdirAll(e.trueB, 0o755); err == nil {
			err = os.MkdirAll(e.stateRoot, 0o700)
		}
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(e.trueB, "config.json"), b, 0o644)
	}
	if err != nil {
		e.Err = err
		return e
	}
	cl.add(e.Name+" containers", func() error {
		out, _ := output(context.Background(), nil, e.bin, "--root", e.stateRoot, "list", "-q")
		err := e.remove(context.Background(), strings.Fields(out))
		cgroups.RemoveEverywhere("/bbench-berth-spec") // crun removes only the container's own
		return err
	})
	return e
}

// setupDocker starts dockerd (which starts its own containerd) with its own
// data root, exec root, pidfile and socket under work/name, waits for it
// and loads the busybox archive. With netns empty it runs in the host's
// network namespace with no bridge and no iptables, and its `run` gets
// --network none; otherwise it runs inside that named network namespace
// (`ip netns`) with docker's default bridge (docker0, --bip dockerBIP) and
// iptables rules, which all go away with the namespace.
func setupDocker(ctx context.Context, work, archive, name, netns string, cl *cleanups) (*engine, *daemonProc) {
	e := &engine{Name: "docker", Kind: cliEngine, monitor: "containerd-shim"}
	if netns == "" {
		e.runArgs = []string{"--network", "none"}
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		e.Err = fmt.Errorf("dockerd not installed: %w", err)
		return e, nil
	}
	// The CLI of the same package as dockerd, not another one on PATH.
	cli := filepath.Join(filepath.Dir(dockerd), "..", "bin", "docker")
	if _, err := os.Stat(cli); err != nil {
		if cli, err = exec.LookPath("docker"); err != nil {
			e.Err = fmt.Errorf("docker CLI not installed: %w", err)
			return e, nil
		}
	}
	cli = filepath.Clean(cli)
	dir := filepath.Join(work, name)
	e.dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.Err = err
		return e, nil
	}
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		e.Err = err
		return e, nil
	}
	sock := filepath.Join(dir, "docker.sock")
	e.prefix = []string{cli, "-H", "unix://" + sock}
	argv := []string{dockerd, "--config-file", cfg, "--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "docker.pid"),
		"-H", "unix://" + sock}
	if netns == "" {
		argv = append(argv, "--bridge=none", "--iptables=false", "--ip6tables=false",
			"--ip-forward=false", "--ip-masq=false")
	} else {
		argv = append(append([]string{"nsenter", "--net=" + netnsPath(netns)}, argv...), "--bip", dockerBIP)
	}
	d, err := startDaemon(name+"d", nil, filepath.Join(dir, "dockerd.log"), argv...)
	if err != nil {
		e.Err = err
		return e, nil
	}
	cl.add(name+"d", func() error {
		var errs []error
		if out, err := output(context.Background(), nil, e.cli("ps", "-aq")...); err == nil {
			if ids := strings.Fields(out); len(ids) > 0 {
				errs = append(errs, e.remove(context.Background(), ids))
			}
		}
		errs = append(errs, d.stop(30*time.Second))
		return errors.Join(errs...)
	})
	if err := waitFor(60*time.Second, d, func() error {
		_, err := output(ctx, nil, e.cli("version")...)
		return err
	}); err != nil {
		e.Err = fmt.Errorf("dockerd: %w (log: %s)", err, tail(filepath.Join(dir, "dockerd.log")))
		return e, d
	}
	if v, err := output(ctx, nil, e.cli("version", "--format", "{{.Server.Version}}")...); err == nil {
		e.Version = "docker " + strings.TrimSpace(v)
	}
	if v, err := output(ctx, nil, "containerd", "--version"); err == nil {
		e.Version += ", " + firstLine(v)
	}
	if _, err := output(ctx, nil, e.cli("load", "-i", archive)...); err != nil {
		e.Err = err
	}
	return e, d
}

// setupPodman gives podman its own storage root, run root, tmpdir and
// containers.conf under work (cgroupfs, file events, ulimits capped at what
// root can grant here) and loads the busybox archive.
func setupPodman(ctx context.Context, work, archive string, cl *cleanups) *engine {
	e := &engine{Name: "podman", Kind: cliEngine, runArgs: []string{"--network", "none"},
		rmArgs: []string{"-t", "0"}, monitor: "conmon"}
	bin, err := exec.LookPath("podman")
	if err != nil {
		e.Err = fmt.Errorf("podman not installed: %w", err)
		return e
	}
	dir := filepath.Join(work, "podman")
	e.dir = dir
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		e.Err = err
		return e
	}
	var nofile, nproc syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	syscall.Getrlimit(rlimitNproc, &nproc)
	np := min(nproc.Max, hostNprocCap)
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
`, nofile.Max, nofile.Max, np, np, filepath.Join(dir, "events.log"))
	confPath := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		e.Err = err
		return e
	}
	e.env = []string{"CONTAINERS_CONF=" + confPath}
	e.prefix = []string{bin, "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--cgroup-manager=cgroupfs", "--events-backend=file"}
	if v, err := output(ctx, nil, bin, "--version"); err == nil {
		e.Version = firstLine(v)
	}
	cl.add("podman containers and storage", func() error {
		bg := context.Background()
		_, err1 := output(bg, e.env, e.cli("rm", "-a", "-f", "-t", "0")...)
		_, err2 := output(bg, e.env, e.cli("system", "reset", "-f")...)
		return errors.Join(err1, err2)
	})
	if _, err := output(ctx, e.env, e.cli("load", "-i", archive)...); err != nil {
		e.Err = err
	}
	return e
}

// rlimitNproc is RLIMIT_NPROC, which package syscall does not export.
const rlimitNproc = 6

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// sweep kills any process still mentioning work in its command line (a
// leftover shim, containerd or daemon) and lazily unmounts everything under
// work. What it finds is noted, since a clean engine leaves nothing.
func sweep(work string, cl *cleanups) {
	self := map[int]bool{os.Getpid(): true, os.Getppid(): true}
	for _, pid := range pidsMentioning(work) {
		if self[pid] {
			continue
		}
		st, _ := readStat(pid)
		cl.note("leftover process %d (%s) still running after its engine's cleanup; killed", pid, st.Comm)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(200 * time.Millisecond)
	for _, mp := range mountsUnder(work) {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			cl.note("unmount %s: %v", mp, err)
		} else {
			cl.note("leftover mount %s after its engine's cleanup; unmounted", mp)
		}
	}
}
