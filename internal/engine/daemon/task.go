package daemon

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/berth/berth/internal/engine/runtime"
	"github.com/berth/berth/internal/engine/shim"
)

// task is the daemon's handle on one shim: a container's init process or
// an exec. It is the only place the daemon speaks the shim protocol.
type task struct {
	h *shim.Handle
}

type taskOpts struct {
	id, bundle  string
	runtime     *runtime.Runtime
	logPath     string
	logMaxSize  int64
	logMaxFiles int
	tty, stdin  bool
	// stdinOnce closes the process's stdin when the first attached
	// client's stdin ends (Docker's StdinOnce; always for execs).
	stdinOnce bool
	execID    string // set for an exec
	// cgroupsPath is the container's cgroup, where the shim reads OOM
	// kills.
	cgroupsPath string
	processFile string // the exec's OCI process
}

type exitStatus struct {
	code      int
	oomKilled bool
	at        time.Time
}

func (d *Daemon) startTask(o taskOpts) (*task, error) {
	h, err := shim.Start(shim.Options{
		Binary:      d.cfg.ShimPath,
		ID:          o.id,
		Bundle:      o.bundle,
		Runtime:     o.runtime.Path,
		RuntimeRoot: o.runtime.Root,
		CgroupsPath: o.cgroupsPath,
		LogPath:     o.logPath,
		LogMaxSize:  o.logMaxSize,
		LogMaxFiles: o.logMaxFiles,
		Tty:         o.tty,
		Stdin:       o.stdin,
		StdinOnce:   o.stdinOnce,
		ExecID:      o.execID,
		ProcessFile: o.processFile,
	})
	if err != nil {
		return nil, err
	}
	return &task{h: h}, nil
}

func (d *Daemon) connectTask(id, bundle string) (*task, error) {
	h, err := shim.Connect(bundle)
	if err != nil {
		return nil, err
	}
	return &task{h: h}, nil
}

func (t *task) start() (int, error) { return t.h.Start() }

func (t *task) pid() int { return t.h.Pid() }

func (t *task) wait(ctx context.Context) (exitStatus, error) {
	st, err := t.h.Wait(ctx)
	if err != nil {
		return exitStatus{}, err
	}
	return exitStatus{code: st.ExitCode, oomKilled: st.OOMKilled, at: st.ExitedAt}, nil
}

// splice connects a client's hijacked connection to the process: the
// shim already frames output the way the Docker API wants it (stdcopy
// without a tty, raw with one), so bytes are copied, never re-framed. stdin
// is read from clientIn when wantStdin; done receives the end of output.
func (t *task) splice(client io.Writer, clientIn io.Reader, wantStdin, wantStdout, wantStderr bool, done chan<- error) error {
	sc, _, err := t.h.AttachConn(wantStdin, wantStdout, wantStderr)
	if err != nil {
		return err
	}
	if wantStdin && clientIn != nil {
		go func() {
			io.Copy(sc, clientIn)
			sc.CloseWrite()
		}()
	} else {
		sc.CloseWrite()
	}
	go func() {
		_, err := io.Copy(client, sc)
		sc.Close()
		done <- err
	}()
	return nil
}

func (t *task) resize(h, w uint) error { return t.h.Resize(uint16(h), uint16(w)) }

// close forgets the handle; the shim itself exits on its own.
func (t *task) close() {}

// readExitFile reads the exit status a shim left behind.
func readExitFile(bundle string) (exitStatus, bool) {
	b, err := os.ReadFile(filepath.Join(bundle, "exit.json"))
	if err != nil {
		return exitStatus{}, false
	}
	var e struct {
		ExitCode  int       `json:"exitCode"`
		ExitedAt  time.Time `json:"exitedAt"`
		OOMKilled bool      `json:"oomKilled"`
	}
	if json.Unmarshal(b, &e) != nil {
		return exitStatus{}, false
	}
	return exitStatus{code: e.ExitCode, oomKilled: e.OOMKilled, at: e.ExitedAt}, true
}
