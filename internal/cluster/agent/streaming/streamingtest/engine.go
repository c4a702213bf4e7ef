// Package streamingtest starts a real berth engine for tests of the
// streaming path and creates containers labelled as the node agent labels
// a pod's (the label contract in the streaming package), so the streaming
// server can be exercised without the agent.
package streamingtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
)

// Engine is one berth daemon with its own root, socket and bridge.
type Engine struct {
	Client *client.Client
	Sock   string
	bin    string
	args   []string
	cmd    *exec.Cmd
	root   string
	exec   string
	cgroup string
}

// BinDir is $BERTH_BIN_DIR or the repository's bin/.
func BinDir() string {
	if d := os.Getenv("BERTH_BIN_DIR"); d != "" {
		abs, _ := filepath.Abs(d)
		return abs
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "..", "bin")
}

var seq int

// Start starts a daemon for the test and loads busybox into it. It skips
// the test when not root or when bin/berth, bin/berth-shim or the busybox
// test image are missing (`make build testimages`).
func Start(t testing.TB) *Engine {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a real berth engine (namespaces, mounts, cgroups)")
	}
	bin := BinDir()
	images := os.Getenv("BERTH_TESTIMAGES")
	if images == "" {
		images = filepath.Join(bin, "testimages")
	}
	busybox := filepath.Join(images, "busybox-docker.tar")
	for _, f := range []string{filepath.Join(bin, "berth"), filepath.Join(bin, "berth-shim"), busybox} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s is missing: run `make build testimages` (or set BERTH_BIN_DIR)", f)
		}
	}
	root, err := os.MkdirTemp("/var/tmp", "berth-stream-")
	if err != nil {
		t.Fatal(err)
	}
	execRoot, err := os.MkdirTemp("/run", "berth-stream-")
	if err != nil {
		t.Fatal(err)
	}
	seq++
	e := &Engine{Sock: filepath.Join(execRoot, "berth.sock"), bin: bin, root: root, exec: execRoot, cgroup: "berth-stream-" + filepath.Base(execRoot)}
	e.args = []string{"daemon", "--root", root, "--exec-root", execRoot, "--socket", e.Sock, "--cgroup-parent", e.cgroup, "--config", "/nonexistent",
		"--bridge", fmt.Sprintf("bst%d-%d", os.Getpid()%10000, seq), "--bridge-subnet", freeSubnet()}
	logf, err := os.Create(filepath.Join(root, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	e.cmd = exec.Command(filepath.Join(bin, "berth"), e.args...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.stop(t); logf.Close() })
	if e.Client, err = client.New("unix://" + e.Sock); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		if e.Client.Ping(ctx) == nil {
			break
		}
		if i > 400 {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("berth daemon did not answer within 10s; log:\n%s", b)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if out, err := e.CLI("load", "-i", busybox); err != nil {
		t.Fatalf("berth load busybox: %v\n%s", err, out)
	}
	return e
}

// freeSubnet picks a 10.x.y.0/24 no host interface is in.
func freeSubnet() string {
	addrs, _ := net.InterfaceAddrs()
	for i := 0; i < 1000; i++ {
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 200+(os.Getpid()+i)%50, (seq*7+i)%250+1))
		free := true
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && (cand.Contains(n.IP) || n.Contains(cand.IP)) {
				free = false
			}
		}
		if free {
			return cand.String()
		}
	}
	return "10.249.249.0/24"
}

// CLI runs the berth CLI against the engine.
func (e *Engine) CLI(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(e.bin, "berth"), append([]string{"-H", "unix://" + e.Sock}, args...)...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

func (e *Engine) stop(t testing.TB) {
	if out, err := e.CLI("ps", "-aq"); err == nil {
		for _, id := range bytes.Fields([]byte(out)) {
			e.CLI("rm", "-f", string(id))
		}
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { e.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		e.cmd.Process.Kill()
		<-done
	}
	// A last run with --cleanup removes the bridge and packet rules.
	c := exec.Command(filepath.Join(e.bin, "berth"), append(append([]string{}, e.args...), "--cleanup")...)
	if c.Start() == nil {
		for i := 0; i < 200; i++ {
			if e.Client.Ping(context.Background()) == nil {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
	}
	os.RemoveAll(e.root)
	os.RemoveAll(e.exec)
}

// Pod names one pod's containers as the agent would create them.
type Pod struct {
	Namespace, Name, UID string
}

// Labels returns the contract labels of one container of the pod
// (container "POD" and kind "sandbox" for the sandbox).
func (p Pod) Labels(container, kind string, restart int) map[string]string {
	return map[string]string{
		"io.kubernetes.pod.name": p.Name, "io.kubernetes.pod.namespace": p.Namespace, "io.kubernetes.pod.uid": p.UID,
		"io.kubernetes.container.name": container, "io.berth.kind": kind, "io.berth.restart-count": strconv.Itoa(restart),
	}
}

// Sandbox creates and starts the pod's sandbox running cmd in busybox
// (the agent runs the pause image; tests want a server in it).
func (e *Engine) Sandbox(t testing.TB, p Pod, cmd ...string) string {
	t.Helper()
	return e.Run(t, fmt.Sprintf("k8s_POD_%s_%s_%s_0", p.Name, p.Namespace, p.UID), api.Config{Image: "busybox", Cmd: cmd, Labels: p.Labels("POD", "sandbox", 0)}, nil)
}

// Container creates and starts one instance of a pod container joined to
// the sandbox's network; cfg.Image defaults to busybox.
func (e *Engine) Container(t testing.TB, p Pod, sandboxID, name string, restart int, cfg api.Config) string {
	t.Helper()
	if cfg.Image == "" {
		cfg.Image = "busybox"
	}
	cfg.Labels = p.Labels(name, "container", restart)
	cname := fmt.Sprintf("k8s_%s_%s_%s_%s_%d", name, p.Name, p.Namespace, p.UID, restart)
	id, err := e.create(cname, cfg, &api.HostConfig{NetworkMode: "container:" + sandboxID})
	if err != nil && strings.Contains(err.Error(), "not supported") {
		// An engine without shared network namespaces yet: the streaming
		// path does not depend on it (port-forward dials the sandbox).
		id, err = e.create(cname, cfg, nil)
	}
	if err != nil {
		t.Fatalf("creating %s: %v", cname, err)
	}
	e.start(t, cname, id)
	return id
}

// Run creates and starts a container.
func (e *Engine) Run(t testing.TB, name string, cfg api.Config, hc *api.HostConfig) string {
	t.Helper()
	id, err := e.create(name, cfg, hc)
	if err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	e.start(t, name, id)
	return id
}

func (e *Engine) create(name string, cfg api.Config, hc *api.HostConfig) (string, error) {
	var cr api.CreateResponse
	err := e.Client.JSON(context.Background(), http.MethodPost, "/containers/create", url.Values{"name": {name}}, api.CreateRequest{Config: cfg, HostConfig: hc}, &cr)
	return cr.ID, err
}

func (e *Engine) start(t testing.TB, name, id string) {
	t.Helper()
	if err := e.Client.JSON(context.Background(), http.MethodPost, "/containers/"+id+"/start", nil, nil, nil); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
}

// Wait waits for a container to exit.
func (e *Engine) Wait(t testing.TB, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wr api.WaitResponse
	if err := e.Client.JSON(ctx, http.MethodPost, "/containers/"+id+"/wait", nil, nil, &wr); err != nil {
		t.Fatalf("waiting for %s: %v", id, err)
	}
}
