package engine

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/internal/registry"
)

// startRegistry serves berth's registry (internal/registry, on a fresh root)
// on ip (port chosen by the kernel), optionally wrapped, and returns
// host:port.
func startRegistry(t *testing.T, ip string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.(io.Closer).Close() })
	h := reg
	if wrap != nil {
		h = wrap(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

var pushDigestRe = regexp.MustCompile(`(?m)^(\S+): digest: (sha256:[0-9a-f]{64}) size: [0-9]+$`)

// layerDirs lists the unpacked layer directories of daemon d.
func layerDirs(t *testing.T, d *daemonProc) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(d.root, "image", "snapshots", "layers"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestRegistryPushPullRun pushes a loaded image to a loopback registry,
// pulls it into a fresh daemon and runs it; checks progress output,
// digests, the up-to-date case, a missing tag, run's implicit pull, a
// tampered blob (nothing stored), the terminal progress display and the
// stock docker CLI against the same routes.
func TestRegistryPushPullRun(t *testing.T) {
	t.Setenv("BERTH_CONFIG", t.TempDir())
	var tamper atomic.Bool
	host := startRegistry(t, "127.0.0.1", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tamper.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
				rec := &bufferWriter{header: http.Header{}}
				h.ServeHTTP(rec, r)
				b := rec.body
				if len(b) > 100 {
					b[len(b)/2] ^= 0xff
				}
				for k, v := range rec.header {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.code)
				w.Write(b)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ref := host + "/e2e/busybox:v1"
	must(t, "tag", "busybox", ref)
	t.Cleanup(func() { berth("rmi", ref) })

	out := must(t, "push", ref)
	for _, want := range []string{"The push refers to repository [" + host + "/e2e/busybox]", ": Preparing", ": Pushed"} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	m := pushDigestRe.FindStringSubmatch(out)
	if m == nil || m[1] != "v1" {
		t.Fatalf("push output has no \"v1: digest: sha256:… size: N\" line:\n%s", out)
	}
	dig := m[2]
	if got := inspect(t, shared, "{{json .RepoDigests}}", ref); !strings.Contains(got, host+"/e2e/busybox@"+dig) {
		t.Errorf("RepoDigests after push: %s; want %s@%s", got, host+"/e2e/busybox", dig)
	}
	// A second push sends no layer again.
	if out := must(t, "push", ref); !strings.Contains(out, "Layer already exists") || strings.Contains(out, ": Pushed") {
		t.Errorf("second push:\n%s\nwant Layer already exists only", out)
	}

	d, err := newDaemon("pull")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer d.stop()

	// A tampered blob: the pull fails naming the digest, and nothing of
	// it is stored.
	tamper.Store(true)
	r := d.run("pull", ref)
	tamper.Store(false)
	if r.code == 0 || !strings.Contains(r.stderr, "digest mismatch") {
		t.Errorf("pull of a tampered blob: %s; want a digest mismatch", r)
	}
	if ids := strings.TrimSpace(mustOn(t, d, "images", "-q")); ids != "" {
		t.Errorf("after a failed pull, images: %q", ids)
	}
	if l := layerDirs(t, d); len(l) != 0 {
		t.Errorf("after a failed pull, unpacked layers: %v", l)
	}

	out = mustOn(t, d, "pull", ref)
	for _, want := range []string{"v1: Pulling from e2e/busybox", ": Pulling fs layer", ": Verifying Checksum", ": Download complete",
		": Pull complete", "Digest: " + dig, "Status: Downloaded newer image for " + ref} {
		if !strings.Contains(out, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); lines[len(lines)-1] != ref {
		t.Errorf("pull's last line %q, want the reference %s", lines[len(lines)-1], ref)
	}
	if strings.Contains(out, "[=") || strings.Contains(out, "\x1b[") {
		t.Errorf("pull to a pipe printed progress bars or escapes:\n%q", out)
	}
	if got := mustOn(t, d, "run", "--rm", ref, "echo", "pulled-ok"); got != "pulled-ok\n" {
		t.Errorf("run of the pulled image: %q", got)
	}
	if a, b := inspect(t, shared, "{{.Id}}", ref), inspect(t, d, "{{.Id}}", ref); a != b {
		t.Errorf("pulled image ID %s, pushed %s", b, a)
	}
	// A pulled layer is kept once, gzipped: save decompresses it, and the
	// archive loads back as the same image once the pulled one is gone.
	saved := filepath.Join(t.TempDir(), "pulled.tar")
	id := inspect(t, d, "{{.Id}}", ref)
	mustOn(t, d, "save", "-o", saved, ref)
	mustOn(t, d, "rmi", ref)
	mustOn(t, d, "load", "-i", saved)
	if got := inspect(t, d, "{{.Id}}", ref); got != id {
		t.Errorf("saved and loaded back: image ID %s, want %s", got, id)
	}
	if got := mustOn(t, d, "run", "--rm", ref, "echo", "reloaded-ok"); got != "reloaded-ok\n" {
		t.Errorf("run of the reloaded image: %q", got)
	}
	mustOn(t, d, "rmi", ref)
	mustOn(t, d, "pull", ref)
	out = mustOn(t, d, "pull", ref)
	if !strings.Contains(out, "Already exists") || !strings.Contains(out, "Status: Image is up to date for "+ref) {
		t.Errorf("second pull:\n%s\nwant Already exists and Image is up to date", out)
	}
	out = mustOn(t, d, "pull", host+"/e2e/busybox@"+dig)
	if !strings.Contains(out, "Digest: "+dig) {
		t.Errorf("pull by digest:\n%s", out)
	}

	r = d.run("pull", host+"/e2e/busybox:nope")
	if r.code != 1 || !strings.Contains(r.stderr, "manifest for "+host+"/e2e/busybox:nope not found: manifest unknown") {
		t.Errorf("pull of a missing tag: %s", r)
	}
	r = d.run("pull", "127.0.0.1:1/e2e/x")
	if r.code != 1 || !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("pull from a closed port: %s", r)
	}

	// run pulls a missing image, as docker run does.
	mustOn(t, d, "rmi", ref)
	r = d.run("run", "--rm", ref, "echo", "auto")
	if r.code != 0 || r.stdout != "auto\n" || !strings.Contains(r.stderr, "Unable to find image '"+ref+"' locally") {
		t.Errorf("run of an image not here: %s", r)
	}

	// On a terminal, one line per layer redrawn in place.
	if script, err := exec.LookPath("script"); err == nil {
		mustOn(t, d, "rmi", ref)
		cmd := exec.Command(script, "-qfec", fmt.Sprintf("stty cols 150; %s -H unix://%s pull %s", filepath.Join(binDir, "berth"), d.sock, ref), "/dev/null")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("pull on a terminal: %v\n%q", err, b)
		}
		for _, want := range []string{"\x1b[1A\x1b[2K\r", ": Downloading [", ">]", "MB/", ": Pull complete"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("terminal pull output lacks %q:\n%q", want, b)
			}
		}
	} else {
		t.Log("skipping the terminal progress check: script(1) not installed")
	}

	// docker-py's pull and push.
	py := `import docker, sys
c = docker.DockerClient(base_url=sys.argv[1])
img = c.images.pull(sys.argv[2], tag="v1")
print(img.id)
for line in c.images.push(sys.argv[2], tag="v1", stream=True, decode=True):
    if "error" in line: sys.exit(line["error"])
    if "aux" in line: print(line["aux"]["Digest"])
`
	if exec.Command("python3", "-c", "import docker").Run() == nil {
		mustOn(t, d, "rmi", ref)
		b, err := exec.Command("python3", "-c", py, "unix://"+d.sock, host+"/e2e/busybox").CombinedOutput()
		if err != nil || !strings.Contains(string(b), inspect(t, shared, "{{.Id}}", ref)) || !strings.Contains(string(b), dig) {
			t.Errorf("docker-py pull and push: %v\n%s", err, b)
		}
	} else {
		t.Log("skipping the docker-py checks: python3 docker module not installed")
	}

	// The stock docker CLI speaks the same routes.
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Log("skipping the docker CLI checks: docker not installed")
		return
	}
	dk := func(args ...string) result {
		c := exec.Command(docker, args...)
		c.Env = append(os.Environ(), "DOCKER_HOST=unix://"+d.sock, "DOCKER_CONFIG="+t.TempDir())
		var o, e strings.Builder
		c.Stdout, c.Stderr = &o, &e
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return result{stdout: o.String(), stderr: e.String(), code: code}
	}
	since := fmt.Sprint(time.Now().Add(-time.Second).Unix())
	mustOn(t, d, "rmi", ref)
	if r := dk("pull", ref); r.code != 0 || !strings.Contains(r.stdout, "Pull complete") || !strings.Contains(r.stdout, "Digest: "+dig) {
		t.Errorf("docker pull against berth: %s", r)
	}
	if r := dk("tag", ref, host+"/e2e/fromdocker:v2"); r.code != 0 {
		t.Fatalf("docker tag: %s", r)
	}
	if r := dk("push", host+"/e2e/fromdocker:v2"); r.code != 0 || !strings.Contains(r.stdout, "v2: digest: "+dig) {
		t.Errorf("docker push against berth: %s; want the same digest %s", r, dig)
	}
	if r := dk("pull", host+"/e2e/busybox:nope"); r.code == 0 || !strings.Contains(r.stderr, "manifest for "+host+"/e2e/busybox:nope not found: manifest unknown") {
		t.Errorf("docker pull of a missing tag: %s", r)
	}
	r = dk("events", "--since", since, "--until", fmt.Sprint(time.Now().Unix()+1), "--filter", "type=image", "--format", "{{.Action}} {{.Actor.ID}}")
	if !strings.Contains(r.stdout, "pull "+ref) || !strings.Contains(r.stdout, "push "+host+"/e2e/fromdocker:v2") {
		t.Errorf("image events: %s; want pull and push", r)
	}
}

// bufferWriter captures a handler's answer.
type bufferWriter struct {
	header http.Header
	code   int
	body   []byte
}

func (b *bufferWriter) Header() http.Header { return b.header }
func (b *bufferWriter) WriteHeader(c int)   { b.code = c }
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = 200
	}
	b.body = append(b.body, p...)
	return len(p), nil
}

