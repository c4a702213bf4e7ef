package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/cgroups"
	"github.com/berth/berth/internal/engine/logs"
	"github.com/berth/berth/internal/engine/runtime"
	"golang.org/x/sys/unix"
)

var shimBin string

func TestMain(m *testing.M) {
	if os.Getenv("BERTH_SHIM_TEST_HELPER") != "" {
		helperMain()
		return
	}
	dir, err := os.MkdirTemp("", "berth-shim-test")
	if err != nil {
		panic(err)
	}
	shimBin = filepath.Join(dir, "berth-shim")
	// Built as the Makefile builds it: the RSS test measures what ships.
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", shimBin}
	if os.Getenv("BERTH_SHIM_RACE") != "" {
		// Race-check the monitor itself; its stderr is /dev/null, so set
		// GORACE=log_path=... to see reports.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/berth/berth/cmd/berth-shim")...)
	if os.Getenv("BERTH_SHIM_RACE") == "" {
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build berth-shim: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helperMain starts a shim and its container, prints the shim's bundle
// ready marker, then waits to be SIGKILLed: the "daemon" that dies.
func helperMain() {
	var o Options
	if err := json.Unmarshal([]byte(os.Getenv("BERTH_SHIM_TEST_HELPER")), &o); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	h, err := Start(o)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	pid, err := h.Start()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("started", pid)
	time.Sleep(time.Hour)
}

type env struct {
	t       testing.TB
	rt      runtime.Runtime
	rootfs  string
	cgroup  string
	counter int
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs real containers with crun/runc")
	}
}

// busybox builds a rootfs from the host's static busybox.
func busybox(t testing.TB) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (busybox-static) not installed")
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			os.Symlink("busybox", filepath.Join(root, "bin", a))
		}
	}
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	return root
}

func runtimes(t testing.TB) []runtime.Runtime {
	var rts []runtime.Runtime
	for _, name := range []string{"crun", "runc"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Logf("%s not installed; skipping it", name)
			continue
		}
		rts = append(rts, runtime.Runtime{Name: name, Path: p, Root: filepath.Join(t.TempDir(), name+"-state")})
	}
	if len(rts) == 0 {
		t.Skip("neither crun nor runc is installed")
	}
	return rts
}

// forEachRuntime runs fn as a subtest per installed runtime.
func forEachRuntime(t *testing.T, fn func(t *testing.T, e *env)) {
	requireRoot(t)
	if err := cgroups.PrepareHost(); err != nil {
		t.Fatalf("PrepareHost: %v", err)
	}
	rootfs := busybox(t)
	for _, rt := range runtimes(t) {
		t.Run(rt.Name, func(t *testing.T) {
			e := &env{t: t, rt: rt, rootfs: rootfs, cgroup: fmt.Sprintf("/berth-test-%d", os.Getpid())}
			t.Cleanup(e.cleanupCgroups)
			fn(t, e)
		})
	}
}

func (e *env) cleanupCgroups() {
	for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "blkio", "devices", "freezer", "cpuset", "hugetlb", "systemd", "unified", "net_cls", "perf_event"} {
		os.Remove(filepath.Join(cgroups.Root, c, e.cgroup))
	}
}

type ctr struct {
	id, bundle, log string
	spec            runtime.SpecOpts
	h               *Handle
}

// bundle writes a bundle for args with opts adjusted by mod.
func (e *env) bundle(args []string, mod func(*runtime.SpecOpts)) *ctr {
	e.t.Helper()
	e.counter++
	id := fmt.Sprintf("t%d-%d-%s", os.Getpid(), e.counter, e.rt.Name)
	dir := filepath.Join(e.t.TempDir(), "b")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	// The shim runs the runtime's delete after it answers the exit; let it
	// finish before the temporary directory goes (cleanups run last-first).
	e.t.Cleanup(func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(dir, "shim.sock")); os.IsNotExist(err) {
				return
			}
		}
	})
	o := runtime.SpecOpts{
		ID: id, Rootfs: e.rootfs, ReadonlyRootfs: true, Args: args, Hostname: "box-" + strconv.Itoa(e.counter),
		NoNewPrivileges: true, CgroupsPath: e.cgroup + "/" + id, Env: []string{"PATH=/bin"},
	}
	if mod != nil {
		mod(&o)
	}
	spec, err := runtime.Generate(o)
	if err != nil {
		e.t.Fatalf("Generate: %v", err)
	}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return &ctr{id: id, bundle: dir, log: filepath.Join(dir, "container.log"), spec: o}
}

