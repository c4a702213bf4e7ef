package engine

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeCtx writes a build context directory from name → content
// (a name ending in "/" is a directory).
func writeCtx(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// imageID is the full ID of an image.
func imageID(t *testing.T, d *daemonProc, ref string) string {
	t.Helper()
	return strings.TrimSpace(mustOn(t, d, "image", "inspect", "-f", "{{.Id}}", ref))
}

// assertNoBuildLeftovers checks that no build left anything behind: RUN
// containers (runtime state, shims, cgroups, network namespaces), build
// snapshots and their mounts, bundles, temporary files.
func assertNoBuildLeftovers(t *testing.T, d *daemonProc) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left = nil
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(l); len(f) > 4 && (strings.HasPrefix(f[4], d.root+"/") || strings.HasPrefix(f[4], d.execRoot+"/")) &&
				(strings.Contains(f[4], "/build-") || strings.Contains(l, " overlay ") && strings.Contains(f[4], "build")) {
				left = append(left, "mount "+f[4])
			}
		}
		for _, g := range []string{
			filepath.Join(d.root, "image", "snapshots", "containers", "build-*"),
			filepath.Join(d.root, "image", "tmp", "build", "*"),
			filepath.Join(d.root, "network", "netns", "build-*"),
			filepath.Join(d.execRoot, "build", "*"),
			filepath.Join(d.execRoot, "runtime", "*", "build-*"),
		} {
			m, _ := filepath.Glob(g)
			left = append(left, m...)
		}
		for _, h := range cgroupHierarchies() {
			m, _ := filepath.Glob(filepath.Join(h, d.cgroupParent, "build-*"))
			left = append(left, m...)
		}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), "berth-shim") && strings.Contains(string(b), filepath.Join(d.execRoot, "build")) {
				left = append(left, "shim "+strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range left {
		t.Errorf("a build left behind: %s", l)
	}
}

func TestBuildInstructionsAndRun(t *testing.T) {
	var tarball bytes.Buffer
	zw := gzip.NewWriter(&tarball)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "pkg/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "pkg/data", Typeflag: tar.TypeReg, Mode: 0o644, Size: 7})
	tw.Write([]byte("in-tar\n"))
	tw.Close()
	zw.Close()
	ctx := writeCtx(t, map[string]string{
		"Dockerfile": `FROM busybox AS builder
ARG MSG=from-builder
RUN echo "$MSG" > /built.txt
RUN ["/bin/sh", "-c", "echo exec-form >> /built.txt"]

FROM busybox
ARG GREETING=hello
ENV APP_HOME=/srv/app GREETING=${GREETING}
WORKDIR $APP_HOME
COPY --from=builder /built.txt ./
COPY --chown=1000:1000 --chmod=640 src/*.txt conf/
COPY src/sub sub/
COPY . /ctx/
ADD pkg.tar.gz /opt/
RUN <<EOF
set -e
echo "heredoc $GREETING" > heredoc.txt
id -u > /uid-at-build
EOF
COPY <<EOF /etc/motd
welcome to $APP_HOME
EOF
USER 1000
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo $GREETING; id -u; pwd; cat built.txt heredoc.txt /etc/motd /opt/pkg/data; ls conf; ls sub; stat -c '%u:%g %a' conf/a.txt; test ! -e /ctx/ignored.log && test -e /ctx/src/c.md && echo ignored-ok"]
`,
		"src/a.txt":     "a\n",
		"src/b.txt":     "b\n",
		"src/c.md":      "c\n",
		"src/sub/d":     "d\n",
		"ignored.log":   "x\n",
		".dockerignore": "*.log\n",
		"pkg.tar.gz":    tarball.String(),
	})
	r := berth("build", "--build-arg", "GREETING=hi-there", "-t", "e2e-build:1", ctx)
	if r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	for _, want := range []string{"Step 1/18 : FROM busybox AS builder", " ---> Running in ", "Successfully built ", "Successfully tagged e2e-build:1\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("build output lacks %q:\n%s", want, r.stdout)
		}
	}
	got := must(t, "run", "--rm", "e2e-build:1")
	want := "hi-there\n1000\n/srv/app\nfrom-builder\nexec-form\nheredoc hi-there\nwelcome to /srv/app\nin-tar\na.txt\nb.txt\nd\n1000:1000 640\nignored-ok\n"
	if got != want {
		t.Errorf("run of the built image:\n%q\nwant\n%q", got, want)
	}
	if got := must(t, "run", "--rm", "--entrypoint", "cat", "e2e-build:1", "/uid-at-build"); got != "0\n" {
		t.Errorf("RUN ran as uid %q before USER, want 0", got)
	}
	// RUN containers are never listed.
	if out := must(t, "ps", "-a", "--format", "{{.Image}}"); strings.Contains(out, "build-") {
		t.Errorf("ps -a shows build containers:\n%s", out)
	}
	hist := must(t, "history", "e2e-build:1")
	for _, want := range []string{"RUN /bin/sh -c set -e", "COPY --from=builder /built.txt ./", "WORKDIR /srv/app"} {
		if !strings.Contains(hist, want) {
			t.Errorf("history lacks %q:\n%s", want, hist)
		}
	}
	assertNoBuildLeftovers(t, shared)
	must(t, "rmi", "e2e-build:1")
}

