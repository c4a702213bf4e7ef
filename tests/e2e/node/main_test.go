// Package node holds end-to-end tests of the node agent: they run the real
// bin/berth daemon (a private engine), bin/berth-server (the control plane
// alone) and `berth-server agent` joined with the join token, and drive
// them with kubectl. Root only.
package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/cgroups"
)

var (
	binDir string
	env    *cluster
)

// cluster is one engine, one control plane and one agent.
type cluster struct {
	dir                      string
	sock, bridge, subnet, cg string
	engine                   *proc
	server                   *proc
	agent                    *proc
	port                     int
	token                    string
	node                     string
	streamingPort            int
}

// proc is a child process with its output captured.
type proc struct {
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func start(name string, args ...string) (*proc, error) {
	p := &proc{cmd: exec.Command(filepath.Join(binDir, name), args...), log: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// waitLog waits until the process logged s.
func (p *proc) waitLog(s string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(p.log.String(), s) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before logging %q:\n%s", s, p.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("did not log %q within %v:\n%s", s, d, p.log.String())
}

func (p *proc) signal(sig syscall.Signal) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping node e2e tests: they need root (the engine runs containers)")
		os.Exit(0)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Println("skipping node e2e tests: kubectl not installed")
		os.Exit(0)
	}
	binDir = os.Getenv("BERTH_BIN_DIR")
	if binDir == "" {
		binDir = filepath.Join(repoRoot(), "bin")
	}
	for _, b := range []string{"berth", "berth-shim", "berth-pause", "berth-server"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			fmt.Fprintf(os.Stderr, "node e2e: %s/%s missing: run `make build` first\n", binDir, b)
			os.Exit(1)
		}
	}
	dir, _ := os.MkdirTemp("", "berth-e2e-node")
	env = &cluster{dir: dir, node: fmt.Sprintf("e2e-node-%d", os.Getpid()%10000)}
	code := 1
	if err := env.up(); err != nil {
		fmt.Fprintln(os.Stderr, "node e2e:", err)
	} else {
		code = m.Run()
	}
	if code != 0 {
		for n, p := range map[string]*proc{"engine": env.engine, "server": env.server, "agent": env.agent} {
			if p != nil {
				fmt.Fprintf(os.Stderr, "--- %s log (tail):\n%s\n", n, tail(p.log.String(), 60))
			}
		}
	}
	env.down()
	if code == 0 {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func (c *cluster) engineArgs() []string {
	return []string{"daemon", "--root", filepath.Join(c.dir, "root"), "--exec-root", filepath.Join(c.dir, "run"), "--socket", c.sock,
		"--cgroup-parent", c.cg, "--config", "/nonexistent", "--bridge", c.bridge, "--bridge-subnet", c.subnet}
}

func (c *cluster) up() error {
	pid := os.Getpid()
	c.sock = filepath.Join(c.dir, "run", "berth.sock")
	c.bridge = fmt.Sprintf("btn%d", pid%100000)
	c.subnet = fmt.Sprintf("10.%d.%d.0/24", 220+pid%30, pid%250)
	c.cg = fmt.Sprintf("berth-e2e-node-%d", pid)
	var err error
	if c.engine, err = start("berth", c.engineArgs()...); err != nil {
		return err
	}
	if err := c.waitEngine(); err != nil {
		return err
	}
	imgDir := os.Getenv("BERTH_TESTIMAGES")
	if imgDir == "" {
		imgDir = filepath.Join(binDir, "testimages")
	}
	img := filepath.Join(imgDir, "busybox-docker.tar")
	if _, err := os.Stat(img); err != nil {
		out := filepath.Join(c.dir, "testimages")
		cmd := exec.Command("go", "run", "./tests/testimages", "-out", out)
		cmd.Dir = repoRoot()
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building test images: %v\n%s", err, b)
		}
		img = filepath.Join(out, "busybox-docker.tar")
	}
	if out, err := c.berth("load", "-i", img); err != nil {
		return fmt.Errorf("berth load: %v\n%s", err, out)
	}
	// A tag that is not :latest, so the default pull policy is IfNotPresent.
	if out, err := c.berth("tag", "busybox:latest", "busybox:e2e"); err != nil {
		return fmt.Errorf("berth tag: %v\n%s", err, out)
	}
	c.port, c.streamingPort = freePort(), freePort()
	if c.server, err = start("berth-server", "server", "--data-dir", filepath.Join(c.dir, "server"), "--bind-address", "127.0.0.1",
		"--port", fmt.Sprint(c.port), "--etcd-client-port", fmt.Sprint(freePort()), "--etcd-peer-port", fmt.Sprint(freePort()), "--disable-agent"); err != nil {
		return err
	}
	if err := c.server.waitLog("berth server ready", 60*time.Second); err != nil {
		return fmt.Errorf("berth-server: %w", err)
	}
	tok, err := exec.Command(filepath.Join(binDir, "berth-server"), "token", "--data-dir", filepath.Join(c.dir, "server")).Output()
	if err != nil {
		return fmt.Errorf("berth-server token: %w", err)
	}
	c.token = strings.TrimSpace(string(tok))
	return c.startAgent(true)
}

func (c *cluster) waitEngine() error {
	for i := 0; i < 100; i++ {
		if _, err := c.berth("version"); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the engine did not answer within 10s:\n%s", c.engine.log.String())
}

// startAgent starts `berth-server agent`; withToken false checks that the
// stored credential is enough on a restart.
func (c *cluster) startAgent(withToken bool) error {
	args := []string{"agent", "--server", fmt.Sprintf("https://127.0.0.1:%d", c.port), "--node-name", c.node,
		"--engine", "unix://" + c.sock, "--data-dir", filepath.Join(c.dir, "agent"), "--node-labels", "e2e=yes",
		"--streaming-port", fmt.Sprint(c.streamingPort), "--volumes-dir", filepath.Join(c.dir, "volumes"),
		// The cluster DNS address lives on the host's network namespace
		// here: take it away when the agent stops.
		"--cluster-dns-remove-link"}
	if withToken {
		args = append(args, "--token", c.token)
	}
	var err error
	if c.agent, err = start("berth-server", args...); err != nil {
		return err
	}
	return c.agent.waitLog("node agent ready", 60*time.Second)
}

func (c *cluster) down() {
	if c.agent != nil {
		c.agent.signal(syscall.SIGTERM)
	}
	if ids, err := c.berth("ps", "-aq"); err == nil && strings.TrimSpace(ids) != "" {
		_, _ = c.berth(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
	}
	c.server.signal(syscall.SIGTERM)
	c.engine.signal(syscall.SIGTERM)
	// The agent leaves its service rules behind on purpose (Services keep
	// working while it restarts); the test removes them.
	if c.agent != nil {
		if out, err := exec.Command(filepath.Join(binDir, "berth-server"), "agent", "--cleanup-proxy").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "node e2e: berth-server agent --cleanup-proxy: %v: %s\n", err, out)
		}
	}
	if c.engine != nil {
		cl, err := start("berth", append(c.engineArgs(), "--cleanup")...)
		if err == nil {
			_ = c.waitEngine()
			cl.signal(syscall.SIGTERM)
		}
	}
	cgroups.RemoveEverywhere(c.cg)
}

func (c *cluster) berth(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "berth"), append([]string{"-H", "unix://" + c.sock}, args...)...).CombinedOutput()
	return string(out), err
}

