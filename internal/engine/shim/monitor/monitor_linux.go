// Package monitor is the berth-shim process: the per-container monitor that
// holds a container's stdio, writes its CRI log, reaps it as child subreaper,
// records its exit (and OOM kill) in the bundle and serves the wire protocol
// (package wire) on the bundle's socket. The daemon's side is package shim.
//
// One runs per container, so its memory is paid per container. A static Go
// binary this small is resident almost whole (the kernel maps 64 KiB around
// every page fault), so the monitor's RSS is about its file size plus the
// Go runtime's own heap and stacks. It therefore links only package syscall
// and berth's crilog: no os, time, strconv, os/exec or os/signal. It is one
// goroutine running an epoll loop (no thread blocked per pipe or client),
// started with GOMAXPROCS=1 and GOGC=20 by the daemon.
package monitor

import (
	"syscall"

	"github.com/berth/berth/internal/engine/logs/crilog"
	"github.com/berth/berth/internal/engine/shim/wire/names"
)

// Process states reported by "state" (wire's Status values and the two
// passing ones).
const (
	stCreated  = "created"
	stStarting = "starting"
	stRunning  = "running"
	stExiting  = "exiting"
	stExited   = "exited"
)

// Stream ids in stdcopy frame headers (wire.StreamStdout, StreamStderr).
const (
	streamStdout = 1
	streamStderr = 2
)

// maxStdinPending is how much client input is held for a process that does
// not read it; beyond it, clients are not read from.
const maxStdinPending = 64 << 10

// Main runs the shim process with the command-line arguments args (without
// the program name) and returns its exit code. fd 3, when open, is the sync
// pipe on which the daemon waits for "ready".
func Main(args []string) int {
	syncFd := 3
	if _, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, 3, syscall.F_GETFD, 0); e != 0 {
		syncFd = -1
	} else {
		syscall.CloseOnExec(3)
	}
	ready := func(msg string) {
		if syncFd < 0 {
			return
		}
		b := []byte(`{"ready":true}` + "\n")
		if msg != "" {
			b = appendString([]byte(`{"error":`), msg)
			b = append(b, '}', '\n')
		}
		writeAll(syncFd, b)
		syscall.Close(syncFd)
	}
	c, err := parseFlags(args)
	if err != nil {
		ready("berth-shim: " + err.Error())
		return 2
	}
	s, err := newServer(c)
	if err != nil {
		ready(err.Error())
		return 1
	}
	ready("")
	return s.run()
}

type server struct {
	c       config
	ep      int // epoll
	ln      int // listening socket
	watches []*watch
	gen     int32
	buf     []byte // read buffer, used by one handler at a time
	frame   []byte // stdcopy frame being fanned out
	fanTo   []*attachment
	logw    *crilog.Writer

	status   string
	pid      int
	pidfd    int  // readable once pid exits; -1 without
	pollReap bool // no pidfd (Linux < 5.3): look for the exit every 50 ms
	cgr      string
	oom0     uint64
	exit     *exitStatus // pending while exiting, final once exited

	outs     []*output
	master   int // pty master, -1 without a tty
	stdinFd  int // where client input goes (pipe or master); -1 if none
	stdinBuf []byte
	stdinEOF bool // close stdinFd once stdinBuf is written
	winH     uint16
	winW     uint16

	waiters  []int
	atts     []*attachment
	acceptAt int64 // monotonic ms: take the listener back (after EMFILE)
	drainBy  int64 // monotonic ms: give up waiting for output after exit
	flushBy  int64 // monotonic ms: give up on clients taking the exit
	done     bool
}

// watch is an fd in the epoll set and what to do when it is ready. gen
// tells a stale event (for an fd closed and reused in one batch) apart.
type watch struct {
	fd     int
	gen    int32
	events uint32
	added  bool
	on     func(events uint32)
}

// output is the read end of the container's stdout or stderr (or the pty
// master).
type output struct {
	fd   int
	id   byte
	sw   *crilog.StreamWriter
	done bool
}