// TestRegistryLogin: login checks credentials against the registry and
// stores them like Docker; pull and push send them; logout forgets them.
func TestRegistryLogin(t *testing.T) {
	cfgDir := t.TempDir()
	t.Setenv("BERTH_CONFIG", cfgDir)
	host := startRegistry(t, "127.0.0.1", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="e2e"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ref := host + "/private/busybox:v1"
	must(t, "tag", "busybox", ref)
	t.Cleanup(func() { berth("rmi", ref) })
	if r := berth("push", ref); r.code == 0 || !strings.Contains(r.stderr, "unauthorized: authentication required") {
		t.Errorf("push without login: %s", r)
	}
	if r := shared.runIn([]byte("wrong\n"), "login", "-u", "alice", "--password-stdin", host); r.code == 0 || !strings.Contains(r.stderr, "401 Unauthorized") {
		t.Errorf("login with a wrong password: %s", r)
	}
	if _, err := os.Stat(filepath.Join(cfgDir, "config.json")); err == nil {
		t.Errorf("a failed login wrote the config file")
	}
	if r := shared.runIn([]byte("s3cret\n"), "login", "-u", "alice", "--password-stdin", host); r.code != 0 || !strings.Contains(r.stdout, "Login Succeeded") {
		t.Fatalf("login: %s", r)
	}
	st, err := os.Stat(filepath.Join(cfgDir, "config.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config file: %v, mode %v; want 0600", err, st.Mode())
	}
	b, _ := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	json.Unmarshal(b, &cfg)
	if cfg.Auths[host].Auth != base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) {
		t.Errorf("config file auths: %s", b)
	}
	if out := must(t, "push", ref); !strings.Contains(out, "v1: digest:") {
		t.Errorf("push after login:\n%s", out)
	}
	must(t, "rmi", ref)
	if out := must(t, "pull", ref); !strings.Contains(out, "Status: Downloaded newer image") {
		t.Errorf("pull after login:\n%s", out)
	}
	if out := must(t, "logout", host); !strings.Contains(out, "Removing login credentials for "+host) {
		t.Errorf("logout: %s", out)
	}
	if out := must(t, "logout", host); !strings.Contains(out, "Not logged in to "+host) {
		t.Errorf("second logout: %s", out)
	}
	if r := berth("pull", host+"/private/busybox:v1"); r.code == 0 || !strings.Contains(r.stderr, "pull access denied") {
		t.Errorf("pull after logout: %s", r)
	}

	// The docker CLI's login goes through the same /auth route.
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Log("skipping the docker login check: docker not installed")
		return
	}
	dk := func(stdin string, args ...string) (string, error) {
		c := exec.Command(docker, args...)
		c.Env = append(os.Environ(), "DOCKER_HOST=unix://"+shared.sock, "DOCKER_CONFIG="+t.TempDir())
		c.Stdin = strings.NewReader(stdin)
		b, err := c.CombinedOutput()
		return string(b), err
	}
	if out, err := dk("nope\n", "login", "-u", "alice", "--password-stdin", host); err == nil || !strings.Contains(out, "401 Unauthorized") {
		t.Errorf("docker login with a wrong password: %v\n%s", err, out)
	}
	if out, err := dk("s3cret\n", "login", "-u", "alice", "--password-stdin", host); err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Errorf("docker login: %v\n%s", err, out)
	}
}

