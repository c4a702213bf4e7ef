// Package shim owns the per-container monitor process (berth-shim) and the
// daemon's client for it.
//
// One shim runs per container (and per exec). The daemon starts it with
// Start; it detaches into its own session with stdio on /dev/null, so it
// outlives the daemon. It listens on a unix socket in the bundle directory
// (shim.sock, or exec-<id>.sock), becomes the child subreaper, and on the
// "start" request runs the OCI runtime (`run --detach`, or `exec --detach`)
// with the container's stdio on pipes (or a pty) it holds. It copies output
// to the CRI log (package logs) and to attached clients (Docker's stdcopy
// framing, or raw bytes with a tty), feeds stdin from an attached client,
// reaps the process, records whether the OOM killer struck, deletes the
// container from the runtime and writes exit.json (exec-<id>.exit.json)
// before it answers waiters and exits. A restarted daemon reattaches with
// Connect, or reads the exit file if the shim is gone.
//
// Wire protocol: every connection starts with one JSON request line; the
// shim answers with one JSON response line. After a successful "attach"
// answer the connection carries the streams.
package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/internal/engine/shim/wire"
	"github.com/berth/berth/internal/errdefs"
)

// ExitStatus is how a process ended (exit.json).
type ExitStatus = wire.ExitStatus

// Process states reported by Handle.State.
const (
	StatusCreated = wire.StatusCreated
	StatusRunning = wire.StatusRunning
	StatusExited  = wire.StatusExited
)

// Demux splits a stdcopy stream (Docker's attach framing) into stdout and
// stderr.
func Demux(stdout, stderr io.Writer, r io.Reader) error { return wire.Demux(stdout, stderr, r) }

// Options start a shim.
type Options struct {
	// Binary is the berth-shim executable.
	Binary string
	ID     string
	// Bundle is the OCI bundle directory (config.json, rootfs); the shim's
	// socket, pid and exit files live there.
	Bundle string
	// Runtime is the OCI runtime binary (absolute path); RuntimeRoot its
	// --root.
	Runtime, RuntimeRoot string
	// CgroupsPath is the container's linux.cgroupsPath, where the shim
	// counts OOM kills ("" for none).
	CgroupsPath string
	// LogPath is the CRI log file ("" for none, as for execs).
	LogPath     string
	LogMaxSize  int64
	LogMaxFiles int
	Tty, Stdin  bool
	// StdinOnce closes the process's stdin when an attached client's
	// stdin ends; without it stdin stays open for the next attach.
	StdinOnce bool
	// ExecID and ProcessFile (a process.json) select exec mode.
	ExecID, ProcessFile string
}

// Handle talks to one shim.
type Handle struct {
	bundle, execID string
	pid            int
	exited         *wire.ExitStatus // known when the shim is gone
}

