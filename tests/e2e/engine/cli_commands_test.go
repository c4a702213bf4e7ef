package engine

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests of the CLI's attach, cp, port, events, export and update.

func TestCLIPort(t *testing.T) {
	id := strings.TrimSpace(must(t, "run", "-d", "--name", "cli-port", "-p", "127.0.0.1::80", "-p", "127.0.0.1::53/udp", "busybox", "sleep", "1000"))
	rmf(t, shared, id)
	tcp := inspect(t, shared, `{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}`, id)
	udp := inspect(t, shared, `{{(index (index .NetworkSettings.Ports "53/udp") 0).HostPort}}`, id)
	want := fmt.Sprintf("53/udp -> 127.0.0.1:%s\n80/tcp -> 127.0.0.1:%s\n", udp, tcp)
	if out := must(t, "port", "cli-port"); out != want {
		t.Errorf("port: %q, want %q", out, want)
	}
	for _, arg := range []string{"80", "80/tcp"} {
		if out := must(t, "container", "port", id, arg); out != "127.0.0.1:"+tcp+"\n" {
			t.Errorf("port %s: %q", arg, out)
		}
	}
	if r := berth("port", id, "81"); r.code != 1 || !strings.Contains(r.stderr, "No public port '81/tcp' published for "+id) {
		t.Errorf("unpublished port: %s", r)
	}
	if r := berth("port", id, "http"); r.code != 125 || !strings.Contains(r.stderr, `"http"`) {
		t.Errorf("bad port: %s", r)
	}
	if r := berth("port", "cli-nosuch"); r.code != 1 || !strings.Contains(r.stderr, "cli-nosuch") {
		t.Errorf("unknown container: %s", r)
	}
	if r := berth("port"); r.code != 125 {
		t.Errorf("no arguments: %s", r)
	}
}

func TestCLIExport(t *testing.T) {
	id := strings.TrimSpace(must(t, "create", "busybox", "true"))
	rmf(t, shared, id)
	dir := t.TempDir()
	out := filepath.Join(dir, "fs.tar")
	must(t, "export", "-o", out, id)
	names := tarNames(t, out)
	for _, n := range []string{"bin/busybox", "etc/"} {
		if !names[n] {
			t.Errorf("export lacks %s (has %d entries)", n, len(names))
		}
	}
	r := berth("container", "export", id)
	if r.code != 0 || len(tarNamesOf(t, r.stdout)) != len(names) {
		t.Errorf("export to stdout: exit %d, %d bytes", r.code, len(r.stdout))
	}
	bad := filepath.Join(dir, "nope.tar")
	if r := berth("export", "-o", bad, "cli-nosuch"); r.code != 1 || !strings.Contains(r.stderr, "cli-nosuch") {
		t.Errorf("unknown container: %s", r)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("a failed export left files: %v", ents)
	}
}

