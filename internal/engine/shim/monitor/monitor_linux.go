// Package monitor is the berth-shim process: the per-container monitor that
// holds a container's stdio, writes its CRI log, reaps it as child subreaper,
// records its exit (and OOM kill) in the bundle and serves the wire protocol
// on the bundle's socket. The daemon's side is package shim.
//
// It links only the standard library, x/sys and berth's logs, cgroups and
// shim/wire packages, so it starts in a few milliseconds and stays small.
package monitor

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/cgroups"
	"github.com/berth/berth/internal/engine/logs"
	"github.com/berth/berth/internal/engine/shim/wire"
	"golang.org/x/sys/unix"
)

// Main runs the shim process with the command-line arguments args (without
// the program name) and returns its exit code. fd 3 is the sync pipe.
func Main(args []string) int {
	// The client starts the shim with GOGC=20 and GOMAXPROCS=1 in its
	// environment (runtime/debug.SetGCPercent would link fmt and reflect).
	sync := os.NewFile(3, "sync")
	ready := func(err error) {
		if sync == nil {
			return
		}
		msg := []byte(`{"ready":true}` + "\n")
		if err != nil {
			msg = appendString([]byte(`{"error":`), err.Error())
			msg = append(msg, '}', '\n')
		}
		sync.Write(msg)
		sync.Close()
	}
	c, err := parseFlags(args)
	if err != nil {
		ready(errors.New("berth-shim: " + err.Error()))
		return 2
	}
	s, err := newServer(c)
	if err != nil {
		ready(err)
		return 1
	}
	ready(nil)
	return s.serve()
}

type server struct {
	c     config
	ln    *os.File
	logw  *logs.Writer
	cgr   string // container cgroups path, for the OOM record
	oom0  uint64 // OOM kills before start
	reapM sync.Mutex

	mu       sync.Mutex
	status   string
	pid      int
	exit     *wire.ExitStatus
	attaches map[*attachment]struct{}
	stdinW   io.WriteCloser // container stdin (pipe) or pty master
	master   *os.File
	winH     uint16
	winW     uint16
	started  chan struct{} // closed once the process runs (or start failed)
	exited   chan struct{} // closed once exit.json is written
	copiers  sync.WaitGroup
	replies  sync.WaitGroup // wait answers and attach streams in flight
	kick     chan struct{}
	done     chan struct{}
	doneOnce sync.Once
}

func (s *server) shutdown() { s.doneOnce.Do(func() { close(s.done) }) }

type attachment struct {
	conn   *os.File
	stdout bool
	stderr bool
	ch     chan []byte
	once   sync.Once
}

func (a *attachment) close() { a.once.Do(func() { close(a.ch) }) }

func newServer(c config) (*server, error) {
	if err := os.Chdir(c.bundle); err != nil {
		return nil, errors.New("berth-shim: bundle " + strconv.Quote(c.bundle) + ": " + err.Error())
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, errors.New("berth-shim: become subreaper: " + err.Error())
	}
	s := &server{
		c: c, status: wire.StatusCreated,
		attaches: map[*attachment]struct{}{},
		started:  make(chan struct{}),
		exited:   make(chan struct{}),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if c.logPath != "" {
		w, err := logs.NewWriter(c.logPath, c.logMaxSize, c.logMaxFiles)
		if err != nil {
			return nil, errors.New("berth-shim: " + err.Error())
		}
		s.logw = w
	}
	name := wire.SockName(c.execID)
	os.Remove(name)
	ln, err := listenUnix(name)
	if err != nil {
		return nil, errors.New("berth-shim: listen " + c.bundle + "/" + name + ": " + err.Error())
	}
	s.ln = ln
	return s, nil
}

// readCgroupsPath reads linux.cgroupsPath from the bundle's config.json
// without the runtime-spec types (the shim stays small).
func readCgroupsPath(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return cgroupsPathOf(b)
}

func (s *server) serve() int {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGPIPE)
	go s.reaper(sigc)
	go func() {
		for {
			conn, err := accept(s.ln)
			if err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				continue // EMFILE, ECONNABORTED…: keep serving
			}
			go s.handle(conn)
		}
	}()
	<-s.done
	os.Remove(wire.SockName(s.c.execID))
	s.ln.Close()
	return 0
}