// localAddr is a non-loopback IPv4 address of this host.
func localAddr() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

// TestInsecureRegistry: a plain-HTTP registry that is not on loopback is
// refused unless the daemon lists it with --insecure-registry.
func TestInsecureRegistry(t *testing.T) {
	ip := localAddr()
	if ip == "" {
		t.Skip("skipping: this host has no non-loopback IPv4 address")
	}
	host := startRegistry(t, ip, nil)
	ref := host + "/e2e/busybox:v1"
	must(t, "tag", "busybox", ref)
	t.Cleanup(func() { berth("rmi", ref) })
	r := berth("push", ref)
	if r.code == 0 || !strings.Contains(r.stderr, "answers plain HTTP") || !strings.Contains(r.stderr, "--insecure-registry "+host) {
		t.Errorf("push to a plain-HTTP registry on %s: %s; want a refusal naming --insecure-registry", ip, r)
	}
	d, err := newDaemon("insecure", "--insecure-registry", host)
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer d.stop()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))
	mustOn(t, d, "tag", "busybox", ref)
	mustOn(t, d, "push", ref)
	mustOn(t, d, "rmi", "busybox", ref)
	if out := mustOn(t, d, "run", "--rm", ref, "echo", "insecure-ok"); out != "insecure-ok\n" {
		t.Errorf("run after pulling from an insecure registry: %q", out)
	}
}