// Start launches a shim in its own session and waits until it listens. The
// process is not started until Handle.Start.
func Start(o Options) (*Handle, error) {
	if o.Binary == "" || o.ID == "" || o.Bundle == "" || o.Runtime == "" || o.RuntimeRoot == "" {
		return nil, fmt.Errorf("shim options: Binary, ID, Bundle, Runtime and RuntimeRoot are required: %w", errdefs.ErrInvalidArgument)
	}
	for _, v := range []struct{ name, val string }{{"container id", o.ID}, {"exec id", o.ExecID}} {
		if strings.ContainsAny(v.val, "/\x00") || v.val == "." || v.val == ".." {
			return nil, fmt.Errorf("shim options: %s %q must not contain '/': %w", v.name, v.val, errdefs.ErrInvalidArgument)
		}
	}
	if (o.ExecID == "") != (o.ProcessFile == "") {
		return nil, fmt.Errorf("shim options: ExecID and ProcessFile go together: %w", errdefs.ErrInvalidArgument)
	}
	// The shim runs in the bundle directory: make every path absolute.
	var err error
	for _, p := range []*string{&o.Bundle, &o.RuntimeRoot, &o.LogPath, &o.ProcessFile} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return nil, err
			}
		}
	}
	bundle := o.Bundle
	args := []string{
		"--id", o.ID, "--bundle", bundle, "--runtime", o.Runtime, "--runtime-root", o.RuntimeRoot,
	}
	if o.CgroupsPath != "" {
		args = append(args, "--cgroup", o.CgroupsPath)
	}
	if o.LogPath != "" {
		args = append(args, "--log", o.LogPath)
	}
	if o.LogMaxSize > 0 {
		args = append(args, "--log-max-size", strconv.FormatInt(o.LogMaxSize, 10))
	}
	if o.LogMaxFiles > 0 {
		args = append(args, "--log-max-files", strconv.Itoa(o.LogMaxFiles))
	}
	if o.Tty {
		args = append(args, "--tty")
	}
	if o.Stdin {
		args = append(args, "--stdin")
	}
	if o.StdinOnce {
		args = append(args, "--stdin-once")
	}
	if o.ExecID != "" {
		args = append(args, "--exec-id", o.ExecID, "--process", o.ProcessFile)
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer syncR.Close()
	cmd := exec.Command(o.Binary, args...)
	cmd.ExtraFiles = []*os.File{syncW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// A monitor needs one P and a small heap: fewer threads, less RSS.
	cmd.Env = append(os.Environ(), "GOGC=20", "GOMAXPROCS=1")
	if err := cmd.Start(); err != nil {
		syncW.Close()
		return nil, fmt.Errorf("start shim %q: %w", o.Binary, err)
	}
	syncW.Close()
	// Reap the shim whenever it exits; it does not depend on us.
	go cmd.Wait()
	syncR.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(syncR).ReadBytes('\n')
	if err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("shim for %q did not report ready: %w", o.ID, err)
	}
	var msg struct {
		Ready bool   `json:"ready"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(line, &msg); err != nil || !msg.Ready {
		if msg.Error == "" {
			msg.Error = fmt.Sprintf("unexpected sync message %q", line)
		}
		return nil, fmt.Errorf("shim for %q: %s", o.ID, msg.Error)
	}
	return &Handle{bundle: bundle, execID: o.ExecID}, nil
}

// Connect reattaches to the container shim of bundle (after a daemon
// restart). If the shim is gone but left its exit file, the handle reports
// that exit; with neither, the error wraps errdefs.ErrNotFound.
func Connect(bundle string) (*Handle, error) { return ConnectExec(bundle, "") }

// ConnectExec is Connect for the shim of exec execID.
func ConnectExec(bundle, execID string) (*Handle, error) {
	h := &Handle{bundle: bundle, execID: execID}
	r, err := h.call(wire.Request{Cmd: "state"})
	if err == nil {
		h.pid = r.Pid
		if r.Exit != nil {
			h.exited = r.Exit
		}
		return h, nil
	}
	if es, ferr := readExit(filepath.Join(bundle, wire.ExitName(execID))); ferr == nil {
		h.exited = es
		return h, nil
	}
	return nil, fmt.Errorf("shim for bundle %q: no running shim and no exit record: %w", bundle, errdefs.ErrNotFound)
}

func readExit(path string) (*wire.ExitStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var es wire.ExitStatus
	if err := json.Unmarshal(b, &es); err != nil {
		return nil, fmt.Errorf("exit record %s: %w", path, err)
	}
	return &es, nil
}

// dial connects to the shim socket. Socket paths are limited to 108 bytes,
// so long bundle paths are reached through /proc/self/fd.
func (h *Handle) dial() (*net.UnixConn, error) {
	p := filepath.Join(h.bundle, wire.SockName(h.execID))
	if len(p) < 100 {
		return net.DialUnix("unix", nil, &net.UnixAddr{Name: p, Net: "unix"})
	}
	d, err := os.Open(h.bundle)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	short := "/proc/self/fd/" + strconv.Itoa(int(d.Fd())) + "/" + wire.SockName(h.execID)
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: short, Net: "unix"})
}

func (h *Handle) roundTrip(req wire.Request) (*net.UnixConn, *bufio.Reader, wire.Response, error) {
	var r wire.Response
	conn, err := h.dial()
	if err != nil {
		return nil, nil, r, fmt.Errorf("shim %s: %w", filepath.Join(h.bundle, wire.SockName(h.execID)), errors.Join(errdefs.ErrUnavailable, err))
	}
	b, _ := json.Marshal(req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		conn.Close()
		return nil, nil, r, fmt.Errorf("shim %s: %w", req.Cmd, errors.Join(errdefs.ErrUnavailable, err))
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return nil, nil, r, fmt.Errorf("shim %s: no answer: %w", req.Cmd, errors.Join(errdefs.ErrUnavailable, err))
	}
	if err := json.Unmarshal(line, &r); err != nil {
		conn.Close()
		return nil, nil, r, fmt.Errorf("shim %s: bad answer %q: %w", req.Cmd, line, err)
	}
	return conn, br, r, nil
}

func (h *Handle) call(req wire.Request) (wire.Response, error) {
	conn, _, r, err := h.roundTrip(req)
	if err != nil {
		return r, err
	}
	conn.Close()
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// StartError is the runtime's failure to start the process; Message is
// the runtime's stderr.
type StartError struct{ Message string }

func (e *StartError) Error() string { return "start: " + e.Message }

// Start runs the process and returns its host pid. A runtime failure is a
// *StartError carrying the runtime's message.
func (h *Handle) Start() (int, error) {
	conn, _, r, err := h.roundTrip(wire.Request{Cmd: "start"})
	if err != nil {
		return 0, err
	}
	conn.Close()
	if r.Error != "" {
		return 0, &StartError{Message: r.Error}
	}
	h.pid = r.Pid
	return r.Pid, nil
}

// Pid is the process's host pid (0 before Start or when only the exit
// record is left).
func (h *Handle) Pid() int { return h.pid }

// State asks the shim for the process status ("created", "running",
// "exited"); a gone shim with an exit record reports "exited".
func (h *Handle) State() (string, *wire.ExitStatus, error) {
	r, err := h.call(wire.Request{Cmd: "state"})
	if err != nil {
		if es, ferr := readExit(filepath.Join(h.bundle, wire.ExitName(h.execID))); ferr == nil {
			return wire.StatusExited, es, nil
		}
		return "", nil, err
	}
	return r.Status, r.Exit, nil
}

// Wait blocks until the process has exited and its exit is recorded.
func (h *Handle) Wait(ctx context.Context) (wire.ExitStatus, error) {
	if h.exited != nil {
		return *h.exited, nil
	}
	type result struct {
		r   wire.Response
		err error
	}
	conn, err := h.dial()
	if err != nil {
		return h.exitFile(err)
	}
	defer conn.Close()
	done := make(chan result, 1)
	go func() {
		conn.Write([]byte(`{"cmd":"wait"}` + "\n"))
		line, err := bufio.NewReader(conn).ReadBytes('\n')
		var r wire.Response
		if err == nil {
			err = json.Unmarshal(line, &r)
		}
		done <- result{r, err}
	}()
	select {
	case <-ctx.Done():
		return wire.ExitStatus{}, ctx.Err()
	case res := <-done:
		if res.err != nil || res.r.Exit == nil {
			return h.exitFile(res.err)
		}
		h.exited = res.r.Exit
		return *res.r.Exit, nil
	}
}

// exitFile falls back to the exit record when the shim went away.
func (h *Handle) exitFile(cause error) (wire.ExitStatus, error) {
	es, err := readExit(filepath.Join(h.bundle, wire.ExitName(h.execID)))
	if err != nil {
		return wire.ExitStatus{}, fmt.Errorf("shim gone without an exit record (%v): %w", cause, errdefs.ErrUnavailable)
	}
	h.exited = es
	return *es, nil
}

// Resize sets the pty size.
func (h *Handle) Resize(height, width uint16) error {
	_, err := h.call(wire.Request{Cmd: "resize", Height: height, Width: width})
	return err
}

// Shutdown stops a shim whose process was never started (rm of a created
// container).
func (h *Handle) Shutdown() error {
	_, err := h.call(wire.Request{Cmd: "shutdown"})
	return err
}

// AttachConn returns a connection carrying the process's output (stdcopy
// frames without a tty, raw bytes with one) and, if stdin, accepting its
// input; CloseWrite on it closes the process's stdin. It is exactly what
// the Docker attach API puts on the wire, so a daemon can splice it to a
// hijacked HTTP connection. tty reports which framing is used.
func (h *Handle) AttachConn(stdin, stdout, stderr bool) (conn Conn, tty bool, err error) {
	uc, br, r, err := h.roundTrip(wire.Request{Cmd: "attach", Stdin: stdin, Stdout: stdout, Stderr: stderr})
	if err != nil {
		return nil, false, err
	}
	if r.Error != "" {
		uc.Close()
		return nil, false, fmt.Errorf("attach: %s: %w", r.Error, errdefs.ErrConflict)
	}
	// Output may already have arrived behind the answer: read through br.
	return &bufConn{UnixConn: uc, r: br}, r.Tty, nil
}

// Conn is an attach connection: a net.Conn whose write side can be closed
// to signal end of stdin.
type Conn interface {
	net.Conn
	CloseWrite() error
}

// bufConn is a UnixConn whose first bytes were read ahead.
type bufConn struct {
	*net.UnixConn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Attachment is an attached client's streams in progress.
type Attachment struct {
	conn *net.UnixConn
	done chan error
}

// Attach copies the process's output to stdout and stderr (with a tty all
// output goes to stdout) and stdin (if not nil) to the process, closing its
// stdin at EOF. It returns once attached; Wait returns when the output ends
// (the process exited and everything was delivered).
func (h *Handle) Attach(stdin io.Reader, stdout, stderr io.Writer) (*Attachment, error) {
	conn, br, r, err := h.roundTrip(wire.Request{Cmd: "attach", Stdin: stdin != nil, Stdout: stdout != nil, Stderr: stderr != nil})
	if err != nil {
		return nil, err
	}
	if r.Error != "" {
		conn.Close()
		return nil, fmt.Errorf("attach: %s: %w", r.Error, errdefs.ErrConflict)
	}
	a := &Attachment{conn: conn, done: make(chan error, 1)}
	if stdin != nil {
		go func() {
			io.Copy(conn, stdin)
			conn.CloseWrite()
		}()
	} else {
		conn.CloseWrite()
	}
	go func() {
		var err error
		if r.Tty {
			if stdout == nil {
				stdout = io.Discard
			}
			_, err = io.Copy(stdout, br)
		} else {
			err = wire.Demux(stdout, stderr, br)
		}
		conn.Close()
		a.done <- err
	}()
	return a, nil
}

// Wait blocks until the output stream ends and returns its error.
func (a *Attachment) Wait() error {
	err := <-a.done
	a.done <- err
	return err
}

// Close detaches.
func (a *Attachment) Close() error { return a.conn.Close() }
