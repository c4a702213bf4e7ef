package engine

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDaemonKillSurvival: containers keep running and logging while the
// daemon is dead; the next daemon reattaches and ps, logs -f, wait, stop
// and exec are correct.
func TestDaemonKillSurvival(t *testing.T) {
	d, err := newDaemon("survive")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer d.stop()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))
	ticker := strings.TrimSpace(mustOn(t, d, "run", "-d", "--name", "ticker", "busybox", "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.1; done"))
	quitter := strings.TrimSpace(mustOn(t, d, "run", "-d", "--name", "quitter", "busybox", "sh", "-c", "sleep 1; exit 9"))
	// An always container that exits while no daemon runs is restarted by
	// the next daemon; an unless-stopped one the user stopped is not.
	always := strings.TrimSpace(mustOn(t, d, "run", "-d", "--restart", "always", "busybox", "sh", "-c", "sleep 1; exit 2"))
	stopped := strings.TrimSpace(mustOn(t, d, "run", "-d", "--restart", "unless-stopped", "busybox", "sleep", "60"))
	mustOn(t, d, "stop", "-t", "0", stopped)
	waitFor(t, 5*time.Second, "ticks", func() bool { return strings.Contains(d.run("logs", "ticker").stdout, "tick3") })
	pid := inspect(t, d, "{{.State.Pid}}", "ticker")

	d.kill()
	before := countLines(t, filepath.Join(d.root, "containers", ticker, "container.log"))
	time.Sleep(1500 * time.Millisecond) // quitter exits while no daemon runs
	after := countLines(t, filepath.Join(d.root, "containers", ticker, "container.log"))
	if after <= before {
		t.Errorf("container stopped logging while the daemon was dead (%d → %d lines)", before, after)
	}
	if _, err := os.Stat("/proc/" + pid); err != nil {
		t.Fatalf("container process %s died with the daemon", pid)
	}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the always container restarted by the new daemon", func() bool {
		n, _ := strconv.Atoi(inspect(t, d, "{{.RestartCount}}", always))
		return n >= 1
	})
	if got := inspect(t, d, "{{.State.Running}} {{.RestartCount}}", stopped); got != "false 0" {
		t.Errorf("user-stopped unless-stopped container after daemon restart: %q, want \"false 0\"", got)
	}
	if got := strings.TrimSpace(mustOn(t, d, "ps", "--filter", "name=ticker", "--format", "{{.Names}}")); got != "ticker" {
		t.Errorf("ps after restart: %q, want ticker", got)
	}
	if got := inspect(t, d, "{{.State.Status}} {{.State.ExitCode}}", quitter); got != "exited 9" {
		t.Errorf("quitter, which exited while the daemon was down: %q, want \"exited 9\"", got)
	}
	if got := inspect(t, d, "{{.State.Pid}}", "ticker"); got != pid {
		t.Errorf("ticker pid after restart %s, want %s (not restarted)", got, pid)
	}
	if got := mustOn(t, d, "exec", "ticker", "echo", "exec-ok"); got != "exec-ok\n" {
		t.Errorf("exec after restart: %q", got)
	}
	// logs -f follows the live log, and ends when stop ends the container.
	cmd := exec.Command(filepath.Join(binDir, "berth"), "-H", "unix://"+d.sock, "logs", "-f", "--tail", "0", "ticker")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "tick") {
		t.Errorf("logs -f after restart printed %q, want a new tick", sc.Text())
	}
	waitDone := make(chan string, 1)
	go func() { waitDone <- d.run("wait", "ticker").stdout }()
	mustOn(t, d, "stop", "-t", "1", "ticker")
	select {
	case code := <-waitDone:
		if strings.TrimSpace(code) != "137" && strings.TrimSpace(code) != "143" {
			t.Errorf("wait after stop printed %q", code)
		}
	case <-time.After(10 * time.Second):
		t.Error("wait did not return after stop")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Error("logs -f did not end when the container stopped")
	}
	mustOn(t, d, "rm", "-f", "ticker", "quitter", always, stopped)
	assertNoLeaks(t, d)
}