// TestRegistryInterop: what berth pushes, podman pulls and runs; what
// skopeo and podman push, berth pulls and runs.
func TestRegistryInterop(t *testing.T) {
	podman, err1 := exec.LookPath("podman")
	skopeo, err2 := exec.LookPath("skopeo")
	if err1 != nil || err2 != nil {
		t.Skip("skipping: podman or skopeo not installed (apt-get install -y skopeo podman)")
	}
	host := startRegistry(t, "127.0.0.1", nil)
	dir := t.TempDir()
	var nofile syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	base := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", dir,
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	pm := func(args ...string) (string, error) {
		b, err := exec.Command(podman, append(append([]string(nil), base...), args...)...).CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() { pm("system", "reset", "-f") })
	runFlags := []string{"run", "--rm", "--network", "none", "--ulimit", fmt.Sprintf("nofile=%d:%d", nofile.Max, nofile.Max), "--ulimit", "nproc=4096:4096"}

	// berth → podman and docker: an image berth built (a RUN layer with a
	// whiteout, a COPY layer) and pushed.
	ref := host + "/interop/built:v1"
	ctxDir := writeCtx(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo built-by-berth > /greeting && rm /bin/true\nCOPY note /note\nCMD [\"sh\", \"-c\", \"cat /greeting /note; test -e /bin/true || echo no-true\"]\n",
		"note":       "copied\n",
	})
	must(t, "build", "-q", "-t", ref, ctxDir)
	t.Cleanup(func() { berth("rmi", ref) })
	must(t, "push", ref)
	const wantBuilt = "built-by-berth\ncopied\nno-true\n"
	if out, err := pm("pull", "--tls-verify=false", ref); err != nil {
		t.Fatalf("podman pull of berth's push: %v\n%s", err, out)
	}
	if out, err := pm(append(runFlags, ref)...); err != nil || !strings.Contains(out, wantBuilt) {
		t.Errorf("podman run of berth's push: %v\n%q, want %q", err, out, wantBuilt)
	}
	if dk := startDockerd(t); dk != nil {
		if out, err := dk("pull", ref); err != nil {
			t.Fatalf("docker pull of berth's push: %v\n%s", err, out)
		}
		if out, err := dk("run", "--rm", "--network", "none", ref); err != nil || out != wantBuilt {
			t.Errorf("docker run of berth's push: %v\n%q, want %q", err, out, wantBuilt)
		}
	}

	// skopeo → berth
	sref := host + "/interop/layered:v1"
	if b, err := exec.Command(skopeo, "copy", "--dest-tls-verify=false", "docker-archive:"+filepath.Join(imagesDir, "layered.tar"),
		"docker://"+sref).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, b)
	}
	t.Cleanup(func() { berth("rmi", sref) })
	must(t, "pull", sref)
	if out := must(t, "run", "--rm", sref, "sh", "-c", "ls /data; cat /keep /added"); out != "c\nkeep\nadded\n" {
		t.Errorf("run of skopeo's push: %q (whiteouts or opaque dir lost)", out)
	}

	// podman → berth (podman's own compression and OCI manifest)
	pref := host + "/interop/frompodman:v1"
	if out, err := pm("tag", ref, pref); err != nil {
		t.Fatalf("podman tag: %v\n%s", err, out)
	}
	if out, err := pm("push", "--tls-verify=false", "--format", "oci", pref); err != nil {
		t.Fatalf("podman push: %v\n%s", err, out)
	}
	t.Cleanup(func() { berth("rmi", pref) })
	must(t, "pull", pref)
	if out := must(t, "run", "--rm", pref, "echo", "berth-ran-podmans"); out != "berth-ran-podmans\n" {
		t.Errorf("run of podman's push: %q", out)
	}
}