func TestCLIUpdate(t *testing.T) {
	id := strings.TrimSpace(must(t, "run", "-d", "--name", "cli-update", "busybox", "sleep", "1000"))
	rmf(t, shared, id)
	if out := must(t, "update", "--cpus", "0.5", "-m", "64m", "--memory-swap", "128m", "--pids-limit", "50", "--cpu-shares", "512",
		"--restart", "on-failure:2", "cli-update"); out != "cli-update\n" {
		t.Errorf("update printed %q", out)
	}
	const tmpl = `{{json .HostConfig.NanoCpus}} {{json .HostConfig.Memory}} {{json .HostConfig.MemorySwap}} {{json .HostConfig.PidsLimit}} {{json .HostConfig.CpuShares}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}`
	want := "500000000 67108864 134217728 50 512 on-failure:2"
	if got := inspect(t, shared, tmpl, id); got != want {
		t.Errorf("after update: %q, want %q", got, want)
	}
	// The running container has the limits now (cgroup v2, or v1).
	pid := inspect(t, shared, "{{.State.Pid}}", id)
	limits := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(mustRead(t, "/proc/"+pid+"/cgroup")), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		read := func(dir, file string) string {
			b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup", dir, f[2], file))
			return strings.TrimSpace(string(b))
		}
		switch f[1] {
		case "":
			if v := read("", "memory.max"); v != "" {
				limits["memory"], limits["pids"], limits["cpu"] = v, read("", "pids.max"), strings.Fields(read("", "cpu.max") + " x")[0]
			}
		case "memory":
			limits["memory"] = read("memory", "memory.limit_in_bytes")
		case "pids":
			limits["pids"] = read("pids", "pids.max")
		case "cpu", "cpu,cpuacct":
			limits["cpu"] = read(f[1], "cpu.cfs_quota_us")
		}
	}
	if want := map[string]string{"memory": "67108864", "pids": "50", "cpu": "50000"}; fmt.Sprint(limits) != fmt.Sprint(want) {
		t.Errorf("cgroup limits of the running container: %v, want %v", limits, want)
	}
	// Bad input changes nothing.
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"update", "cli-update"}, 125, "one or more flags"},
		{[]string{"update", "-m", "lots", "cli-update"}, 125, `"lots"`},
		{[]string{"update", "--cpus", "many", "cli-update"}, 125, `"many"`},
		{[]string{"update", "--restart", "sometimes", "cli-update"}, 125, `"sometimes"`},
		{[]string{"update", "--pids-limit", "x", "cli-update"}, 125, `"x"`},
		{[]string{"update", "-m", "32m", "cli-nosuch"}, 1, "cli-nosuch"},
		{[]string{"update"}, 125, "requires at least 1 argument"},
	} {
		if r := berth(tc.args...); r.code != tc.code || !strings.Contains(strings.SplitN(r.stderr, "\n", 2)[0], tc.says) {
			t.Errorf("%v: %s; want exit %d naming %s", tc.args, r, tc.code, tc.says)
		}
	}
	if got := inspect(t, shared, tmpl, id); got != want {
		t.Errorf("after failed updates: %q, want %q", got, want)
	}
}

func TestCLIEvents(t *testing.T) {
	since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)
	id := strings.TrimSpace(must(t, "run", "-d", "--name", "cli-events", "-l", "evt=1", "busybox", "sh", "-c", "exit 3"))
	rmf(t, shared, id)
	must(t, "wait", id)
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	out := must(t, "events", "--since", since, "--until", until, "-f", "container="+id)
	for _, action := range []string{"create", "start", "die"} {
		if !strings.Contains(out, " container "+action+" "+id+" (") {
			t.Errorf("events lack %s of %s:\n%s", action, id, out)
		}
	}
	if !strings.Contains(out, "exitCode=3") || !strings.Contains(out, "name=cli-events") || !strings.Contains(out, "evt=1") {
		t.Errorf("die event attributes:\n%s", out)
	}
	line := strings.SplitN(out, "\n", 2)[0]
	if _, err := time.Parse("2006-01-02T15:04:05.000000000Z07:00", strings.Fields(line)[0]); err != nil {
		t.Errorf("event time in %q: %v", line, err)
	}
	out = must(t, "system", "events", "--since", since, "--until", until, "--filter", "container="+id, "--filter", "event=die", "--format", "{{json .}}")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var e struct {
		Type, Action string
		Actor        struct{ ID string }
	}
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &e) != nil || e.Type != "container" || e.Action != "die" || e.Actor.ID != id {
		t.Errorf("events --format '{{json .}}' -f event=die: %q", out)
	}
	if out := must(t, "events", "--since", since, "--until", until, "-f", "container="+id, "--format", "{{.Action}}"); !strings.HasPrefix(out, "create\n") {
		t.Errorf("--format {{.Action}}: %q", out)
	}
	// A follower sees events as they happen.
	cmd := exec.Command(filepath.Join(binDir, "berth"), "-H", "unix://"+shared.sock, "events", "-f", "container=cli-events2")
	var buf syncBuffer
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	id2 := strings.TrimSpace(must(t, "create", "--name", "cli-events2", "busybox", "true"))
	rmf(t, shared, id2)
	waitFor(t, 5*time.Second, "the create event", func() bool { return strings.Contains(buf.String(), "container create "+id2) })
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	for _, args := range [][]string{{"events", "--since", "yesterday"}, {"events", "-f", "nokey"}, {"events", "--format", "{{.Nope"}, {"events", "extra"}} {
		if r := berth(args...); r.code != 125 {
			t.Errorf("%v: %s; want exit 125", args, r)
		}
	}
}

