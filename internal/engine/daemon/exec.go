package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/runtime"
	"github.com/berth/berth/internal/errdefs"
)

// execRecord is one exec instance. Exec records live in memory only, as in
// Docker; they go away with their container.
type execRecord struct {
	mu          sync.Mutex
	ID          string
	ContainerID string
	Config      api.ExecConfig
	Running     bool
	ExitCode    *int
	Pid         int
	task        *task
	done        chan struct{}
	started     bool
}

type execStore struct {
	mu sync.Mutex
	m  map[string]*execRecord
}

func newExecStore() *execStore { return &execStore{m: map[string]*execRecord{}} }

func (s *execStore) get(id string) (*execRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[id]; ok {
		return e, nil
	}
	return nil, fmt.Errorf("No such exec instance: %s: %w", id, errdefs.ErrNotFound)
}

func (s *execStore) removeContainer(cid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.m {
		if e.ContainerID == cid {
			delete(s.m, id)
		}
	}
}

func (s *execStore) forContainer(cid string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, e := range s.m {
		if e.ContainerID == cid {
			ids = append(ids, id)
		}
	}
	return ids
}

// CreateExec registers a command to run in a running container.
func (d *Daemon) CreateExec(ref string, cfg api.ExecConfig) (string, error) {
	c, err := d.ctrs.Get(ref)
	if err != nil {
		return "", err
	}
	c.Mu.Lock()
	running, paused := c.State.Running, c.State.Paused
	c.Mu.Unlock()
	if !running {
		return "", fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrConflict)
	}
	if paused {
		return "", fmt.Errorf("container %s is paused, unpause the container before exec: %w", c.ID, errdefs.ErrConflict)
	}
	if len(cfg.Cmd) == 0 {
		return "", fmt.Errorf("no exec command specified: %w", errdefs.ErrInvalidArgument)
	}
	var b [32]byte
	rand.Read(b[:])
	e := &execRecord{ID: hex.EncodeToString(b[:]), ContainerID: c.ID, Config: cfg, done: make(chan struct{})}
	d.execs.mu.Lock()
	d.execs.m[e.ID] = e
	d.execs.mu.Unlock()
	d.containerEvent(c, "exec_create: "+strings.Join(cfg.Cmd, " "), map[string]string{"name": c.Name, "execID": e.ID})
	return e.ID, nil
}

// StartExec starts an exec instance. attach, if not nil, is called with
// the task before the process runs, so no output is lost.
func (d *Daemon) StartExec(id string, attach func(*task)) (*execRecord, error) {
	e, err := d.execs.get(id)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return nil, fmt.Errorf("exec %s has already been started: %w", id, errdefs.ErrConflict)
	}
	c, err := d.ctrs.Get(e.ContainerID)
	if err != nil {
		return nil, err
	}
	c.Mu.Lock()
	running := c.State.Running
	c.Mu.Unlock()
	if !running {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrConflict)
	}
	proc, err := d.execProcess(c.BundleDir(), e.Config)
	if err != nil {
		if errors.Is(err, errdefs.ErrCommandNotFound) || errors.Is(err, errdefs.ErrCommandNotExecutable) {
			// The exec ran and failed, as in Docker: inspect shows 126/127.
			code := startErrorCode(err)
			e.ExitCode = &code
			e.started = true
			close(e.done)
		}
		return nil, err
	}
	short := e.ID[:12]
	pf := filepath.Join(c.BundleDir(), "exec-"+short+".json")
	if err := writeJSON(pf, proc); err != nil {
		return nil, err
	}
	rt, err := d.runtimeFor(c.Runtime)
	if err != nil {
		return nil, err
	}
	t, err := d.startTask(taskOpts{id: c.ID, bundle: c.BundleDir(), runtime: rt, cgroupsPath: c.CgroupsPath, execID: short, processFile: pf,
		tty: e.Config.Tty, stdin: e.Config.AttachStdin, stdinOnce: true})
	if err != nil {
		return nil, err
	}
	if attach != nil {
		attach(t)
	}
	pid, err := t.start()
	if err != nil {
		t.close()
		os.Remove(pf)
		code := startErrorCode(err)
		e.ExitCode = &code
		e.started = true
		close(e.done)
		return nil, fmt.Errorf("exec in %s: %w", c.ShortID(), err)
	}
	e.started, e.Running, e.Pid, e.task = true, true, pid, t
	d.containerEvent(c, "exec_start: "+strings.Join(e.Config.Cmd, " "), map[string]string{"name": c.Name, "execID": e.ID})
	go func() {
		st, err := t.wait(context.Background())
		t.close()
		os.Remove(pf)
		e.mu.Lock()
		e.Running = false
		code := st.code
		if err != nil {
			code = 126
		}
		e.ExitCode = &code
		e.mu.Unlock()
		close(e.done)
		d.containerEvent(c, "exec_die", map[string]string{"name": c.Name, "execID": e.ID, "exitCode": fmt.Sprint(code)})
	}()
	return e, nil
}

