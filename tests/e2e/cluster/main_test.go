// Package cluster holds end-to-end tests of the control plane: they run the
// real bin/berth-server (BERTH_BIN_DIR, default the repo's bin/, built if
// missing) and drive it with the machine's real kubectl binaries.
package cluster

import (
	"bytes"
	"context"
	"flag"
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
)

var (
	serverBin string
	shared    *server
)

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

// findServer returns $BERTH_BIN_DIR/berth-server (default: the repo's
// bin/), building one into a temp dir when bin/ has none.
func findServer() (string, func(), error) {
	dir := os.Getenv("BERTH_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(), "bin")
	}
	p := filepath.Join(dir, "berth-server")
	if _, err := os.Stat(p); err == nil {
		return p, func() {}, nil
	}
	if os.Getenv("BERTH_BIN_DIR") != "" {
		return "", nil, fmt.Errorf("BERTH_BIN_DIR=%s has no berth-server: build it with `go build -o %s ./cmd/berth-server`", dir, p)
	}
	// No bin/berth-server yet: build one for this run.
	tmp, err := os.MkdirTemp("", "berth-server-bin")
	if err != nil {
		return "", nil, err
	}
	out := filepath.Join(tmp, "berth-server")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/berth-server")
	cmd.Dir = repoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("go build ./cmd/berth-server: %v\n%s", err, b)
	}
	return out, func() { os.RemoveAll(tmp) }, nil
}

// server is one running berth-server process.
type server struct {
	dataDir                  string
	port, etcdPort, etcdPeer int
	args                     []string
	cmd                      *exec.Cmd
	log                      *syncBuffer
	exited                   chan struct{}
}

// syncBuffer is a bytes.Buffer safe for the process writer and test readers.
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

func (s *server) kubeconfig() string { return filepath.Join(s.dataDir, "kubeconfig") }

func (s *server) url() string { return fmt.Sprintf("https://127.0.0.1:%d", s.port) }

func newServer(dataDir string, extra ...string) *server {
	return &server{dataDir: dataDir, port: freePort(), etcdPort: freePort(), etcdPeer: freePort(), args: extra}
}

func (s *server) start() error {
	args := append([]string{"server", "--data-dir", s.dataDir, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--port", fmt.Sprint(s.port), "--etcd-client-port", fmt.Sprint(s.etcdPort), "--etcd-peer-port", fmt.Sprint(s.etcdPeer),
		// The control plane alone: these tests run no node.
		"--disable-agent"}, s.args...)
	s.cmd = exec.Command(serverBin, args...)
	s.log = &syncBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	return s.waitReady(60 * time.Second)
}

func (s *server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(s.log.String(), "berth server ready") {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("berth-server exited; log:\n%s", s.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("berth-server not ready after %v; log:\n%s", d, s.log.String())
}

func (s *server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
	}
}

func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.kill()
		}
	}
}

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Println("skipping cluster e2e tests: kubectl not installed")
		os.Exit(0)
	}
	bin, cleanup, err := findServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin = bin
	// TestKubectl runs every kubectl version side by side; they spend
	// their time waiting on kubectl processes and the server, so go
	// test's default of GOMAXPROCS at a time (2 on CI) doubles the wall
	// time. An explicit -parallel wins.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if p := flag.Lookup("test.parallel"); p != nil && !explicit && runtime.GOMAXPROCS(0) < 8 {
		_ = p.Value.Set("8")
	}
	dir, _ := os.MkdirTemp("", "berth-e2e-cluster")
	shared = newServer(filepath.Join(dir, "server"))
	if err := shared.start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	shared.stop()
	cleanup()
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "server log:\n%s\n", shared.log.String())
	}
	os.Exit(code)
}

// kubectl runs one kubectl binary against a server with a private cache dir.
type kubectl struct {
	bin, kubeconfig, cache string
}

func newKubectl(t *testing.T, bin string, s *server) *kubectl {
	return &kubectl{bin: bin, kubeconfig: s.kubeconfig(), cache: t.TempDir()}
}

func (k *kubectl) run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cache}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+k.cache, "KUBECONFIG=")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ok runs kubectl and fails the test on error.
func (k *kubectl) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, err := k.run(t, "", args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(k.bin), strings.Join(args, " "), err, out)
	}
	return out
}

func (k *kubectl) okIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := k.run(t, stdin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(k.bin), strings.Join(args, " "), err, out)
	}
	return out
}

func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// kubectlVersions lists the versioned kubectl binaries installed beside
// /usr/bin/kubectl (the cloud-sdk package ships 1.27 … 1.33).
func kubectlVersions() []string {
	var out []string
	for _, dir := range []string{"/usr/lib/google-cloud-sdk/bin"} {
		m, _ := filepath.Glob(filepath.Join(dir, "kubectl.1.*"))
		out = append(out, m...)
	}
	return out
}

var execCommand = exec.Command