func TestCLIAttach(t *testing.T) {
	// Output, split streams and the exit code.
	id := strings.TrimSpace(must(t, "run", "-d", "busybox", "sh", "-c", "sleep 1; echo out; echo err >&2; exit 3"))
	rmf(t, shared, id)
	if r := berth("attach", id); r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("attach: %s; want out, err, exit 3", r)
	}
	if r := berth("attach", id); r.code != 1 || !strings.Contains(r.stderr, "You cannot attach to a stopped container") {
		t.Errorf("attach to a stopped container: %s", r)
	}
	// Stdin.
	id = strings.TrimSpace(must(t, "run", "-d", "-i", "busybox", "sh", "-c", "read x; echo got $x; exit 4"))
	rmf(t, shared, id)
	if r := shared.runIn([]byte("hello\n"), "container", "attach", id); r.code != 4 || r.stdout != "got hello\n" {
		t.Errorf("attach with stdin: %s", r)
	}
	// The detach keys leave the container running.
	id = strings.TrimSpace(must(t, "run", "-d", "-i", "busybox", "sh", "-c", "cat; echo ended"))
	rmf(t, shared, id)
	if r := shared.runIn([]byte("abc\n\x01x"), "attach", "--detach-keys", "ctrl-a,x", id); r.code != 0 || !strings.Contains(r.stderr, "read escape sequence") {
		t.Errorf("detach: %s", r)
	}
	time.Sleep(200 * time.Millisecond)
	if got := inspect(t, shared, "{{.State.Running}}", id); got != "true" {
		t.Errorf("after a detach the container is running=%s", got)
	}
	if r := berth("logs", id); r.stdout != "abc\n" {
		t.Errorf("the container got %q before the detach", r.stdout)
	}
	if r := berth("attach", "--detach-keys", "ctrl-1", id); r.code != 125 || !strings.Contains(r.stderr, "ctrl-1") {
		t.Errorf("bad detach keys: %s", r)
	}
	if r := berth("attach", "cli-nosuch"); r.code != 1 || !strings.Contains(r.stderr, "cli-nosuch") {
		t.Errorf("unknown container: %s", r)
	}
	// With a tty: raw bytes both ways, the exit status, the detach keys.
	if _, err := exec.LookPath("script"); err == nil {
		ttyAttach := func(stdin, id string) result {
			return shared.runCmdIn([]byte(stdin), "script", "-qec", filepath.Join(binDir, "berth")+" -H unix://"+shared.sock+" attach "+id, "/dev/null")
		}
		id = strings.TrimSpace(must(t, "run", "-d", "-it", "busybox", "sh", "-c", "read x; echo tty-got-$x; exit 5"))
		rmf(t, shared, id)
		if r := ttyAttach("hi\n", id); r.code != 5 || !strings.Contains(r.stdout, "tty-got-hi") {
			t.Errorf("attach with a tty: %s", r)
		}
		id = strings.TrimSpace(must(t, "run", "-d", "-it", "busybox", "sh"))
		rmf(t, shared, id)
		// The keys come once the terminal is raw (a cooked one eats ^Q).
		r := shared.runCmdIn(nil, "sh", "-c", `(sleep 1; printf 'echo one\n\020\021'; sleep 2) | script -qec "`+filepath.Join(binDir, "berth")+" -H unix://"+shared.sock+" attach "+id+`" /dev/null`)
		if r.code != 0 || !strings.Contains(r.stdout, "read escape sequence") {
			t.Errorf("detach from a tty: %s", r)
		}
		time.Sleep(200 * time.Millisecond)
		if got := inspect(t, shared, "{{.State.Running}}", id); got != "true" {
			t.Errorf("after a tty detach the container is running=%s", got)
		}
		// What was typed before the keys reached the shell.
		waitFor(t, 5*time.Second, "the shell's echo", func() bool { return strings.Contains(berth("logs", id).stdout, "one\r\n") })
	}
	// Signals go to the container (--sig-proxy, on by default).
	id = strings.TrimSpace(must(t, "run", "-d", "busybox", "sh", "-c", `trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done`))
	rmf(t, shared, id)
	waitFor(t, 5*time.Second, "the trap", func() bool { return strings.Contains(berth("logs", id).stdout, "ready") })
	cmd := exec.Command(filepath.Join(binDir, "berth"), "-H", "unix://"+shared.sock, "attach", "--no-stdin", id)
	var buf syncBuffer
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("attach did not end after SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 7 || !strings.Contains(buf.String(), "got-term") {
		t.Errorf("SIGTERM through attach: exit %d, output %q; want got-term and 7", code, buf.String())
	}
	// Without --sig-proxy, SIGTERM ends berth and not the container.
	id = strings.TrimSpace(must(t, "run", "-d", "busybox", "sh", "-c", `trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done`))
	rmf(t, shared, id)
	waitFor(t, 5*time.Second, "the trap", func() bool { return strings.Contains(berth("logs", id).stdout, "ready") })
	cmd = exec.Command(filepath.Join(binDir, "berth"), "-H", "unix://"+shared.sock, "attach", "--sig-proxy=false", id)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	done = make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("attach --sig-proxy=false did not end after SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 143 {
		t.Errorf("attach --sig-proxy=false after SIGTERM: exit %d, want 143", code)
	}
	if got := inspect(t, shared, "{{.State.Running}}", id); got != "true" {
		t.Errorf("with --sig-proxy=false the container got the signal (running=%s)", got)
	}
}

