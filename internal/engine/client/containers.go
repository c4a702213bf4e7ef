package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/api"
)

// Typed calls of the engine API for Go programs (the node agent): each is
// one request of the Docker Engine API. Errors wrap errdefs classes
// (errdefs.ErrNotFound for a missing container or image, ErrConflict for
// a state that forbids the call), so callers test them with errors.Is.

// Filters is Docker's filters parameter: a key ("label", "name", "status",
// "id", "type", "event", …) to the values any of which may match; several
// "label" values must all match ("io.kubernetes.pod.uid=UID" or a bare
// key).
type Filters map[string][]string

// encode gives the JSON form Docker's API takes ({"k":{"v":true}}).
func (f Filters) encode() string {
	m := make(map[string]map[string]bool, len(f))
	for k, vs := range f {
		m[k] = map[string]bool{}
		for _, v := range vs {
			m[k][v] = true
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func pathEscape(s string) string { return url.PathEscape(s) }

// ContainerCreate creates a container named name ("" for a generated
// name). A missing image is errdefs.ErrNotFound (pull it first), except
// the built-in pause image, which the engine makes.
func (c *Client) ContainerCreate(ctx context.Context, name string, req api.CreateRequest) (api.CreateResponse, error) {
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	var out api.CreateResponse
	err := c.JSON(ctx, http.MethodPost, "/containers/create", q, req, &out)
	return out, err
}

// ContainerStart starts a created or exited container; starting a running
// one does nothing.
func (c *Client) ContainerStart(ctx context.Context, id string) error {
	return c.JSON(ctx, http.MethodPost, "/containers/"+pathEscape(id)+"/start", nil, nil, nil)
}

// ContainerStop sends the container's stop signal (StopSignal, default
// SIGTERM), waits up to timeout and then sends SIGKILL; it returns when
// the container has exited. A nil timeout means the container's
// StopTimeout (default 10 s); 0 kills at once. The request itself is
// given timeout + 30 s unless ctx ends first.
func (c *Client) ContainerStop(ctx context.Context, id string, timeout *time.Duration) error {
	q := url.Values{}
	if timeout != nil {
		// The API counts whole seconds; round a grace period up.
		q.Set("t", strconv.FormatInt(int64((*timeout+time.Second-1)/time.Second), 10))
	}
	return c.JSON(ctx, http.MethodPost, "/containers/"+pathEscape(id)+"/stop", q, nil, nil)
}

// ContainerKill sends signal ("" for SIGKILL; "TERM", "SIGTERM" or "15")
// to the container's main process. A container that is not running is
// errdefs.ErrConflict.
func (c *Client) ContainerKill(ctx context.Context, id, signal string) error {
	q := url.Values{}
	if signal != "" {
		q.Set("signal", signal)
	}
	return c.JSON(ctx, http.MethodPost, "/containers/"+pathEscape(id)+"/kill", q, nil, nil)
}

// RemoveOptions are the options of ContainerRemove.
type RemoveOptions struct {
	Force   bool // kill a running container first
	Volumes bool // remove its anonymous volumes
}

// ContainerRemove removes a container.
func (c *Client) ContainerRemove(ctx context.Context, id string, o RemoveOptions) error {
	q := url.Values{}
	if o.Force {
		q.Set("force", "1")
	}
	if o.Volumes {
		q.Set("v", "1")
	}
	return c.JSON(ctx, http.MethodDelete, "/containers/"+pathEscape(id), q, nil, nil)
}

// ContainerInspect returns a container's configuration and state.
func (c *Client) ContainerInspect(ctx context.Context, id string) (*api.ContainerJSON, error) {
	var out api.ContainerJSON
	if err := c.JSON(ctx, http.MethodGet, "/containers/"+pathEscape(id)+"/json", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListOptions are the options of ContainerList.
type ListOptions struct {
	All     bool // include stopped containers
	Filters Filters
}

// ContainerList lists containers (running ones unless All).
func (c *Client) ContainerList(ctx context.Context, o ListOptions) ([]api.ContainerSummary, error) {
	q := url.Values{}
	if o.All {
		q.Set("all", "1")
	}
	if len(o.Filters) > 0 {
		q.Set("filters", o.Filters.encode())
	}
	var out []api.ContainerSummary
	err := c.JSON(ctx, http.MethodGet, "/containers/json", q, nil, &out)
	return out, err
}

// ContainerWait waits for condition ("" or "not-running", "next-exit",
// "removed") and returns the exit code.
func (c *Client) ContainerWait(ctx context.Context, id, condition string) (api.WaitResponse, error) {
	q := url.Values{}
	if condition != "" {
		q.Set("condition", condition)
	}
	var out api.WaitResponse
	err := c.JSON(ctx, http.MethodPost, "/containers/"+pathEscape(id)+"/wait", q, nil, &out)
	return out, err
}

// ContainerUpdate changes a running container's cgroup limits.
func (c *Client) ContainerUpdate(ctx context.Context, id string, r api.Resources) error {
	return c.JSON(ctx, http.MethodPost, "/containers/"+pathEscape(id)+"/update", nil, r, nil)
}

// LogsOptions are the options of ContainerLogs.
type LogsOptions struct {
	Stdout, Stderr bool
	Follow         bool
	Timestamps     bool
	Tail           string // "all" or a line count
	Since, Until   string // Unix seconds (with a fraction) or RFC 3339
}

// ContainerLogs returns the container's log in Docker's stdcopy framing
// (raw for a tty container); demultiplex it with Demux. Close it to stop
// following.
func (c *Client) ContainerLogs(ctx context.Context, id string, o LogsOptions) (io.ReadCloser, error) {
	q := url.Values{}
	for k, v := range map[string]bool{"stdout": o.Stdout, "stderr": o.Stderr, "follow": o.Follow, "timestamps": o.Timestamps} {
		if v {
			q.Set(k, "1")
		}
	}
	for k, v := range map[string]string{"tail": o.Tail, "since": o.Since, "until": o.Until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	resp, err := c.Do(ctx, http.MethodGet, "/containers/"+pathEscape(id)+"/logs", q, nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ImageInspect returns an image's configuration.
func (c *Client) ImageInspect(ctx context.Context, ref string) (*api.ImageInspect, error) {
	var out api.ImageInspect
	if err := c.JSON(ctx, http.MethodGet, "/images/"+ref+"/json", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ImagePull pulls ref (a name with a tag or digest). registryAuth is the
// X-Registry-Auth header value ("" for none). progress, if not nil, gets
// each progress message. A failure before the first byte (no such image
// or tag, bad credentials, an unreachable registry) carries its errdefs
// class (ErrNotFound, ErrUnauthorized, ErrUnavailable…); one part-way
// returns the daemon's message. The built-in pause image is made, not
// pulled.
func (c *Client) ImagePull(ctx context.Context, ref, registryAuth string, progress func(api.JSONMessage)) error {
	q := url.Values{"fromImage": {ref}}
	var h http.Header
	if registryAuth != "" {
		h = http.Header{"X-Registry-Auth": {registryAuth}}
	}
	resp, err := c.DoHeader(ctx, http.MethodPost, "/images/create", q, h, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var m api.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("pulling %s: reading the daemon's progress: %w", ref, err)
		}
		if m.Error != "" {
			return fmt.Errorf("pulling %s: %s", ref, m.Error)
		}
		if progress != nil {
			progress(m)
		}
	}
}

// EventsOptions are the options of Events.
type EventsOptions struct {
	// Filters select events: "type" (container, image, …), "event" (the
	// action: start, die, oom, …), "container", "label".
	Filters Filters
	// Since replays the engine's recent events from then (zero: only new
	// ones).
	Since time.Time
}

// Events streams engine events until ctx ends or the connection breaks.
// The error channel receives one error (nil when ctx ended) and both
// channels are then closed.
func (c *Client) Events(ctx context.Context, o EventsOptions) (<-chan api.Event, <-chan error) {
	events := make(chan api.Event, 64)
	errc := make(chan error, 1)
	q := url.Values{}
	if len(o.Filters) > 0 {
		q.Set("filters", o.Filters.encode())
	}
	if !o.Since.IsZero() {
		q.Set("since", fmt.Sprintf("%d.%09d", o.Since.Unix(), o.Since.Nanosecond()))
	}
	go func() {
		defer close(events)
		defer close(errc)
		resp, err := c.Do(ctx, http.MethodGet, "/events", q, nil, "")
		if err != nil {
			errc <- err
			return
		}
		defer resp.Body.Close()
		dec := json.NewDecoder(bufio.NewReader(resp.Body))
		for {
			var e api.Event
			if err := dec.Decode(&e); err != nil {
				if ctx.Err() != nil {
					err = nil
				}
				errc <- err
				return
			}
			select {
			case events <- e:
			case <-ctx.Done():
				errc <- nil
				return
			}
		}
	}()
	return events, errc
}

// ExecCreate prepares a command in a running container and returns the
// exec's ID.
func (c *Client) ExecCreate(ctx context.Context, id string, cfg api.ExecConfig) (string, error) {
	var out api.IDResponse
	err := c.JSON(ctx, http.MethodPost, "/containers/"+pathEscape(id)+"/exec", nil, cfg, &out)
	return out.ID, err
}

// ExecAttach starts an exec and returns its stream: stdcopy-framed output
// (raw with a tty) and, when the exec was created with AttachStdin, its
// stdin (CloseWrite ends it).
func (c *Client) ExecAttach(ctx context.Context, execID string, tty bool) (*Stream, error) {
	return c.Hijack(ctx, http.MethodPost, "/exec/"+pathEscape(execID)+"/start", nil, api.ExecStartConfig{Tty: tty})
}

// ExecResize resizes an exec's tty.
func (c *Client) ExecResize(ctx context.Context, execID string, height, width uint) error {
	q := url.Values{"h": {strconv.FormatUint(uint64(height), 10)}, "w": {strconv.FormatUint(uint64(width), 10)}}
	return c.JSON(ctx, http.MethodPost, "/exec/"+pathEscape(execID)+"/resize", q, nil, nil)
}

// ExecInspect returns an exec's state and exit code.
func (c *Client) ExecInspect(ctx context.Context, execID string) (*api.ExecInspect, error) {
	var out api.ExecInspect
	if err := c.JSON(ctx, http.MethodGet, "/exec/"+pathEscape(execID)+"/json", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PodLabelFilter is the filter selecting the containers of one pod by its
// UID (the label contract between the node agent and the engine).
func PodLabelFilter(uid string) Filters {
	return Filters{"label": {"io.kubernetes.pod.uid=" + strings.TrimSpace(uid)}}
}

// AttachOptions are the options of ContainerAttach.
type AttachOptions struct {
	Stdin, Stdout, Stderr bool
	// Logs replays the log first (kubectl attach does not).
	Logs bool
}

// ContainerAttach attaches to a container's stdio (`kubectl attach`): the
// stream carries its output (stdcopy-framed without a tty; Demux it) and,
// with Stdin and a container created with OpenStdin, takes its input.
func (c *Client) ContainerAttach(ctx context.Context, id string, o AttachOptions) (*Stream, error) {
	q := url.Values{"stream": {"1"}}
	for k, v := range map[string]bool{"stdin": o.Stdin, "stdout": o.Stdout, "stderr": o.Stderr, "logs": o.Logs} {
		if v {
			q.Set(k, "1")
		}
	}
	return c.Hijack(ctx, http.MethodPost, "/containers/"+pathEscape(id)+"/attach", q, nil)
}

// ContainerResize resizes a tty container's terminal.
func (c *Client) ContainerResize(ctx context.Context, id string, height, width uint) error {
	q := url.Values{"h": {strconv.FormatUint(uint64(height), 10)}, "w": {strconv.FormatUint(uint64(width), 10)}}
	return c.JSON(ctx, http.MethodPost, "/containers/"+pathEscape(id)+"/resize", q, nil, nil)
}

// ContainerStats returns one sample of a running container's resource
// usage (cgroup memory, CPU, pids, block I/O).
func (c *Client) ContainerStats(ctx context.Context, id string) (*api.Stats, error) {
	var out api.Stats
	q := url.Values{"stream": {"0"}, "one-shot": {"1"}}
	if err := c.JSON(ctx, http.MethodGet, "/containers/"+pathEscape(id)+"/stats", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Info returns the engine's system information (NCPU, MemTotal,
// CgroupVersion, counts of containers and images…), what a node reports
// as its capacity.
func (c *Client) Info(ctx context.Context) (*api.Info, error) {
	var out api.Info
	if err := c.JSON(ctx, http.MethodGet, "/info", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