func (s *server) handle(conn *os.File) {
	br := bufio.NewReaderSize(conn, 4096)
	line, err := br.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return
	}
	req, err := parseRequest(line)
	if err != nil {
		reply(conn, wire.Response{Error: "bad request: " + err.Error()})
		conn.Close()
		return
	}
	switch req.Cmd {
	case "start":
		reply(conn, s.start())
	case "state":
		s.mu.Lock()
		r := wire.Response{Status: s.status, Pid: s.pid, Exit: s.exit, Tty: s.c.tty}
		s.mu.Unlock()
		reply(conn, r)
	case "wait":
		// replies.Add only while not exited: finish waits on replies after
		// setting exited under mu, so no Add can race with that Wait.
		s.mu.Lock()
		counted := s.status != wire.StatusExited
		if counted {
			s.replies.Add(1)
		}
		s.mu.Unlock()
		if counted {
			defer s.replies.Done()
		}
		<-s.exited
		s.mu.Lock()
		r := wire.Response{Status: s.status, Pid: s.pid, Exit: s.exit}
		s.mu.Unlock()
		reply(conn, r)
	case "resize":
		reply(conn, s.resize(req.Height, req.Width))
	case "shutdown":
		s.mu.Lock()
		st := s.status
		s.mu.Unlock()
		if st != wire.StatusCreated {
			reply(conn, wire.Response{Error: "process is " + st + "; only a never-started shim can be shut down"})
			break
		}
		reply(conn, wire.Response{Status: st})
		conn.Close()
		if s.logw != nil {
			s.logw.Close()
		}
		s.shutdown()
		return
	case "attach":
		s.attach(conn, br, req)
		return // attach owns conn
	default:
		reply(conn, wire.Response{Error: "unknown command " + strconv.Quote(req.Cmd)})
	}
	conn.Close()
}

func reply(conn io.Writer, r wire.Response) {
	conn.Write(encodeResponse(r))
}

// runtimeCmd runs the runtime with the reaper held off, so wait4(-1) cannot
// steal the runtime's own exit status.
func (s *server) runtimeCmd(cmd *exec.Cmd) error {
	s.reapM.Lock()
	defer s.reapM.Unlock()
	boundIO(cmd)
	return cmd.Run()
}

// boundIO keeps a runtime command from hanging the shim after it exits: a
// runtime that dies abnormally can leave a child (its init) holding the
// output pipe, and Run would wait for that pipe forever.
func boundIO(cmd *exec.Cmd) {
	cmd.WaitDelay = 2 * time.Second
}

