package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
	"github.com/berth/berth/internal/errdefs"
)

// Engine is what the agent needs from the local berth engine. The real one
// speaks the engine API over its unix socket; tests use a fake.
type Engine interface {
	// List returns all containers (running or not) carrying label=value
	// (any value when value is "").
	List(ctx context.Context, label, value string) ([]api.ContainerSummary, error)
	Inspect(ctx context.Context, id string) (*api.ContainerJSON, error)
	Create(ctx context.Context, name string, req api.CreateRequest) (string, error)
	Start(ctx context.Context, id string) error
	// Stop sends the stop signal, then SIGKILL after timeout seconds.
	Stop(ctx context.Context, id string, timeout int) error
	Remove(ctx context.Context, id string) error
	// Image returns the ID and configured USER of a local image, or an
	// error wrapping errdefs.ErrNotFound.
	Image(ctx context.Context, ref string) (id, user string, err error)
	// Pull fetches an image; the error carries the engine's message.
	Pull(ctx context.Context, ref string) error
	// Events calls fn for each container event until ctx ends or the
	// stream breaks.
	Events(ctx context.Context, fn func(action string, labels map[string]string)) error
	Version(ctx context.Context) (string, error)
	// Exec runs cmd in a running container and returns its exit code and
	// combined output (for exec probes and hooks). It gives up when ctx
	// ends.
	Exec(ctx context.Context, id string, cmd []string) (int, []byte, error)
	// LogTail returns the last lines of a container's output (stdout and
	// stderr interleaved), at most 64 KiB.
	LogTail(ctx context.Context, id string, lines int) ([]byte, error)
}

// engineClient is the Engine over internal/engine/client.
type engineClient struct{ c *client.Client }

var _ Engine = engineClient{}

// NewEngine connects to the engine at host (unix:///run/berth/berth.sock).
func NewEngine(host string) (Engine, error) {
	c, err := client.New(host)
	if err != nil {
		return nil, fmt.Errorf("--engine: %w", err)
	}
	return engineClient{c}, nil
}

func (e engineClient) List(ctx context.Context, label, value string) ([]api.ContainerSummary, error) {
	sel := label
	if value != "" {
		sel += "=" + value
	}
	return e.c.ContainerList(ctx, client.ListOptions{All: true, Filters: client.Filters{"label": {sel}}})
}

func (e engineClient) Inspect(ctx context.Context, id string) (*api.ContainerJSON, error) {
	return e.c.ContainerInspect(ctx, id)
}

func (e engineClient) Create(ctx context.Context, name string, req api.CreateRequest) (string, error) {
	out, err := e.c.ContainerCreate(ctx, name, req)
	return out.ID, err
}

func (e engineClient) Start(ctx context.Context, id string) error {
	return e.c.ContainerStart(ctx, id)
}

func (e engineClient) Stop(ctx context.Context, id string, timeout int) error {
	t := time.Duration(timeout) * time.Second
	err := e.c.ContainerStop(ctx, id, &t)
	var re *client.ResponseError
	if errors.As(err, &re) && re.Status == http.StatusNotModified {
		return nil
	}
	return err
}

func (e engineClient) Remove(ctx context.Context, id string) error {
	err := e.c.ContainerRemove(ctx, id, client.RemoveOptions{Force: true, Volumes: true})
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	return err
}

func (e engineClient) Image(ctx context.Context, ref string) (string, string, error) {
	out, err := e.c.ImageInspect(ctx, ref)
	if err != nil {
		return "", "", err
	}
	user := ""
	if out.Config != nil {
		user = out.Config.User
	}
	return out.ID, user, nil
}

func (e engineClient) Pull(ctx context.Context, ref string) error {
	return e.c.ImagePull(ctx, ref, "", nil)
}

func (e engineClient) Events(ctx context.Context, fn func(action string, labels map[string]string)) error {
	events, errc := e.c.Events(ctx, client.EventsOptions{Filters: client.Filters{"type": {"container"}}})
	for ev := range events {
		fn(ev.Action, ev.Actor.Attributes)
	}
	if err := <-errc; err != nil {
		return err
	}
	return ctx.Err()
}

func (e engineClient) Version(ctx context.Context) (string, error) {
	var v struct{ Version string }
	if err := e.c.JSON(ctx, http.MethodGet, "/version", nil, nil, &v); err != nil {
		return "", err
	}
	return strings.TrimPrefix(v.Version, "v"), nil
}

func (e engineClient) Exec(ctx context.Context, id string, cmd []string) (int, []byte, error) {
	execID, err := e.c.ExecCreate(ctx, id, api.ExecConfig{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, nil, err
	}
	st, err := e.c.ExecAttach(ctx, execID, false)
	if err != nil {
		return -1, nil, err
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			st.Close()
		case <-done:
		}
	}()
	var out limitedBuffer
	err = client.Demux(st, &out, &out)
	close(done)
	st.Close()
	if ctx.Err() != nil {
		return -1, out.b.Bytes(), ctx.Err()
	}
	if err != nil {
		return -1, out.b.Bytes(), err
	}
	for i := 0; i < 50; i++ {
		ins, err := e.c.ExecInspect(ctx, execID)
		if err != nil {
			return -1, out.b.Bytes(), err
		}
		if !ins.Running && ins.ExitCode != nil {
			return *ins.ExitCode, out.b.Bytes(), nil
		}
		select {
		case <-ctx.Done():
			return -1, out.b.Bytes(), ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return -1, out.b.Bytes(), fmt.Errorf("exec in %s: no exit code", id)
}

// limitedBuffer keeps the first 64 KiB written to it.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}

func (e engineClient) LogTail(ctx context.Context, id string, lines int) ([]byte, error) {
	resp, err := e.c.Do(ctx, http.MethodGet, "/containers/"+id+"/logs", url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {strconv.Itoa(lines)}}, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out limitedBuffer
	if resp.Header.Get("Content-Type") == "application/vnd.docker.raw-stream" {
		_, err = io.Copy(&out, resp.Body)
	} else {
		err = client.Demux(resp.Body, &out, &out)
	}
	return out.b.Bytes(), err
}
