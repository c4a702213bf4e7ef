package engine

// Acceptance tests with stock Docker clients: the docker CLI, docker-py
// and docker-compose drive a berth daemon through the Docker Engine API
// (issue 5). Each test starts a daemon of its own, so image removals and
// prunes do not disturb the other tests.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dockerEnv is a berth daemon driven by stock Docker clients.
type dockerEnv struct {
	d   *daemonProc
	cfg string // DOCKER_CONFIG
	env []string
}

// newDockerEnv starts a daemon for a Docker-client test and loads the
// images it needs with the berth CLI.
func newDockerEnv(t *testing.T, name string, images ...string) *dockerEnv {
	t.Helper()
	d, err := newDaemon(name)
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
	for _, img := range images {
		mustOn(t, d, "load", "-i", filepath.Join(imagesDir, img))
	}
	cfg := t.TempDir()
	return &dockerEnv{d: d, cfg: cfg, env: append(os.Environ(), "DOCKER_HOST=unix://"+d.sock, "DOCKER_CONFIG="+cfg,
		"DOCKER_CLI_HINTS=false", "DOCKER_BUILDKIT=0")}
}

func needDockerCLI(t *testing.T) string {
	p, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("the docker CLI is not installed (it is in the machine image; apt-get install docker.io gives one too)")
	}
	return p
}

// run runs a command with the environment pointing at the daemon.
func (e *dockerEnv) runCmd(stdin []byte, name string, args ...string) result {
	return execute(2*time.Minute, e.env, stdin, name, args...)
}

func (e *dockerEnv) docker(args ...string) result { return e.runCmd(nil, "docker", args...) }

// must runs docker and fails the test unless it exits 0.
func (e *dockerEnv) must(t *testing.T, args ...string) string {
	t.Helper()
	r := e.docker(args...)
	if r.code != 0 {
		t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// fails runs docker and fails the test unless it exits non-zero with
// wantErr in its stderr.
func (e *dockerEnv) fails(t *testing.T, wantErr string, args ...string) {
	t.Helper()
	r := e.docker(args...)
	if r.code == 0 || !strings.Contains(r.stderr, wantErr) {
		t.Errorf("docker %s: %s\nwant a failure saying %q", strings.Join(args, " "), r, wantErr)
	}
}

// freePort returns a TCP port nobody listens on now.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pty runs cmdline through script(1), which gives it a terminal, feeding
// stdin; it returns the output with carriage returns removed and the exit
// code.
func (e *dockerEnv) pty(t *testing.T, stdin, cmdline string) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) not installed (apt-get install bsdutils)")
	}
	r := e.runCmd([]byte(stdin), "script", "-qec", cmdline, "/dev/null")
	return strings.ReplaceAll(r.stdout+r.stderr, "\r", ""), r.code
}