func (s *server) start() wire.Response {
	s.mu.Lock()
	if s.status != wire.StatusCreated {
		st := s.status
		s.mu.Unlock()
		return wire.Response{Error: "already started (" + st + ")"}
	}
	s.status = "starting"
	s.mu.Unlock()

	pidFile := wire.PidName(s.c.execID)
	os.Remove(pidFile)
	args := []string{"--root", s.c.runtimeRoot}
	if s.c.execID == "" {
		args = append(args, "run", "--detach", "--pid-file", pidFile, "--bundle", ".")
	} else {
		args = append(args, "exec", "--process", s.c.processFile, "--detach", "--pid-file", pidFile)
	}
	var consoleLn *os.File
	if s.c.tty {
		name := "console-" + strconv.Itoa(os.Getpid()) + ".sock"
		os.Remove(name)
		ln, err := listenUnix(name)
		if err != nil {
			return s.startFailed("console socket: " + err.Error())
		}
		defer func() { ln.Close(); os.Remove(name) }()
		consoleLn = ln
		args = append(args, "--console-socket", name)
	}
	args = append(args, s.c.id)
	cmd := exec.Command(s.c.runtime, args...)
	var errBuf bytes.Buffer
	var outR, errR *os.File
	var closeAfter []*os.File
	if s.c.tty {
		cmd.Stdout, cmd.Stderr = &errBuf, &errBuf
	} else {
		var err error
		var outW, errW *os.File
		if outR, outW, err = os.Pipe(); err != nil {
			return s.startFailed(err.Error())
		}
		if errR, errW, err = os.Pipe(); err != nil {
			return s.startFailed(err.Error())
		}
		cmd.Stdout, cmd.Stderr = outW, errW
		closeAfter = append(closeAfter, outW, errW)
		if s.c.stdin {
			inR, inW, err := os.Pipe()
			if err != nil {
				return s.startFailed(err.Error())
			}
			cmd.Stdin = inR
			closeAfter = append(closeAfter, inR)
			s.mu.Lock()
			s.stdinW = inW
			s.mu.Unlock()
		}
	}
	var masterc chan *os.File
	if consoleLn != nil {
		masterc = make(chan *os.File, 1)
		go func() { masterc <- acceptFd(consoleLn) }()
	}
	// Read at the start, not when the shim came up: a daemon may start the
	// shim before it writes the bundle's config.json.
	s.cgr = readCgroupsPath("config.json")
	if s.cgr != "" {
		s.oom0, _ = cgroups.OOMKills(s.cgr)
	}
	// Hold the reaper off until the pid is recorded: a process that exits
	// at once must not be reaped before we know it is ours.
	s.reapM.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			s.reapM.Unlock()
		}
	}
	defer unlock()
	boundIO(cmd)
	runErr := cmd.Run()
	for _, f := range closeAfter {
		f.Close()
	}
	if runErr != nil {
		msg := strings.TrimSpace(errBuf.String())
		if errR != nil {
			// The process never ran: what is in the stderr pipe is the
			// runtime's own message.
			errR.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			b, _ := io.ReadAll(io.LimitReader(errR, 64<<10))
			msg = strings.TrimSpace(msg + "\n" + string(b))
			errR.Close()
			outR.Close()
		}
		if msg == "" {
			msg = runErr.Error()
		}
		return s.startFailed(filepath.Base(s.c.runtime) + ": " + msg)
	}
	// From here the process exists: a failure must not leave it running
	// with nobody holding it.
	abort := func(msg string) wire.Response {
		if s.c.execID == "" {
			del := exec.Command(s.c.runtime, "--root", s.c.runtimeRoot, "delete", "--force", s.c.id)
			boundIO(del)
			del.Run() // reaper is held off: we may wait for it
		} else if pid, err := readPid(pidFile); err == nil {
			unix.Kill(pid, unix.SIGKILL)
		}
		return s.startFailed(msg)
	}
	pid, err := readPid(pidFile)
	if err != nil {
		return abort(err.Error())
	}
	if masterc != nil {
		select {
		case m := <-masterc:
			if m == nil {
				return abort("runtime sent no pty master on the console socket")
			}
			s.master = m
		case <-time.After(10 * time.Second):
			return abort("timed out waiting for the pty master")
		}
	}
	s.mu.Lock()
	s.status, s.pid = wire.StatusRunning, pid
	if s.master != nil {
		s.stdinW = s.master
		if s.winH > 0 {
			unix.IoctlSetWinsize(int(s.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: s.winH, Col: s.winW})
		}
	}
	s.mu.Unlock()
	// The copiers are counted before the reaper may run: a process that is
	// already gone (a command that fails at once) would otherwise be
	// finished with no copier to wait for, its log closed and its
	// attachments answered before its output was read, and the output lost.
	if s.master != nil {
		s.copy(s.master, logs.Stdout, wire.StreamStdout)
	} else {
		s.copy(outR, logs.Stdout, wire.StreamStdout)
		s.copy(errR, logs.Stderr, wire.StreamStderr)
	}
	unlock()
	close(s.started)
	s.kickReaper()
	return wire.Response{Pid: pid, Status: wire.StatusRunning}
}