func (e *env) options(c *ctr) Options {
	return Options{
		Binary: shimBin, ID: c.id, Bundle: c.bundle, Runtime: e.rt.Path, RuntimeRoot: e.rt.Root,
		CgroupsPath: c.spec.CgroupsPath, LogPath: c.log, Tty: c.spec.Terminal, Stdin: c.spec.Terminal || c.spec.Args[0] == "cat",
		StdinOnce: c.spec.Args[0] == "cat",
	}
}

func (e *env) startShim(c *ctr) *Handle {
	e.t.Helper()
	h, err := Start(e.options(c))
	if err != nil {
		e.t.Fatalf("shim.Start: %v", err)
	}
	c.h = h
	return h
}

func wait(t testing.TB, h *Handle) ExitStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	es, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return es
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run starts args, attached, and returns stdout, stderr and the exit.
func (e *env) run(args []string, stdin string, mod func(*runtime.SpecOpts)) (string, string, ExitStatus, *ctr) {
	e.t.Helper()
	c := e.bundle(args, mod)
	h := e.startShim(c)
	var out, errb syncBuf
	var in *strings.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	var a *Attachment
	var err error
	if in != nil {
		a, err = h.Attach(in, &out, &errb)
	} else {
		a, err = h.Attach(nil, &out, &errb)
	}
	if err != nil {
		e.t.Fatalf("Attach: %v", err)
	}
	if _, err := h.Start(); err != nil {
		e.t.Fatalf("Start: %v", err)
	}
	es := wait(e.t, h)
	done := make(chan error, 1)
	go func() { done <- a.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		e.t.Fatal("attach stream did not end after exit")
	}
	return out.String(), errb.String(), es, c
}

func readLog(t *testing.T, path string) []logs.Entry {
	t.Helper()
	var es []logs.Entry
	if err := logs.Read(context.Background(), path, logs.Options{Tail: -1}, func(e logs.Entry) error {
		es = append(es, e)
		return nil
	}); err != nil {
		t.Fatalf("read log: %v", err)
	}
	return es
}

func TestOutputLogAndExitCode(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		out, errOut, es, c := e.run([]string{"sh", "-c", "echo hello; echo oops >&2; exit 3"}, "", nil)
		if out != "hello\n" || errOut != "oops\n" {
			t.Errorf("attached output: got stdout %q stderr %q, want \"hello\\n\" and \"oops\\n\"", out, errOut)
		}
		if es.ExitCode != 3 || es.OOMKilled {
			t.Errorf("exit: got %+v, want code 3, not OOM-killed", es)
		}
		if es.ExitedAt.IsZero() || time.Since(es.ExitedAt) > time.Minute {
			t.Errorf("exitedAt %v is not recent", es.ExitedAt)
		}
		got := map[string]string{}
		for _, le := range readLog(t, c.log) {
			got[le.Stream] += string(le.Line) + "\n"
		}
		if got["stdout"] != "hello\n" || got["stderr"] != "oops\n" {
			t.Errorf("log: got %q, want stdout hello and stderr oops", got)
		}
		// exit.json is there, and the shim is gone.
		b, err := os.ReadFile(filepath.Join(c.bundle, "exit.json"))
		if err != nil || !bytes.Contains(b, []byte(`"exitCode":3`)) {
			t.Errorf("exit.json: %s, %v; want exitCode 3", b, err)
		}
		waitGone(t, c.bundle)
		if _, err := e.rt.State(context.Background(), c.id); err == nil {
			t.Errorf("runtime still knows %s after exit, want it deleted", c.id)
		}
		h2, err := Connect(c.bundle)
		if err != nil {
			t.Fatalf("Connect after exit: %v", err)
		}
		if es2 := wait(t, h2); es2.ExitCode != 3 {
			t.Errorf("Connect after exit: got code %d, want 3", es2.ExitCode)
		}
	})
}

