package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

var imageIDRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`)

// changeScript adds, modifies and deletes files, and replaces /usr by a
// new directory (an opaque directory in the writable layer).
const changeScript = `echo hi > /x; echo more >> /etc/passwd; rm /etc/group; rm -rf /usr; mkdir -p /usr/new; echo n > /usr/new/f; mkdir /home/user/d`

// wantDiff is docker diff's output for changeScript.
const wantDiff = `C /etc
D /etc/group
C /etc/passwd
C /home/user
A /home/user/d
C /usr
A /usr/new
A /usr/new/f
A /x
`

// storeEntries counts the image store's blobs and unpacked layers.
func storeEntries(t *testing.T, d *daemonProc) int {
	t.Helper()
	n := 0
	for _, dir := range []string{"image/content/blobs/sha256", "image/snapshots/layers"} {
		ents, err := os.ReadDir(filepath.Join(d.root, dir))
		if err != nil {
			t.Fatal(err)
		}
		n += len(ents)
	}
	return n
}

func TestDiffContainer(t *testing.T) {
	name := "e2e-diff"
	must(t, "run", "--name", name, "busybox", "sh", "-c", changeScript)
	defer rmf(t, shared, name)
	if got := must(t, "diff", name); got != wantDiff {
		t.Errorf("berth diff:\n%s\nwant:\n%s", got, wantDiff)
	}
	// A container that changed nothing has no diff, though the runtime
	// made /etc/hosts and /etc/resolv.conf as mount points in it.
	must(t, "run", "--name", name+"-none", "busybox", "true")
	defer rmf(t, shared, name+"-none")
	if got := must(t, "diff", name+"-none"); got != "" {
		t.Errorf("berth diff of an unchanged container: %q", got)
	}
	r := berth("diff", "e2e-no-such-ctr")
	if r.code == 0 || !strings.Contains(r.stderr, "No such container: e2e-no-such-ctr") {
		t.Errorf("diff of a missing container: %s", r)
	}
}

func TestCommitAndRun(t *testing.T) {
	name := "e2e-commit"
	must(t, "run", "--name", name, "busybox", "sh", "-c", changeScript)
	defer rmf(t, shared, name)
	id := must(t, "commit", "-a", "Jo <jo@example.com>", "-m", "the changes", name, "e2e-commit:1")
	defer berth("rmi", "e2e-commit:1")
	if !imageIDRe.MatchString(id) {
		t.Fatalf("berth commit printed %q, want sha256:<64 hex>", id)
	}
	if got := inspect(t, shared, "{{.Id}}", "e2e-commit:1"); got+"\n" != id {
		t.Errorf("e2e-commit:1 is %s, commit printed %s", got, id)
	}
	got := must(t, "run", "--rm", "e2e-commit:1", "sh", "-c",
		`cat /x; tail -n1 /etc/passwd; ls /etc/group 2>&1; ls -R /usr; cat /usr/new/f; ls -d /home/user/d; ls /bin/busybox`)
	want := "hi\nmore\nls: /etc/group: No such file or directory\n/usr:\nnew\n\n/usr/new:\nf\nn\n/home/user/d\n/bin/busybox\n"
	if got != want {
		t.Errorf("the committed image's files:\n%s\nwant:\n%s", got, want)
	}
	// The new layer, as saved: the changes only, deletions as OCI
	// whiteouts, the replaced /usr as an opaque directory.
	if got, want := committedLayer(t, "e2e-commit:1"), []string{"etc/", "etc/.wh.group", "etc/passwd",
		"home/", "home/user/", "home/user/d/", "usr/", "usr/.wh..wh..opq", "usr/new/", "usr/new/f", "x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("the committed layer holds\n%v\nwant\n%v", got, want)
	}
	// A container of the new image starts with no diff of its own.
	must(t, "run", "--name", name+"-2", "e2e-commit:1", "true")
	defer rmf(t, shared, name+"-2")
	if d := must(t, "diff", name+"-2"); d != "" {
		t.Errorf("diff of a container of the committed image: %q", d)
	}
	// Docker's config: the container's command, author, comment, one
	// more layer and one more history entry.
	for tmpl, want := range map[string]string{
		"{{index .Config.Cmd 2}}": changeScript,
		"{{.Author}}":             "Jo <jo@example.com>",
		"{{.Comment}}":            "the changes",
		"{{len .RootFS.Layers}}":  "2",
	} {
		if got := inspect(t, shared, tmpl, "e2e-commit:1"); got != want {
			t.Errorf("inspect %s = %q, want %q", tmpl, got, want)
		}
	}
	hist := strings.Split(must(t, "history", "e2e-commit:1"), "\n")
	if len(hist) < 2 || !strings.Contains(hist[1], "sh -c echo hi") || !strings.HasSuffix(strings.TrimSpace(hist[1]), "the changes") {
		t.Errorf("history's top entry %q, want the container's command and the comment", hist[1])
	}

	// A container that changed nothing still makes a new image, with the
	// same layers.
	must(t, "create", "--name", name+"-empty", "busybox", "true")
	defer rmf(t, shared, name+"-empty")
	empty := strings.TrimSpace(must(t, "commit", name+"-empty"))
	defer berth("rmi", empty)
	if empty == inspect(t, shared, "{{.Id}}", "busybox") {
		t.Errorf("an empty commit gave busybox's own ID")
	}
	if a, b := inspect(t, shared, "{{json .RootFS.Layers}}", empty), inspect(t, shared, "{{json .RootFS.Layers}}", "busybox"); a != b {
		t.Errorf("an empty commit's layers %s, want busybox's %s", a, b)
	}
}

func TestCommitChangeCmd(t *testing.T) {
	name := "e2e-commit-change"
	must(t, "run", "--name", name, "busybox", "sh", "-c", "echo from-x > /x")
	defer rmf(t, shared, name)
	must(t, "commit", "--change", `CMD ["cat","/x"]`, "-c", "ENV GREETING=hello", "-c", "WORKDIR /tmp",
		"-c", "LABEL stage=committed", "-c", "EXPOSE 8080", name, "e2e-commit:cmd")
	defer berth("rmi", "e2e-commit:cmd")
	if got := must(t, "run", "--rm", "e2e-commit:cmd"); got != "from-x\n" {
		t.Errorf("CMD from --change: %q", got)
	}
	if got := must(t, "run", "--rm", "e2e-commit:cmd", "sh", "-c", "echo $GREETING; pwd"); got != "hello\n/tmp\n" {
		t.Errorf("ENV and WORKDIR from --change: %q", got)
	}
	for tmpl, want := range map[string]string{
		"{{.Config.Labels.stage}}":      "committed",
		"{{json .Config.ExposedPorts}}": `{"8080/tcp":{}}`,
	} {
		if got := inspect(t, shared, tmpl, "e2e-commit:cmd"); got != want {
			t.Errorf("inspect %s = %q, want %q", tmpl, got, want)
		}
	}
}

func TestCommitBadInput(t *testing.T) {
	name := "e2e-commit-bad"
	must(t, "run", "--name", name, "busybox", "sh", "-c", "echo x > /x")
	defer rmf(t, shared, name)
	images := must(t, "images", "-aq", "--no-trunc")
	entries := storeEntries(t, shared)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"commit", "e2e-no-such-ctr", "e2e-commit:bad"}, "No such container: e2e-no-such-ctr"},
		{[]string{"commit", name, "Bad/UPPER:case"}, "invalid reference format"},
		{[]string{"commit", name, "e2e-commit:bad@tag"}, "invalid reference format"},
		{[]string{"commit", "-c", "RUN echo hi", name, "e2e-commit:bad"}, "RUN is not a valid change command"},
		{[]string{"commit", "-c", "EXPOSE 99999", name, "e2e-commit:bad"}, "EXPOSE 99999"},
		{[]string{"commit", "-c", "BOGUS x", name, "e2e-commit:bad"}, "BOGUS"},
	} {
		r := berth(c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("berth %s: %s\nwant one error line saying %q", strings.Join(c.args, " "), r, c.want)
		}
	}
	// The API: Docker's status codes, one message naming the input.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", shared.sock)
	}}}
	for _, c := range []struct {
		query, body string
		code        int
		want        string
	}{
		{"container=e2e-no-such-ctr", "", 404, "No such container: e2e-no-such-ctr"},
		{"container=" + name, "{not json", 400, "not a container config"},
		{"container=" + name + "&repo=a&tag=-bad", "", 400, "invalid reference format"},
		{"container=" + name + "&changes=ONBUILD", "", 400, "ONBUILD"},
		{"", "", 400, "container="},
	} {
		resp, err := hc.Post("http://berth/v1.45/commit?"+c.query, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.want) {
			t.Errorf("POST /commit?%s: %d %s, want %d saying %q", c.query, resp.StatusCode, b, c.code, c.want)
		}
	}
	if got := must(t, "images", "-aq", "--no-trunc"); got != images {
		t.Errorf("failed commits changed the image list:\n%s\nwas:\n%s", got, images)
	}
	if n := storeEntries(t, shared); n != entries {
		t.Errorf("failed commits left blobs or layers: %d entries, were %d", n, entries)
	}
}

func TestCommitPause(t *testing.T) {
	id := strings.TrimSpace(must(t, "run", "-d", "busybox", "sh", "-c", "echo ready > /ready; exec sleep 1000"))
	defer rmf(t, shared, id)
	waitFor(t, 10e9, "the container to write /ready", func() bool { return berth("exec", id, "cat", "/ready").code == 0 })
	stamp := func() string { now := time.Now(); return fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond()) }
	for _, pause := range []string{"--pause=true", "--pause=false"} {
		since := stamp()
		img := strings.TrimSpace(must(t, "commit", pause, id))
		// The container was paused for the commit (and only with -p).
		evs := must(t, "events", "--since", since, "--until", stamp(), "--filter", "container="+id, "--format", "{{.Action}}")
		wantEvs := "pause\ncommit\nunpause\n" // as Docker: the unpause is deferred
		if pause == "--pause=false" {
			wantEvs = "commit\n"
		}
		if evs != wantEvs {
			t.Errorf("events of commit %s: %q, want %q", pause, evs, wantEvs)
		}
		if got := must(t, "run", "--rm", img, "cat", "/ready"); got != "ready\n" {
			t.Errorf("commit %s of a running container: /ready = %q", pause, got)
		}
		berth("rmi", img)
		if st := inspect(t, shared, "{{.State.Status}} {{.State.Paused}}", id); st != "running false" {
			t.Errorf("after commit %s the container is %q, want it running and not paused", pause, st)
		}
	}
	// A paused container stays paused.
	must(t, "pause", id)
	img := strings.TrimSpace(must(t, "commit", id))
	berth("rmi", img)
	if st := inspect(t, shared, "{{.State.Status}}", id); st != "paused" {
		t.Errorf("a paused container after commit is %q", st)
	}
	must(t, "unpause", id)
}

// TestCommitDockerCLI drives commit and diff with the stock docker CLI.
func TestCommitDockerCLI(t *testing.T) {
	needDockerCLI(t)
	e := newDockerEnv(t, "commitcli", "busybox-docker.tar")
	e.must(t, "run", "--name", "c1", "busybox", "sh", "-c", changeScript)
	if got := e.must(t, "diff", "c1"); got != wantDiff {
		t.Errorf("docker diff:\n%s\nwant:\n%s", got, wantDiff)
	}
	e.fails(t, "No such container: nosuch", "diff", "nosuch")
	id := e.must(t, "commit", "-a", "Jo", "-m", "via docker", "-c", `CMD ["cat","/x"]`, "-c", "ENV A=b", "c1", "e2e-dc:1")
	if !imageIDRe.MatchString(id) {
		t.Fatalf("docker commit printed %q", id)
	}
	if got := e.must(t, "run", "--rm", "e2e-dc:1"); got != "hi\n" {
		t.Errorf("docker run of the committed image: %q", got)
	}
	if got := e.must(t, "run", "--rm", "e2e-dc:1", "sh", "-c", "echo $A; ls /usr; ls /etc/group 2>&1; true"); got != "b\nnew\nls: /etc/group: No such file or directory\n" {
		t.Errorf("the committed image's files: %q", got)
	}
	if got := strings.TrimSpace(e.must(t, "image", "inspect", "-f", "{{.Author}} {{json .Config.Cmd}}", "e2e-dc:1")); got != `Jo ["cat","/x"]` {
		t.Errorf("docker image inspect: %q", got)
	}
	// Untagged, and with the container running (paused meanwhile).
	e.must(t, "run", "-d", "--name", "c2", "busybox", "sh", "-c", "echo up > /up; exec sleep 1000")
	waitFor(t, 10e9, "c2's /up", func() bool { return e.docker("exec", "c2", "cat", "/up").code == 0 })
	id2 := strings.TrimSpace(e.must(t, "commit", "c2"))
	if got := e.must(t, "run", "--rm", id2, "cat", "/up"); got != "up\n" {
		t.Errorf("commit of a running container: %q", got)
	}
	if st := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.State.Status}}", "c2")); st != "running" {
		t.Errorf("c2 after docker commit: %s", st)
	}
	e.fails(t, "No such container: nosuch", "commit", "nosuch")
	e.fails(t, "not a valid change command", "commit", "-c", "RUN true", "c1")

	// docker-py: Container.diff and Container.commit with a config body.
	if exec.Command("python3", "-c", "import docker").Run() != nil {
		t.Log("docker-py is not installed; skipping its part")
		return
	}
	py := `