func TestCLICp(t *testing.T) {
	id := strings.TrimSpace(must(t, "run", "-d", "--name", "cli-cp", "busybox", "sh", "-c",
		"mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && ln -s /d/a /d/link && touch /d/ready && sleep 1000"))
	rmf(t, shared, id)
	waitFor(t, 5*time.Second, "the container's files", func() bool { return berth("exec", id, "test", "-e", "/d/ready").code == 0 })
	dir := t.TempDir()
	at := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }

	// Out of the container.
	must(t, "cp", "cli-cp:/d/a", at("a1"))
	os.Mkdir(at("into"), 0o755)
	must(t, "cp", "cli-cp:/d/a", at("into"))
	must(t, "container", "cp", "cli-cp:/d", at("newdir"))
	os.Mkdir(at("exists"), 0o755)
	must(t, "cp", "cli-cp:/d", at("exists"))
	os.Mkdir(at("contents"), 0o755)
	must(t, "cp", "cli-cp:/d/.", at("contents"))
	os.WriteFile(at("file"), []byte("old"), 0o644)
	must(t, "cp", "cli-cp:/d/sub/b", at("file"))
	for p, want := range map[string]string{"a1": "a\n", "into/a": "a\n", "newdir/a": "a\n", "newdir/sub/b": "b\n",
		"exists/d/a": "a\n", "exists/d/sub/b": "b\n", "contents/a": "a\n", "contents/sub/b": "b\n", "file": "b\n"} {
		if got := read(at(p)); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	if fi, err := os.Stat(at("contents", "d")); err == nil {
		t.Errorf("cp dir/. made %s", fi.Name())
	}
	must(t, "cp", "cli-cp:/d/link", at("link"))
	if target, err := os.Readlink(at("link")); err != nil || target != "/d/a" {
		t.Errorf("a symlink is copied as one: %q, %v", target, err)
	}
	must(t, "cp", "-L", "cli-cp:/d/link", at("followed"))
	if got := read(at("followed")); got != "a\n" {
		t.Errorf("cp -L: %q", got)
	}
	os.Mkdir(at("linkdir"), 0o755)
	must(t, "cp", "-L", "cli-cp:/d/link", at("linkdir"))
	if got := read(at("linkdir", "link")); got != "a\n" {
		t.Errorf("cp -L into a directory keeps the link's name: %q", got)
	}
	r := berth("cp", "cli-cp:/d", "-")
	if names := tarNamesOf(t, r.stdout); r.code != 0 || !names["d/a"] || !names["d/sub/b"] {
		t.Errorf("cp to -: %d, %v", r.code, names)
	}

	// On a terminal cp says what it copied, as docker does; -q silences it.
	if _, err := exec.LookPath("script"); err == nil {
		cp := filepath.Join(binDir, "berth") + " -H unix://" + shared.sock + " cp "
		if r := shared.runCmdIn(nil, "script", "-qec", cp+"cli-cp:/d/sub/b "+at("said"), "/dev/null"); r.code != 0 || !strings.Contains(r.stdout, "Successfully copied ") || !strings.Contains(r.stdout, " to "+at("said")) {
			t.Errorf("cp on a terminal: %s", r)
		}
		if r := shared.runCmdIn(nil, "script", "-qec", cp+"-q cli-cp:/d/sub/b "+at("quiet"), "/dev/null"); r.code != 0 || r.stdout != "" {
			t.Errorf("cp -q on a terminal: %s", r)
		}
	}

	// Into the container.
	os.MkdirAll(at("src", "deep"), 0o755)
	os.WriteFile(at("src", "f"), []byte("f\n"), 0o640)
	os.WriteFile(at("src", "deep", "g"), []byte("g\n"), 0o644)
	os.Chown(at("src", "f"), 1234, 1234)
	must(t, "cp", at("src"), "cli-cp:/up")
	must(t, "cp", at("src", "f"), "cli-cp:/d/")
	must(t, "cp", at("src", "f"), "cli-cp:/d/renamed")
	must(t, "cp", at("src")+"/.", "cli-cp:/d/sub")
	must(t, "cp", "-a", at("src", "f"), "cli-cp:/tmp/owned")
	for p, want := range map[string]string{"/up/f": "f\n", "/up/deep/g": "g\n", "/d/f": "f\n", "/d/renamed": "f\n",
		"/d/sub/f": "f\n", "/d/sub/deep/g": "g\n", "/tmp/owned": "f\n"} {
		if got := must(t, "exec", id, "cat", p); got != want {
			t.Errorf("%s in the container: %q, want %q", p, got, want)
		}
	}
	if got := must(t, "exec", id, "stat", "-c", "%u:%g %a", "/up/f", "/tmp/owned"); got != "1234:1234 640\n0:0 640\n" {
		t.Errorf("owners and modes (plain, then -a): %q", got)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "fromtar", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
	tw.Write([]byte("t!\n"))
	tw.Close()
	if r := shared.runIn(tb.Bytes(), "cp", "-", "cli-cp:/d"); r.code != 0 {
		t.Errorf("cp - : %s", r)
	}
	if got := must(t, "exec", id, "cat", "/d/fromtar"); got != "t!\n" {
		t.Errorf("tar from stdin: %q", got)
	}

	// Bad input: one line naming it, and nothing copied.
	before := listTree(t, dir)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"cp", "cli-nosuch:/d", at("x")}, 1, "cli-nosuch"},
		{[]string{"cp", "cli-cp:/nope", at("x")}, 1, "/nope"},
		{[]string{"cp", "cli-cp:", at("x")}, 125, `"cli-cp:"`},
		{[]string{"cp", at("a1"), at("x")}, 125, "at least one container"},
		{[]string{"cp", "cli-cp:/d", "cli-cp:/e"}, 125, "between containers"},
		{[]string{"cp", "cli-cp:/d"}, 125, "exactly 2"},
		{[]string{"cp", "cli-cp:/d", at("file")}, 1, "cannot copy a directory to a file"},
		{[]string{"cp", "cli-cp:/d/a", at("nodir") + "/"}, 1, "does not exist"},
		{[]string{"cp", "cli-cp:/d/a", at("no", "parent")}, 1, "does not exist"},
		{[]string{"cp", "cli-cp:/d/a/", at("x")}, 1, "not a directory"},
		{[]string{"cp", at("nosuchfile"), "cli-cp:/d"}, 1, "nosuchfile"},
		{[]string{"cp", at("src"), "cli-cp:/d/a"}, 1, "cannot copy a directory to a file"},
		{[]string{"cp", at("src"), "cli-nosuch:/d"}, 1, "cli-nosuch"},
		{[]string{"cp", at("a1"), "cli-cp:/no/such/dir/x"}, 1, "/no/such/dir"},
		{[]string{"cp", "-", "cli-cp:/d/a"}, 1, "must be a directory"},
	} {
		r := berth(tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("%v: %s; want exit %d naming %s", tc.args, r, tc.code, tc.says)
		}
	}
	if after := listTree(t, dir); after != before {
		t.Errorf("failed copies changed the host:\nbefore %s\nafter  %s", before, after)
	}
	if r := berth("exec", id, "ls", "/no", "/e"); r.code == 0 {
		t.Errorf("failed copies changed the container: %s", r)
	}
}