func waitGone(t *testing.T, bundle string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(bundle, "shim.sock")); os.IsNotExist(err) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("shim socket in %s still there 10s after exit", bundle)
}

func TestExitCodes(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		for _, tt := range []struct {
			args []string
			want int
		}{
			{[]string{"true"}, 0},
			{[]string{"sh", "-c", "exit 3"}, 3},
			// A signal death of a child is reported by sh as 128+n; the
			// shim's own 128+signal mapping is TestKillFromOutside.
			{[]string{"sh", "-c", "sleep 100 & kill -9 $!; wait $!"}, 137},
		} {
			_, _, es, _ := e.run(tt.args, "", nil)
			if es.ExitCode != tt.want {
				t.Errorf("%q: got exit %d, want %d", tt.args, es.ExitCode, tt.want)
			}
		}
	})
}

func TestKillFromOutside(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		c := e.bundle([]string{"sleep", "100"}, nil)
		h := e.startShim(c)
		if _, err := h.Start(); err != nil {
			t.Fatal(err)
		}
		if err := e.rt.Kill(context.Background(), c.id, syscall.SIGKILL, false); err != nil {
			t.Fatalf("Kill: %v", err)
		}
		if es := wait(t, h); es.ExitCode != 137 {
			t.Fatalf("got exit %d, want 137", es.ExitCode)
		}
	})
}

func TestTTY(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		out, _, es, _ := e.run([]string{"sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; stty size"}, "", func(o *runtime.SpecOpts) { o.Terminal = true })
		if !strings.Contains(out, "is-a-tty") {
			t.Errorf("got output %q, want it to contain is-a-tty", out)
		}
		if es.ExitCode != 0 {
			t.Errorf("got exit %d, want 0", es.ExitCode)
		}
	})
}

func TestStdin(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		out, _, es, _ := e.run([]string{"cat"}, "data through stdin\n", nil)
		if out != "data through stdin\n" || es.ExitCode != 0 {
			t.Errorf("got %q exit %d, want the input echoed and exit 0", out, es.ExitCode)
		}
	})
}

// Without StdinOnce a client's end of input does not close the
// container's stdin: the next attach still writes to it (a Kubernetes pod
// with stdin: true and stdinOnce: false, `kubectl attach -i` twice).
func TestStdinStaysOpenWithoutStdinOnce(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		c := e.bundle([]string{"cat"}, nil)
		o := e.options(c)
		o.StdinOnce = false
		h, err := Start(o)
		if err != nil {
			t.Fatalf("shim.Start: %v", err)
		}
		c.h = h
		if _, err := h.Start(); err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{"first\n", "second\n"} {
			a, err := h.Attach(strings.NewReader(line), io.Discard, io.Discard)
			if err != nil {
				t.Fatalf("Attach: %v", err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(logText(t, c.log), line) {
				if time.Now().After(deadline) {
					t.Fatalf("%q never reached the log; log %q", line, logText(t, c.log))
				}
				time.Sleep(20 * time.Millisecond)
			}
			if st, _, err := h.State(); err != nil || st != "running" {
				t.Fatalf("after the client's EOF: state %q, %v; want running (stdin must stay open)", st, err)
			}
			_ = a
		}
		if err := e.rt.Kill(context.Background(), c.id, syscall.SIGKILL, false); err != nil {
			t.Fatalf("Kill: %v", err)
		}
		wait(t, h)
	})
}

