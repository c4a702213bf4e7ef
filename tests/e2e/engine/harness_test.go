// Package engine holds the end-to-end tests of the berth engine: they run
// the built bin/berth and bin/berth-shim as root against the real kernel,
// crun and runc, with images built by tests/testimages.
package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/cgroups"
)

var (
	daemonSeq int
	binDir    string
	imagesDir string
	shared    *daemonProc // the daemon most tests use
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping engine end-to-end tests: they need root (namespaces, mounts, cgroups)")
		os.Exit(0)
	}
	binDir = os.Getenv("BERTH_BIN_DIR")
	if binDir == "" {
		binDir = "../../../bin"
	}
	binDir, _ = filepath.Abs(binDir)
	imagesDir = os.Getenv("BERTH_TESTIMAGES")
	if imagesDir == "" {
		imagesDir = filepath.Join(binDir, "testimages")
	}
	for _, f := range []string{filepath.Join(binDir, "berth"), filepath.Join(binDir, "berth-shim"), filepath.Join(imagesDir, "busybox-docker.tar")} {
		if _, err := os.Stat(f); err != nil {
			fmt.Fprintf(os.Stderr, "engine e2e: %s is missing: run `make build testimages` (or `make test`)\n", f)
			os.Exit(1)
		}
	}
	d, err := newDaemon("shared")
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine e2e: starting the daemon:", err)
		os.Exit(1)
	}
	shared = d
	for _, img := range []string{"busybox-docker.tar", "busybox-oci.tar", "progs.tar", "cfg.tar", "layered.tar"} {
		if r := d.run("load", "-i", filepath.Join(imagesDir, img)); r.code != 0 {
			fmt.Fprintf(os.Stderr, "engine e2e: loading %s: %s%s\n", img, r.stdout, r.stderr)
			d.stop()
			os.Exit(1)
		}
	}
	code := m.Run()
	d.run("rm", "-f", "$(all)")
	if ids := strings.Fields(d.run("ps", "-aq").stdout); len(ids) > 0 {
		d.run(append([]string{"rm", "-f"}, ids...)...)
	}
	d.stop()
	d.cleanup()
	os.Exit(code)
}

// daemonProc is one berth daemon with its own root, exec root and socket.
type daemonProc struct {
	name                 string
	root, execRoot, sock string
	cgroupParent         string
	bridge, subnet       string
	cmd                  *exec.Cmd
	log                  *os.File
	extraArgs            []string // more `berth daemon` flags
	netns                string   // run under `ip netns exec NETNS` when set
}

// daemonCmd is the command line that runs `berth daemon args…`, in the
// daemon's network namespace if it has one.
func (d *daemonProc) daemonCmd(args ...string) *exec.Cmd {
	argv := append([]string{filepath.Join(binDir, "berth"), "daemon"}, args...)
	if d.netns != "" {
		argv = append([]string{"ip", "netns", "exec", d.netns}, argv...)
	}
	return exec.Command(argv[0], argv[1:]...)
}

func newDaemon(name string, extraArgs ...string) (*daemonProc, error) {
	return newDaemonIn("", name, extraArgs...)
}

// newDaemonIn starts a daemon under `ip netns exec netns` ("" for none).
func newDaemonIn(netns, name string, extraArgs ...string) (*daemonProc, error) {
	root, err := os.MkdirTemp("/var/tmp", "berth-e2e-"+name+"-")
	if err != nil {
		return nil, err
	}
	execRoot, err := os.MkdirTemp("/run", "berth-e2e-")
	if err != nil {
		return nil, err
	}
	daemonSeq++
	d := &daemonProc{name: name, root: root, execRoot: execRoot, sock: filepath.Join(execRoot, "berth.sock"),
		cgroupParent: "berth-e2e-" + filepath.Base(execRoot),
		// Each daemon gets its own default bridge and subnet.
		bridge: fmt.Sprintf("bte%d-%d", os.Getpid()%10000, daemonSeq), subnet: fmt.Sprintf("10.%d.%d.0/24", 180+os.Getpid()%40, daemonSeq),
		extraArgs: extraArgs, netns: netns}
	return d, d.start()
}