func TestBuildTargetBuildsOnlyNeededStages(t *testing.T) {
	ctx := writeCtx(t, map[string]string{"Dockerfile": `FROM busybox AS base
RUN echo base > /base
FROM busybox AS broken
RUN echo broken-stage-ran && exit 1
FROM base AS app
RUN cat /base > /app
FROM app AS final
RUN exit 7
`})
	r := berth("build", "--target", "app", "-t", "e2e-target", ctx)
	if r.code != 0 {
		t.Fatalf("build --target app: %s", r)
	}
	if strings.Contains(r.stdout, "broken") || strings.Contains(r.stdout, "exit 7") {
		t.Errorf("built stages app does not need:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "Step 4/4 : RUN cat /base > /app") {
		t.Errorf("steps not counted over the needed stages:\n%s", r.stdout)
	}
	if got := must(t, "run", "--rm", "e2e-target", "cat", "/app"); got != "base\n" {
		t.Errorf("target app: /app = %q", got)
	}
	must(t, "rmi", "e2e-target")
}

func TestBuildCache(t *testing.T) {
	files := map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo one > /one\nCOPY app.txt /app.txt\nRUN cat /app.txt > /copy\nCMD [\"cat\", \"/copy\"]\n",
		"app.txt":    "v1\n",
	}
	ctx := writeCtx(t, files)
	first := berth("build", "-t", "e2e-cache", ctx)
	if first.code != 0 {
		t.Fatal(first)
	}
	id1 := imageID(t, shared, "e2e-cache")
	start := time.Now()
	second := berth("build", "-t", "e2e-cache", ctx)
	took := time.Since(start)
	if second.code != 0 {
		t.Fatal(second)
	}
	if n := strings.Count(second.stdout, " ---> Using cache\n"); n != 4 {
		t.Errorf("rebuild: %d cache hits, want 4:\n%s", n, second.stdout)
	}
	if strings.Contains(second.stdout, "Running in") {
		t.Errorf("rebuild ran a container:\n%s", second.stdout)
	}
	if id2 := imageID(t, shared, "e2e-cache"); id2 != id1 {
		t.Errorf("rebuild gave image %s, want the same %s", id2, id1)
	}
	if took > 2*time.Second {
		t.Errorf("a fully cached rebuild took %v", took)
	}
	// A changed file invalidates its COPY and what follows, not before.
	os.WriteFile(filepath.Join(ctx, "app.txt"), []byte("v2\n"), 0o644)
	third := berth("build", "-t", "e2e-cache", ctx)
	if third.code != 0 {
		t.Fatal(third)
	}
	if !strings.Contains(third.stdout, "Step 2/5 : RUN echo one > /one\n ---> Using cache\n") {
		t.Errorf("the step before the changed COPY was not cached:\n%s", third.stdout)
	}
	if strings.Count(third.stdout, "Using cache") != 1 || strings.Count(third.stdout, "Running in") != 1 {
		t.Errorf("want exactly the steps from the COPY on rebuilt:\n%s", third.stdout)
	}
	if got := must(t, "run", "--rm", "e2e-cache"); got != "v2\n" {
		t.Errorf("after the change: %q", got)
	}
	// --no-cache runs everything again.
	fourth := berth("build", "--no-cache", "-t", "e2e-cache", ctx)
	if fourth.code != 0 || strings.Contains(fourth.stdout, "Using cache") || strings.Count(fourth.stdout, "Running in") != 2 {
		t.Errorf("--no-cache:\n%s", fourth)
	}
	must(t, "rmi", "e2e-cache")
}

// TestBuildCacheSurvivesRestart uses a daemon of its own to restart it.
func TestBuildCacheSurvivesRestart(t *testing.T) {
	d, err := newDaemon("build")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer func() { d.stop() }()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo persisted > /p\n"})
	mustOn(t, d, "build", "-t", "restart", ctx)
	id := imageID(t, d, "restart")
	d.stop()
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	out := mustOn(t, d, "build", "-t", "restart", ctx)
	if !strings.Contains(out, "Using cache") || imageID(t, d, "restart") != id {
		t.Errorf("after a daemon restart the cache missed:\n%s", out)
	}

	// A daemon killed mid-RUN: the next one kills the RUN container and
	// removes its snapshot, bundle and network.
	slow := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo started; sleep 61\n"})
	cmd := exec.Command(filepath.Join(binDir, "berth"), "-H", "unix://"+d.sock, "build", slow)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "started" {
	}
	d.kill()
	cmd.Wait()
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	assertNoBuildLeftovers(t, d)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, _ := os.ReadFile(p); string(b) == "sleep\x0061\x00" {
			t.Errorf("the RUN of the killed daemon is still running: %s", p)
		}
	}
}

