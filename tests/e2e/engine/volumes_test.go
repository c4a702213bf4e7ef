package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVolumes(t *testing.T) {
	d, err := newDaemon("volumes")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer func() { d.stop() }()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))

	// A named volume keeps data across container removal.
	mustOn(t, d, "volume", "create", "--label", "app=test", "data")
	mustOn(t, d, "run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo persisted > /data/f")
	if got := mustOn(t, d, "run", "--rm", "-v", "data:/d:ro", "busybox", "cat", "/d/f"); got != "persisted\n" {
		t.Errorf("named volume after removal: got %q", got)
	}
	if r := d.run("run", "--rm", "-v", "data:/d:ro", "busybox", "touch", "/d/x"); r.code == 0 {
		t.Errorf("write to a :ro volume succeeded: %s", r)
	}
	// ... and a daemon restart.
	d.stop()
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	if got := mustOn(t, d, "run", "--rm", "--mount", "type=volume,source=data,target=/m", "busybox", "cat", "/m/f"); got != "persisted\n" {
		t.Errorf("named volume after daemon restart (--mount): got %q", got)
	}
	if got := mustOn(t, d, "volume", "ls", "--filter", "label=app=test", "--format", "{{.Name}}"); got != "data\n" {
		t.Errorf("volume ls --filter label: %q", got)
	}
	if got := strings.TrimSpace(mustOn(t, d, "volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "data")); got != "data local" {
		t.Errorf("volume inspect: %q", got)
	}
	// A new named volume is populated from the image's content at its path.
	if got := mustOn(t, d, "run", "--rm", "-v", "etc:/etc", "busybox", "sh", "-c", "test -s /etc/passwd && echo populated"); got != "populated\n" {
		t.Errorf("volume over /etc not populated from the image: %q", got)
	}
	// A volume in use cannot be removed; the error names the container.
	id := strings.TrimSpace(mustOn(t, d, "run", "-d", "-v", "data:/data", "busybox", "sleep", "30"))
	if r := d.run("volume", "rm", "data"); r.code == 0 || !strings.Contains(r.stderr, id[:12]) {
		t.Errorf("volume rm of a volume in use: %s", r)
	}
	mustOn(t, d, "rm", "-f", id)
	// Anonymous volumes: rm -v removes them, rm keeps them.
	id = strings.TrimSpace(mustOn(t, d, "create", "-v", "/anon", "busybox", "true"))
	mustOn(t, d, "start", id)
	mustOn(t, d, "wait", id)
	anon := strings.TrimSpace(mustOn(t, d, "inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", id))
	if len(anon) != 64 {
		t.Fatalf("anonymous volume name %q", anon)
	}
	mustOn(t, d, "rm", "-v", id)
	if r := d.run("volume", "inspect", anon); r.code == 0 {
		t.Errorf("rm -v left the anonymous volume %s", anon)
	}
	// Bind mounts, read-only binds, tmpfs.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "host.txt"), []byte("from-host\n"), 0o644)
	if got := mustOn(t, d, "run", "--rm", "-v", dir+":/h:ro", "busybox", "cat", "/h/host.txt"); got != "from-host\n" {
		t.Errorf("bind mount: %q", got)
	}
	if r := d.run("run", "--rm", "-v", dir+":/h:ro", "busybox", "touch", "/h/new"); r.code == 0 {
		t.Errorf("write to a :ro bind succeeded")
	}
	if got := mustOn(t, d, "run", "--rm", "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c", "grep /scratch /proc/mounts | cut -d' ' -f3"); got != "tmpfs\n" {
		t.Errorf("--tmpfs: %q", got)
	}
	// Bad input: a missing --mount bind source, an invalid spec.
	if r := d.run("run", "--rm", "--mount", "type=bind,source=/no/such/dir,target=/x", "busybox", "true"); r.code != 125 || !strings.Contains(r.stderr, "/no/such/dir") {
		t.Errorf("missing bind source: %s", r)
	}
	if r := d.run("run", "--rm", "-v", "a:b:c:d", "busybox", "true"); r.code != 125 || !strings.Contains(r.stderr, "a:b:c:d") {
		t.Errorf("invalid -v: %s", r)
	}
	mustOn(t, d, "volume", "rm", "data", "etc")
	if got := mustOn(t, d, "volume", "ls", "-q"); got != "" {
		t.Errorf("volumes left: %q", got)
	}
	assertNoLeaks(t, d)
}