// attachment is a client receiving output and maybe sending input.
type attachment struct {
	fd             int
	stdout, stderr bool
	stdinOpen      bool   // still reading the client's input
	q              []byte // output not yet written to the client
	closing        bool   // close once q is written
}

func newServer(c config) (*server, error) {
	if err := syscall.Chdir(c.bundle); err != nil {
		return nil, errString("berth-shim: bundle " + quote(c.bundle) + ": " + err.Error())
	}
	if err := setSubreaper(); err != nil {
		return nil, errString("berth-shim: become subreaper: " + err.Error())
	}
	s := &server{c: c, cgr: c.cgroupsPath, status: stCreated, pidfd: -1, master: -1, stdinFd: -1, buf: make([]byte, 32<<10)}
	if c.logPath != "" {
		w, err := crilog.NewWriter(c.logPath, c.logMaxSize, c.logMaxFiles)
		if err != nil {
			return nil, errString("berth-shim: " + err.Error())
		}
		s.logw = w
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, errString("berth-shim: epoll: " + err.Error())
	}
	s.ep = ep
	name := names.Sock(c.execID)
	syscall.Unlink(name)
	ln, err := listenUnix(name)
	if err != nil {
		return nil, errString("berth-shim: listen " + c.bundle + "/" + name + ": " + err.Error())
	}
	s.ln = ln
	return s, nil
}

// run serves until the process has exited and everyone has its exit, or
// until a never-started shim is shut down.
func (s *server) run() int {
	s.set(s.ln, epollIn, s.acceptAll)
	evs := make([]syscall.EpollEvent, 16)
	for !s.done {
		n, err := syscall.EpollWait(s.ep, evs, s.timeout())
		if err != nil && err != syscall.EINTR {
			s.note("epoll_wait: " + err.Error())
			return 1
		}
		for i := 0; i < n; i++ {
			fd := int(evs[i].Fd)
			if fd < len(s.watches) {
				if w := s.watches[fd]; w != nil && w.gen == evs[i].Pad {
					w.on(evs[i].Events)
				}
			}
		}
		s.reap()
		s.advance()
	}
	syscall.Unlink(names.Sock(s.c.execID))
	syscall.Close(s.ln)
	return 0
}

// timeout is how long epoll_wait may sleep: until the next deadline.
func (s *server) timeout() int {
	now := monoMillis()
	next := int64(-1) // none
	soonest := func(at int64) {
		if d := max(at-now, 0); next < 0 || d < next {
			next = d
		}
	}
	switch {
	case s.status == stExiting:
		soonest(s.drainBy)
	case s.status == stExited:
		soonest(s.flushBy)
	case s.pollReap && s.status == stRunning:
		soonest(now + 50)
	}
	if s.acceptAt > 0 {
		soonest(s.acceptAt)
	}
	return int(next)
}

// set registers fd (or changes its events and handler). An fd with no
// events is still told of a hang-up, except an output or stdin target,
// which is taken out of the set then (a pty master or pipe whose other
// end is gone would report it forever).
func (s *server) set(fd int, events uint32, on func(uint32)) {
	for fd >= len(s.watches) {
		s.watches = append(s.watches, nil)
	}
	w := s.watches[fd]
	if w == nil {
		s.gen++
		w = &watch{fd: fd, gen: s.gen}
		s.watches[fd] = w
	}
	w.on = on
	if w.added && w.events == events {
		return
	}
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd), Pad: w.gen}
	op := syscall.EPOLL_CTL_MOD
	if !w.added {
		op = syscall.EPOLL_CTL_ADD
	}
	if err := syscall.EpollCtl(s.ep, op, fd, &ev); err != nil {
		s.note("epoll_ctl: " + err.Error())
		return
	}
	w.events, w.added = events, true
}

