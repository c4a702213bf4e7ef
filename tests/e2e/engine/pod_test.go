package engine

// Pods on the engine, the way cri-dockerd runs them on Docker: a sandbox
// container of the built-in pause image holds the pod's namespaces and the
// pod's containers join them (NetworkMode, IpcMode and PidMode
// "container:<sandbox>"). Driven with the stock docker CLI and with
// berth's Go client, as the node agent drives it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
	"github.com/berth/berth/internal/errdefs"
)

const pauseImage = "berth.local/pause:latest"

func TestPodSandboxDocker(t *testing.T) {
	needDockerCLI(t)
	e := newDockerEnv(t, "podsandbox", "busybox-docker.tar")

	// The pause image is made on demand by the create.
	t0 := time.Now()
	sb := strings.TrimSpace(e.must(t, "run", "-d", "--name", "k8s_POD_web_default_u1_0", "--hostname", "web",
		"--ipc", "shareable", "--label", "io.kubernetes.pod.uid=u1", pauseImage))
	t.Logf("sandbox with a pause image made on demand: %s", time.Since(t0).Round(time.Millisecond))
	if out := e.must(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"); !strings.Contains(out, pauseImage) {
		t.Fatalf("docker images does not list %s:\n%s", pauseImage, out)
	}
	ip := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", sb))
	if net.ParseIP(ip) == nil {
		t.Fatalf("sandbox IPAddress %q", ip)
	}
	if got := strings.TrimSpace(e.must(t, "top", sb)); !strings.Contains(got, "/pause") {
		t.Errorf("sandbox runs: %s", got)
	}

	join := []string{"--network", "container:" + sb, "--ipc", "container:" + sb, "--pid", "container:" + sb}
	t.Run("shared namespaces", func(t *testing.T) {
		app := strings.TrimSpace(e.must(t, append(append([]string{"run", "-d", "--name", "k8s_app_web_default_u1_0"}, join...),
			"busybox", "sh", "-c", "echo shared > /dev/shm/mark; while :; do echo hello | nc -l -p 8080; done")...))
		out := e.must(t, append(append([]string{"run", "--rm"}, join...), "busybox", "sh", "-c",
			"hostname; ip -4 -o addr show eth0; cat /dev/shm/mark; grep web /etc/hosts; ps -o comm | sort | tr '\\n' ' '")...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 5 || lines[0] != "web" || !strings.Contains(lines[1], " "+ip+"/") || lines[2] != "shared" ||
			!strings.Contains(lines[3], ip) || !strings.Contains(lines[4], "pause") || !strings.Contains(lines[4], " nc ") {
			t.Errorf("a container joining the sandbox sees:\n%s\nwant hostname web, IP %s, /dev/shm/mark, /etc/hosts with web, the pod's processes", out, ip)
		}
		// The pod's port answers on the sandbox's IP.
		waitFor(t, 5*time.Second, "the pod's port on "+ip, func() bool {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), time.Second)
			if err != nil {
				return false
			}
			defer c.Close()
			b := make([]byte, 5)
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _ := c.Read(b)
			return string(b[:n]) == "hello"
		})
		got := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.HostConfig.NetworkMode}} {{.HostConfig.IpcMode}} {{.HostConfig.PidMode}} {{.Config.Hostname}} {{.NetworkSettings.IPAddress}}|{{.HostsPath}}", app))
		sbHosts := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.HostsPath}}", sb))
		want := fmt.Sprintf("container:%s container:%s container:%s web |%s", sb, sb, sb, sbHosts)
		if got != want {
			t.Errorf("inspect of a joined container: %q, want %q", got, want)
		}
		e.must(t, "rm", "-f", app)
	})

	t.Run("orphans are reaped by pause", func(t *testing.T) {
		e.must(t, append(append([]string{"run", "--rm"}, join...), "busybox", "sh", "-c", "sleep 0.2 & exit 0")...)
		time.Sleep(600 * time.Millisecond)
		out := e.must(t, append(append([]string{"run", "--rm"}, join...), "busybox", "ps", "-o", "stat,comm")...)
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], "Z") {
				t.Errorf("a zombie in the pod: %q\n%s", l, out)
			}
		}
	})

	t.Run("bad targets", func(t *testing.T) {
		e.fails(t, "no such container nosuch", "create", "--network", "container:nosuch", "busybox", "true")
		e.fails(t, "conflicting options: port publishing", "create", "--network", "container:"+sb, "-p", "80:80", "busybox", "true")
		e.must(t, "create", "--name", "stopped-sb", "busybox", "true")
		e.fails(t, "cannot join the network namespace of container stopped-sb", "run", "--rm", "--network", "container:stopped-sb", "busybox", "true")
		e.must(t, "run", "-d", "--name", "private-ipc", "busybox", "sleep", "60")
		e.fails(t, `create it with IpcMode "shareable"`, "run", "--rm", "--ipc", "container:private-ipc", "busybox", "true")
		e.fails(t, "invalid IpcMode", "create", "--ipc", "bogus", "busybox", "true")
		e.must(t, "rm", "-f", "stopped-sb", "private-ipc")
	})

	t.Run("host and none modes", func(t *testing.T) {
		hostIPC, _ := os.Readlink("/proc/self/ns/ipc")
		if got := strings.TrimSpace(e.must(t, "run", "--rm", "--ipc", "host", "busybox", "readlink", "/proc/self/ns/ipc")); got != hostIPC {
			t.Errorf("--ipc host: %s, want %s", got, hostIPC)
		}
		hostPID, _ := os.Readlink("/proc/self/ns/pid")
		if got := strings.TrimSpace(e.must(t, "run", "--rm", "--pid", "host", "busybox", "readlink", "/proc/self/ns/pid")); got != hostPID {
			t.Errorf("--pid host: %s, want %s", got, hostPID)
		}
		hn, _ := os.Hostname()
		if got := strings.TrimSpace(e.must(t, "run", "--rm", "--uts", "host", "busybox", "hostname")); got != hn {
			t.Errorf("--uts host: hostname %q, want %q", got, hn)
		}
		e.fails(t, "No such file", "run", "--rm", "--ipc", "none", "busybox", "ls", "/dev/shm")
	})

	t.Run("pause stops at once and the image is an ordinary one", func(t *testing.T) {
		t0 := time.Now()
		e.must(t, "stop", sb)
		if d := time.Since(t0); d > 3*time.Second {
			t.Errorf("stopping the sandbox took %s: pause should exit on SIGTERM", d)
		}
		if got := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.State.ExitCode}}", sb)); got != "0" {
			t.Errorf("pause exit code %s, want 0", got)
		}
		e.must(t, "rm", sb)
		e.must(t, "rmi", pauseImage)
		if r := e.docker("image", "inspect", pauseImage); r.code == 0 {
			t.Errorf("rmi left %s", pauseImage)
		}
		// A pull makes it again, without a registry.
		e.must(t, "pull", pauseImage)
		e.must(t, "image", "inspect", pauseImage)
	})
}

