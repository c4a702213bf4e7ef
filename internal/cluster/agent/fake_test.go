package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/errdefs"
)

// fakeEngine is an in-memory engine: containers are records whose state
// tests change directly (exit, OOM).
type fakeEngine struct {
	mu        sync.Mutex
	seq       int
	ctrs      map[string]*fakeCtr
	images    map[string]string // ref → user
	pullable  map[string]bool
	pulls     int
	noSandbox bool
	execs     []string
	down      error             // Version's error: the engine not answering
	startFail map[string]string // image → start error
	// sandboxFail, if set, fails sandbox creation with this message.
	sandboxFail    string
	sandboxCreates int
	// onStop, if set, runs in Stop before a running container exits (a
	// slow stop: a PID 1 that ignores SIGTERM).
	onStop func(id string)
}

type fakeCtr struct {
	id, name string
	req      api.CreateRequest
	j        api.ContainerJSON
}

var _ Engine = (*fakeEngine)(nil)

func newFakeEngine() *fakeEngine {
	return &fakeEngine{ctrs: map[string]*fakeCtr{}, images: map[string]string{"busybox:1": "", PauseImage: "", "broken:1": ""}, pullable: map[string]bool{},
		startFail: map[string]string{"broken:1": `exec: "nope": executable file not found in $PATH`}}
}

func (f *fakeEngine) List(_ context.Context, label, value string) ([]api.ContainerSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.ContainerSummary
	for _, c := range f.ctrs {
		v, ok := c.req.Labels[label]
		if !ok || (value != "" && v != value) {
			continue
		}
		st := c.j.State.Status
		out = append(out, api.ContainerSummary{ID: c.id, Names: []string{"/" + c.name}, Labels: c.req.Labels, State: st})
	}
	return out, nil
}

func (f *fakeEngine) Inspect(_ context.Context, id string) (*api.ContainerJSON, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	if c == nil {
		return nil, fmt.Errorf("no container %s: %w", id, errdefs.ErrNotFound)
	}
	j := c.j
	st := *c.j.State
	j.State = &st
	return &j, nil
}

func (f *fakeEngine) Create(_ context.Context, name string, req api.CreateRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.images[req.Image]; !ok {
		return "", fmt.Errorf("No such image: %s: %w", req.Image, errdefs.ErrNotFound)
	}
	if req.Image == PauseImage && f.sandboxFail != "" && !strings.HasPrefix(name, "berth-agent-probe") {
		f.sandboxCreates++
		return "", fmt.Errorf("%s: %w", f.sandboxFail, errdefs.ErrInvalidArgument)
	}
	if f.noSandbox && req.HostConfig != nil && strings.HasPrefix(req.HostConfig.NetworkMode, "container:") {
		return "", fmt.Errorf("not supported: %w", errdefs.ErrNotImplemented)
	}
	for _, c := range f.ctrs {
		if c.name == name {
			return "", fmt.Errorf("name %s in use: %w", name, errdefs.ErrConflict)
		}
	}
	f.seq++
	id := fmt.Sprintf("%064d", f.seq)
	f.ctrs[id] = &fakeCtr{id: id, name: name, req: req, j: api.ContainerJSON{ID: id, Name: "/" + name, Created: time.Now(), Image: "sha256:" + req.Image,
		Config: &api.Config{Labels: req.Labels}, State: &api.State{Status: "created"},
		NetworkSettings: &api.NetworkSettings{IPAddress: fmt.Sprintf("10.0.0.%d", f.seq)}}}
	return id, nil
}

func (f *fakeEngine) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	if c == nil {
		return errdefs.ErrNotFound
	}
	if msg := f.startFail[c.req.Image]; msg != "" {
		c.j.State = &api.State{Status: "created", Error: msg, ExitCode: 127, FinishedAt: time.Now()}
		return fmt.Errorf("%s: %w", msg, errdefs.ErrInvalidArgument)
	}
	c.j.State = &api.State{Status: "running", Running: true, Pid: 100 + f.seq, StartedAt: time.Now()}
	return nil
}

// exit makes a running container exit with code (OOM-killed if oom).
func (f *fakeEngine) exit(id string, code int, oom bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	c.j.State = &api.State{Status: "exited", ExitCode: code, OOMKilled: oom, StartedAt: c.j.State.StartedAt, FinishedAt: time.Now()}
}

func (f *fakeEngine) Stop(_ context.Context, id string, timeout int) error {
	f.mu.Lock()
	c := f.ctrs[id]
	f.mu.Unlock()
	if c == nil {
		return errdefs.ErrNotFound
	}
	if c.j.State.Running {
		if f.onStop != nil {
			f.onStop(id)
		}
		f.exit(id, 143, false)
	}
	return nil
}

func (f *fakeEngine) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, c := range f.ctrs {
		if k == id || c.name == id {
			delete(f.ctrs, k)
		}
	}
	return nil
}

func (f *fakeEngine) Image(_ context.Context, ref string) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.images[ref]
	if !ok {
		return "", "", fmt.Errorf("No such image: %s: %w", ref, errdefs.ErrNotFound)
	}
	return "sha256:" + ref, u, nil
}

func (f *fakeEngine) Pull(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls++
	if !f.pullable[ref] {
		return fmt.Errorf("pull access denied for %s: repository does not exist", ref)
	}
	f.images[ref] = ""
	return nil
}

func (f *fakeEngine) Events(ctx context.Context, fn func(string, map[string]string)) error {
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeEngine) Version(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return "test", f.down
}

func (f *fakeEngine) LogTail(_ context.Context, id string, lines int) ([]byte, error) {
	return []byte("last words\n"), nil
}

func (f *fakeEngine) Exec(_ context.Context, id string, cmd []string) (int, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, strings.Join(cmd, " "))
	if c := f.ctrs[id]; c == nil || !c.j.State.Running {
		return -1, nil, fmt.Errorf("container %s is not running: %w", id, errdefs.ErrConflict)
	}
	if len(cmd) > 0 && cmd[0] == "false" {
		return 1, []byte("failed"), nil
	}
	return 0, nil, nil
}

// byName returns the containers whose name starts with prefix.
func (f *fakeEngine) byName(prefix string) []*fakeCtr {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fakeCtr
	for _, c := range f.ctrs {
		if strings.HasPrefix(c.name, prefix) {
			out = append(out, c)
		}
	}
	return out
}
