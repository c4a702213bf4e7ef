package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// kind tells how an engine is driven.
type kind int

const (
	cliEngine kind = iota // a Docker-like CLI: berth, docker, podman
	ociEngine             // a bare OCI runtime on a hand-made bundle: crun, runc
)

// engine is one contender. Setup fills it in; Err is set when the engine
// could not be set up, and every later figure for it is then skipped.
type engine struct {
	Name    string
	Kind    kind
	Version string
	Err     error
	dir     string // the engine's part of the work directory

	// cliEngine
	prefix  []string // CLI and its global flags
	env     []string
	runArgs []string // flags every `run` gets (e.g. --network none)
	rmArgs  []string // flags of `rm -f` besides -f
	monitor string   // expected command name of the per-container monitor

	// ociEngine
	bin       string
	stateRoot string
	bundles   string
	rootfs    string
	trueB     string // bundle whose process is `true`
	// runRmOnly marks a row that only `run --rm` times (crun on berth's
	// own spec: it shows what berth's hardening costs the runtime).
	runRmOnly bool
	seq       int
	running   []string // detached container ids not yet deleted
}

// ok reports whether the engine is usable.
func (e *engine) ok() bool { return e.Err == nil }

func (e *engine) cli(args ...string) []string {
	return append(append([]string{}, e.prefix...), args...)
}

func (e *engine) nextID(prefix string) string {
	e.seq++
	return fmt.Sprintf("bench-%s-%d-%d", prefix, os.Getpid(), e.seq)
}

// runRm runs one `run --rm busybox true` and returns its wall time.
func (e *engine) runRm(ctx context.Context) (time.Duration, error) {
	if e.Kind == ociEngine {
		id := e.nextID("rm")
		return timed(ctx, nil, nil, e.bin, "--root", e.stateRoot, "run", "--bundle", e.trueB, id)
	}
	args := append([]string{"run", "--rm"}, e.runArgs...)
	args = append(args, "busybox", "true")
	return timed(ctx, e.env, nil, e.cli(args...)...)
}

// startDetached starts one detached `sleep 600` container and returns its id
// and the wall time of the start command. For a bare runtime the bundle is
// written before the clock starts.
func (e *engine) startDetached(ctx context.Context) (string, time.Duration, error) {
	if e.Kind == ociEngine {
		id := e.nextID("d")
		b := filepath.Join(e.bundles, id)
		if err := writeBundle(b, e.rootfs, []string{"sleep", "600"}, id); err != nil {
			return "", 0, err
		}
		d, err := timedDetached(ctx, filepath.Join(b, "stderr"), e.bin, "--root", e.stateRoot, "run", "-d", "--bundle", b, id)
		if err != nil {
			return "", d, err
		}
		e.running = append(e.running, id)
		return id, d, nil
	}
	var out strings.Builder
	args := append([]string{"run", "-d"}, e.runArgs...)
	args = append(args, "busybox", "sleep", "600")
	d, err := timed(ctx, e.env, &out, e.cli(args...)...)
	if err != nil {
		return "", d, err
	}
	id := lastLine(out.String())
	if id == "" {
		return "", d, fmt.Errorf("%s run -d printed no container id", e.Name)
	}
	return id, d, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// remove force-removes the given containers.
func (e *engine) remove(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if e.Kind == ociEngine {
		var first error
		for _, id := range ids {
			if _, err := output(ctx, nil, e.bin, "--root", e.stateRoot, "delete", "-f", id); err != nil && first == nil {
				first = err
			}
			os.RemoveAll(filepath.Join(e.bundles, id))
		}
		e.running = without(e.running, ids)
		return first
	}
	args := append(append([]string{"rm", "-f"}, e.rmArgs...), ids...)
	_, err := output(ctx, e.env, e.cli(args...)...)
	return err
}

func without(xs, drop []string) []string {
	var out []string
	for _, x := range xs {
		found := false
		for _, d := range drop {
			found = found || x == d
		}
		if !found {
			out = append(out, x)
		}
	}
	return out
}

// containerPID asks the engine for the host pid of a container's process.
func (e *engine) containerPID(ctx context.Context, id string) (int, error) {
	out, err := output(ctx, e.env, e.cli("inspect", "-f", "{{.State.Pid}}", id)...)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s inspect %s: State.Pid %q, want a positive pid", e.Name, id, strings.TrimSpace(out))
	}
	return pid, nil
}