// pause takes fd out of the epoll set but keeps its handler.
func (s *server) pause(fd int) {
	if fd < len(s.watches) {
		if w := s.watches[fd]; w != nil && w.added {
			syscall.EpollCtl(s.ep, syscall.EPOLL_CTL_DEL, fd, nil)
			w.added, w.events = false, 0
		}
	}
}

// closeFd forgets and closes fd.
func (s *server) closeFd(fd int) {
	s.pause(fd)
	if fd < len(s.watches) {
		s.watches[fd] = nil
	}
	syscall.Close(fd)
}

func (s *server) acceptAll(uint32) {
	for {
		fd, _, err := syscall.Accept4(s.ln, syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EMFILE || err == syscall.ENFILE || err == syscall.ENOMEM || err == syscall.ENOBUFS {
			// Out of descriptors or memory: the listener stays readable, so
			// leave it out of the set for a while rather than spin.
			s.pause(s.ln)
			s.acceptAt = monoMillis() + 100
			return
		}
		if err != nil {
			return // EAGAIN, or a connection that went away (ECONNABORTED)
		}
		var line []byte
		s.set(fd, epollIn, func(uint32) { s.readRequest(fd, &line) })
	}
}

// readRequest gathers the first line of a connection and serves it.
func (s *server) readRequest(fd int, line *[]byte) {
	for {
		n, err := syscall.Read(fd, s.buf)
		if n > 0 {
			*line = append(*line, s.buf[:n]...)
			if i := indexByte(*line, '\n'); i >= 0 {
				s.serve(fd, (*line)[:i+1], (*line)[i+1:])
				return
			}
			if len(*line) > maxRequestLine {
				s.closeFd(fd)
				return
			}
			continue
		}
		if err == syscall.EINTR {
			continue
		}
		if err != syscall.EAGAIN {
			s.closeFd(fd) // gone before it asked anything
		}
		return
	}
}

func (s *server) reply(fd int, r response) { writeAll(fd, encodeResponse(r)) }

// serve answers one request; rest is what the client sent after the line
// (input for an attach).
func (s *server) serve(fd int, line, rest []byte) {
	req, err := parseRequest(line)
	if err != nil {
		s.reply(fd, response{err: "bad request: " + err.Error()})
		s.closeFd(fd)
		return
	}
	switch req.cmd {
	case "start":
		s.reply(fd, s.start())
	case "state":
		s.reply(fd, response{status: s.status, pid: s.pid, exit: s.finalExit(), tty: s.c.tty})
	case "wait":
		if s.status == stExited {
			s.reply(fd, response{status: s.status, pid: s.pid, exit: s.exit})
			break
		}
		s.waiters = append(s.waiters, fd)
		s.set(fd, 0, func(ev uint32) {
			if ev&(epollHup|epollErr) != 0 { // the client gave up
				s.waiters = removeInt(s.waiters, fd)
				s.closeFd(fd)
			}
		})
		return
	case "resize":
		s.reply(fd, s.resize(req.height, req.width))
	case "shutdown":
		if s.status != stCreated {
			s.reply(fd, response{err: "process is " + s.status + "; only a never-started shim can be shut down"})
			break
		}
		s.reply(fd, response{status: s.status})
		if s.logw != nil {
			s.logw.Close()
		}
		s.done = true
	case "attach":
		s.attach(fd, req, rest)
		return // the attachment owns fd
	default:
		s.reply(fd, response{err: "unknown command " + quote(req.cmd)})
	}
	s.closeFd(fd)
}

// finalExit is the exit record once it is written, nil before.
func (s *server) finalExit() *exitStatus {
	if s.status == stExited {
		return s.exit
	}
	return nil
}

// spawn runs the runtime with args and the given stdio.
func (s *server) spawn(args []string, stdin, stdout, stderr int) (int, error) {
	argv := append([]string{s.c.runtime}, args...)
	return syscall.ForkExec(s.c.runtime, argv, &syscall.ProcAttr{
		Env:   syscall.Environ(),
		Files: []uintptr{uintptr(stdin), uintptr(stdout), uintptr(stderr)},
	})
}

// waitChild waits for the runtime process pid and describes a failure.
func waitChild(pid int) (ok bool, failure string) {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return true, ""
	case ws.Signaled():
		return false, "signal: " + ws.Signal().String()
	}
	return false, "exit status " + crilog.Itoa(ws.ExitStatus())
}