func logText(t *testing.T, path string) string {
	var b strings.Builder
	for _, e := range readLog(t, path) {
		b.Write(e.Line)
		if !e.Partial {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func TestIsolation(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		out, _, _, c := e.run([]string{"sh", "-c", "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'"}, "", nil)
		want := fmt.Sprintf("pid=1\n%s\n2\n", c.spec.Hostname) // sh and ls... grep is a third
		lines := strings.Split(out, "\n")
		if len(lines) < 3 || lines[0] != "pid=1" || lines[1] != c.spec.Hostname {
			t.Fatalf("got %q, want %q", out, want)
		}
		if n, _ := strconv.Atoi(lines[2]); n < 1 || n > 3 {
			t.Errorf("container sees %d processes in /proc, want its own 1-3", n)
		}
		out, _, _, _ = e.run([]string{"ps", "-o", "pid,comm"}, "", nil)
		rows := strings.Split(strings.TrimSpace(out), "\n")
		if len(rows) != 2 || !strings.Contains(rows[1], "1 ps") && !strings.HasSuffix(strings.TrimSpace(rows[1]), "ps") {
			t.Errorf("ps inside shows %q, want a header and only itself as pid 1", out)
		}
	})
}

// TestFastExitKeepsOutput: a process that writes and exits at once (before
// its runtime has returned) still has its output logged and attached. The
// shim once let the reaper finish such a process before the output copiers
// were counted, losing everything it wrote. The window was narrow: it showed
// only under a loaded `make test` (TestSeccompAndCaps saw exit 1 and no
// output at all), not in these 30 runs on a quiet machine, so this guards
// the path rather than reproducing the race at will.
func TestFastExitKeepsOutput(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		for i := range 30 {
			_, errOut, es, c := e.run([]string{"sh", "-c", "echo fast-exit >&2; exit 3"}, "", nil)
			if es.ExitCode != 3 || errOut != "fast-exit\n" {
				t.Fatalf("run %d: exit %d, attached stderr %q; want 3 and fast-exit", i, es.ExitCode, errOut)
			}
			if l := readLog(t, c.log); len(l) != 1 || string(l[0].Line) != "fast-exit" {
				t.Fatalf("run %d: log %v; want the one stderr line", i, l)
			}
		}
	})
}

func TestSeccompAndCaps(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		for _, args := range [][]string{
			{"unshare", "-n", "true"},
			{"unshare", "-m", "true"},
			{"mount", "-t", "tmpfs", "none", "/tmp"},
		} {
			_, errOut, es, c := e.run(args, "", nil)
			if es.ExitCode == 0 {
				t.Errorf("%q succeeded in a default container, want it denied", args)
			} else if !strings.Contains(errOut, "not permitted") && !strings.Contains(errOut, "permission denied") {
				// Say what the log kept too: it tells lost attach
				// output apart from a process that never printed.
				var logged []string
				for _, le := range readLog(t, c.log) {
					logged = append(logged, le.Stream+": "+string(le.Line))
				}
				t.Errorf("%q: exit %+v, attached stderr %q, log %q; want EPERM (Operation not permitted / permission denied)", args, es, errOut, logged)
			}
		}
		// Docker's default set as root (0xa80425fb); nothing for a
		// non-root user; no-new-privileges set.
		for _, tt := range []struct {
			uid  uint32
			want string
		}{{0, "CapEff:\t00000000a80425fb"}, {1000, "CapEff:\t0000000000000000"}} {
			out, _, _, _ := e.run([]string{"grep", "-E", "CapEff|NoNewPrivs", "/proc/self/status"}, "", func(o *runtime.SpecOpts) { o.UID, o.GID = tt.uid, tt.uid })
			if !strings.Contains(out, tt.want) || !strings.Contains(out, "NoNewPrivs:\t1") {
				t.Errorf("uid %d: %q, want %s and NoNewPrivs 1", tt.uid, out, tt.want)
			}
		}
		// Ordinary fork/threads still work with the clone filter.
		out, _, es, _ := e.run([]string{"sh", "-c", "(echo sub) & wait"}, "", nil)
		if out != "sub\n" || es.ExitCode != 0 {
			t.Errorf("fork in container: got %q exit %d, want sub and 0", out, es.ExitCode)
		}
	})
}