// monitorOf returns the pid and command name of the process watching a
// container: the parent of the container's first process.
func (e *engine) monitorOf(ctx context.Context, id string) (int, string, error) {
	pid, err := e.containerPID(ctx, id)
	if err != nil {
		return 0, "", err
	}
	st, err := readStat(pid)
	if err != nil {
		return 0, "", fmt.Errorf("%s container %s pid %d: %w", e.Name, id, pid, err)
	}
	pst, err := readStat(st.PPID)
	if err != nil {
		return 0, "", fmt.Errorf("%s container %s parent pid %d: %w", e.Name, id, st.PPID, err)
	}
	return st.PPID, pst.Comm, nil
}

// printLines runs a container that prints 1..n with seq, waits for it to
// exit and checks that `logs` returns all n lines. It returns the id.
func (e *engine) printLines(ctx context.Context, n int) (string, error) {
	args := append([]string{"run", "-d"}, e.runArgs...)
	args = append(args, "busybox", "seq", strconv.Itoa(n))
	out, err := output(ctx, e.env, e.cli(args...)...)
	if err != nil {
		return "", err
	}
	id := lastLine(out)
	if _, err := output(ctx, e.env, e.cli("wait", id)...); err != nil {
		return id, err
	}
	var got int
	for try := 0; try < 10; try++ {
		var lc lineCounter
		if _, err := timed(ctx, e.env, &lc, e.cli("logs", id)...); err != nil {
			return id, err
		}
		if got = lc.lines; got == n {
			return id, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return id, fmt.Errorf("%s logs %s: got %d lines on stdout, want %d", e.Name, id, got, n)
}

// lineCounter counts newlines written to it.
type lineCounter struct{ lines int }

func (l *lineCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			l.lines++
		}
	}
	return len(p), nil
}

var _ io.Writer = (*lineCounter)(nil)

// writeBundle writes an OCI bundle at dir whose config.json is the runtime's
// default spec (from `crun spec`, kept in specTemplate) with the given
// process, no terminal, hostname and the shared read-only rootfs.
func writeBundle(dir, rootfs string, args []string, hostname string) error {
	b, err := patchSpec(specTemplate, rootfs, args, hostname)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}

// specTemplate is the default spec of `crun spec`, read once at setup.
var specTemplate []byte

// patchSpec sets process.args, process.terminal=false, root.path (read-only)
// and hostname in an OCI runtime spec, keeping everything else as it is.
func patchSpec(spec []byte, rootfs string, args []string, hostname string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(spec, &m); err != nil {
		return nil, fmt.Errorf("runtime spec: %w", err)
	}
	proc, ok := m["process"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("runtime spec: no \"process\" object")
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("runtime spec: empty process args")
	}
	proc["terminal"] = false
	proc["args"] = args
	m["root"] = map[string]any{"path": rootfs, "readonly": true}
	if hostname != "" {
		m["hostname"] = hostname
	}
	return json.MarshalIndent(m, "", "\t")
}

// hostNprocCap is the RLIMIT_NPROC podman as root can grant here: podman
// lowers its own limit to 32768 at start, and root lacks CAP_SYS_RESOURCE,
// so a container rlimit above that fails in crun's setrlimit.
const hostNprocCap = 32768

// leaks lists what removed containers left behind: cgroup directories named
// after their ids, and mounts under the engine's directory beyond the
// mountsBefore it had before they were started.
func (e *engine) leaks(ids []string, mountsBefore int) []string {
	var out []string
	for _, id := range ids {
		var found []string
		for _, pat := range []string{"/sys/fs/cgroup/*/*" + id + "*", "/sys/fs/cgroup/*/*/*" + id + "*"} {
			m, _ := filepath.Glob(pat)
			found = append(found, m...)
		}
		if len(found) > 0 {
			out = append(out, fmt.Sprintf("removed container %s left %d cgroup dir(s), e.g. %s", id, len(found), found[0]))
		}
	}
	if n := len(mountsUnder(e.dir)); n > mountsBefore {
		out = append(out, fmt.Sprintf("%d mount(s) under %s after every container was removed, %d before they were started", n, e.dir, mountsBefore))
	}
	return out
}
