package monitor

import (
	"syscall"
	"unsafe"
)

// Thin wrappers over the system calls package syscall does not name. The
// monitor links nothing but syscall (no os, net, time or strconv): see the
// package comment.

const (
	sysPidfdOpen          = 434 // the same number on every architecture
	prSetChildSubreaper   = 36
	clockMonotonic        = 1
	cgroup2SuperMagic     = 0x63677270
	epollIn, epollOut     = syscall.EPOLLIN, syscall.EPOLLOUT
	epollHup, epollErr    = syscall.EPOLLHUP, syscall.EPOLLERR
	devNull               = "/dev/null"
	maxRequestLine        = 64 << 10
	maxPendingAttachBytes = 1 << 20
)

// monoMillis is CLOCK_MONOTONIC in milliseconds, for deadlines.
func monoMillis() int64 {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Sec*1000 + ts.Nsec/1e6
}

// pidfdOpen returns a pollable fd that becomes readable when pid exits
// (Linux 5.3).
func pidfdOpen(pid int) (int, error) {
	fd, _, e := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

func setSubreaper() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return e
	}
	return nil
}

func setWinsize(fd int, rows, cols uint16) error {
	ws := struct{ row, col, x, y uint16 }{rows, cols, 0, 0}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws))); e != 0 {
		return e
	}
	return nil
}

func setNonblock(fd int) { syscall.SetNonblock(fd, true) }

// pipe returns a pipe whose ends are close-on-exec.
func pipe() (r, w int, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return -1, -1, err
	}
	return p[0], p[1], nil
}

// listenUnix listens on the socket file name (relative to the cwd: the
// bundle, which keeps socket paths short).
func listenUnix(name string) (int, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: name}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Listen(fd, 128); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// waitReadable waits up to ms milliseconds for fd to become readable.
func waitReadable(fd int, ms int) bool {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	defer syscall.Close(ep)
	if syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: epollIn, Fd: int32(fd)}) != nil {
		return false
	}
	var ev [1]syscall.EpollEvent
	deadline := monoMillis() + int64(ms)
	for {
		n, err := syscall.EpollWait(ep, ev[:], int(max(deadline-monoMillis(), 0)))
		if err == syscall.EINTR {
			continue
		}
		return n > 0
	}
}

// recvFd reads one message from the connected socket fd and returns the
// first file descriptor it carries.
func recvFd(fd int) (int, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	for {
		_, oobn, _, _, err := syscall.Recvmsg(fd, buf, oob, syscall.MSG_CMSG_CLOEXEC)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN && waitReadable(fd, 10000) {
			continue
		}
		if err != nil {
			return -1, err
		}
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return -1, err
		}
		for i := range msgs {
			fds, err := syscall.ParseUnixRights(&msgs[i])
			if err != nil || len(fds) == 0 {
				continue
			}
			for _, extra := range fds[1:] {
				syscall.Close(extra)
			}
			return fds[0], nil
		}
		return -1, errString("no file descriptor in the console socket message")
	}
}

// readFile reads a small file whole.
func readFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	// One allocation of the file's size (+1 to see EOF), not a doubling
	// series: what the monitor allocates stays resident.
	size := 4096
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) == nil && st.Size > 0 && st.Size < 1<<24 {
		size = int(st.Size) + 1
	}
	out := make([]byte, 0, size)
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := syscall.Read(fd, out[len(out):cap(out)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		out = out[:len(out)+n]
	}
}

// writeAll writes b to fd, which may be non-blocking (the small answers
// the monitor writes fit in a socket buffer).
func writeAll(fd int, b []byte) error {
	for tries := 0; ; tries++ {
		rest, err := writeSome(fd, b)
		if err != nil || len(rest) == 0 {
			return err
		}
		if tries == 10 {
			return syscall.EAGAIN // a client that takes nothing for 10 s
		}
		b = rest
		waitWritable(fd, 1000)
	}
}

// writeSome writes what the non-blocking fd takes of b now and returns the
// rest; the error is the one that ended the writing (never EAGAIN).
func writeSome(fd int, b []byte) ([]byte, error) {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if n > 0 {
			b = b[n:]
			continue
		}
		switch err {
		case syscall.EINTR:
		case syscall.EAGAIN:
			return b, nil
		default:
			return b, err
		}
	}
	return b, nil
}

func waitWritable(fd int, ms int) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return
	}
	defer syscall.Close(ep)
	syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: epollOut, Fd: int32(fd)})
	var ev [1]syscall.EpollEvent
	syscall.EpollWait(ep, ev[:], ms)
}

// writeFileAtomic writes b to name through a temporary file and a rename.
// No fsync: rename makes the record atomic for readers and against a crash
// of the shim or daemon; surviving power loss is not worth the milliseconds
// on every container exit (Docker does not either).
func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	fd, err := syscall.Open(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	err = writeAll(fd, b)
	if cerr := syscall.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syscall.Rename(tmp, name)
}

// cgroupV2 reports whether the host runs the unified (v2-only) hierarchy.
func cgroupV2() bool {
	var st syscall.Statfs_t
	return syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == cgroup2SuperMagic
}

// oomKills reads the OOM kill count of the container's memory cgroup
// (memory.events on v2, memory.oom_control on v1).
func oomKills(cgroupsPath string) (uint64, bool) {
	path := "/sys/fs/cgroup/memory" + cgroupsPath + "/memory.oom_control"
	if cgroupV2() {
		path = "/sys/fs/cgroup" + cgroupsPath + "/memory.events"
	}
	b, err := readFile(path)
	if err != nil {
		return 0, false
	}
	for len(b) > 0 {
		line := b
		if i := indexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if v, ok := cutPrefix(line, "oom_kill "); ok {
			n, ok := parseUint(string(v))
			return n, ok
		}
	}
	return 0, false
}

// readPid reads a pid file written by the runtime.
func readPid(path string) (int, error) {
	b, err := readFile(path)
	if err != nil {
		return 0, errString("runtime wrote no pid file: " + err.Error())
	}
	n, ok := parseUint(trimSpace(string(b)))
	if !ok || n == 0 || n > 1<<22 {
		return 0, errString("pid file " + path + ": " + quote(string(b)) + " is not a pid")
	}
	return int(n), nil
}

type errString string

func (e errString) Error() string { return string(e) }

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\n' || s[len(s)-1] == '\t' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// parseUint parses a decimal number of at most 18 digits.
func parseUint(s string) (uint64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + uint64(s[i]-'0')
	}
	return n, true
}

// quote is a short strconv.Quote for messages: printable ASCII as is,
// everything else escaped.
func quote(s string) string {
	return string(appendString(nil, s))
}