func TestMemoryLimitOOM(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		_, _, es, _ := e.run([]string{"sh", "-c", "a=$(yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | head -c 200000000); echo survived"}, "",
			func(o *runtime.SpecOpts) { o.Memory = 32 << 20 })
		if !es.OOMKilled || es.ExitCode != 137 {
			t.Fatalf("got %+v, want exit 137 and oomKilled", es)
		}
	})
}

func TestPidsLimit(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		_, errOut, _, _ := e.run([]string{"sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done; wait"}, "",
			func(o *runtime.SpecOpts) { o.PidsLimit = 5 })
		if !strings.Contains(errOut, "fork") {
			t.Fatalf("stderr %q, want fork failures under pids limit 5", errOut)
		}
	})
}

func TestExec(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		c := e.bundle([]string{"sleep", "100"}, nil)
		h := e.startShim(c)
		if _, err := h.Start(); err != nil {
			t.Fatal(err)
		}
		spec, _ := runtime.Generate(c.spec)
		p := spec.Process
		p.Args = []string{"sh", "-c", "echo exec-out; echo exec-err >&2; exit 4"}
		b, _ := json.Marshal(p)
		pf := filepath.Join(c.bundle, "exec-e1.json")
		os.WriteFile(pf, b, 0o644)
		o := e.options(c)
		o.ExecID, o.ProcessFile, o.LogPath = "e1", pf, ""
		eh, err := Start(o)
		if err != nil {
			t.Fatalf("exec shim: %v", err)
		}
		var out, errb syncBuf
		a, err := eh.Attach(nil, &out, &errb)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eh.Start(); err != nil {
			t.Fatalf("exec start: %v", err)
		}
		es := wait(t, eh)
		a.Wait()
		if es.ExitCode != 4 || out.String() != "exec-out\n" || errb.String() != "exec-err\n" {
			t.Errorf("exec: got exit %d out %q err %q, want 4, exec-out, exec-err", es.ExitCode, out.String(), errb.String())
		}
		// The container is still running.
		if st, err := e.rt.State(context.Background(), c.id); err != nil || st.Status != "running" {
			t.Errorf("container after exec: %+v, %v; want running", st, err)
		}
		e.rt.Kill(context.Background(), c.id, syscall.SIGKILL, false)
		if es := wait(t, h); es.ExitCode != 137 {
			t.Errorf("container exit %d, want 137", es.ExitCode)
		}
	})
}

// TestSurvivesDaemonDeath starts the shim from a helper process that is then
// SIGKILLed, and reattaches.
func TestSurvivesDaemonDeath(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		c := e.bundle([]string{"sh", "-c", "sleep 1; echo late; exit 7"}, nil)
		o, _ := json.Marshal(e.options(c))
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "BERTH_SHIM_TEST_HELPER="+string(o))
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		n, _ := stdout.Read(buf)
		if !strings.HasPrefix(string(buf[:n]), "started") {
			t.Fatalf("helper said %q, want started", buf[:n])
		}
		cmd.Process.Kill()
		cmd.Wait()
		h, err := Connect(c.bundle)
		if err != nil {
			t.Fatalf("Connect after the starter died: %v", err)
		}
		if h.Pid() <= 0 {
			t.Errorf("reattached Pid() = %d, want the container's pid", h.Pid())
		}
		if es := wait(t, h); es.ExitCode != 7 {
			t.Fatalf("got exit %d, want 7", es.ExitCode)
		}
		es := readLog(t, c.log)
		if len(es) != 1 || string(es[0].Line) != "late" {
			t.Errorf("log after the starter died: %v, want one line \"late\"", es)
		}
	})
}