func TestBuildErrorsLeaveNothing(t *testing.T) {
	before := must(t, "images", "-q")
	for _, tc := range []struct {
		name, df string
		code     int
		want     []string
	}{
		{"syntax", "FROM busybox\nRUN true\nFOOBAR x\n", 1, []string{"Dockerfile:3: unknown instruction: FOOBAR"}},
		{"failing RUN", "FROM busybox\nRUN echo partial > /p\nRUN echo about-to-fail; exit 3\n", 3,
			[]string{"about-to-fail\n", "Dockerfile:3: RUN exit status 3"}},
		{"COPY outside the context", "FROM busybox\nCOPY ../../etc/passwd /x\n", 1, []string{"Dockerfile:2: COPY failed: forbidden path outside the build context: ../../etc/passwd"}},
		{"COPY missing", "FROM busybox\nCOPY nope.txt /x\n", 1, []string{"Dockerfile:2: COPY failed: file not found in build context or excluded by .dockerignore: stat nope.txt"}},
		{"missing base", "FROM e2e-no-such-image:1\n", 1, []string{"Dockerfile:1: base image e2e-no-such-image:1 is not here and pulling it failed", "berth load"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := writeCtx(t, map[string]string{"Dockerfile": tc.df})
			r := berth("build", "-t", "e2e-never", ctx)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d: %s", r.code, tc.code, r)
			}
			all := r.stdout + r.stderr
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q: %s", w, r)
				}
			}
		})
	}
	if r := berth("build", "-f", "/nonexistent/Dockerfile", t.TempDir()); r.code == 0 || !strings.Contains(r.stderr, "/nonexistent/Dockerfile") {
		t.Errorf("-f to a missing file: %s", r)
	}
	if r := berth("image", "inspect", "e2e-never"); r.code == 0 {
		t.Error("a failed build left an image named e2e-never")
	}
	if after := must(t, "images", "-q"); after != before {
		t.Errorf("failed builds changed the image list:\n%s\nwas\n%s", after, before)
	}
	assertNoBuildLeftovers(t, shared)
}

func TestBuildFromStdin(t *testing.T) {
	r := shared.runIn([]byte("FROM busybox\nRUN echo from-stdin > /s\n"), "build", "-t", "e2e-stdin", "-")
	if r.code != 0 {
		t.Fatalf("build -: %s", r)
	}
	if got := must(t, "run", "--rm", "e2e-stdin", "cat", "/s"); got != "from-stdin\n" {
		t.Errorf("build -: %q", got)
	}
	// -f - with a context directory.
	ctx := writeCtx(t, map[string]string{"f.txt": "ctx-file\n", "Dockerfile": "FROM busybox\nRUN exit 9\n"})
	r = shared.runIn([]byte("FROM busybox\nCOPY f.txt /f\n"), "build", "-q", "-f", "-", "-t", "e2e-stdin", ctx)
	if r.code != 0 {
		t.Fatalf("build -f -: %s", r)
	}
	if id := strings.TrimSpace(r.stdout); !strings.HasPrefix(id, "sha256:") || id != imageID(t, shared, "e2e-stdin") {
		t.Errorf("build -q printed %q", r.stdout)
	}
	if got := must(t, "run", "--rm", "e2e-stdin", "cat", "/f"); got != "ctx-file\n" {
		t.Errorf("build -f -: %q", got)
	}
	must(t, "rmi", "e2e-stdin")
}