import docker, json
c = docker.from_env().containers.get("c1")
print(json.dumps(c.diff()))
img = c.commit(repository="e2e-py", tag="1", message="py", conf={"Cmd": ["cat", "/usr/new/f"], "Env": ["FROM_BODY=1"]}, changes=["LABEL via=py"])
print(img.id)
print(json.dumps([img.attrs["Config"]["Cmd"], img.attrs["Config"]["Labels"], "FROM_BODY=1" in img.attrs["Config"]["Env"]]))
`
	r := e.runCmd(nil, "python3", "-c", py)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("docker-py: %s", r)
	}
	if !strings.Contains(lines[0], `{"Path": "/etc/group", "Kind": 2}`) || !strings.Contains(lines[0], `{"Path": "/x", "Kind": 1}`) {
		t.Errorf("docker-py diff: %s", lines[0])
	}
	if want := `[["cat", "/usr/new/f"], {"via": "py"}, true]`; lines[2] != want {
		t.Errorf("docker-py commit config: %s, want %s", lines[2], want)
	}
	if got := e.must(t, "run", "--rm", "e2e-py:1"); got != "n\n" {
		t.Errorf("run of docker-py's commit: %q", got)
	}
}

// committedLayer lists the entries of an image's top layer as berth save
// writes it.
func committedLayer(t *testing.T, ref string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "img.tar")
	must(t, "save", "-o", out, ref)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 || len(manifest[0].Layers) == 0 {
		t.Fatalf("manifest.json of %s: %v %s", ref, err, files["manifest.json"])
	}
	layer := files[manifest[0].Layers[len(manifest[0].Layers)-1]]
	var r io.Reader = bytes.NewReader(layer)
	if bytes.HasPrefix(layer, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	var names []string
	lr := tar.NewReader(r)
	for {
		h, err := lr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}