func TestStartErrorCarriesRuntimeMessage(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		c := e.bundle([]string{"/no/such/binary"}, nil)
		h := e.startShim(c)
		_, err := h.Start()
		if err == nil {
			t.Fatal("Start of a missing binary succeeded")
		}
		if !strings.Contains(err.Error(), "no/such/binary") {
			t.Errorf("error %q does not name the binary", err)
		}
		if err := h.Shutdown(); err != nil {
			t.Errorf("Shutdown after failed start: %v", err)
		}
		waitGone(t, c.bundle)
	})
}

func TestNoLeaks(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		const n = 50
		var ids []string
		for i := 0; i < n; i++ {
			_, _, es, c := e.run([]string{"true"}, "", nil)
			if es.ExitCode != 0 {
				t.Fatalf("cycle %d: exit %d", i, es.ExitCode)
			}
			waitGone(t, c.bundle)
			ids = append(ids, c.id)
		}
		// The shim removes its socket just before it exits: give the
		// processes a moment to be gone.
		var ps []byte
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			ps, _ = exec.Command("ps", "-eo", "args").Output()
			if !bytes.Contains(ps, []byte("--id t"+strconv.Itoa(os.Getpid())+"-")) {
				break
			}
		}
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		for _, id := range ids {
			if bytes.Contains(ps, []byte("--id "+id+" ")) {
				t.Errorf("shim for %s still running", id)
			}
			if bytes.Contains(mi, []byte(id)) {
				t.Errorf("mount of %s left behind", id)
			}
			for _, ctl := range []string{"memory", "pids", "cpu", "devices"} {
				if _, err := os.Stat(filepath.Join(cgroups.Root, ctl, e.cgroup, id)); err == nil {
					t.Errorf("cgroup %s/%s/%s left behind", ctl, e.cgroup, id)
				}
			}
			if _, err := os.Stat(filepath.Join(e.rt.Root, id)); err == nil {
				t.Errorf("runtime state for %s left behind", id)
			}
		}
	})
}

// shimPid finds the shim process serving id.
func shimPid(t *testing.T, id string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && filepath.Base(args[0]) == "berth-shim" && args[1] == "--id" && args[2] == id {
			return pid
		}
	}
	t.Fatalf("no berth-shim process for %s", id)
	return 0
}