// readAvailable reads what fd holds within ms milliseconds (up to 64 KiB):
// a runtime's message, from a pipe a leftover process may still hold.
func readAvailable(fd int, ms int) string {
	setNonblock(fd)
	var out []byte
	deadline := monoMillis() + int64(ms)
	buf := make([]byte, 4096)
	for len(out) < 64<<10 {
		n, err := syscall.Read(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
			continue
		}
		if err == syscall.EINTR {
			continue
		}
		if err != syscall.EAGAIN {
			break // EOF
		}
		left := deadline - monoMillis()
		if left <= 0 || !waitReadable(fd, int(left)) {
			break
		}
	}
	return trimSpace(string(out))
}

func closeAll(fds ...*int) {
	for _, fd := range fds {
		if *fd >= 0 {
			syscall.Close(*fd)
			*fd = -1
		}
	}
}

// start runs the process: the runtime's "run --detach" (or "exec
// --detach") with the container's stdio on pipes, or a pty received on a
// console socket. It waits for the runtime to exit, so it answers once the
// process runs or failed to.
func (s *server) start() response {
	if s.status != stCreated {
		return response{err: "already started (" + s.status + ")"}
	}
	s.status = stStarting
	pidFile := names.Pid(s.c.execID)
	syscall.Unlink(pidFile)
	args := []string{"--root", s.c.runtimeRoot}
	if s.c.execID == "" {
		args = append(args, "run", "--detach", "--pid-file", pidFile, "--bundle", ".")
	} else {
		args = append(args, "exec", "--process", s.c.processFile, "--detach", "--pid-file", pidFile)
	}
	consoleLn := -1
	if s.c.tty {
		name := "console-" + crilog.Itoa(syscall.Getpid()) + ".sock"
		syscall.Unlink(name)
		ln, err := listenUnix(name)
		if err != nil {
			return s.startFailed("console socket: " + err.Error())
		}
		defer func() { syscall.Close(ln); syscall.Unlink(name) }()
		consoleLn = ln
		args = append(args, "--console-socket", name)
	}
	args = append(args, s.c.id)

	null, err := syscall.Open(devNull, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return s.startFailed("open " + devNull + ": " + err.Error())
	}
	defer syscall.Close(null)
	outR, outW, errR, errW, inR, inW := -1, -1, -1, -1, -1, -1
	defer closeAll(&outW, &errW, &inR)
	stdio := [3]int{null, null, null}
	if s.c.tty {
		// The runtime's own output; the process gets the pty.
		if errR, errW, err = pipe(); err != nil {
			return s.startFailed(err.Error())
		}
		stdio[1], stdio[2] = errW, errW
	} else {
		if outR, outW, err = pipe(); err == nil {
			errR, errW, err = pipe()
		}
		if err == nil && s.c.stdin {
			inR, inW, err = pipe()
		}
		if err != nil {
			closeAll(&outR, &errR, &inW)
			return s.startFailed(err.Error())
		}
		stdio = [3]int{null, outW, errW}
		if inR >= 0 {
			stdio[0] = inR
		}
	}
	if s.cgr != "" {
		s.oom0, _ = oomKills(s.cgr)
	}
	pid, err := s.spawn(args, stdio[0], stdio[1], stdio[2])
	closeAll(&outW, &errW, &inR)
	failure := ""
	if err != nil {
		failure = err.Error()
	} else if ok, why := waitChild(pid); !ok {
		failure = why
	}
	if failure != "" {
		// The process never ran: what is in the stderr pipe is the
		// runtime's own message.
		if msg := readAvailable(errR, 200); msg != "" {
			failure = msg
		}
		closeAll(&outR, &errR, &inW)
		return s.startFailed(basename(s.c.runtime) + ": " + failure)
	}
	if s.c.tty {
		closeAll(&errR)
	}
	// From here the process exists: a failure must not leave it running
	// with nobody holding it.
	abort := func(msg string) response {
		closeAll(&outR, &errR, &inW)
		if s.c.execID == "" {
			s.deleteContainer()
		} else if pid, err := readPid(pidFile); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		return s.startFailed(msg)
	}
	cpid, err := readPid(pidFile)
	if err != nil {
		return abort(err.Error())
	}
	if consoleLn >= 0 {
		m, err := acceptFd(consoleLn)
		if err != nil {
			return abort("runtime sent no pty master on the console socket: " + err.Error())
		}
		s.master = m
		setNonblock(m)
		if s.winH > 0 {
			setWinsize(m, s.winH, s.winW)
		}
	}
	s.status, s.pid = stRunning, cpid
	// Output is read from now on, through the loop: a process that is
	// already gone has its output read before its exit is recorded.
	if s.master >= 0 {
		s.stdinFd = s.master
		s.addOutput(s.master, streamStdout, crilog.Stdout)
	} else {
		s.addOutput(outR, streamStdout, crilog.Stdout)
		s.addOutput(errR, streamStderr, crilog.Stderr)
		if inW >= 0 {
			s.stdinFd = inW
			setNonblock(inW)
		}
	}
	if fd, err := pidfdOpen(cpid); err == nil {
		s.pidfd = fd
		s.set(fd, epollIn, func(uint32) { s.reap() })
	} else {
		s.pollReap = true
	}
	s.pumpStdin()
	return response{pid: cpid, status: stRunning}
}