func countLines(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestTwoDaemons: two daemons with their own roots and sockets run side by side.
func TestTwoDaemons(t *testing.T) {
	d, err := newDaemon("second")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer d.stop()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-oci.tar"))
	id := strings.TrimSpace(mustOn(t, d, "run", "-d", "--name", "same-name", "busybox:oci", "sleep", "30"))
	id2 := strings.TrimSpace(must(t, "run", "-d", "--name", "same-name", "busybox", "sleep", "30"))
	rmf(t, shared, id2)
	if strings.TrimSpace(mustOn(t, d, "ps", "-q", "--no-trunc")) != id {
		t.Errorf("second daemon sees other containers")
	}
	if strings.Contains(must(t, "ps", "-q", "--no-trunc"), id) {
		t.Errorf("shared daemon sees the second daemon's container")
	}
	mustOn(t, d, "rm", "-f", id)
	// A second daemon on a busy socket is refused with a clear error.
	r := exec.Command(filepath.Join(binDir, "berth"), "daemon", "--root", d.root, "--exec-root", d.execRoot, "--socket", d.sock, "--config", "/nonexistent")
	outb, err := r.CombinedOutput()
	if err == nil || !strings.Contains(string(outb), "already") {
		t.Errorf("second daemon on a busy socket: err %v, output %s", err, outb)
	}
}

func TestDaemonNotRunning(t *testing.T) {
	cmd := exec.Command(filepath.Join(binDir, "berth"), "-H", "unix:///run/berth-nonexistent.sock", "ps")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Is the daemon running") {
		t.Errorf("ps with no daemon: err %v, output %q", err, out)
	}
}

// TestNoLeaks: 200 create/run/rm cycles leave no mount, cgroup, process or file.
func TestNoLeaks(t *testing.T) {
	d, err := newDaemon("leaks")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer d.stop()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))
	n := 200
	if testing.Short() {
		n = 20
	}
	for i := 0; i < n; i++ {
		switch i % 3 {
		case 0:
			mustOn(t, d, "run", "--rm", "busybox", "true")
		case 1:
			id := strings.TrimSpace(mustOn(t, d, "create", "busybox", "true"))
			mustOn(t, d, "start", id)
			mustOn(t, d, "wait", id)
			mustOn(t, d, "rm", id)
		case 2:
			id := strings.TrimSpace(mustOn(t, d, "run", "-d", "busybox", "sleep", "10"))
			mustOn(t, d, "rm", "-f", id)
		}
	}
	assertNoLeaks(t, d)
}

// assertNoLeaks checks that d has no container state left: no overlay
// mount under its root, no cgroup, no shim, no container directory.
func assertNoLeaks(t *testing.T, d *daemonProc) {
	t.Helper()
	if ids := strings.TrimSpace(d.run("ps", "-aq").stdout); ids != "" {
		t.Fatalf("containers still listed: %s", ids)
	}
	// The shim deletes the runtime's state (cgroups) right after it has
	// answered the exit, and the daemon tears down networks and the
	// writable layers of auto-removed containers in the background: allow
	// them a moment to finish.
	var leftovers []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		leftovers = nil
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(mounts), "\n") {
			// The daemon keeps its namespace directory mounted (shared) so
			// that namespace files can be bind-mounted into it.
			if f := strings.Fields(l); len(f) > 4 && f[4] == filepath.Join(d.root, "network", "netns") {
				continue
			}
			if strings.Contains(l, d.root) || strings.Contains(l, d.execRoot+"/") {
				leftovers = append(leftovers, "mount "+l)
			}
		}
		for _, dir := range []string{filepath.Join(d.root, "containers"), filepath.Join(d.execRoot, "c"), filepath.Join(d.root, "image", "snapshots", "containers")} {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				leftovers = append(leftovers, "in "+dir+": "+e.Name())
			}
		}
		for _, h := range cgroupHierarchies() {
			ents, _ := os.ReadDir(filepath.Join(h, d.cgroupParent))
			for _, e := range ents {
				if e.IsDir() {
					leftovers = append(leftovers, "cgroup "+filepath.Join(h, d.cgroupParent, e.Name()))
				}
			}
		}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), "berth-shim") && strings.Contains(string(b), d.execRoot) {
				leftovers = append(leftovers, "shim "+p+" "+strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
		if len(leftovers) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range leftovers {
		t.Errorf("left behind: %s", l)
	}
}

func TestSystemPrune(t *testing.T) {
	id := strings.TrimSpace(must(t, "run", "-d", "busybox", "true"))
	must(t, "wait", id)
	keep := strings.TrimSpace(must(t, "run", "-d", "busybox", "sleep", "30"))
	rmf(t, shared, keep)
	out := must(t, "system", "prune", "-f")
	if !strings.Contains(out, id) || strings.Contains(out, keep) {
		t.Errorf("system prune output:\n%s\nwant %s removed and %s kept", out, id, keep)
	}
	if r := berth("inspect", id); r.code == 0 {
		t.Errorf("pruned container still there")
	}
}

// shimOf returns the pids of the berth-shim processes of container id.
func shimOf(t *testing.T, id string) []string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "berth-shim --id "+id).Output()
	return strings.Fields(string(out))
}