// TestPodSpecFieldsDocker covers the HostConfig fields a node agent sets
// from a pod spec, and what it reads back.
func TestPodSpecFieldsDocker(t *testing.T) {
	needDockerCLI(t)
	e := newDockerEnv(t, "podfields", "busybox-docker.tar")
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "f"), []byte("from the host\n"), 0o644)

	t.Run("mounts", func(t *testing.T) {
		out := e.must(t, "run", "--rm", "-v", host+":/ro:ro,rprivate", "--mount", "type=bind,src="+host+",dst=/rw",
			"--mount", "type=tmpfs,dst=/scratch,tmpfs-size=1m", "--tmpfs", "/t2:size=2m",
			"busybox", "sh", "-c", "cat /ro/f; touch /ro/x 2>/dev/null && echo ro-writable; touch /rw/y && echo rw-ok; df -k /scratch /t2 | tail -2 | awk '{print $2}' | tr '\\n' ' '")
		if out != "from the host\nrw-ok\n1024 2048 " {
			t.Errorf("mounts: %q", out)
		}
	})

	t.Run("security", func(t *testing.T) {
		out := e.must(t, "run", "--rm", "--user", "1000:2000", "--group-add", "3000", "--read-only", "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE",
			"busybox", "sh", "-c", "id; touch /x 2>/dev/null || echo ro-root; grep CapEff /proc/self/status")
		if !strings.Contains(out, "uid=1000(user) gid=2000 groups=3000") || !strings.Contains(out, "ro-root") || !strings.Contains(out, "CapEff:\t0000000000000000") {
			t.Errorf("user, groups, read-only root, caps: %q", out)
		}
		out = e.must(t, "run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "busybox", "grep", "CapBnd", "/proc/self/status")
		if !strings.Contains(out, "0000000000001000") {
			t.Errorf("--cap-add NET_ADMIN: %q", out)
		}
		out = e.must(t, "run", "--rm", "--privileged", "busybox", "sh", "-c", "mkdir /m && mount -t tmpfs none /m && echo privileged-ok")
		if !strings.Contains(out, "privileged-ok") {
			t.Errorf("--privileged: %q", out)
		}
	})

	t.Run("resources", func(t *testing.T) {
		id := strings.TrimSpace(e.must(t, "run", "-d", "--memory", "64m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "50",
			"--oom-score-adj", "500", "busybox", "sleep", "60"))
		defer e.must(t, "rm", "-f", id)
		got := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.OomScoreAdj}}", id))
		if got != "67108864 500000000 512 50 500" {
			t.Errorf("inspect resources: %q", got)
		}
		pid := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.State.Pid}}", id))
		if b, _ := os.ReadFile("/proc/" + pid + "/oom_score_adj"); strings.TrimSpace(string(b)) != "500" {
			t.Errorf("oom_score_adj %q, want 500", b)
		}
		cg := cgroupLimits(t, pid)
		if cg["memory"] != "67108864" || cg["pids"] != "50" || cg["cpu"] != "50000 100000" {
			t.Errorf("cgroup limits %v, want memory 67108864, pids 50, cpu 50000 100000", cg)
		}
	})

	t.Run("stop signal and timeout", func(t *testing.T) {
		id := strings.TrimSpace(e.must(t, "run", "-d", "--stop-signal", "USR1", "--stop-timeout", "1", "busybox", "sh", "-c", "trap 'exit 3' USR1; while :; do sleep 0.1; done"))
		e.must(t, "stop", id)
		if got := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.State.ExitCode}}", id)); got != "3" {
			t.Errorf("exit code after the stop signal USR1: %s, want 3", got)
		}
		id2 := strings.TrimSpace(e.must(t, "run", "-d", "--stop-timeout", "1", "busybox", "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"))
		t0 := time.Now()
		e.must(t, "stop", id2)
		if d := time.Since(t0); d < 900*time.Millisecond || d > 4*time.Second {
			t.Errorf("stop of a container ignoring SIGTERM with StopTimeout 1 took %s", d)
		}
		if got := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.State.ExitCode}}", id2)); got != "137" {
			t.Errorf("exit code after SIGKILL: %s, want 137", got)
		}
		e.must(t, "rm", id, id2)
	})

	t.Run("state, lists and events", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ev := exec.CommandContext(ctx, "docker", "events", "--format", "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
			"--filter", "type=container", "--filter", "label=io.kubernetes.pod.uid=u2")
		ev.Env = e.env
		stdout, _ := ev.StdoutPipe()
		if err := ev.Start(); err != nil {
			t.Fatal(err)
		}
		defer ev.Wait()
		defer cancel()
		time.Sleep(300 * time.Millisecond) // the stream is open
		e.must(t, "run", "-d", "--name", "other-pod", "--label", "io.kubernetes.pod.uid=u3", "busybox", "sleep", "60")
		e.docker("run", "--name", "oomer", "--memory", "8m", "--label", "io.kubernetes.pod.uid=u2", "busybox", "sh", "-c",
			"head -c 60000000 /dev/zero | tr '\\0' a | sort > /dev/null")
		e.docker("run", "--name", "fails", "--label", "io.kubernetes.pod.uid=u2", "busybox", "sh", "-c", "exit 3")

		got := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.State.Status}} {{.State.OOMKilled}} {{.State.ExitCode}} {{.State.Pid}}", "oomer"))
		if got != "exited true 137 0" {
			t.Errorf("OOM-killed container's state: %q", got)
		}
		var st []struct{ State api.State }
		if err := json.Unmarshal([]byte(e.must(t, "inspect", "fails")), &st); err != nil || len(st) != 1 {
			t.Fatalf("inspect: %v", err)
		}
		if s := st[0].State; s.ExitCode != 3 || s.StartedAt.IsZero() || s.FinishedAt.Before(s.StartedAt) || s.OOMKilled {
			t.Errorf("state of a container that exited 3: %+v", s)
		}
		raw := e.must(t, "inspect", "-f", "{{json .State.StartedAt}}", "fails")
		if _, err := time.Parse(`"`+time.RFC3339Nano+`"`, strings.TrimSpace(raw)); err != nil {
			t.Errorf("StartedAt %s is not RFC 3339: %v", raw, err)
		}
		if out := e.must(t, "ps", "-a", "--filter", "label=io.kubernetes.pod.uid=u2", "--format", "{{.Names}}"); sorted(strings.Fields(out))[0] != "fails" || len(strings.Fields(out)) != 2 {
			t.Errorf("ps -a --filter label: %q", out)
		}
		if out := e.must(t, "ps", "--filter", "label=io.kubernetes.pod.uid=u2", "--format", "{{.Names}}"); strings.TrimSpace(out) != "" {
			t.Errorf("ps (running only) --filter label: %q", out)
		}
		var lines []string
		buf := make([]byte, 4096)
		deadline := time.Now().Add(5 * time.Second)
		acc := ""
		for time.Now().Before(deadline) && strings.Count(acc, "die ") < 2 {
			n, err := stdout.Read(buf)
			acc += string(buf[:n])
			if err != nil {
				break
			}
		}
		lines = strings.Split(strings.TrimSpace(acc), "\n")
		want := []string{"create oomer", "start oomer", "oom oomer", "die oomer 137", "create fails", "start fails", "die fails 3"}
		var got2 []string
		for _, l := range lines {
			got2 = append(got2, strings.TrimSpace(strings.ReplaceAll(l, "<no value>", "")))
		}
		// attach and other actions may interleave; check the order of ours.
		i := 0
		for _, l := range got2 {
			if i < len(want) && l == want[i] {
				i++
			}
			if strings.Contains(l, "other-pod") {
				t.Errorf("the label filter let through %q", l)
			}
		}
		if i != len(want) {
			t.Errorf("events:\n%s\nwant in order: %q", strings.Join(got2, "\n"), want)
		}
	})
}