// acceptFd takes the pty master the runtime sent on the console socket.
func acceptFd(ln int) (int, error) {
	for {
		if !waitReadable(ln, 10000) {
			return -1, errString("timed out")
		}
		conn, _, err := syscall.Accept4(ln, syscall.SOCK_CLOEXEC)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, err
		}
		defer syscall.Close(conn)
		return recvFd(conn)
	}
}

func (s *server) startFailed(msg string) response {
	s.status = stCreated
	if s.stdinFd >= 0 && s.stdinFd != s.master {
		syscall.Close(s.stdinFd)
	}
	s.stdinFd = -1
	return response{err: msg}
}

// deleteContainer removes the container from the runtime (its state and
// cgroup).
func (s *server) deleteContainer() {
	null, err := syscall.Open(devNull, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		s.note("runtime delete: " + err.Error())
		return
	}
	defer syscall.Close(null)
	r, w, err := pipe()
	if err != nil {
		s.note("runtime delete: " + err.Error())
		return
	}
	defer syscall.Close(r)
	pid, err := s.spawn([]string{"--root", s.c.runtimeRoot, "delete", "--force", s.c.id}, null, null, w)
	syscall.Close(w)
	if err != nil {
		s.note("runtime delete: " + err.Error())
		return
	}
	if ok, why := waitChild(pid); !ok {
		if msg := readAvailable(r, 200); msg != "" {
			why = msg
		}
		s.note("runtime delete: " + why)
	}
}

func (s *server) addOutput(fd int, id byte, stream string) {
	o := &output{fd: fd, id: id}
	if s.logw != nil {
		o.sw = s.logw.Stream(stream)
	}
	s.outs = append(s.outs, o)
	if fd != s.master {
		setNonblock(fd)
		s.set(fd, epollIn, func(uint32) { s.readOutput(o) })
		return
	}
	s.updateMaster()
}

