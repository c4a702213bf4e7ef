package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Runtime is an OCI runtime binary (crun, runc, …) with its own state
// directory. Each berth daemon uses its own Root so two daemons can run side
// by side.
type Runtime struct {
	Name string // e.g. "crun"
	Path string // binary path; "" means Name looked up in $PATH
	Root string // the runtime's --root state directory
}

// State is the runtime's `state` output (OCI runtime spec "state").
type State struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      string            `json:"status"` // creating, created, running, paused, stopped
	Pid         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Binary returns the absolute path of the runtime's binary, or an
// ErrUnavailable error saying how to install it.
func (r *Runtime) Binary() (string, error) {
	p := r.Path
	if p == "" {
		p = r.Name
	}
	abs, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("OCI runtime %q: binary %q not found: install it (apt-get install %s) or set its path in the daemon config: %w",
			r.Name, p, r.Name, errdefs.ErrUnavailable)
	}
	return abs, nil
}

// RuntimeError is a failure of the runtime binary; it carries its stderr.
type RuntimeError struct {
	Runtime string
	Args    []string
	Stderr  string
	Err     error
}

func (e *RuntimeError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s %s: %s", e.Runtime, strings.Join(e.Args, " "), msg)
}

func (e *RuntimeError) Unwrap() error { return e.Err }

func (r *Runtime) run(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := r.Binary()
	if err != nil {
		return nil, err
	}
	full := append([]string{"--root", r.Root}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &RuntimeError{Runtime: r.Name, Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// exists reports whether the runtime has state for id. crun and runc keep
// one directory per container under Root.
func (r *Runtime) exists(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("container id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(filepath.Join(r.Root, id)); err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("container %q in runtime %s: %w", id, r.Name, errdefs.ErrNotFound)
		}
		return err
	}
	return nil
}

// Kill sends sig to the container's init process, or to all its processes.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	if err := r.exists(id); err != nil {
		return err
	}
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	args = append(args, id, strconv.Itoa(int(sig)))
	_, err := r.run(ctx, args...)
	return err
}

// Delete removes the runtime's state (and cgroup) for id; force kills a
// running container first. A missing container is ErrNotFound.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	if err := r.exists(id); err != nil {
		return err
	}
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.run(ctx, append(args, id)...)
	return err
}

// Pause freezes every process of the container.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	if err := r.exists(id); err != nil {
		return err
	}
	_, err := r.run(ctx, "pause", id)
	return err
}

// Resume thaws a paused container.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	if err := r.exists(id); err != nil {
		return err
	}
	_, err := r.run(ctx, "resume", id)
	return err
}

// Update changes the cgroup limits of a running container (the
// runtime's `update --resources`).
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	if err := r.exists(id); err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "berth-update-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	_, err = r.run(ctx, "update", "--resources", f.Name(), id)
	return err
}

// State returns the runtime's view of the container.
func (r *Runtime) State(ctx context.Context, id string) (State, error) {
	var s State
	if err := r.exists(id); err != nil {
		return s, err
	}
	out, err := r.run(ctx, "state", id)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return s, fmt.Errorf("%s state %s: unexpected output %.200q: %w", r.Name, id, out, err)
	}
	return s, nil
}

// Ps returns the host pids of the container's processes.
func (r *Runtime) Ps(ctx context.Context, id string) ([]int, error) {
	if err := r.exists(id); err != nil {
		return nil, err
	}
	out, err := r.run(ctx, "ps", "--format", "json", id)
	if err != nil {
		return nil, err
	}
	var pids []int
	if err := json.Unmarshal(bytes.TrimSpace(out), &pids); err != nil {
		return nil, fmt.Errorf("%s ps %s: unexpected output %.200q: %w", r.Name, id, out, err)
	}
	return pids, nil
}

// IsRuntimeError reports whether err came from the runtime binary itself.
func IsRuntimeError(err error) bool {
	var re *RuntimeError
	return errors.As(err, &re)
}