// cgroupLimits reads a process's memory, pids and cpu limits from its
// cgroups (v1 or v2).
func cgroupLimits(t *testing.T, pid string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			dir := "/sys/fs/cgroup" + f[2]
			if _, err := os.Stat(dir + "/memory.max"); err == nil {
				out["memory"], out["pids"], out["cpu"] = read(dir+"/memory.max"), read(dir+"/pids.max"), read(dir+"/cpu.max")
			}
		case strings.Contains(f[1], "memory"):
			out["memory"] = read("/sys/fs/cgroup/memory" + f[2] + "/memory.limit_in_bytes")
		case f[1] == "pids":
			out["pids"] = read("/sys/fs/cgroup/pids" + f[2] + "/pids.max")
		case strings.Contains(f[1], "cpu,") || f[1] == "cpu":
			base := "/sys/fs/cgroup/" + f[1] + f[2]
			if _, err := os.Stat(base); err != nil {
				base = "/sys/fs/cgroup/cpu" + f[2]
			}
			out["cpu"] = read(base+"/cpu.cfs_quota_us") + " " + read(base+"/cpu.cfs_period_us")
		}
	}
	return out
}

// TestPodClient drives a pod through berth's Go client, as the node agent
// does.
func TestPodClient(t *testing.T) {
	d, err := newDaemon("podclient")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ids := strings.Fields(d.run("ps", "-aq").stdout); len(ids) > 0 {
			d.run(append([]string{"rm", "-f"}, ids...)...)
		}
		d.stop()
		d.cleanup()
	})
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))
	cl, err := client.New("unix://" + d.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	labels := func(kind, name string) map[string]string {
		return map[string]string{"io.kubernetes.pod.name": "web", "io.kubernetes.pod.namespace": "default",
			"io.kubernetes.pod.uid": "uid-1", "io.kubernetes.container.name": name, "io.berth.kind": kind, "io.berth.restart-count": "0"}
	}
	evCtx, evCancel := context.WithCancel(ctx)
	events, errc := cl.Events(evCtx, client.EventsOptions{Filters: client.Filters{"type": {"container"}, "label": {"io.kubernetes.pod.uid=uid-1"}}})

	if in, err := cl.Info(ctx); err != nil || in.NCPU < 1 || in.MemTotal <= 0 {
		t.Fatalf("Info: %v %+v", err, in)
	}
	if _, err := cl.ImageInspect(ctx, pauseImage); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("ImageInspect of the pause image before it is made: %v, want ErrNotFound", err)
	}
	if err := cl.ImagePull(ctx, pauseImage, "", nil); err != nil {
		t.Fatalf("ImagePull %s: %v", pauseImage, err)
	}
	if img, err := cl.ImageInspect(ctx, pauseImage); err != nil || strings.Join(img.Config.Entrypoint, " ") != "/pause" {
		t.Fatalf("ImageInspect %s: %v %+v", pauseImage, err, img)
	}
	if err := cl.ImagePull(ctx, "127.0.0.1:1/nosuch:1", "", nil); err == nil {
		t.Errorf("ImagePull of an image no registry serves succeeded")
	}
	sb, err := cl.ContainerCreate(ctx, "k8s_POD_web_default_uid-1_0", api.CreateRequest{
		Config:     api.Config{Image: pauseImage, Hostname: "web", Labels: labels("sandbox", "POD")},
		HostConfig: &api.HostConfig{IpcMode: "shareable"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ContainerStart(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	sbj, err := cl.ContainerInspect(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	podIP := sbj.NetworkSettings.IPAddress
	if net.ParseIP(podIP) == nil || !sbj.State.Running || sbj.State.Pid <= 0 {
		t.Fatalf("sandbox: IP %q, state %+v", podIP, sbj.State)
	}

	join := "container:" + sb.ID
	stopTimeout := 1
	app, err := cl.ContainerCreate(ctx, "k8s_app_web_default_uid-1_0", api.CreateRequest{
		Config: api.Config{Image: "busybox", Cmd: []string{"sh", "-c", "ip -4 -o addr show eth0; hostname; trap 'exit 0' TERM; while :; do sleep 0.1; done"},
			Labels: labels("container", "app"), StopTimeout: &stopTimeout},
		HostConfig: &api.HostConfig{NetworkMode: join, IpcMode: join, PidMode: join},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ContainerStart(ctx, app.ID); err != nil {
		t.Fatal(err)
	}
	list, err := cl.ContainerList(ctx, client.ListOptions{All: true, Filters: client.PodLabelFilter("uid-1")})
	if err != nil || len(list) != 2 {
		t.Fatalf("ContainerList by pod UID: %d containers, %v", len(list), err)
	}
	waitFor(t, 5*time.Second, "the app's output", func() bool {
		rc, err := cl.ContainerLogs(ctx, app.ID, client.LogsOptions{Stdout: true, Stderr: true})
		if err != nil {
			return false
		}
		defer rc.Close()
		var out strings.Builder
		client.Demux(rc, &out, &out)
		return strings.Contains(out.String(), " "+podIP+"/") && strings.Contains(out.String(), "\nweb\n")
	})
	aj, err := cl.ContainerInspect(ctx, app.ID)
	if err != nil || aj.HostConfig.NetworkMode != join || aj.HostConfig.PidMode != join || aj.Config.Hostname != "web" {
		t.Fatalf("inspect app: %v %+v", err, aj.HostConfig)
	}
	// Exec (probes, kubectl exec), attach (kubectl attach) and stats.
	tExec := time.Now()
	ex, err := cl.ExecCreate(ctx, app.ID, api.ExecConfig{Cmd: []string{"sh", "-c", "hostname; exit 4"}, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := cl.ExecAttach(ctx, ex, false)
	if err != nil {
		t.Fatal(err)
	}
	var exOut strings.Builder
	client.Demux(st, &exOut, &exOut)
	st.Close()
	if ei, err := cl.ExecInspect(ctx, ex); err != nil || ei.ExitCode == nil || *ei.ExitCode != 4 || exOut.String() != "web\n" {
		t.Errorf("exec: output %q, inspect %+v %v; want web and exit 4", exOut.String(), ei, err)
	}
	cat, err := cl.ContainerCreate(ctx, "k8s_cat_web_default_uid-1_0", api.CreateRequest{
		Config:     api.Config{Image: "busybox", Cmd: []string{"cat"}, OpenStdin: true, StdinOnce: true, AttachStdin: true, Labels: labels("container", "cat")},
		HostConfig: &api.HostConfig{NetworkMode: join, IpcMode: join}})
	if err != nil {
		t.Fatal(err)
	}
	at, err := cl.ContainerAttach(ctx, cat.ID, client.AttachOptions{Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ContainerStart(ctx, cat.ID); err != nil {
		t.Fatal(err)
	}
	at.Write([]byte("typed in\n"))
	at.CloseWrite()
	var atOut strings.Builder
	client.Demux(at, &atOut, &atOut)
	at.Close()
	if atOut.String() != "typed in\n" {
		t.Errorf("attach: %q", atOut.String())
	}
	if w, err := cl.ContainerWait(ctx, cat.ID, ""); err != nil || w.StatusCode != 0 {
		t.Errorf("wait: %+v %v", w, err)
	}
	if err := cl.ContainerRemove(ctx, cat.ID, client.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("exec, attach: %s", time.Since(tExec).Round(time.Millisecond))
	tExec = time.Now()
	if s, err := cl.ContainerStats(ctx, app.ID); err != nil || s.MemoryStats.Usage == 0 {
		t.Errorf("stats: %+v %v", s, err)
	}
	t.Logf("stats: %s", time.Since(tExec).Round(time.Millisecond))
	grace := 2 * time.Second
	if err := cl.ContainerStop(ctx, app.ID, &grace); err != nil {
		t.Fatal(err)
	}
	if aj, _ = cl.ContainerInspect(ctx, app.ID); aj.State.Running || aj.State.ExitCode != 0 || aj.State.FinishedAt.IsZero() {
		t.Errorf("app after stop: %+v", aj.State)
	}
	if err := cl.ContainerStart(ctx, "nosuch"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("start of a missing container: %v, want ErrNotFound", err)
	}
	if err := cl.ContainerStop(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.ContainerStart(ctx, app.ID); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("start of a container whose sandbox is stopped: %v, want a conflict saying it is not running", err)
	}
	for _, id := range []string{app.ID, sb.ID} {
		if err := cl.ContainerRemove(ctx, id, client.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	// The events of the pod, in order.
	var seen []string
	timeout := time.After(5 * time.Second)
collect:
	for {
		select {
		case e := <-events:
			if e.Actor.Attributes["io.kubernetes.pod.uid"] != "uid-1" {
				t.Errorf("event of another pod: %+v", e)
			}
			seen = append(seen, e.Actor.Attributes["io.kubernetes.container.name"]+" "+e.Action)
			if e.Action == "destroy" && e.Actor.ID == sb.ID {
				break collect
			}
		case <-timeout:
			break collect
		}
	}
	evCancel()
	if err := <-errc; err != nil {
		t.Errorf("events stream: %v", err)
	}
	want := []string{"POD create", "POD start", "app create", "app start", "app die", "app stop", "POD die", "POD stop", "app destroy", "POD destroy"}
	i := 0
	for _, s := range seen {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	if i != len(want) {
		t.Errorf("events %q, want in order %q", seen, want)
	}
}

// TestPodStartLatency times what the node agent does to start a pod with
// one container through the Go client: create and start the sandbox,
// inspect it for the pod IP, create and start the container.
func TestPodStartLatency(t *testing.T) {
	cl, err := client.New("unix://" + shared.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.ImagePull(ctx, pauseImage, "", nil); err != nil {
		t.Fatal(err)
	}
	const pods = 10
	var took []time.Duration
	var ids []string
	defer func() {
		for _, id := range ids {
			cl.ContainerRemove(ctx, id, client.RemoveOptions{Force: true})
		}
	}()
	for i := 0; i < pods; i++ {
		t0 := time.Now()
		uid := fmt.Sprintf("lat-%d", i)
		lab := map[string]string{"io.kubernetes.pod.uid": uid}
		sb, err := cl.ContainerCreate(ctx, "k8s_POD_lat_default_"+uid+"_0", api.CreateRequest{
			Config: api.Config{Image: pauseImage, Labels: lab}, HostConfig: &api.HostConfig{IpcMode: "shareable"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sb.ID)
		if err := cl.ContainerStart(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
		j, err := cl.ContainerInspect(ctx, sb.ID)
		if err != nil || j.NetworkSettings.IPAddress == "" {
			t.Fatalf("sandbox inspect: %v", err)
		}
		join := "container:" + sb.ID
		c, err := cl.ContainerCreate(ctx, "k8s_app_lat_default_"+uid+"_0", api.CreateRequest{
			Config:     api.Config{Image: "busybox", Cmd: []string{"sleep", "60"}, Labels: lab},
			HostConfig: &api.HostConfig{NetworkMode: join, IpcMode: join}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
		if err := cl.ContainerStart(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Since(t0))
	}
	sortDurations(took)
	t.Logf("pod start (sandbox + 1 container, %d pods in a row): p50 %s, p90 %s, max %s", pods,
		took[pods/2].Round(time.Millisecond), took[pods*9/10].Round(time.Millisecond), took[pods-1].Round(time.Millisecond))
	if took[pods/2] > time.Second {
		t.Errorf("median pod start %s, want well under 1 s", took[pods/2])
	}
}

func sortDurations(d []time.Duration) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j] < d[j-1]; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}