func (s *server) startFailed(msg string) wire.Response {
	s.mu.Lock()
	s.status = wire.StatusCreated
	if s.stdinW != nil {
		s.stdinW.Close()
		s.stdinW = nil
	}
	s.mu.Unlock()
	return wire.Response{Error: msg}
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, errors.New("runtime wrote no pid file: " + err.Error())
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, errors.New("pid file " + path + ": " + strconv.Quote(string(b)) + " is not a pid")
	}
	return pid, nil
}

// acceptFd accepts one connection on ln and returns the fd it carries, or
// nil (closing ln ends the wait).
func acceptFd(ln *os.File) *os.File {
	conn, err := accept(ln)
	if err != nil {
		return nil
	}
	defer conn.Close()
	f, err := recvFd(conn)
	if err != nil {
		return nil
	}
	return f
}

// copy pumps one output of the container into the log and the attachments.
func (s *server) copy(r *os.File, stream string, id byte) {
	var lw *logs.StreamWriter
	if s.logw != nil {
		lw = s.logw.Stream(stream)
	}
	s.copiers.Add(1)
	go func() {
		defer s.copiers.Done()
		defer r.Close()
		buf := make([]byte, 16<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				p := buf[:n]
				if lw != nil {
					lw.Write(p) // the log never waits for clients
				}
				s.fanout(id, p)
			}
			if err != nil {
				break // EOF, or EIO on a pty whose slaves are all closed
			}
		}
		if lw != nil {
			lw.Flush()
		}
	}()
}

func (s *server) fanout(id byte, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a := range s.attaches {
		if (id == wire.StreamStdout && !a.stdout) || (id == wire.StreamStderr && !a.stderr) {
			continue
		}
		var b []byte
		if s.c.tty {
			b = append([]byte(nil), p...)
		} else {
			b = wire.Frame(id, p)
		}
		select {
		case a.ch <- b:
		default:
			// A slow client loses output rather than stall the log.
		}
	}
}

func (s *server) attach(conn *os.File, br *bufio.Reader, req wire.Request) {
	s.mu.Lock()
	if s.status == wire.StatusExited {
		s.mu.Unlock()
		reply(conn, wire.Response{Error: "process has exited", Status: wire.StatusExited})
		conn.Close()
		return
	}
	a := &attachment{conn: conn, stdout: req.Stdout, stderr: req.Stderr, ch: make(chan []byte, 64)}
	s.attaches[a] = struct{}{}
	s.replies.Add(1)
	st := s.status
	s.mu.Unlock()
	reply(conn, wire.Response{Status: st, Tty: s.c.tty})
	go func() {
		defer s.replies.Done()
		for b := range a.ch {
			if _, err := conn.Write(b); err != nil {
				s.mu.Lock()
				delete(s.attaches, a)
				s.mu.Unlock()
				a.close()
				for range a.ch {
				}
				break
			}
		}
		conn.Close()
	}()
	if req.Stdin && (s.c.stdin || s.c.tty) {
		go func() {
			select {
			case <-s.started:
			case <-s.exited:
				return
			}
			s.mu.Lock()
			w := s.stdinW
			s.mu.Unlock()
			if w == nil {
				return
			}
			io.Copy(w, br)
			if !s.c.tty && (s.c.stdinOnce || s.c.execID != "") {
				// The client closed its stdin: so does the container
				// (docker run -i with EOF, Docker's StdinOnce). Without
				// StdinOnce stdin stays open for the next attach, as a
				// Kubernetes pod with stdin and no stdinOnce expects.
				s.mu.Lock()
				if s.stdinW == w {
					w.Close()
					s.stdinW = nil
				}
				s.mu.Unlock()
			}
		}()
	}
}