func vmRSS(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// TestShimRSS measures the monitor's memory while its container logs, and
// checks it lives in its own session (it must survive the daemon's).
func TestShimRSS(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		c := e.bundle([]string{"sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; sleep 100"}, nil)
		h := e.startShim(c)
		a, err := h.Attach(nil, io.Discard, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if _, err := h.Start(); err != nil {
			t.Fatal(err)
		}
		pid := shimPid(t, c.id)
		if sid, _ := unix.Getsid(pid); sid != pid {
			t.Errorf("shim session %d, want its own (%d)", sid, pid)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && len(readLog(t, c.log)) < 3000 {
			time.Sleep(20 * time.Millisecond)
		}
		rss := vmRSS(t, pid)
		// More shims share the binary's pages: PSS is the per-container cost.
		var others []*ctr
		for i := 0; i < 4; i++ {
			o := e.bundle([]string{"sleep", "100"}, nil)
			if _, err := e.startShim(o).Start(); err != nil {
				t.Fatal(err)
			}
			others = append(others, o)
		}
		pss := pssKB(t, pid)
		t.Logf("%s: berth-shim VmRSS %d kB, PSS %d kB with 5 shims, after 3000 log lines", e.rt.Name, rss, pss)
		// The target (issue 2) is 2 MiB, as conmon; containerd-shim is
		// 13 MiB. The bound leaves room for the Go runtime's variance.
		if rss > 2304 {
			t.Errorf("shim RSS %d kB, want <= 2304 kB (target 2048; conmon 2048, containerd-shim 13312)", rss)
		}
		for _, o := range append(others, c) {
			e.rt.Kill(context.Background(), o.id, syscall.SIGKILL, false)
			wait(t, o.h)
		}
	})
}

func pssKB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

func TestResizeAndTTYExec(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		c := e.bundle([]string{"sh", "-c", "stty size; read x; stty size; sleep 100"}, func(o *runtime.SpecOpts) {
			o.Terminal, o.ConsoleHeight, o.ConsoleWidth = true, 30, 90
		})
		h := e.startShim(c)
		var out syncBuf
		pr, pw := io.Pipe()
		if _, err := h.Attach(pr, &out, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor := func(s string) {
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && !strings.Contains(out.String(), s) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		waitFor("30 90")
		if err := h.Resize(40, 120); err != nil {
			t.Fatalf("Resize: %v", err)
		}
		pw.Write([]byte("go\r"))
		waitFor("40 120")
		if got := out.String(); !strings.Contains(got, "30 90") || !strings.Contains(got, "40 120") {
			t.Errorf("stty size in container: %q, want 30 90 (initial) then 40 120 (after Resize)", got)
		}
		// An exec with its own pty.
		spec, _ := runtime.Generate(c.spec)
		p := spec.Process
		p.Args = []string{"sh", "-c", "test -t 0 && echo exec-tty"}
		b, _ := json.Marshal(p)
		pf := filepath.Join(c.bundle, "exec-t1.json")
		os.WriteFile(pf, b, 0o644)
		o := e.options(c)
		o.ExecID, o.ProcessFile, o.LogPath = "t1", pf, ""
		eh, err := Start(o)
		if err != nil {
			t.Fatal(err)
		}
		var eout syncBuf
		a, _ := eh.Attach(nil, &eout, nil)
		if _, err := eh.Start(); err != nil {
			t.Fatalf("tty exec start: %v", err)
		}
		if es := wait(t, eh); es.ExitCode != 0 {
			t.Errorf("tty exec exit %d, want 0", es.ExitCode)
		}
		a.Wait()
		if !strings.Contains(eout.String(), "exec-tty") {
			t.Errorf("tty exec output %q, want exec-tty", eout.String())
		}
		if err := h.Resize(0, 10); err == nil {
			t.Error("Resize(0, 10) succeeded, want an error")
		}
		e.rt.Kill(context.Background(), c.id, syscall.SIGKILL, false)
		wait(t, h)
	})
}

// TestSlowClientDoesNotBlockLog: an attached client that never reads must
// not stop the container or its log.
func TestSlowClientDoesNotBlockLog(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		const n = 20000
		c := e.bundle([]string{"sh", "-c", fmt.Sprintf("yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -n %d", n)}, nil)
		h := e.startShim(c)
		conn, _, err := h.AttachConn(false, true, true)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close() // never read
		if _, err := h.Start(); err != nil {
			t.Fatal(err)
		}
		if es := wait(t, h); es.ExitCode != 0 {
			t.Fatalf("exit %d, want 0", es.ExitCode)
		}
		if got := len(readLog(t, c.log)); got != n {
			t.Fatalf("log has %d lines, want %d", got, n)
		}
	})
}

func TestLogRotationThroughShim(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		c := e.bundle([]string{"sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done"}, nil)
		o := e.options(c)
		o.LogMaxSize, o.LogMaxFiles = 16<<10, 3
		h, err := Start(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Start(); err != nil {
			t.Fatal(err)
		}
		wait(t, h)
		files, _ := logs.Files(c.log)
		if len(files) != 3 {
			t.Fatalf("log files %v, want 3", files)
		}
		for _, f := range files {
			if st, _ := os.Stat(f); st.Size() > 16<<10 {
				t.Errorf("%s is %d bytes, want <= 16 KiB", f, st.Size())
			}
		}
		es := readLog(t, c.log)
		if got := string(es[len(es)-1].Line); got != "line 2999" {
			t.Errorf("last line %q, want line 2999", got)
		}
	})
}