// TestCreatedContainerShim: create spawns the container's shim ahead of the
// start, which uses it; a created container that is removed, or outlives
// its daemon, leaves no shim behind.
func TestCreatedContainerShim(t *testing.T) {
	d, err := newDaemon("preshim")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer d.stop()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))

	// Started: the shim spawned at create is the one that runs the process
	// (the container's first process is its child).
	id := strings.TrimSpace(mustOn(t, d, "create", "busybox", "sh", "-c", "sleep 0.5; echo from-prespawned; exit 4"))
	waitFor(t, 10*time.Second, "the shim spawned at create", func() bool { return len(shimOf(t, id)) == 1 })
	shim := shimOf(t, id)[0]
	mustOn(t, d, "start", id)
	pid := inspect(t, d, "{{.State.Pid}}", id)
	if st, err := os.ReadFile("/proc/" + pid + "/stat"); err != nil {
		t.Errorf("container process %s: %v", pid, err)
	} else if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) < 2 || f[1] != shim {
		t.Errorf("container process %s has parent %v, want the shim spawned at create (%s)", pid, f, shim)
	}
	if r := d.run("wait", id); strings.TrimSpace(r.stdout) != "4" {
		t.Errorf("wait: %s; want 4", r)
	}
	if got := mustOn(t, d, "logs", id); got != "from-prespawned\n" {
		t.Errorf("logs: %q", got)
	}
	// A second start spawns a shim of its own.
	if r := d.run("start", "-a", id); r.code != 4 || r.stdout != "from-prespawned\n" {
		t.Errorf("second start: %s", r)
	}
	mustOn(t, d, "rm", id)

	// Removed without a start: its shim goes with it.
	id = strings.TrimSpace(mustOn(t, d, "create", "busybox", "true"))
	waitFor(t, 10*time.Second, "the shim spawned at create", func() bool { return len(shimOf(t, id)) == 1 })
	mustOn(t, d, "rm", id)
	waitFor(t, 10*time.Second, "the shim of a removed created container to exit", func() bool { return len(shimOf(t, id)) == 0 })

	// Created, then the daemon restarts: the next daemon stops the shim,
	// and a start still works.
	id = strings.TrimSpace(mustOn(t, d, "create", "busybox", "echo", "after-restart"))
	waitFor(t, 10*time.Second, "the shim spawned at create", func() bool { return len(shimOf(t, id)) == 1 })
	d.stop()
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the next daemon to stop the shim of a created container", func() bool { return len(shimOf(t, id)) == 0 })
	if r := d.run("start", "-a", id); r.code != 0 || r.stdout != "after-restart\n" {
		t.Errorf("start after a daemon restart: %s", r)
	}
	mustOn(t, d, "rm", id)
}

// TestOrphanSnapshotSwept: a writable layer no container owns (an
// auto-removed container's, when the daemon stopped before its background
// removal finished) is removed by the next daemon; a container's is kept.
func TestOrphanSnapshotSwept(t *testing.T) {
	d, err := newDaemon("sweep")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer d.stop()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))
	keep := strings.TrimSpace(mustOn(t, d, "create", "busybox", "true"))
	mustOn(t, d, "start", keep)
	mustOn(t, d, "wait", keep)
	d.stop()
	snaps := filepath.Join(d.root, "image", "snapshots", "containers")
	orphan := filepath.Join(snaps, strings.Repeat("ab", 32))
	for _, sub := range []string{"upper/etc", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(orphan, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Errorf("orphaned snapshot %s still there after a daemon start", orphan)
	}
	if _, err := os.Stat(filepath.Join(snaps, keep)); err != nil {
		t.Errorf("the snapshot of container %s went: %v", keep, err)
	}
	mustOn(t, d, "rm", keep)
}