func (s *server) resize(h, w uint16) wire.Response {
	if !s.c.tty {
		return wire.Response{Error: "no tty to resize"}
	}
	if h == 0 || w == 0 {
		return wire.Response{Error: "size " + strconv.Itoa(int(h)) + "x" + strconv.Itoa(int(w)) + ": height and width must be positive"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.winH, s.winW = h, w
	if s.master != nil {
		if err := unix.IoctlSetWinsize(int(s.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: h, Col: w}); err != nil {
			return wire.Response{Error: "resize: " + err.Error()}
		}
	}
	return wire.Response{}
}

func (s *server) kickReaper() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *server) reaper(sigc chan os.Signal) {
	for {
		select {
		case <-sigc:
		case <-s.kick:
		}
		s.reapM.Lock()
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			s.mu.Lock()
			mine := pid == s.pid && s.status == wire.StatusRunning
			if mine {
				s.status = "exiting"
			}
			s.mu.Unlock()
			if mine {
				code := ws.ExitStatus()
				if ws.Signaled() {
					code = 128 + int(ws.Signal())
				}
				go s.finish(code, time.Now())
			}
		}
		s.reapM.Unlock()
	}
}

// finish records the exit, cleans up the runtime and answers everyone.
func (s *server) finish(code int, at time.Time) {
	es := &wire.ExitStatus{ExitCode: code, ExitedAt: at.UTC()}
	if s.cgr != "" {
		if n, err := cgroups.OOMKills(s.cgr); err == nil && n > s.oom0 {
			es.OOMKilled = true
		}
	}
	// Output drains once every writer is gone; an exec's orphaned
	// children may hold it open, so bound the wait.
	drained := make(chan struct{})
	go func() { s.copiers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		s.note("output still open 2s after exit; closing it")
	}
	s.mu.Lock()
	if s.stdinW != nil && s.master == nil {
		s.stdinW.Close()
		s.stdinW = nil
	}
	s.mu.Unlock()
	if s.logw != nil {
		s.logw.Close()
	}
	if err := writeExit(wire.ExitName(s.c.execID), es); err != nil {
		s.note("write exit status: " + err.Error())
	}
	s.mu.Lock()
	s.status, s.exit = wire.StatusExited, es
	atts := make([]*attachment, 0, len(s.attaches))
	for a := range s.attaches {
		atts = append(atts, a)
	}
	s.attaches = map[*attachment]struct{}{}
	s.mu.Unlock()
	close(s.exited)
	for _, a := range atts {
		a.close()
	}
	// Let waiters and attach streams take the exit, bounded, before the
	// runtime's delete: starting that (a fork and exec) would otherwise
	// hold the shim's one P before the waiters' goroutines have run, and
	// every exit would reach the daemon a millisecond or two late.
	flushed := make(chan struct{})
	go func() { s.replies.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(2 * time.Second):
		s.note("clients did not take the exit answer within 2s")
	}
	// The runtime's state and cgroup go after the exit is answered, so
	// waiters do not pay for the runtime's delete; the daemon waits for
	// this shim to be gone (its socket removed) before starting the
	// container again.
	if s.c.execID == "" {
		cmd := exec.Command(s.c.runtime, "--root", s.c.runtimeRoot, "delete", "--force", s.c.id)
		var eb bytes.Buffer
		cmd.Stderr = &eb
		if err := s.runtimeCmd(cmd); err != nil {
			s.note("runtime delete: " + strings.TrimSpace(eb.String()))
		}
	}
	if s.master != nil {
		s.master.Close()
	}
	s.shutdown()
}

func writeExit(name string, es *wire.ExitStatus) error {
	b := appendExit(nil, es)
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	// No fsync: rename makes the record atomic for readers and against a
	// crash of the shim or daemon; surviving power loss is not worth the
	// milliseconds on every container exit (Docker does not either).
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// note appends a line to shim.log in the bundle: the shim's stdio is
// /dev/null, so this is where its own trouble goes.
func (s *server) note(msg string) {
	f, err := os.OpenFile("shim.log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	f.WriteString(time.Now().UTC().Format(time.RFC3339Nano) + " " + s.c.id + " " + s.c.execID + ": " + msg + "\n")
	f.Close()
}