// execProcess derives the exec's OCI process from the container's spec.
func (d *Daemon) execProcess(bundle string, cfg api.ExecConfig) (*specs.Process, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("reading container spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, err
	}
	p := *spec.Process
	p.Args = cfg.Cmd
	p.Terminal = cfg.Tty
	p.ConsoleSize = nil
	if cs := cfg.ConsoleSize; cfg.Tty && cs != nil && cs[0] > 0 && cs[1] > 0 {
		// The terminal's size from the start ([height, width], API 1.42+):
		// a resize after the start races with the command reading it.
		p.ConsoleSize = &specs.Box{Height: cs[0], Width: cs[1]}
	}
	env := append([]string{}, p.Env...)
	for _, kv := range cfg.Env {
		k, _, _ := strings.Cut(kv, "=")
		found := false
		for i, o := range env {
			if strings.HasPrefix(o, k+"=") {
				env[i], found = kv, true
			}
		}
		if !found {
			env = append(env, kv)
		}
	}
	p.Env = env
	if cfg.WorkingDir != "" {
		p.Cwd = cfg.WorkingDir
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	if cfg.User != "" {
		uid, gid, groups, err := runtime.ResolveUser(rootfs, cfg.User)
		if err != nil {
			return nil, fmt.Errorf("unable to find user %s: %w", cfg.User, err)
		}
		p.User = specs.User{UID: uid, GID: gid, AdditionalGids: groups}
	}
	if err := runtime.LookPath(rootfs, p.Cwd, envValue(p.Env, "PATH"), p.Args[0]); err != nil {
		return nil, fmt.Errorf("exec: %q: %w", p.Args[0], err)
	}
	if cfg.Privileged && p.Capabilities != nil {
		// An exec cannot gain more than the container's bounding set.
		b := p.Capabilities.Bounding
		p.Capabilities = &specs.LinuxCapabilities{Bounding: b, Effective: b, Permitted: b}
	}
	return &p, nil
}

// ExecInspect describes an exec instance.
func (d *Daemon) ExecInspect(id string) (api.ExecInspect, error) {
	e, err := d.execs.get(id)
	if err != nil {
		return api.ExecInspect{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := api.ExecInspect{ID: e.ID, Running: e.Running, ExitCode: e.ExitCode, ContainerID: e.ContainerID,
		OpenStdin: e.Config.AttachStdin, OpenStdout: e.Config.AttachStdout, OpenStderr: e.Config.AttachStderr,
		Pid: e.Pid, CanRemove: !e.Running && e.started,
		ProcessConfig: api.ProcessConfig{Privileged: e.Config.Privileged, User: e.Config.User, Tty: e.Config.Tty}}
	if len(e.Config.Cmd) > 0 {
		out.ProcessConfig.Entrypoint = e.Config.Cmd[0]
		out.ProcessConfig.Arguments = e.Config.Cmd[1:]
	}
	return out, nil
}

// ResizeExec resizes an exec's terminal.
func (d *Daemon) ResizeExec(id string, h, w uint) error {
	e, err := d.execs.get(id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	t := e.task
	e.mu.Unlock()
	if t == nil {
		return fmt.Errorf("exec %s is not running: %w", id, errdefs.ErrConflict)
	}
	return t.resize(h, w)
}

// waitExec blocks until the exec ends or ctx is done.
func (e *execRecord) wait(ctx context.Context) (int, error) {
	select {
	case <-e.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ExitCode == nil {
		return 0, nil
	}
	return *e.ExitCode, nil
}