// updateMaster sets the pty master's events: output to read, input to
// write.
func (s *server) updateMaster() {
	if s.master < 0 {
		return
	}
	var ev uint32
	if len(s.outs) > 0 && !s.outs[0].done {
		ev |= epollIn
	}
	if s.stdinFd == s.master && len(s.stdinBuf) > 0 {
		ev |= epollOut
	}
	if ev == 0 {
		s.pause(s.master)
		return
	}
	s.set(s.master, ev, func(ev uint32) {
		if ev&(epollIn|epollHup|epollErr) != 0 && !s.outs[0].done {
			s.readOutput(s.outs[0])
		}
		if ev&epollOut != 0 {
			s.pumpStdin()
		}
		s.updateMaster()
	})
}

// readOutput pumps what the process wrote into the log and to the
// attached clients. The log never waits for clients.
func (s *server) readOutput(o *output) {
	for i := 0; i < 8; i++ {
		n, err := syscall.Read(o.fd, s.buf)
		if n > 0 {
			p := s.buf[:n]
			if o.sw != nil {
				o.sw.Write(p)
			}
			s.fanout(o.id, p)
			continue
		}
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return
		}
		// EOF, or EIO on a pty whose slaves are all closed.
		s.endOutput(o)
		return
	}
}

func (s *server) endOutput(o *output) {
	if o.done {
		return
	}
	o.done = true
	if o.sw != nil {
		o.sw.Flush()
	}
	if o.fd == s.master {
		s.updateMaster()
	} else {
		s.closeFd(o.fd)
	}
}

func (s *server) outputsDone() bool {
	for _, o := range s.outs {
		if !o.done {
			return false
		}
	}
	return true
}