func (d *daemonProc) start() error {
	log, err := os.OpenFile(filepath.Join(d.root, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	d.log = log
	d.cmd = d.daemonCmd("--root", d.root, "--exec-root", d.execRoot,
		"--socket", d.sock, "--cgroup-parent", d.cgroupParent, "--config", "/nonexistent", "--log-level", "debug",
		"--bridge", d.bridge, "--bridge-subnet", d.subnet)
	d.cmd.Args = append(d.cmd.Args, d.extraArgs...)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	for i := 0; i < 200; i++ {
		if r := d.run("version"); r.code == 0 {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	b, _ := os.ReadFile(log.Name())
	return fmt.Errorf("daemon %s did not answer within 5s; its log:\n%s", d.name, b)
}

// kill kills the daemon with SIGKILL, leaving its containers to their shims.
func (d *daemonProc) kill() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.cmd.Wait()
	d.log.Close()
}

// stop stops the daemon (SIGTERM); its containers keep running.
func (d *daemonProc) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
	d.log.Close()
}

// cleanup removes everything the daemon left: a last daemon run with
// --cleanup removes its bridges and packet rules.
func (d *daemonProc) cleanup() {
	if d.cmd != nil && d.cmd.ProcessState != nil {
		c := d.daemonCmd("--root", d.root, "--exec-root", d.execRoot, "--socket", d.sock,
			"--cgroup-parent", d.cgroupParent, "--config", "/nonexistent", "--bridge", d.bridge, "--bridge-subnet", d.subnet, "--cleanup")
		if err := c.Start(); err == nil {
			for i := 0; i < 200; i++ {
				if r := d.run("version"); r.code == 0 {
					break
				}
				time.Sleep(25 * time.Millisecond)
			}
			c.Process.Signal(syscall.SIGTERM)
			c.Wait()
		}
	}
	cgroups.RemoveEverywhere(d.cgroupParent)
	os.RemoveAll(d.root)
	os.RemoveAll(d.execRoot)
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// run runs the berth CLI against d.
func (d *daemonProc) run(args ...string) result {
	return d.runIn(nil, args...)
}

func (d *daemonProc) runIn(stdin []byte, args ...string) result {
	return execute(2*time.Minute, nil, stdin, filepath.Join(binDir, "berth"), append([]string{"-H", "unix://" + d.sock}, args...)...)
}

// execute runs a program with stdin (none if nil) and env (the test's if
// nil), killed after limit, and returns its output and exit code (-1 if it
// could not run or was killed).
func execute(limit time.Duration, env []string, stdin []byte, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		e.WriteString(err.Error())
	}
	return result{stdout: o.String(), stderr: e.String(), code: code}
}

// berth runs the CLI against the shared daemon.
func berth(args ...string) result { return shared.run(args...) }

// must runs berth and fails the test unless it exits 0.
func must(t *testing.T, args ...string) string {
	t.Helper()
	r := berth(args...)
	if r.code != 0 {
		t.Fatalf("berth %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// mustOn is must against a given daemon.
func mustOn(t *testing.T, d *daemonProc, args ...string) string {
	t.Helper()
	r := d.run(args...)
	if r.code != 0 {
		t.Fatalf("berth %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

func inspect(t *testing.T, d *daemonProc, tmpl, id string) string {
	t.Helper()
	return strings.TrimSpace(mustOn(t, d, "inspect", "-f", tmpl, id))
}

// rmf removes containers at the end of a test.
func rmf(t *testing.T, d *daemonProc, ids ...string) {
	t.Cleanup(func() { d.run(append([]string{"rm", "-f"}, ids...)...) })
}

// cgroupHierarchies lists the cgroup directories under which containers'
// cgroups appear: the v1 hierarchies, or the v2 root.
func cgroupHierarchies() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	var out []string
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "blkio", "freezer", "devices", "cpuset", "hugetlb", "systemd"} {
		out = append(out, filepath.Join("/sys/fs/cgroup", c))
	}
	return out
}