func TestHardening(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		script := `
test -s /proc/kcore && echo "kcore readable"
cat /proc/keys 2>/dev/null | grep -q . && echo "keys readable"
(echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo "proc/sys writable"
touch /sys/x 2>/dev/null && echo "sys writable"
touch /x 2>/dev/null && echo "rootfs writable"
ls /dev | grep -qE '^(sd|vd|nvme|mem|kmsg)' && echo "host devices: $(ls /dev | tr '\n' ' ')"
for d in null zero full random urandom tty ptmx shm mqueue pts; do test -e /dev/$d || echo "missing /dev/$d"; done
head -c 1 /dev/urandom >/dev/null || echo "urandom unusable"
echo checked`
		out, errOut, _, _ := e.run([]string{"sh", "-c", script}, "", nil)
		if strings.TrimSpace(out) != "checked" {
			t.Errorf("hardening gaps:\n%s(stderr %q)", out, errOut)
		}
	})
}

// TestClientLeavingMidStream: a client that goes away while output flows
// is dropped, and every other client still gets every byte exactly once.
func TestClientLeavingMidStream(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		const n = 300
		c := e.bundle([]string{"sh", "-c", fmt.Sprintf("echo start; sleep 0.3; i=0; while [ $i -lt %d ]; do echo line $i; i=$((i+1)); done", n)}, nil)
		h := e.startShim(c)
		leaver, _, err := h.AttachConn(false, true, true)
		if err != nil {
			t.Fatal(err)
		}
		var outs [2]syncBuf
		var atts []*Attachment
		for i := range outs {
			a, err := h.Attach(nil, &outs[i], io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			atts = append(atts, a)
		}
		if _, err := h.Start(); err != nil {
			t.Fatal(err)
		}
		// Take the first frame, then stop reading before the loop prints:
		// the shim's next write to this client fails (EPIPE) while it is
		// handing one chunk to every client, with no hang-up event first.
		buf := make([]byte, 64)
		if _, err := leaver.Read(buf); err != nil {
			t.Fatal(err)
		}
		if err := leaver.(interface{ CloseRead() error }).CloseRead(); err != nil {
			t.Fatal(err)
		}
		defer leaver.Close()
		if es := wait(t, h); es.ExitCode != 0 {
			t.Fatalf("exit %d, want 0", es.ExitCode)
		}
		var want strings.Builder
		want.WriteString("start\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&want, "line %d\n", i)
		}
		for i, a := range atts {
			if err := a.Wait(); err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			if got := outs[i].String(); got != want.String() {
				t.Errorf("client %d got %d bytes, want %d (each line once, in order)", i, len(got), want.Len())
			}
		}
	})
}

// TestOutOfDescriptors: a shim out of file descriptors neither spins on
// its listener nor stops serving once descriptors are free again.
func TestOutOfDescriptors(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *env) {
		c := e.bundle([]string{"sleep", "100"}, nil)
		h := e.startShim(c)
		defer h.Shutdown()
		pid := shimPid(t, c.id)
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		lim := unix.Rlimit{Cur: uint64(len(fds) + 2), Max: uint64(len(fds) + 2)}
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		for i := 0; i < 8; i++ {
			conn, err := net.Dial("unix", filepath.Join(c.bundle, "shim.sock"))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
		}
		cpu0 := cpuTicks(t, pid)
		time.Sleep(500 * time.Millisecond)
		if used := cpuTicks(t, pid) - cpu0; used > 10 { // clock ticks: 100 ms
			t.Errorf("shim used %d clock ticks in 0.5 s while out of descriptors, want it idle", used)
		}
		for _, conn := range conns {
			conn.Close()
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, _, err := h.State()
			if err == nil && st == StatusCreated {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shim does not answer after descriptors are free: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// cpuTicks is a process's user plus system time in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}