func (s *server) fanout(id byte, p []byte) {
	b := p
	if !s.c.tty {
		n := uint32(len(p))
		s.frame = append(s.frame[:0], id, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		s.frame = append(s.frame, p...)
		b = s.frame
	}
	// send may close an attachment (a client gone), which changes s.atts:
	// walk a copy.
	s.fanTo = append(s.fanTo[:0], s.atts...)
	for _, a := range s.fanTo {
		if a.fd < 0 || a.closing || (id == streamStdout && !a.stdout) || (id == streamStderr && !a.stderr) {
			continue
		}
		s.send(a, b)
	}
}

// send writes b to a client, queueing what the socket does not take. A
// client too slow to keep up loses whole frames rather than stall the log.
func (s *server) send(a *attachment, b []byte) {
	if len(a.q) == 0 {
		n, err := syscall.Write(a.fd, b)
		if n == len(b) {
			return
		}
		if err != nil && err != syscall.EAGAIN && err != syscall.EINTR {
			s.closeAttach(a)
			return
		}
		if n > 0 {
			a.q = append(a.q, b[n:]...) // the rest of a frame is always kept
			s.updateAttach(a)
			return
		}
	}
	if len(a.q)+len(b) > maxPendingAttachBytes {
		return
	}
	a.q = append(a.q, b...)
	s.updateAttach(a)
}

func (s *server) attach(fd int, req request, rest []byte) {
	if s.status == stExited {
		s.reply(fd, response{err: "process has exited", status: stExited})
		s.closeFd(fd)
		return
	}
	a := &attachment{fd: fd, stdout: req.stdout, stderr: req.stderr, stdinOpen: req.stdin && (s.c.stdin || s.c.tty)}
	s.atts = append(s.atts, a)
	s.reply(fd, response{status: s.status, tty: s.c.tty})
	if a.stdinOpen && len(rest) > 0 {
		s.stdinBuf = append(s.stdinBuf, rest...)
	}
	s.pumpStdin()
	s.updateAttach(a)
}

// stdinReady reports whether client input can go to the process now.
func (s *server) stdinReady() bool {
	return (s.status == stRunning || s.status == stExiting) && s.stdinFd >= 0
}

func (s *server) updateAttach(a *attachment) {
	var ev uint32
	if a.stdinOpen && !a.closing && s.stdinReady() && len(s.stdinBuf) < maxStdinPending {
		ev |= epollIn
	}
	if len(a.q) > 0 {
		ev |= epollOut
	}
	s.set(a.fd, ev, func(ev uint32) {
		if ev&epollOut != 0 {
			if !s.flushAttach(a) {
				return
			}
		}
		switch {
		case ev&epollIn != 0 && a.stdinOpen:
			s.readInput(a)
		case ev&(epollHup|epollErr) != 0:
			s.closeAttach(a) // the client is gone
		}
	})
}

// flushAttach writes queued output; it reports false if a is gone.
func (s *server) flushAttach(a *attachment) bool {
	var err error
	if a.q, err = writeSome(a.fd, a.q); err != nil {
		s.closeAttach(a)
		return false
	}
	if len(a.q) > 0 {
		return true
	}
	a.q = nil
	if a.closing {
		s.closeAttach(a)
		return false
	}
	s.updateAttach(a)
	return true
}

// readInput takes a client's input for the process.
func (s *server) readInput(a *attachment) {
	for len(s.stdinBuf) < maxStdinPending {
		n, err := syscall.Read(a.fd, s.buf[:min(len(s.buf), maxStdinPending-len(s.stdinBuf))])
		if n > 0 {
			s.stdinBuf = append(s.stdinBuf, s.buf[:n]...)
			continue
		}
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		// The client closed its input (or broke off): so does the
		// process when that is asked for (docker run -i with EOF, Docker's
		// StdinOnce). Without StdinOnce stdin stays open for the next
		// attach, as a Kubernetes pod with stdin and no stdinOnce expects.
		a.stdinOpen = false
		if !s.c.tty && (s.c.stdinOnce || s.c.execID != "") {
			s.stdinEOF = true
		}
		break
	}
	s.pumpStdin()
	if a.fd >= 0 && !a.closing {
		s.updateAttach(a)
	}
}

// pumpStdin writes held input to the process and sets every reader's
// events to match what is held.
func (s *server) pumpStdin() {
	if !s.stdinReady() {
		if s.status != stCreated && s.status != stStarting {
			s.stdinBuf = nil // no one will read it
		}
		return
	}
	var err error
	if s.stdinBuf, err = writeSome(s.stdinFd, s.stdinBuf); err != nil {
		s.stdinBuf = nil // the process closed its stdin
	}
	if len(s.stdinBuf) == 0 {
		s.stdinBuf = nil
		if s.stdinEOF && s.stdinFd != s.master {
			s.closeFd(s.stdinFd)
			s.stdinFd = -1
		}
	}
	switch {
	case s.stdinFd < 0:
	case s.stdinFd == s.master:
		s.updateMaster()
	case len(s.stdinBuf) > 0:
		s.set(s.stdinFd, epollOut, func(uint32) { s.pumpStdin() })
	default:
		s.pause(s.stdinFd)
	}
	for _, a := range s.atts {
		if a.stdinOpen {
			s.updateAttach(a)
		}
	}
}

func (s *server) closeAttach(a *attachment) {
	for i, x := range s.atts {
		if x == a {
			s.atts = append(s.atts[:i], s.atts[i+1:]...)
			break
		}
	}
	if a.fd >= 0 {
		s.closeFd(a.fd)
		a.fd = -1
	}
}

func (s *server) resize(h, w uint16) response {
	if !s.c.tty {
		return response{err: "no tty to resize"}
	}
	if h == 0 || w == 0 {
		return response{err: "size " + crilog.Itoa(int(h)) + "x" + crilog.Itoa(int(w)) + ": height and width must be positive"}
	}
	s.winH, s.winW = h, w
	if s.master >= 0 {
		if err := setWinsize(s.master, h, w); err != nil {
			return response{err: "resize: " + err.Error()}
		}
	}
	return response{}
}

// reap collects every exited child; the process's own exit starts the
// finish.
func (s *server) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if pid == s.pid && s.status == stRunning {
			code := ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
			s.exited(code)
		}
	}
}