func (c *cluster) kubectl(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cache := filepath.Join(c.dir, "kube-cache")
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", filepath.Join(c.dir, "server", "kubeconfig"), "--cache-dir", cache}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+cache, "KUBECONFIG=")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) kube(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.kubectl("", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) apply(t *testing.T, yaml string) {
	t.Helper()
	if out, err := c.kubectl(yaml, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\n%s", err, out, yaml)
	}
}

// pod reads a pod as JSON.
type podJSON struct {
	Status struct {
		Phase             string `json:"phase"`
		PodIP             string `json:"podIP"`
		ContainerStatuses []struct {
			Name         string `json:"name"`
			RestartCount int    `json:"restartCount"`
			ContainerID  string `json:"containerID"`
			Ready        bool   `json:"ready"`
			State        struct {
				Running *struct {
					StartedAt string `json:"startedAt"`
				} `json:"running"`
				Waiting *struct {
					Reason  string `json:"reason"`
					Message string `json:"message"`
				} `json:"waiting"`
				Terminated *struct {
					Reason   string `json:"reason"`
					ExitCode int    `json:"exitCode"`
				} `json:"terminated"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

func (c *cluster) getPod(t *testing.T, name string) *podJSON {
	t.Helper()
	out, err := c.kubectl("", "get", "pod", name, "-o", "json")
	if err != nil {
		return nil
	}
	var p podJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("pod %s: %v", name, err)
	}
	return &p
}

// waitPod polls the pod until ok returns true.
func (c *cluster) waitPod(t *testing.T, name string, d time.Duration, what string, ok func(p *podJSON) bool) *podJSON {
	t.Helper()
	deadline := time.Now().Add(d)
	var p *podJSON
	for time.Now().Before(deadline) {
		if p = c.getPod(t, name); p != nil && ok(p) {
			return p
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := c.kubectl("", "get", "pod", name, "-o", "yaml")
	t.Fatalf("pod %s: not %s within %v:\n%s", name, what, d, out)
	return nil
}
