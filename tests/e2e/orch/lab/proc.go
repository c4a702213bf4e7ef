package lab

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// spawn starts a detached process (own session, so it outlives a
// berth-lab command and a ^C to the test) with output appended to
// logPath, and reaps it in the background when this process is its
// parent.
func spawn(logPath string, env []string, name string, args ...string) (*exec.Cmd, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fmt.Fprintf(f, "\n--- %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), name, strings.Join(redact(args), " "))
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }()
	return cmd, nil
}

// redact hides the value of --token (the cluster's join token) in a
// logged command line.
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == "--token" && i+1 < len(out) {
			out[i+1] = "<redacted>"
		}
	}
	return out
}

// alive reports whether pid is a live process: not a zombie whose
// threads have all exited (a killed multi-threaded process shows its
// leader as a zombie while the other threads still release its files).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	switch s[i+2] {
	case 'X':
		return false
	case 'Z':
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		return len(tasks) > 1
	}
	return true
}

// waitGone waits until none of pids is alive.
func waitGone(d time.Duration, pids ...int) error {
	deadline := time.Now().Add(d)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still alive after %v", left, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childPID waits for the only child of pid (nsenter and unshare fork the
// process that enters the new PID namespace) and returns its host PID.
func childPID(pid int, d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
			return strconv.Atoi(f[0])
		}
		if !alive(pid) {
			return 0, fmt.Errorf("process %d exited before forking its child", pid)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("process %d has no child after %v", pid, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts bin/berth-server on the bridge address.
func (l *Lab) startServer() error {
	var s Server
	var err error
	if s.Port, err = freePort(l.BridgeIP()); err != nil {
		return err
	}
	if s.EtcdClientPort, err = freePort("127.0.0.1"); err != nil {
		return err
	}
	if s.EtcdPeerPort, err = freePort(l.BridgeIP()); err != nil {
		return err
	}
	s.DataDir = filepath.Join(l.cfg.Dir, "server")
	logPath := filepath.Join(l.cfg.Dir, "server.log")
	args := append([]string{"server", "--data-dir", s.DataDir, "--bind-address", l.BridgeIP(), "--advertise-address", l.BridgeIP(),
		"--port", strconv.Itoa(s.Port), "--etcd-client-port", strconv.Itoa(s.EtcdClientPort), "--etcd-peer-port", strconv.Itoa(s.EtcdPeerPort),
		"--disable-agent"}, l.cfg.ServerArgs...)
	off := fileSize(logPath)
	cmd, err := spawn(logPath, nil, filepath.Join(l.cfg.BinDir, "berth-server"), args...)
	if err != nil {
		return err
	}
	s.PID = cmd.Process.Pid
	l.mu.Lock()
	l.Server = s
	err = l.save()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if strings.Contains(readFrom(logPath, off), "berth server ready") {
			return nil
		}
		if !alive(s.PID) {
			return fmt.Errorf("berth-server exited; %s:\n%s", logPath, tail(readFrom(logPath, off), 40))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("berth-server not ready after 60s; %s:\n%s", logPath, tail(readFrom(logPath, off), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(p string, off int64) string {
	b, _ := os.ReadFile(p)
	if int64(len(b)) < off {
		return string(b)
	}
	return string(b[off:])
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Boot powers a node on: a fresh PID 1 in new PID and mount namespaces
// inside the node's netns, then its engine (images loaded), then its
// agent, and waits until the Node is Ready. The engine keeps its root
// (disk) across Kill and Boot; its runtime directory is new, as after a
// reboot.
func (l *Lab) Boot(name string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	if alive(n.InitPID) {
		return fmt.Errorf("node %s is running (init pid %d): kill it first", name, n.InitPID)
	}
	start := time.Now()
	dir := l.nodeDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := removeCgroups(l.cgroupParent(name)); err != nil {
		return err
	}
	ready := filepath.Join(dir, "init.ready")
	_ = os.Remove(ready)
	_ = os.Remove(l.EngineSocket(name))
	if err := os.MkdirAll(l.execRoot(name), 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	spec, _ := json.Marshal(initSpec{ExecRoot: l.execRoot(name), ReadyFile: ready})
	cmd, err := spawn(filepath.Join(dir, "init.log"), []string{initEnv + "=" + string(spec)},
		"nsenter", "--net=/run/netns/"+l.netnsName(name), "--",
		"unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc", "--", self)
	if err != nil {
		return err
	}
	initPID, err := childPID(cmd.Process.Pid, 5*time.Second)
	if err != nil {
		return fmt.Errorf("node %s init: %w (see %s)", name, err, filepath.Join(dir, "init.log"))
	}
	if err := l.update(name, func(n *Node) { n.InitPID, n.Killed, n.EnginePID, n.AgentPID = initPID, false, 0, 0 }); err != nil {
		return err
	}
	if err := waitFile(ready, 5*time.Second); err != nil {
		return fmt.Errorf("node %s init: %w (see %s)", name, err, filepath.Join(dir, "init.log"))
	}
	if err := l.StartEngine(name); err != nil {
		return err
	}
	if err := l.loadImages(name); err != nil {
		return err
	}
	if l.cfg.NoAgent {
		l.log.Info("node booted (no agent)", "node", name, "took", time.Since(start).Round(time.Millisecond))
		return nil
	}
	if err := l.StartAgent(name); err != nil {
		return err
	}
	if err := l.WaitNodeReady(name, 60*time.Second); err != nil {
		return err
	}
	l.log.Info("node booted", "node", name, "ip", n.IP, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func waitFile(p string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", p, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inNode starts a process inside a running node's namespaces and returns
// its host PID.
func (l *Lab) inNode(name, logName string, argv ...string) (int, error) {
	n, err := l.Node(name)
	if err != nil {
		return 0, err
	}
	if !alive(n.InitPID) {
		return 0, fmt.Errorf("node %s is down: boot it first", name)
	}
	args := append([]string{"-t", strconv.Itoa(n.InitPID), "-m", "-n", "-p", "--"}, argv...)
	cmd, err := spawn(filepath.Join(l.nodeDir(name), logName), nil, "nsenter", args...)
	if err != nil {
		return 0, err
	}
	return childPID(cmd.Process.Pid, 5*time.Second)
}

// StartEngine starts a node's engine and waits until it answers.
func (l *Lab) StartEngine(name string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	if alive(n.EnginePID) {
		return fmt.Errorf("node %s: engine already running (pid %d)", name, n.EnginePID)
	}
	dir := l.nodeDir(name)
	pid, err := l.inNode(name, "engine.log", filepath.Join(l.cfg.BinDir, "berth"), "daemon",
		"--root", filepath.Join(dir, "engine"), "--exec-root", filepath.Join(l.execRoot(name), "engine"),
		"--socket", l.EngineSocket(name), "--cgroup-parent", l.cgroupParent(name),
		"--bridge", "berth0", "--bridge-subnet", n.PodSubnet, "--config", "/nonexistent")
	if err != nil {
		return fmt.Errorf("node %s engine: %w", name, err)
	}
	if err := l.update(name, func(n *Node) { n.EnginePID = pid }); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := l.Berth(name, "version"); err == nil {
			return nil
		}
		if !alive(pid) || time.Now().After(deadline) {
			return fmt.Errorf("node %s: engine not answering on %s; %s:\n%s", name, l.EngineSocket(name),
				filepath.Join(dir, "engine.log"), tail(readFrom(filepath.Join(dir, "engine.log"), 0), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Berth runs the berth CLI against a node's engine.
func (l *Lab) Berth(name string, args ...string) (string, error) {
	return run(filepath.Join(l.cfg.BinDir, "berth"), append([]string{"-H", "unix://" + l.EngineSocket(name)}, args...)...)
}

// loadImages loads the configured archives into a node's engine and tags
// them (both idempotent: a reboot keeps the disk).
func (l *Lab) loadImages(name string) error {
	for _, img := range l.cfg.Images {
		if _, err := l.Berth(name, "load", "-i", img); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
	}
	for dst, src := range l.cfg.Tags {
		if _, err := l.Berth(name, "tag", src, dst); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
	}
	return nil
}

// Token is the credential agents join with.
func (l *Lab) Token() (string, error) {
	b, err := os.ReadFile(filepath.Join(l.Server.DataDir, "token"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// AgentArgs is the `berth agent` command line of a node.
func (l *Lab) AgentArgs(name string) ([]string, error) {
	n, err := l.Node(name)
	if err != nil {
		return nil, err
	}
	tok, err := l.Token()
	if err != nil {
		return nil, err
	}
	args := []string{filepath.Join(l.cfg.BinDir, "berth"), "agent", "--server", l.URL(), "--token", tok,
		"--node-name", name, "--engine", "unix://" + l.EngineSocket(name),
		"--data-dir", filepath.Join(l.nodeDir(name), "agent"), "--node-ip", n.IP,
		// The node's local-path volumes stay inside the lab's directory.
		"--volumes-dir", filepath.Join(l.nodeDir(name), "volumes")}
	if n.Spec.CPUs != "" {
		args = append(args, "--cpus", n.Spec.CPUs)
	}
	if n.Spec.Memory != "" {
		args = append(args, "--memory", n.Spec.Memory)
	}
	if n.Spec.MaxPods != 0 {
		args = append(args, "--max-pods", strconv.Itoa(n.Spec.MaxPods))
	}
	return append(args, l.cfg.AgentArgs...), nil
}

// StartAgent starts a node's agent (it does not wait for the Node).
func (l *Lab) StartAgent(name string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	if alive(n.AgentPID) {
		return fmt.Errorf("node %s: agent already running (pid %d)", name, n.AgentPID)
	}
	args, err := l.AgentArgs(name)
	if err != nil {
		return err
	}
	pid, err := l.inNode(name, "agent.log", args...)
	if err != nil {
		return fmt.Errorf("node %s agent: %w", name, err)
	}
	l.log.Info("agent started", "node", name, "pid", pid)
	return l.update(name, func(n *Node) { n.AgentPID = pid })
}

// StopAgent sends sig to a node's agent and waits until it is gone.
func (l *Lab) StopAgent(name string, sig syscall.Signal) error {
	return l.stopProc(name, "agent", sig, func(n *Node) *int { return &n.AgentPID })
}

// StopEngine sends sig to a node's engine and waits until it is gone
// (containers keep running).
func (l *Lab) StopEngine(name string, sig syscall.Signal) error {
	return l.stopProc(name, "engine", sig, func(n *Node) *int { return &n.EnginePID })
}

func (l *Lab) stopProc(name, what string, sig syscall.Signal, field func(*Node) *int) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	pid := *field(&n)
	if !alive(pid) {
		return fmt.Errorf("node %s: no %s running", name, what)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return err
	}
	if err := waitGone(30*time.Second, pid); err != nil {
		return fmt.Errorf("node %s %s: %w", name, what, err)
	}
	l.log.Info(what+" stopped", "node", name, "signal", sig)
	return l.update(name, func(n *Node) { *field(n) = 0 })
}

// RestartAgent SIGKILLs a node's agent and starts a new one.
func (l *Lab) RestartAgent(name string) error {
	if err := l.StopAgent(name, syscall.SIGKILL); err != nil {
		return err
	}
	return l.StartAgent(name)
}

// Kill powers a node off at once: SIGKILL to its PID 1 makes the kernel
// kill every process of its PID namespace (agent, engine, shims,
// containers); its mounts go with its mount namespace. It returns when
// they are all gone.
func (l *Lab) Kill(name string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	if !alive(n.InitPID) {
		return fmt.Errorf("node %s is not running", name)
	}
	if err := syscall.Kill(n.InitPID, syscall.SIGKILL); err != nil {
		return err
	}
	for _, cg := range nodeCgroups(l.cgroupParent(name)) {
		thawCgroupTree(cg)
	}
	// Every process of the node (nsenter and unshare parents included)
	// is in its netns; wait for them all, so that a Boot right after
	// finds the node's addresses and ports free.
	pids, _ := l.Processes(name)
	if err := waitGone(10*time.Second, append(pids, n.InitPID, n.EnginePID, n.AgentPID)...); err != nil {
		return fmt.Errorf("node %s kill: %w", name, err)
	}
	if err := l.update(name, func(n *Node) { n.InitPID, n.EnginePID, n.AgentPID, n.Killed = 0, 0, 0, true }); err != nil {
		return err
	}
	// The containers' cgroups stay behind empty, as on a real host's
	// reboot they would not exist; Boot removes them too.
	if err := removeCgroups(l.cgroupParent(name)); err != nil {
		l.log.Warn("node killed; cgroups not removed yet", "node", name, "err", err)
	}
	l.log.Info("node killed", "node", name)
	return nil
}

// Processes lists the host PIDs of every process in a node's network
// namespace (for checks that a kill left nothing).
func (l *Lab) Processes(name string) ([]int, error) {
	out, err := run("ip", "netns", "pids", l.netnsName(name))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if p, err := strconv.Atoi(f); err == nil && alive(p) {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// Exec runs a command inside a running node (its network, PID and mount
// namespaces: PIDs are the node's, as its engine reports them) and
// returns its output.
func (l *Lab) Exec(name string, argv ...string) (string, error) {
	n, err := l.Node(name)
	if err != nil {
		return "", err
	}
	if !alive(n.InitPID) {
		return "", fmt.Errorf("node %s is down", name)
	}
	return run("nsenter", append([]string{"-t", strconv.Itoa(n.InitPID), "-m", "-n", "-p", "--"}, argv...)...)
}