// TestCLICpHostileArchive feeds `berth cp CONTAINER:PATH HOSTDIR` hostile
// archives from a fake daemon: nothing may land outside the destination.
func TestCLICpHostileArchive(t *testing.T) {
	base := t.TempDir()
	abs := filepath.Join(os.TempDir(), fmt.Sprintf("berth-hostile-%d", os.Getpid()))
	defer os.Remove(abs)
	type entry struct {
		name, link string
		typ        byte
	}
	archives := map[string][]entry{
		"dotdot":   {{name: "x/", typ: tar.TypeDir}, {name: "x/../../escape", typ: tar.TypeReg}},
		"absolute": {{name: "x/", typ: tar.TypeDir}, {name: abs, typ: tar.TypeReg}},
		"symlink":  {{name: "x/", typ: tar.TypeDir}, {name: "x/up", link: "../../..", typ: tar.TypeSymlink}, {name: "x/up/escape", typ: tar.TypeReg}},
		"abslink":  {{name: "x/", typ: tar.TypeDir}, {name: "x/out", link: base, typ: tar.TypeSymlink}, {name: "x/out/escape", typ: tar.TypeReg}},
		"hardlink": {{name: "x/", typ: tar.TypeDir}, {name: "x/h", link: "../../etc/passwd", typ: tar.TypeLink}},
	}
	sock := filepath.Join(base, "fake.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctr := strings.Split(strings.TrimPrefix(r.URL.Path[strings.Index(r.URL.Path, "/containers/"):], "/containers/"), "/")
		ents, ok := archives[ctr[0]]
		if !ok {
			http.Error(w, `{"message":"No such container: `+ctr[0]+`"}`, 404)
			return
		}
		if ctr[1] == "json" {
			fmt.Fprint(w, `{"Id":"`+ctr[0]+`"}`)
			return
		}
		st, _ := json.Marshal(map[string]any{"name": "x", "mode": uint32(os.ModeDir | 0o755)})
		w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(st))
		tw := tar.NewWriter(w)
		for _, e := range ents {
			h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644}
			if e.typ == tar.TypeReg {
				h.Size = 4
			}
			tw.WriteHeader(h)
			if e.typ == tar.TypeReg {
				tw.Write([]byte("evil"))
			}
		}
		tw.Close()
	})}
	go srv.Serve(l)
	defer srv.Close()
	for name := range archives {
		dst := filepath.Join(base, "dst-"+name)
		os.Mkdir(dst, 0o755)
		before := listTree(t, base)
		cmd := exec.Command(filepath.Join(binDir, "berth"), "-H", "unix://"+sock, "cp", name+":/x", dst)
		out, err := cmd.CombinedOutput()
		t.Logf("%s: %v: %s", name, err, out)
		var outside []string
		filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !strings.HasPrefix(p, dst+"/") && p != dst && !strings.Contains(before, p+" ") {
				outside = append(outside, p)
			}
			return nil
		})
		if len(outside) > 0 {
			t.Errorf("%s: written outside %s: %v", name, dst, outside)
		}
		if _, err := os.Lstat(abs); err == nil {
			t.Errorf("%s: wrote %s", name, abs)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(base), "escape")); err == nil {
			t.Errorf("%s: wrote %s", name, filepath.Join(filepath.Dir(base), "escape"))
		}
		if name == "absolute" {
			// Docker's untar drops the leading "/": the entry lands
			// inside the destination.
			if _, err := os.Stat(filepath.Join(dst, abs)); err != nil {
				t.Errorf("absolute: %s is not in the destination: %v", abs, err)
			}
		}
		if name == "dotdot" || name == "hardlink" {
			// Refused before anything is written.
			if err == nil {
				t.Errorf("%s: the copy succeeded", name)
			}
			if ents, _ := os.ReadDir(dst); len(ents) != 0 {
				t.Errorf("%s: a refused archive left %v", name, ents)
			}
		}
	}
	// A symlink already in the destination does not lead out either.
	dst := filepath.Join(base, "dst-prelink")
	outside := filepath.Join(base, "outside")
	os.Mkdir(dst, 0o755)
	os.Mkdir(outside, 0o755)
	os.Symlink(outside, filepath.Join(dst, "x"))
	exec.Command(filepath.Join(binDir, "berth"), "-H", "unix://"+sock, "cp", "symlink:/x", dst).Run()
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("a copy followed the destination's symlink out: %v", ents)
	}
}

// tarNamesOf lists the entry names of a tar held in a string.
func tarNamesOf(t *testing.T, data string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	tr := tar.NewReader(strings.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Errorf("reading a tar: %v", err)
			return names
		}
		names[strings.TrimPrefix(h.Name, "./")] = true
	}
}

// listTree describes every path under dir, for before/after comparisons.
func listTree(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s %v %d|", p, fi.Mode(), fi.Size())
		}
		return nil
	})
	return b.String()
}

// syncBuffer is a bytes.Buffer a process can write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCmdIn runs a command (not berth) with stdin.
func (d *daemonProc) runCmdIn(stdin []byte, name string, args ...string) result {
	return execute(20*time.Second, nil, stdin, name, args...)
}