// exited records the process's end; its output is drained next.
func (s *server) exited(code int) {
	sec, nsec := crilog.Now()
	s.exit = &exitStatus{code: code, sec: sec, nsec: nsec}
	if s.cgr != "" {
		if n, ok := oomKills(s.cgr); ok && n > s.oom0 {
			s.exit.oom = true
		}
	}
	s.status = stExiting
	s.pollReap = false
	if s.pidfd >= 0 {
		s.closeFd(s.pidfd)
		s.pidfd = -1
	}
	// Output drains once every writer is gone; an exec's orphaned
	// children may hold it open, so the wait is bounded.
	s.drainBy = monoMillis() + 2000
}

// advance moves the finish along once what it waits for is done or its
// deadline has passed.
func (s *server) advance() {
	if s.acceptAt > 0 && monoMillis() >= s.acceptAt {
		s.acceptAt = 0
		s.set(s.ln, epollIn, s.acceptAll)
	}
	if s.status == stExiting {
		if !s.outputsDone() {
			if monoMillis() < s.drainBy {
				return
			}
			s.note("output still open 2s after exit; closing it")
			for _, o := range s.outs {
				s.endOutput(o)
			}
		}
		s.finish()
	}
	if s.status == stExited && !s.done {
		if len(s.atts) > 0 {
			if monoMillis() < s.flushBy {
				return
			}
			s.note("clients did not take the exit answer within 2s")
			for len(s.atts) > 0 {
				s.closeAttach(s.atts[0])
			}
		}
		// The runtime's state and cgroup go after the exit is answered, so
		// waiters do not pay for the runtime's delete; the daemon waits for
		// this shim to be gone (its socket removed) before starting the
		// container again.
		if s.c.execID == "" {
			s.deleteContainer()
		}
		if s.master >= 0 {
			s.closeFd(s.master)
			s.master = -1
		}
		s.done = true
	}
}

// finish writes the exit record and answers everyone.
func (s *server) finish() {
	if s.stdinFd >= 0 && s.stdinFd != s.master {
		s.closeFd(s.stdinFd)
	}
	s.stdinFd, s.stdinBuf = -1, nil
	if s.logw != nil {
		s.logw.Close()
	}
	if err := writeFileAtomic(names.Exit(s.c.execID), append(appendExit(nil, s.exit), '\n')); err != nil {
		s.note("write exit status: " + err.Error())
	}
	s.status = stExited
	answer := encodeResponse(response{status: s.status, pid: s.pid, exit: s.exit})
	for _, fd := range s.waiters {
		writeAll(fd, answer)
		s.closeFd(fd)
	}
	s.waiters = nil
	// Attached clients get what is queued for them, then EOF.
	for _, a := range append([]*attachment(nil), s.atts...) {
		a.closing, a.stdinOpen = true, false
		if len(a.q) == 0 {
			s.closeAttach(a)
		} else {
			s.updateAttach(a)
		}
	}
	s.flushBy = monoMillis() + 2000
}

// note appends a line to shim.log in the bundle: the shim's stdio is
// /dev/null, so this is where its own trouble goes.
func (s *server) note(msg string) {
	fd, err := syscall.Open("shim.log", syscall.O_WRONLY|syscall.O_APPEND|syscall.O_CREAT|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return
	}
	sec, nsec := crilog.Now()
	b := crilog.AppendTimestamp(nil, sec, nsec)
	b = append(b, ' ')
	b = append(b, s.c.id...)
	b = append(b, ' ')
	b = append(b, s.c.execID...)
	b = append(b, ": "...)
	b = append(b, msg...)
	b = append(b, '\n')
	writeAll(fd, b)
	syscall.Close(fd)
}

func basename(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

func removeInt(s []int, v int) []int {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// Args returns the process's command line from /proc/self/cmdline
// (os.Args without package os).
func Args() []string {
	b, err := readFile("/proc/self/cmdline")
	if err != nil {
		return nil
	}
	var args []string
	for len(b) > 0 {
		i := indexByte(b, 0)
		if i < 0 {
			args = append(args, string(b))
			break
		}
		args = append(args, string(b[:i]))
		b = b[i+1:]
	}
	return args
}