func TestBuildDockerCLI(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("skipping: the docker CLI is not installed")
	}
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY hello.txt /\nRUN cat /hello.txt > /copy\n", "hello.txt": "from docker\n"})
	cmd := exec.Command(docker, "build", "-t", "e2e-docker", ".")
	cmd.Dir = ctx
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0", "DOCKER_HOST=unix://"+shared.sock, "DOCKER_CONFIG="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("DOCKER_BUILDKIT=0 docker build: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Successfully tagged e2e-docker:latest") {
		t.Errorf("docker build output:\n%s", out)
	}
	if got := must(t, "run", "--rm", "e2e-docker", "cat", "/copy"); got != "from docker\n" {
		t.Errorf("image built by docker build: %q", got)
	}
	// A failing RUN gives docker its exit status.
	bad := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN exit 4\n"})
	cmd = exec.Command(docker, "build", bad)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0", "DOCKER_HOST=unix://"+shared.sock, "DOCKER_CONFIG="+t.TempDir())
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 || !strings.Contains(string(out), "Dockerfile:2: RUN exit status 4") {
		t.Errorf("docker build of a failing RUN: %v\n%s", err, out)
	}
	must(t, "rmi", "e2e-docker")
}

// TestBuildCancelled: a client that goes away mid-RUN leaves nothing.
func TestBuildCancelled(t *testing.T) {
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, filepath.Join(binDir, "berth"), "-H", "unix://"+shared.sock, "build", "--no-cache", ctx)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == "started" {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	assertNoBuildLeftovers(t, shared)
	// The kill and the shim's clean-up (the runtime's delete kills what is
	// left in the cgroup) follow the disconnect; allow them a moment.
	var alive []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		alive = nil
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, _ := os.ReadFile(p); string(b) == "sleep\x0060\x00" {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range alive {
		t.Errorf("the RUN's process is still running 5 s after the client went: %s", p)
	}
}

// TestBuiltImageLoadsInPodman checks a built image against another
// engine's reader.
func TestBuiltImageLoadsInPodman(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("skipping: podman is not installed")
	}
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN mkdir /d && echo x > /d/f && rm /etc/group\nCOPY f /f\nCMD [\"cat\", \"/f\"]\n", "f": "podman\n"})
	must(t, "build", "-t", "e2e-podman:1", ctx)
	archive := filepath.Join(t.TempDir(), "img.tar")
	must(t, "save", "-o", archive, "e2e-podman:1")
	tmp := t.TempDir()
	args := []string{"--root", filepath.Join(tmp, "root"), "--runroot", filepath.Join(tmp, "run"), "--storage-driver", "vfs"}
	if out, err := exec.Command(podman, append(args, "load", "-i", archive)...).CombinedOutput(); err != nil {
		t.Fatalf("podman load: %v\n%s", err, out)
	}
	out, err := exec.Command(podman, append(args, "image", "inspect", "--format", "{{.Id}} {{.Config.Cmd}}", "e2e-podman:1")...).Output()
	if err != nil {
		t.Fatalf("podman image inspect: %v", err)
	}
	want := strings.TrimPrefix(imageID(t, shared, "e2e-podman:1"), "sha256:") + " [cat /f]"
	if strings.TrimSpace(string(out)) != want {
		t.Errorf("podman sees %q, want %q", out, want)
	}
	must(t, "rmi", "e2e-podman:1")
}

func TestBuildAddURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/files/tool.sh" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		io.WriteString(w, "#!/bin/sh\necho downloaded\n")
	}))
	defer srv.Close()
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nADD " + srv.URL + "/files/tool.sh /opt/\nADD --chmod=755 " + srv.URL + "/files/tool.sh /usr/bin/tool\n"})
	must(t, "build", "-t", "e2e-url", ctx)
	if got := must(t, "run", "--rm", "e2e-url", "sh", "-c", "stat -c '%a %Y' /opt/tool.sh; tool"); got != "600 1136214245\ndownloaded\n" {
		t.Errorf("ADD URL: %q, want mode 600, mtime from Last-Modified, and the file", got)
	}
	bad := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nADD " + srv.URL + "/missing /x\n"})
	if r := berth("build", bad); r.code == 0 || !strings.Contains(r.stderr, "404") {
		t.Errorf("ADD of a missing URL: %s", r)
	}
	must(t, "rmi", "e2e-url")
}
