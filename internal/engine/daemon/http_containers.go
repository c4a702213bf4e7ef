package daemon

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/engine/logs"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/units"
)

func (d *Daemon) postContainersCreate(w http.ResponseWriter, r *http.Request) {
	var req api.CreateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	c, err := d.CreateContainer(r.URL.Query().Get("name"), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSONResponse(w, http.StatusCreated, api.CreateResponse{ID: c.ID, Warnings: []string{}})
}

func (d *Daemon) getContainersJSON(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.validate(containerFilters...)
	}
	for _, k := range []string{"before", "since"} {
		for _, v := range f[k] {
			if _, gerr := d.ctrs.Get(v); gerr != nil && err == nil {
				err = gerr
			}
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	all := boolParam(r, "all")
	limit, err := intParam(r, "limit", -1)
	if err != nil {
		writeError(w, err)
		return
	}
	withSize := boolParam(r, "size")
	imageSizes := map[string]int64{}
	if withSize {
		for _, img := range d.images.List() {
			imageSizes[img.ID] = img.Size
		}
	}
	out := []api.ContainerSummary{}
	for _, c := range d.ctrs.List() {
		c.Mu.Lock()
		if (all || c.State.Running || c.State.Restarting || len(f["status"]) > 0 || len(f["exited"]) > 0) && d.matchContainer(f, c) {
			s := summarize(c)
			if withSize {
				s.SizeRw, s.SizeRootFs = d.containerSizes(c, imageSizes[c.ImageID])
			}
			s.Ports = d.summaryPorts(c)
			for _, a := range c.Networks {
				s.NetworkSettings.Networks[a.Name] = &api.EndpointSettings{}
			}
			out = append(out, s)
		}
		c.Mu.Unlock()
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	writeJSONResponse(w, 200, out)
}

// summarize builds a list entry. The caller holds c.Mu.
func summarize(c *container.Container) api.ContainerSummary {
	s := api.ContainerSummary{ID: c.ID, Names: []string{"/" + c.Name}, Image: c.ImageRef, ImageID: c.ImageID,
		Command: summaryCommand(c.Path, c.Args), Created: c.Created.Unix(),
		Ports: []api.Port{}, Labels: c.Config.Labels, State: c.State.Status, Status: statusString(c),
		Mounts: append([]api.MountPoint{}, c.MountPoints...)}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.HostConfig.NetworkMode = c.HostConfig.NetworkMode
	s.NetworkSettings.Networks = map[string]*api.EndpointSettings{}
	return s
}

// summaryCommand is the command as dockerd lists it: arguments holding a
// space are put in single quotes.
func summaryCommand(path string, args []string) string {
	parts := []string{path}
	for _, a := range args {
		if strings.Contains(a, " ") {
			a = "'" + a + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// statusString is the human status `docker ps` shows.
func statusString(c *container.Container) string {
	st := c.State
	switch {
	case st.Restarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, units.HumanDuration(time.Since(st.FinishedAt)))
	case st.Paused:
		return "Up " + units.HumanDuration(time.Since(st.StartedAt)) + " (Paused)"
	case st.Running:
		return "Up " + units.HumanDuration(time.Since(st.StartedAt))
	case st.Status == "created":
		return "Created"
	case st.Status == "removing":
		return "Removal In Progress"
	case st.FinishedAt.IsZero():
		return "Exited (" + strconv.Itoa(st.ExitCode) + ")"
	default:
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, units.HumanDuration(time.Since(st.FinishedAt)))
	}
}

func (d *Daemon) getContainerJSON(w http.ResponseWriter, r *http.Request) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSONResponse(w, 200, d.inspect(c))
}

func (d *Daemon) inspect(c *container.Container) api.ContainerJSON {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	st := c.State
	cfg := c.Config
	hc := c.HostConfig
	j := api.ContainerJSON{ID: c.ID, Created: c.Created, Path: c.Path, Args: c.Args, State: &st,
		Image: c.ImageID, LogPath: c.LogPath(), Name: "/" + c.Name, RestartCount: c.RestartCount,
		Driver: "overlay2", Platform: "linux", HostConfig: &hc, Config: &cfg, Mounts: append([]api.MountPoint{}, c.MountPoints...),
		ExecIDs: d.execs.forContainer(c.ID),
		GraphDriver: api.GraphDriver{Name: "overlay2", Data: map[string]string{
			"MergedDir": filepath.Join(d.snaps.Root(), "containers", c.ID, "merged"),
			"UpperDir":  filepath.Join(d.snaps.Root(), "containers", c.ID, "upper")}},
		NetworkSettings: &api.NetworkSettings{Ports: map[string][]api.PortBinding{}, Networks: map[string]*api.EndpointSettings{}},
	}
	if j.Args == nil {
		j.Args = []string{}
	}
	if c.State.Running && hc.NetworkMode != "host" && c.State.Pid > 0 {
		j.NetworkSettings.SandboxKey = fmt.Sprintf("/proc/%d/ns/net", c.State.Pid)
	}
	d.networkSettings(c, j.NetworkSettings)
	files := d.netFilesDir(c)
	j.HostsPath = filepath.Join(files, "hosts")
	j.ResolvConfPath = filepath.Join(files, "resolv.conf")
	j.HostnamePath = filepath.Join(files, "hostname")
	return j
}

func (d *Daemon) postContainerStart(w http.ResponseWriter, r *http.Request) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	c.Mu.Lock()
	already := c.State.Running && !c.State.Paused
	c.Mu.Unlock()
	if already {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if err := d.StartContainer(c.ID); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func stopParams(r *http.Request) (int, string, error) {
	t, err := intParam(r, "t", -1)
	if err != nil {
		return 0, "", err
	}
	return t, r.URL.Query().Get("signal"), nil
}

func (d *Daemon) postContainerStop(w http.ResponseWriter, r *http.Request) {
	t, sig, err := stopParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	c.Mu.Lock()
	stopped := !c.State.Running && !c.State.Restarting
	c.Mu.Unlock()
	if err := d.StopContainer(c.ID, t, sig); err != nil {
		writeError(w, err)
		return
	}
	if stopped {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) postContainerRestart(w http.ResponseWriter, r *http.Request) {
	t, sig, err := stopParams(r)
	if err == nil {
		err = d.RestartContainer(r.PathValue("id"), t, sig)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) postContainerKill(w http.ResponseWriter, r *http.Request) {
	if err := d.KillContainer(r.PathValue("id"), r.URL.Query().Get("signal")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) postContainerPause(w http.ResponseWriter, r *http.Request) {
	if err := d.PauseContainer(r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) postContainerUnpause(w http.ResponseWriter, r *http.Request) {
	if err := d.UnpauseContainer(r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) postContainerRename(w http.ResponseWriter, r *http.Request) {
	if err := d.RenameContainer(r.PathValue("id"), r.URL.Query().Get("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// postContainerWait sends the headers at once (clients wait for them before
// starting the container) and the exit code when the condition is met.
func (d *Daemon) postContainerWait(w http.ResponseWriter, r *http.Request) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	cond := r.URL.Query().Get("condition")
	if cond != "" && cond != "not-running" && cond != "next-exit" && cond != "removed" {
		writeError(w, fmt.Errorf("invalid condition %q (want not-running, next-exit or removed): %w", cond, errdefs.ErrInvalidArgument))
		return
	}
	// Register before answering so an exit right after the headers is seen.
	l := d.live(c.ID)
	c.Mu.Lock()
	exitCh, removedCh := l.exitChan(), l.removedChan()
	done := !c.State.Running && !c.State.Restarting && (cond == "" || cond == "not-running")
	c.Mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	if !done {
		wait := exitCh
		if cond == "removed" {
			wait = removedCh
		}
		select {
		case <-wait:
		case <-r.Context().Done():
			return
		}
	}
	c.Mu.Lock()
	resp := api.WaitResponse{StatusCode: c.State.ExitCode}
	if c.State.Error != "" {
		resp.Error = &api.WaitError{Message: c.State.Error}
	}
	c.Mu.Unlock()
	json.NewEncoder(w).Encode(resp)
}

func (d *Daemon) postContainerResize(w http.ResponseWriter, r *http.Request) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	h, err1 := intParam(r, "h", 0)
	wd, err2 := intParam(r, "w", 0)
	if err1 != nil || err2 != nil {
		writeError(w, fmt.Errorf("invalid resize: h and w must be numbers: %w", errdefs.ErrInvalidArgument))
		return
	}
	t := d.task(c.ID)
	if t == nil {
		writeError(w, fmt.Errorf("container %s is not running: %w", c.ShortID(), errdefs.ErrConflict))
		return
	}
	if err := t.resize(uint(h), uint(wd)); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(200)
}

// frameWriter writes Docker's multiplexed stream framing: an 8-byte header
// (stream, 3 zero bytes, big-endian length) before each chunk.
type frameWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	stream byte
}

func (f *frameWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var h [8]byte
	h[0] = f.stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(p)))
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.w.Write(h[:]); err != nil {
		return 0, err
	}
	return f.w.Write(p)
}

// outputWriters returns the stdout and stderr writers for a client stream:
// raw for a tty, framed otherwise. A stream not asked for is discarded.
func outputWriters(w io.Writer, tty, stdout, stderr bool) (io.Writer, io.Writer) {
	var o, e io.Writer = io.Discard, io.Discard
	if tty {
		if stdout || stderr {
			o = w
		}
		return o, e
	}
	mu := &sync.Mutex{}
	if stdout {
		o = &frameWriter{mu: mu, w: w, stream: 1}
	}
	if stderr {
		e = &frameWriter{mu: mu, w: w, stream: 2}
	}
	return o, e
}

func streamContentType(tty bool) string {
	if tty {
		return "application/vnd.docker.raw-stream"
	}
	return "application/vnd.docker.multiplexed-stream"
}

func (d *Daemon) postContainerAttach(w http.ResponseWriter, r *http.Request) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	q := func(k string) bool { return boolParam(r, k) }
	c.Mu.Lock()
	tty, openStdin := c.Config.Tty, c.Config.OpenStdin
	running := c.State.Running
	c.Mu.Unlock()
	if !q("stream") && !q("logs") {
		writeError(w, fmt.Errorf("attach needs stream=1 or logs=1: %w", errdefs.ErrInvalidArgument))
		return
	}
	conn, rw, err := hijack(w, r, streamContentType(tty))
	if err != nil {
		return
	}
	defer conn.Close()
	out := hijackedOutput(conn, r)
	if q("logs") {
		stdout, stderr := outputWriters(out, tty, q("stdout"), q("stderr"))
		d.copyLogs(r.Context(), c, logs.Options{Tail: -1}, stdout, stderr, false)
	}
	if !q("stream") {
		closeWrite(conn)
		return
	}
	done := make(chan error, 1)
	began := make(chan struct{})
	attach := func(t *task) {
		close(began)
		if err := t.splice(out, rw.Reader, q("stdin") && openStdin, q("stdout"), q("stderr"), done); err != nil {
			done <- err
		}
	}
	l := d.live(c.ID)
	if running {
		t := d.task(c.ID)
		if t == nil {
			closeWrite(conn)
			return
		}
		attach(t)
	} else {
		l.addPendingAttach(attach)
	}
	select {
	case <-done:
	case <-l.removedChan():
		// An auto-removed container can be gone before the last of its
		// output has crossed over: a stream that began ends by itself
		// (bounded); one that never began (removed before any start) has
		// nothing to wait for.
		select {
		case <-began:
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
		default:
		}
	}
	closeWrite(conn)
}

// copyLogs writes a container's log through stdout/stderr writers.
func (d *Daemon) copyLogs(ctx context.Context, c *container.Container, o logs.Options, stdout, stderr io.Writer, timestamps bool) error {
	var buf []byte
	return logs.Read(ctx, c.LogPath(), o, func(e logs.Entry) error {
		w := stdout
		if e.Stream == "stderr" {
			w = stderr
		}
		buf = buf[:0]
		if timestamps {
			buf = e.Time.UTC().AppendFormat(buf, time.RFC3339Nano)
			buf = append(buf, ' ')
		}
		buf = append(buf, e.Line...)
		if !e.Partial {
			buf = append(buf, '\n')
		}
		_, err := w.Write(buf)
		return err
	})
}

func (d *Daemon) getContainerLogs(w http.ResponseWriter, r *http.Request) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	o := logs.Options{Tail: -1, Follow: boolParam(r, "follow"), Stdout: boolParam(r, "stdout"), Stderr: boolParam(r, "stderr")}
	if !o.Stdout && !o.Stderr {
		writeError(w, fmt.Errorf("you must choose at least one stream (stdout=1 or stderr=1): %w", errdefs.ErrInvalidArgument))
		return
	}
	if t := r.URL.Query().Get("tail"); t != "" && t != "all" {
		n, err := strconv.Atoi(t)
		if err != nil {
			writeError(w, fmt.Errorf("invalid tail %q: want a number or \"all\": %w", t, errdefs.ErrInvalidArgument))
			return
		}
		if n >= 0 {
			o.Tail = n
		}
	}
	for k, dst := range map[string]*time.Time{"since": &o.Since, "until": &o.Until} {
		if v := r.URL.Query().Get(k); v != "" && v != "0" {
			t, err := parseTimeParam(v)
			if err != nil {
				writeError(w, err)
				return
			}
			*dst = t
		}
	}
	c.Mu.Lock()
	tty := c.Config.Tty
	running := c.State.Running || c.State.Restarting
	l := d.live(c.ID)
	exitCh := l.exitChan()
	c.Mu.Unlock()
	if o.Follow {
		if running {
			o.Done = exitCh
		} else {
			closed := make(chan struct{})
			close(closed)
			o.Done = closed
		}
	}
	if tty {
		w.Header().Set("Content-Type", "application/vnd.docker.raw-stream")
	} else {
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	}
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	// Buffer the stream; a follower gets each record as soon as it is read.
	bw := bufio.NewWriterSize(w, 64<<10)
	var out io.Writer = bw
	if o.Follow {
		out = &flushWriter{w: bw, f: fl}
	}
	stdout, stderr := outputWriters(out, tty, o.Stdout, o.Stderr)
	if err := d.copyLogs(r.Context(), c, o, stdout, stderr, boolParam(r, "timestamps")); err != nil && r.Context().Err() == nil {
		d.log.Debug("streaming logs", "id", c.ID, "err", err)
	}
	bw.Flush()
}

// flushWriter pushes every write of a follower to the client at once.
type flushWriter struct {
	w *bufio.Writer
	f http.Flusher
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	if f.f != nil {
		f.f.Flush()
	}
	return n, err
}

func (d *Daemon) deleteContainer(w http.ResponseWriter, r *http.Request) {
	if err := d.RemoveContainer(r.PathValue("id"), boolParam(r, "force"), boolParam(r, "v")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) postContainersPrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.validate("label", "label!", "until")
	}
	var until time.Time
	if err == nil && len(f["until"]) > 0 {
		until, err = parseTimeParam(f["until"][0])
	}
	if err != nil {
		writeError(w, err)
		return
	}
	rep := api.PruneReport{ContainersDeleted: []string{}}
	for _, c := range d.ctrs.List() {
		c.Mu.Lock()
		ok := !c.State.Running && !c.State.Restarting && f.matchLabels("label", c.Config.Labels) &&
			!matchesAnyLabel(f["label!"], c.Config.Labels)
		if !until.IsZero() && !c.Created.Before(until) {
			ok = false
		}
		var size int64
		if u, err := d.snaps.Usage(c.ID); err == nil {
			size = u.Size
		}
		c.Mu.Unlock()
		if !ok {
			continue
		}
		if err := d.RemoveContainer(c.ID, false, false); err == nil {
			rep.ContainersDeleted = append(rep.ContainersDeleted, c.ID)
			rep.SpaceReclaimed += uint64(size)
		}
	}
	writeJSONResponse(w, 200, rep)
}

func (d *Daemon) postContainerExec(w http.ResponseWriter, r *http.Request) {
	var cfg api.ExecConfig
	if err := decodeBody(r, &cfg); err != nil {
		writeError(w, err)
		return
	}
	id, err := d.CreateExec(r.PathValue("id"), cfg)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSONResponse(w, http.StatusCreated, api.IDResponse{ID: id})
}

func (d *Daemon) postExecStart(w http.ResponseWriter, r *http.Request) {
	var sc api.ExecStartConfig
	if err := decodeBody(r, &sc); err != nil {
		writeError(w, err)
		return
	}
	e, err := d.execs.get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if sc.Detach {
		if _, err := d.StartExec(e.ID, nil); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(200)
		return
	}
	// Validate before hijacking so errors reach the client as JSON.
	if _, err := d.ctrs.Get(e.ContainerID); err != nil {
		writeError(w, err)
		return
	}
	tty := e.Config.Tty
	done := make(chan error, 1)
	var conn io.ReadWriteCloser
	var started *execRecord
	var startErr error
	hconn, rw, err := hijack(w, r, streamContentType(tty))
	if err != nil {
		return
	}
	conn = hconn
	defer conn.Close()
	out := hijackedOutput(hconn, r)
	started, startErr = d.StartExec(e.ID, func(t *task) {
		if err := t.splice(out, rw.Reader, e.Config.AttachStdin, e.Config.AttachStdout, e.Config.AttachStderr, done); err != nil {
			done <- err
		}
	})
	if startErr != nil {
		_, stderr := outputWriters(out, false, false, true)
		if tty {
			stderr = out
		}
		// The stream is already a raw one: report on stderr, as dockerd does.
		fmt.Fprintf(stderr, "%s\n", errorMessage(startErr))
		closeWrite(hconn)
		return
	}
	<-done
	started.wait(context.Background())
	closeWrite(hconn)
}

func (d *Daemon) postExecResize(w http.ResponseWriter, r *http.Request) {
	h, err1 := intParam(r, "h", 0)
	wd, err2 := intParam(r, "w", 0)
	if err1 != nil || err2 != nil {
		writeError(w, fmt.Errorf("invalid resize: h and w must be numbers: %w", errdefs.ErrInvalidArgument))
		return
	}
	if err := d.ResizeExec(r.PathValue("id"), uint(h), uint(wd)); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(200)
}

func (d *Daemon) getExecJSON(w http.ResponseWriter, r *http.Request) {
	in, err := d.ExecInspect(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSONResponse(w, 200, in)
}