// TestDockerCLI is a scripted session with the stock docker CLI.
func TestDockerCLI(t *testing.T) {
	needDockerCLI(t)
	e := newDockerEnv(t, "dockercli")
	start := time.Now()
	defer func() { t.Logf("docker CLI session: %s", time.Since(start).Round(time.Millisecond)) }()

	t.Run("version and info", func(t *testing.T) {
		if v := strings.TrimSpace(e.must(t, "version", "--format", "{{.Server.APIVersion}}")); v < "1.44" {
			t.Errorf("server API version %q, want ≥ 1.44", v)
		}
		if got := strings.TrimSpace(e.must(t, "info", "--format", "{{.OSType}} {{.Driver}} {{.NCPU}}")); !strings.HasPrefix(got, "linux overlay2 ") {
			t.Errorf("info: %q", got)
		}
		// An older client speaks an older API version.
		r := e.runCmd(nil, "env", "DOCKER_API_VERSION=1.41", "docker", "version", "--format", "{{.Client.APIVersion}}")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "1.41" {
			t.Errorf("DOCKER_API_VERSION=1.41: %s", r)
		}
	})

	t.Run("load and save", func(t *testing.T) {
		out := e.must(t, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))
		if !strings.Contains(out, "Loaded image: busybox:latest") {
			t.Errorf("load: %q", out)
		}
		e.must(t, "load", "-i", filepath.Join(imagesDir, "progs.tar"))
		saved := filepath.Join(t.TempDir(), "bb.tar")
		e.must(t, "save", "-o", saved, "busybox")
		names := tarNames(t, saved)
		if !names["manifest.json"] || !names["index.json"] {
			t.Errorf("saved archive lacks manifest.json or index.json: %v", names)
		}
		e.must(t, "tag", "busybox", "bb-copy:1")
		e.must(t, "rmi", "bb-copy:1")
		if r := e.docker("image", "inspect", "bb-copy:1"); r.code == 0 {
			t.Errorf("rmi left bb-copy:1")
		}
	})

	t.Run("build", func(t *testing.T) {
		ctx := writeCtx(t, map[string]string{
			"Dockerfile":    "FROM busybox\nARG WHO=nobody\nRUN echo \"built for $WHO\" > /built\nCOPY msg /msg\nCMD [\"cat\", \"/built\", \"/msg\"]\n",
			"msg":           "from the context\n",
			".dockerignore": "secret\n",
			"secret":        "not sent\n",
		})
		out := e.must(t, "build", "-t", "dk-built:1", "--build-arg", "WHO=docker", ctx)
		if !strings.Contains(out, "Step 1/5 : FROM busybox") || !strings.Contains(out, "Successfully tagged dk-built:1") {
			t.Errorf("docker build output:\n%s", out)
		}
		if got := e.must(t, "run", "--rm", "dk-built:1"); got != "built for docker\nfrom the context\n" {
			t.Errorf("run of the built image: %q", got)
		}
		// A second build is all cache.
		if out := e.must(t, "build", "-t", "dk-built:1", "--build-arg", "WHO=docker", ctx); strings.Count(out, "Using cache") != 3 {
			t.Errorf("rebuild: want 3 cached steps:\n%s", out)
		}
		bad := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN exit 7\n"})
		e.fails(t, "returned a non-zero code: 7", "build", bad)
	})

	t.Run("pull and push", func(t *testing.T) {
		host := startRegistry(t, "127.0.0.1", nil)
		ref := host + "/dk/built:1"
		e.must(t, "tag", "dk-built:1", ref)
		out := e.must(t, "push", ref)
		if !strings.Contains(out, "The push refers to repository ["+host+"/dk/built]") || !regexp.MustCompile(`1: digest: sha256:[0-9a-f]{64} size: \d+`).MatchString(out) {
			t.Errorf("docker push output:\n%s", out)
		}
		e.must(t, "rmi", ref, "dk-built:1")
		out = e.must(t, "pull", ref)
		if !strings.Contains(out, "Pull complete") || !strings.Contains(out, "Status: Downloaded newer image for "+ref) {
			t.Errorf("docker pull output:\n%s", out)
		}
		if got := e.must(t, "run", "--rm", ref); got != "built for docker\nfrom the context\n" {
			t.Errorf("run of the pulled image: %q", got)
		}
		if out := e.must(t, "pull", ref); !strings.Contains(out, "Image is up to date for "+ref) {
			t.Errorf("second docker pull:\n%s", out)
		}
		e.fails(t, "manifest unknown", "pull", host+"/dk/built:nope")
	})

	t.Run("run --rm", func(t *testing.T) {
		if out := e.must(t, "run", "--rm", "busybox", "echo", "hi"); out != "hi\n" {
			t.Errorf("run --rm echo hi: %q", out)
		}
		r := e.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
			t.Errorf("stream separation and exit code: %s", r)
		}
		if r := e.runCmd([]byte("a\nb\nc\n"), "docker", "run", "--rm", "-i", "busybox", "wc", "-l"); strings.TrimSpace(r.stdout) != "3" {
			t.Errorf("run -i with stdin: %s", r)
		}
		if ids := strings.TrimSpace(e.must(t, "ps", "-aq")); ids != "" {
			t.Errorf("run --rm left containers: %q", ids)
		}
		e.fails(t, "No such image", "run", "--rm", "--pull", "never", "no-such-image:1", "true")
		e.fails(t, "Minimum memory limit", "run", "--rm", "-m", "1k", "busybox", "true")
	})

	port := freePort(t)
	t.Run("run -d -p --name", func(t *testing.T) {
		e.must(t, "run", "-d", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--name", "web", "-l", "tier=front",
			"busybox", "sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec busybox httpd -f -p 80 -h /www")
		var body string
		waitFor(t, 10*time.Second, "the published port to answer", func() bool {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			return resp.StatusCode == 200
		})
		if body != "hello-from-web\n" {
			t.Errorf("published port answered %q", body)
		}
		e.fails(t, "Conflict", "run", "-d", "--name", "web", "busybox", "true")
	})

	t.Run("ps filters and format", func(t *testing.T) {
		e.must(t, "run", "-d", "--name", "worker", "-l", "tier=back", "busybox", "sleep", "300")
		if r := e.docker("run", "--name", "done3", "busybox", "sh", "-c", "exit 3"); r.code != 3 {
			t.Errorf("run exit 3: %s", r)
		}
		tests := []struct {
			args []string
			want string
		}{
			{[]string{"ps", "--format", "{{.Names}}"}, "web,worker"},
			{[]string{"ps", "-a", "--format", "{{.Names}}"}, "done3,web,worker"},
			{[]string{"ps", "--filter", "label=tier=front", "--format", "{{.Names}}"}, "web"},
			{[]string{"ps", "--filter", "label=tier", "--format", "{{.Names}}"}, "web,worker"},
			{[]string{"ps", "-a", "--filter", "status=exited", "--format", "{{.Names}} {{.State}}"}, "done3 exited"},
			{[]string{"ps", "-a", "--filter", "exited=3", "--format", "{{.Names}}"}, "done3"},
			{[]string{"ps", "--filter", "name=wor", "--format", "{{.Names}}"}, "worker"},
			{[]string{"ps", "--filter", "ancestor=busybox", "--format", "{{.Names}}"}, "web,worker"},
			{[]string{"ps", "--filter", "publish=" + fmt.Sprint(port), "--format", "{{.Names}}"}, "web"},
			{[]string{"ps", "-a", "--filter", "since=web", "--format", "{{.Names}}"}, "done3,worker"},
			{[]string{"ps", "-a", "--filter", "before=worker", "--format", "{{.Names}}"}, "web"},
			{[]string{"ps", "--filter", "network=bridge", "--format", "{{.Names}}"}, "web,worker"},
			{[]string{"ps", "--filter", "name=web", "--format", "{{.Names}}|{{.Image}}|{{.Command}}|{{.Ports}}|{{.Label \"tier\"}}"},
				fmt.Sprintf("web|busybox|\"sh -c 'mkdir -p /ww…\"|127.0.0.1:%d->80/tcp|front", port)},
		}
		for _, tt := range tests {
			out := strings.Fields(strings.ReplaceAll(strings.TrimSpace(e.must(t, tt.args...)), " ", "\x00"))
			got := strings.ReplaceAll(strings.Join(sorted(out), ","), "\x00", " ")
			if got != tt.want {
				t.Errorf("docker %s = %q, want %q", strings.Join(tt.args, " "), got, tt.want)
			}
		}
		e.fails(t, "invalid filter", "ps", "--filter", "bogus=1")
		e.fails(t, "No such container", "ps", "--filter", "since=no-such-container")
	})

	t.Run("logs -f", func(t *testing.T) {
		e.must(t, "run", "-d", "--name", "ticker", "busybox", "sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.3; done; echo bye >&2")
		t0 := time.Now()
		r := e.docker("logs", "-f", "ticker")
		if r.code != 0 || r.stdout != "tick1\ntick2\ntick3\n" || r.stderr != "bye\n" {
			t.Errorf("logs -f: %s", r)
		}
		if d := time.Since(t0); d < 500*time.Millisecond {
			t.Errorf("logs -f returned after %s, before the container finished", d)
		}
		if r := e.docker("logs", "--tail", "2", "ticker"); r.stdout != "tick3\n" || r.stderr != "bye\n" {
			t.Errorf("logs --tail 2: %s", r)
		}
		out := e.must(t, "logs", "-t", "--since", "1h", "ticker")
		if f := strings.Fields(out); len(f) < 2 || !strings.HasPrefix(f[0], time.Now().UTC().Format("2006-")) || f[1] != "tick1" {
			t.Errorf("logs -t --since 1h: %q", out)
		}
		if out := e.must(t, "logs", "--until", "2000-01-01T00:00:00Z", "ticker"); out != "" {
			t.Errorf("logs --until 2000: %q", out)
		}
	})

	t.Run("exec", func(t *testing.T) {
		if out := e.must(t, "exec", "web", "cat", "/www/index.html"); out != "hello-from-web\n" {
			t.Errorf("exec: %q", out)
		}
		if r := e.runCmd([]byte("piped\n"), "docker", "exec", "-i", "web", "cat"); r.stdout != "piped\n" {
			t.Errorf("exec -i: %s", r)
		}
		if r := e.docker("exec", "-e", "X=1", "-w", "/www", "web", "sh", "-c", "echo $X $(pwd); exit 7"); r.code != 7 || r.stdout != "1 /www\n" {
			t.Errorf("exec -e -w exit code: %s", r)
		}
		if r := e.docker("exec", "web", "no-such-command"); r.code != 127 && r.code != 126 {
			t.Errorf("exec of a missing command: %s; want exit 126 or 127", r)
		}
		out, code := e.pty(t, "echo in-exec-$((2+3))\nexit 4\n", "docker exec -it web sh")
		if code != 4 || !strings.Contains(out, "in-exec-5") {
			t.Errorf("exec -it: exit %d, output %q; want in-exec-5 and exit 4", code, out)
		}
		out, code = e.pty(t, "", "docker run -it --rm busybox sh -c 'test -t 0 && test -t 1 && echo tty-ok; stty size'")
		if code != 0 || !strings.Contains(out, "tty-ok") {
			t.Errorf("run -it: exit %d, output %q", code, out)
		}
	})

	t.Run("cp", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "in.txt")
		os.WriteFile(src, []byte("from the host\n"), 0o640)
		e.must(t, "cp", src, "web:/tmp/")
		if out := e.must(t, "exec", "web", "cat", "/tmp/in.txt"); out != "from the host\n" {
			t.Errorf("cp into the container: %q", out)
		}
		os.MkdirAll(filepath.Join(dir, "tree/sub"), 0o755)
		os.WriteFile(filepath.Join(dir, "tree/sub/f"), []byte("deep"), 0o644)
		e.must(t, "cp", filepath.Join(dir, "tree"), "web:/tmp/tree")
		if out := e.must(t, "exec", "web", "cat", "/tmp/tree/sub/f"); out != "deep" {
			t.Errorf("cp of a directory: %q", out)
		}
		e.must(t, "cp", "web:/www/index.html", filepath.Join(dir, "out.html"))
		if b, _ := os.ReadFile(filepath.Join(dir, "out.html")); string(b) != "hello-from-web\n" {
			t.Errorf("cp out of the container: %q", b)
		}
		e.must(t, "cp", "web:/tmp/tree", filepath.Join(dir, "back"))
		if b, _ := os.ReadFile(filepath.Join(dir, "back/sub/f")); string(b) != "deep" {
			t.Errorf("cp of a directory out: %q", b)
		}
		e.must(t, "cp", "web:/www/.", filepath.Join(dir, "contents"))
		if b, _ := os.ReadFile(filepath.Join(dir, "contents/index.html")); string(b) != "hello-from-web\n" {
			t.Errorf("cp of dir/. (contents only): %q", b)
		}
		// to stdout as a tar
		r := e.docker("cp", "web:/www", "-")
		if r.code != 0 || !bytes.Contains([]byte(r.stdout), []byte("hello-from-web")) {
			t.Errorf("cp to -: %s", r)
		}
		e.fails(t, "Could not find the file /nope", "cp", "web:/nope", dir)

		// Symlinks in the container never lead out of it: one to a host
		// directory that does not exist in the container, one that climbs.
		secret := filepath.Join(dir, "host-secret")
		os.Mkdir(secret, 0o700)
		os.WriteFile(filepath.Join(secret, "key"), []byte("host only"), 0o600)
		e.must(t, "exec", "web", "sh", "-c", "ln -s "+secret+" /tmp/hostlink && ln -s ../../../../../../ /tmp/up && mkdir -p /tmp/inbox")
		if r := e.docker("cp", "web:/tmp/hostlink/key", filepath.Join(dir, "stolen")); r.code == 0 {
			t.Errorf("cp read the host's %s/key through a container symlink: %s", secret, r)
		}
		e.must(t, "cp", "web:/tmp/up/etc/hostname", filepath.Join(dir, "hostname"))
		if b, _ := os.ReadFile(filepath.Join(dir, "hostname")); string(b) == mustRead(t, "/etc/hostname") && string(b) != "busybox\n" {
			t.Errorf("cp through a climbing symlink read the host's /etc/hostname")
		}
		// The link's target does not exist in the container: the copy fails
		// as with dockerd, and above all writes nothing on the host.
		e.docker("cp", src, "web:/tmp/hostlink/")
		e.docker("cp", src, "web:/tmp/hostlink")
		e.must(t, "exec", "web", "mkdir", "-p", secret)
		e.must(t, "cp", src, "web:/tmp/hostlink/")
		if out := e.must(t, "exec", "web", "cat", secret+"/in.txt"); out != "from the host\n" {
			t.Errorf("cp through a symlink did not land in the container: %q", out)
		}
		if _, err := os.Stat(filepath.Join(secret, "in.txt")); err == nil {
			t.Errorf("cp wrote into the host's %s through a container symlink", secret)
		}
		e.must(t, "cp", src, "web:/tmp/up/tmp/inbox/")
		if out := e.must(t, "exec", "web", "cat", "/tmp/inbox/in.txt"); out != "from the host\n" {
			t.Errorf("cp through a climbing symlink did not land in the container's own /tmp: %q", out)
		}
		// A tar with ".." or a device node is refused and nothing is written.
		bad := tarBytes(t, map[string]string{"ok.txt": "x", "../escape.txt": "y"})
		if r := e.runCmd(bad, "docker", "cp", "-", "web:/tmp/inbox"); r.code == 0 || !strings.Contains(r.stderr, "climbs out") {
			t.Errorf("cp of a tar with ..: %s", r)
		}
		if r := e.docker("exec", "web", "ls", "/tmp/inbox/ok.txt"); r.code == 0 {
			t.Errorf("a refused archive wrote ok.txt")
		}
		// Stopped containers: the snapshot is mounted for the copy, and
		// made first for one that never ran.
		e.must(t, "cp", "done3:/etc/passwd", filepath.Join(dir, "passwd"))
		if b, _ := os.ReadFile(filepath.Join(dir, "passwd")); !strings.HasPrefix(string(b), "root:x:0:0") {
			t.Errorf("cp out of an exited container: %q", b)
		}
		e.must(t, "create", "--name", "fresh", "busybox", "cat", "/root/in.txt")
		e.must(t, "cp", src, "fresh:/root/")
		if out := e.must(t, "start", "-a", "fresh"); out != "from the host\n" {
			t.Errorf("cp into a container that never ran: %q", out)
		}
		e.must(t, "rm", "fresh")
	})

	t.Run("update rename top stats pause export", func(t *testing.T) {
		e.must(t, "update", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "40", "--restart", "on-failure:2", "worker")
		if got := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}", "worker")); got != "67108864 500000000 40 on-failure" {
			t.Errorf("update: %q", got)
		}
		if out := e.must(t, "exec", "worker", "sh", "-c", "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"); strings.TrimSpace(out) != "40" {
			t.Errorf("pids limit in the container's cgroup: %q", out)
		}
		e.fails(t, "Minimum memory limit", "update", "--memory", "1k", "worker")
		e.must(t, "rename", "worker", "worker2")
		if out := e.must(t, "top", "worker2"); !strings.Contains(out, "sleep 300") {
			t.Errorf("top: %q", out)
		}
		if out := e.must(t, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "worker2"); strings.TrimSpace(out) != "worker2 1" {
			t.Errorf("stats: %q", out)
		}
		e.must(t, "pause", "worker2")
		if st := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.State.Status}}", "worker2")); st != "paused" {
			t.Errorf("paused container status %q", st)
		}
		e.must(t, "unpause", "worker2")
		exp := filepath.Join(t.TempDir(), "exp.tar")
		e.must(t, "export", "-o", exp, "worker2")
		if n := tarNames(t, exp); !n["bin/busybox"] || !n["etc/passwd"] {
			t.Errorf("export lacks files: %d entries", len(n))
		}
		e.must(t, "wait", "done3")
		if got := strings.TrimSpace(e.must(t, "wait", "done3")); got != "3" {
			t.Errorf("wait: %q", got)
		}
	})

	t.Run("volumes and networks", func(t *testing.T) {
		e.must(t, "volume", "create", "--label", "k=v", "data1")
		if out := e.must(t, "volume", "ls", "--filter", "label=k=v", "--format", "{{.Name}}"); strings.TrimSpace(out) != "data1" {
			t.Errorf("volume ls --filter: %q", out)
		}
		e.must(t, "run", "--rm", "-v", "data1:/d", "busybox", "sh", "-c", "echo kept > /d/f")
		if out := e.must(t, "run", "--rm", "-v", "data1:/d:ro", "busybox", "cat", "/d/f"); out != "kept\n" {
			t.Errorf("volume content: %q", out)
		}
		if got := strings.TrimSpace(e.must(t, "volume", "inspect", "-f", "{{.Driver}} {{.Labels.k}}", "data1")); got != "local v" {
			t.Errorf("volume inspect: %q", got)
		}
		e.must(t, "network", "create", "--label", "n=1", "appnet")
		if out := e.must(t, "network", "ls", "--filter", "label=n=1", "--format", "{{.Name}} {{.Driver}}"); strings.TrimSpace(out) != "appnet bridge" {
			t.Errorf("network ls --filter: %q", out)
		}
		e.must(t, "run", "-d", "--name", "srv", "--network", "appnet", "--network-alias", "api", "busybox",
			"sh", "-c", "mkdir /w && echo via-alias > /w/index.html && exec busybox httpd -f -p 80 -h /w")
		var out string
		waitFor(t, 10*time.Second, "the service to answer by alias", func() bool {
			r := e.docker("run", "--rm", "--network", "appnet", "busybox", "wget", "-qO-", "http://api/")
			out = r.stdout
			return r.code == 0
		})
		if out != "via-alias\n" {
			t.Errorf("by alias on a user network: %q", out)
		}
		e.must(t, "network", "connect", "appnet", "web")
		if got := e.must(t, "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "web"); !strings.Contains(got, "appnet") {
			t.Errorf("connect: networks %q", got)
		}
		e.must(t, "network", "disconnect", "appnet", "web")
		e.fails(t, "has active endpoints", "network", "rm", "appnet")
		e.must(t, "create", "--name", "voluser", "-v", "data1:/d", "busybox", "true")
		if out := e.must(t, "ps", "-a", "--filter", "volume=data1", "--format", "{{.Names}}"); strings.TrimSpace(out) != "voluser" {
			t.Errorf("ps --filter volume=data1: %q", out)
		}
		if out := e.must(t, "ps", "-a", "--filter", "network=appnet", "--format", "{{.Names}}"); strings.TrimSpace(out) != "srv" {
			t.Errorf("ps --filter network=appnet: %q", out)
		}
		e.fails(t, "in use", "volume", "rm", "data1")
		e.must(t, "rm", "voluser")
		e.must(t, "rm", "-f", "srv")
		e.must(t, "network", "rm", "appnet")
		e.must(t, "volume", "rm", "data1")
		e.fails(t, "not found", "network", "inspect", "appnet")
	})

	t.Run("events", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "docker", "events", "--filter", "type=container", "--filter", "label=ev=1",
			"--format", "{{.Action}} {{.Actor.Attributes.name}}")
		cmd.Env = e.env
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); cmd.Wait() }()
		lines := make(chan string, 100)
		go func() {
			s := bufio.NewScanner(stdout)
			for s.Scan() {
				lines <- s.Text()
			}
			close(lines)
		}()
		time.Sleep(300 * time.Millisecond) // let the subscription start
		e.must(t, "run", "--rm", "--name", "evented", "-l", "ev=1", "busybox", "true")
		e.must(t, "run", "--rm", "--name", "not-evented", "busybox", "true")
		var got []string
		for len(got) < 4 {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("docker events ended; got %q", got)
				}
				got = append(got, l)
			case <-time.After(10 * time.Second):
				t.Fatalf("events: got %q, want create, start, die, destroy of evented", got)
			}
		}
		if strings.Join(got, ",") != "create evented,start evented,die evented,destroy evented" {
			t.Errorf("events = %q", got)
		}
		// since/until replay the history (the CLI sends whole seconds).
		time.Sleep(1100 * time.Millisecond)
		out := e.must(t, "events", "--since", "1m", "--until", "0s", "--filter", "container=evented", "--format", "{{.Action}}")
		if !strings.Contains(out, "create") || !strings.Contains(out, "destroy") {
			t.Errorf("events --since/--until: %q", out)
		}
	})

	t.Run("images", func(t *testing.T) {
		out := e.must(t, "images", "--format", "{{.Repository}}:{{.Tag}}")
		if !strings.Contains(out, "busybox:latest") || !strings.Contains(out, "progs:latest") {
			t.Errorf("images: %q", out)
		}
		id := strings.TrimSpace(e.must(t, "images", "-q", "busybox"))
		if got := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.Id}}", id)); !strings.HasPrefix(got, "sha256:"+id) {
			t.Errorf("inspect by short ID %s: %q", id, got)
		}
		if out := e.must(t, "history", "busybox"); !strings.Contains(out, "CREATED BY") {
			t.Errorf("history: %q", out)
		}
		e.fails(t, "not supported", "search", "busybox")
		// import: a container's export becomes an image that runs.
		exp := filepath.Join(t.TempDir(), "web.tar")
		e.must(t, "export", "-o", exp, "web")
		e.must(t, "import", "--change", "CMD [\"cat\", \"/www/index.html\"]", exp, "imported:1")
		if out := e.must(t, "run", "--rm", "imported:1"); out != "hello-from-web\n" {
			t.Errorf("run of an imported image: %q", out)
		}
		// An untagged import is dangling: image prune removes it and only it.
		dangling := strings.TrimSpace(e.must(t, "import", exp))
		if out := e.must(t, "images", "-q", "--filter", "dangling=true", "--no-trunc"); !strings.Contains(out, dangling) {
			t.Errorf("dangling filter: %q lacks %s", out, dangling)
		}
		if out := e.must(t, "image", "prune", "-f"); !strings.Contains(out, dangling) {
			t.Errorf("image prune: %q", out)
		}
		if r := e.docker("image", "inspect", "imported:1"); r.code != 0 {
			t.Errorf("image prune removed a tagged image: %s", r)
		}
		e.must(t, "rmi", "imported:1")
		if out := e.must(t, "top", "web", "-o", "pid,comm"); !strings.Contains(out, "httpd") && !strings.Contains(out, "busybox") {
			t.Errorf("top with ps arguments: %q", out)
		}
		e.fails(t, "must force", "rmi", "busybox")
	})

	t.Run("stop rm and prune", func(t *testing.T) {
		e.must(t, "stop", "-t", "1", "web")
		if st := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.State.Status}}", "web")); st != "exited" {
			t.Errorf("after stop: %q", st)
		}
		e.fails(t, "You cannot remove a running container", "rm", "worker2")
		e.must(t, "rm", "-f", "worker2")
		e.must(t, "rm", "web")
		e.fails(t, "No such container", "rm", "web")
		e.must(t, "network", "create", "dangling-net")
		e.must(t, "tag", "busybox", "prune-me:1")
		out := e.must(t, "system", "prune", "-f")
		if !strings.Contains(out, "dangling-net") || !strings.Contains(out, "Deleted Containers") {
			t.Errorf("system prune: %q", out)
		}
		if ids := strings.TrimSpace(e.must(t, "ps", "-aq")); ids != "" {
			t.Errorf("containers left after system prune: %q", ids)
		}
		if out := e.must(t, "system", "df"); !strings.Contains(out, "Images") {
			t.Errorf("system df: %q", out)
		}
	})
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func mustRead(t *testing.T, p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// tarBytes builds a tar of regular files (in map order; callers put the
// entry that matters last by name).
func tarBytes(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	for _, k := range sorted(keys) {
		tw.WriteHeader(&tar.Header{Name: k, Mode: 0o644, Size: int64(len(files[k])), Typeflag: tar.TypeReg})
		tw.Write([]byte(files[k]))
	}
	tw.Close()
	return buf.Bytes()
}

// TestDockerPy runs a docker-py session (testdata/docker/dockerpy_session.py)
// with docker-py 7.x, or with the Debian package's 5.x (which
// docker-compose brings) when no 7.x is installed.
func TestDockerPy(t *testing.T) {
	python, version := "", ""
	for _, p := range []string{"python3", "/usr/local/bin/python3", "/usr/bin/python3"} {
		if _, err := exec.LookPath(p); err != nil {
			continue
		}
		out, err := exec.Command(p, "-c", "import docker; print(docker.__version__)").Output()
		v := strings.TrimSpace(string(out))
		if err != nil || v < "5." {
			continue
		}
		if python == "" || (v >= "7." && version < "7.") {
			python, version = p, v
		}
	}
	if python == "" {
		t.Skip("docker-py is not installed for any python3 on PATH (pip install 'docker>=7,<8', or apt-get install python3-docker)")
	}
	if version < "7." {
		t.Logf("docker-py 7.x not found; running the session with %s's docker-py %s", python, version)
	}
	e := newDockerEnv(t, "dockerpy", "busybox-docker.tar")
	e.env = append(e.env, "PYT_REGISTRY="+startRegistry(t, "127.0.0.1", nil))
	script, _ := filepath.Abs("testdata/docker/dockerpy_session.py")
	start := time.Now()
	r := e.runCmd(nil, python, script)
	t.Logf("docker-py %s session: %s\n%s", version, time.Since(start).Round(time.Millisecond), r.stdout)
	if r.code != 0 || !strings.Contains(r.stdout, "ALL OK") {
		t.Fatalf("docker-py session failed: %s", r)
	}
}

// TestDockerCompose drives docker-compose (v1, the Debian package) through
// up, ps, logs, exec and down on two services that talk over a user
// network and share a named volume.
func TestDockerCompose(t *testing.T) {
	needDockerCLI(t) // compose's exec runs the docker CLI
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose is not installed (apt-get install docker-compose; `make test-deps` does it)")
	}
	e := newDockerEnv(t, "compose", "busybox-docker.tar")
	file, _ := filepath.Abs("testdata/docker/compose/docker-compose.yml")
	project := fmt.Sprintf("bt%d", os.Getpid())
	dc := func(args ...string) result {
		return e.runCmd(nil, compose, append([]string{"-f", file, "-p", project, "--ansi", "never"}, args...)...)
	}
	mustDC := func(args ...string) string {
		t.Helper()
		r := dc(args...)
		if r.code != 0 {
			t.Fatalf("docker-compose %s: %s", strings.Join(args, " "), r)
		}
		return r.stdout + r.stderr
	}
	t.Cleanup(func() { dc("down", "-v", "--timeout", "1") })
	start := time.Now()

	mustDC("up", "-d")
	ps := mustDC("ps")
	for _, svc := range []string{"web_1", "worker_1"} {
		if !strings.Contains(ps, project+"_"+svc) {
			t.Errorf("compose ps lacks %s_%s:\n%s", project, svc, ps)
		}
	}
	if n := strings.Count(ps, " Up "); n != 2 {
		t.Errorf("compose ps shows %d services Up, want 2:\n%s", n, ps)
	}
	// The worker reaches web by its service name and writes to the volume.
	var logs string
	waitFor(t, 20*time.Second, "the worker to fetch from web by name", func() bool {
		logs = dc("logs", "--no-color", "worker").stdout
		return strings.Contains(logs, "hello-from-web") && strings.Contains(logs, "fetched-ok")
	})
	if out := mustDC("logs", "--no-color", "web"); !strings.Contains(out, "web-ready") {
		t.Errorf("compose logs web: %q", out)
	}
	// exec -T runs the docker CLI against the same daemon.
	if out := mustDC("exec", "-T", "web", "cat", "/www/index.html"); strings.TrimSpace(out) != "hello-from-web" {
		t.Errorf("compose exec -T: %q", out)
	}
	if out := mustDC("exec", "-T", "web", "cat", "/data/last-fetch"); strings.TrimSpace(out) == "" {
		t.Errorf("the named volume is not shared between the services")
	}
	// Objects carry compose's labels; a second up changes nothing.
	if out := e.must(t, "ps", "-q", "--filter", "label=com.docker.compose.project="+project); len(strings.Fields(out)) != 2 {
		t.Errorf("containers with the project label: %q", out)
	}
	if out := mustDC("up", "-d"); !strings.Contains(out, "is up-to-date") {
		t.Errorf("second up recreated something: %q", out)
	}
	if out := e.must(t, "ps", "-aq", "--filter", "label=com.docker.compose.project="+project); len(strings.Fields(out)) != 2 {
		t.Errorf("after a second up: %q", out)
	}
	mustDC("down", "-v", "--timeout", "1")
	if out := e.must(t, "ps", "-aq", "--filter", "label=com.docker.compose.project="+project); strings.TrimSpace(out) != "" {
		t.Errorf("containers left after down: %q", out)
	}
	if out := e.must(t, "network", "ls", "-q", "--filter", "name="+project+"_backend"); strings.TrimSpace(out) != "" {
		t.Errorf("network left after down: %q", out)
	}
	if out := e.must(t, "volume", "ls", "-q", "--filter", "name="+project+"_shared"); strings.TrimSpace(out) != "" {
		t.Errorf("volume left after down -v: %q", out)
	}
	t.Logf("docker-compose session: %s", time.Since(start).Round(time.Millisecond))
}