// startDockerd starts a dockerd of the test's own (data, exec root and
// socket in a temporary directory; no bridge, no iptables) and returns a
// function running the docker CLI against it, or nil, having logged why,
// when dockerd is not installed (make test-deps installs docker.io).
func startDockerd(t *testing.T) func(args ...string) (string, error) {
	t.Helper()
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Log("dockerd not installed (apt-get install docker.io): skipping the docker half")
		return nil
	}
	cli, err := exec.LookPath("docker")
	if err != nil {
		t.Log("docker CLI not installed: skipping the docker half")
		return nil
	}
	dir, err := os.MkdirTemp("/var/tmp", "berth-e2e-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	cfg := filepath.Join(dir, "daemon.json")
	os.WriteFile(cfg, []byte("{}\n"), 0o600)
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dockerd, "--config-file", cfg, "--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "docker.pid"),
		"-H", "unix://"+sock, "--bridge=none", "--iptables=false", "--ip6tables=false",
		"--ip-forward=false", "--ip-masq=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	dk := func(args ...string) (string, error) {
		b, err := exec.Command(cli, append([]string{"-H", "unix://" + sock}, args...)...).CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() {
		if out, err := dk("ps", "-aq"); err == nil && strings.TrimSpace(out) != "" {
			dk(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if b, err := exec.Command("findmnt", "-rn", "-o", "TARGET").Output(); err == nil {
			for _, m := range strings.Fields(string(b)) {
				if strings.HasPrefix(m, dir) {
					syscall.Unmount(m, syscall.MNT_DETACH)
				}
			}
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := dk("version"); err == nil {
			return dk
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Fatalf("dockerd did not answer within 60s; its log:\n%s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
