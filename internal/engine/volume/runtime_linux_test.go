package volume

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berth/berth/internal/engine/cgroups"
	"github.com/berth/berth/internal/engine/runtime"
)

// TestMountsInRealContainers runs crun and runc with the mounts Resolve
// produces: a named volume populated from the image, a read-only bind, a
// tmpfs, and a volume reached through an absolute symlink in the image.
func TestMountsInRealContainers(t *testing.T) {
	needRoot(t)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (busybox-static) not installed")
	}
	if err := cgroups.PrepareHost(); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	rootfs := filepath.Join(base, "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755)
	bin, _ := os.ReadFile(bb)
	os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bin, 0o755)
	os.Symlink("busybox", filepath.Join(rootfs, "bin/sh"))
	os.MkdirAll(filepath.Join(rootfs, "srv/data"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "srv/data/seed"), []byte("from-image\n"), 0o644)
	os.Symlink("/srv/data", filepath.Join(rootfs, "data")) // image layout: /data -> /srv/data
	hostDir := filepath.Join(base, "host")
	os.Mkdir(hostDir, 0o755)
	os.WriteFile(filepath.Join(hostDir, "hello"), []byte("from-host\n"), 0o644)
	volRoot := filepath.Join(base, "volumes")

	script := `set -e
cat /data/seed
echo written > /data/new
if echo x > /ro/x 2>/dev/null; then echo "ro bind is writable"; exit 10; fi
cat /ro/hello
grep -q ' /scratch tmpfs ' /proc/mounts || { echo "no tmpfs"; exit 11; }
echo ok > /scratch/t
echo done`
	for i, name := range []string{"crun", "runc"} {
		path, err := exec.LookPath(name)
		if err != nil {
			t.Logf("%s not installed", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			s := newStore(t, volRoot)
			id := fmt.Sprintf("vol-%d-%s", os.Getpid(), name)
			mounts := []MountSpec{
				mustParse(t, ParseVolumeSpec, fmt.Sprintf("appdata%d:/data", i)),
				mustParse(t, ParseVolumeSpec, hostDir+":/ro:ro"),
				mustParse(t, ParseTmpfs, "/scratch:size=1m"),
			}
			oci, _, err := s.Resolve(id, rootfs, nil, mounts)
			if err != nil {
				t.Fatal(err)
			}
			cg := fmt.Sprintf("/berth-test-vol-%d/%s", os.Getpid(), id)
			defer func() {
				for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "freezer", "devices", "blkio", "cpuset", "hugetlb", "systemd", "unified"} {
					os.Remove(filepath.Join(cgroups.Root, c, cg))
					os.Remove(filepath.Join(cgroups.Root, c, filepath.Dir(cg)))
				}
			}()
			spec, err := runtime.Generate(runtime.SpecOpts{ID: id, Rootfs: rootfs, ReadonlyRootfs: true,
				Args: []string{"sh", "-c", script}, Cwd: "/", NoNewPrivileges: true, CgroupsPath: cg, Mounts: oci})
			if err != nil {
				t.Fatal(err)
			}
			bundle := t.TempDir()
			b, _ := json.Marshal(spec)
			os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
			var out, errb bytes.Buffer
			cmd := exec.Command(path, "--root", filepath.Join(base, "state-"+name), "run", "--bundle", bundle, id)
			cmd.Stdout, cmd.Stderr = &out, &errb
			err = cmd.Run()
			exec.Command(path, "--root", filepath.Join(base, "state-"+name), "delete", "-f", id).Run()
			if err != nil {
				t.Fatalf("%s run: %v\nstdout: %s\nstderr: %s", name, err, out.String(), errb.String())
			}
			if want := "from-image\nfrom-host\ndone\n"; out.String() != want {
				t.Errorf("container output: got %q, want %q", out.String(), want)
			}
			// The container wrote into the volume; a new store (a daemon
			// restart) finds the volume and its data.
			s2 := newStore(t, volRoot)
			v, err := s2.Get(fmt.Sprintf("appdata%d", i))
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(v.Mountpoint, "new")); err != nil || string(b) != "written\n" {
				t.Errorf("volume file written by the container: got %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(hostDir, "x")); !os.IsNotExist(err) {
				t.Errorf("the read-only bind was written to")
			}
			if _, err := os.Stat(filepath.Join(rootfs, "srv/data/new")); !os.IsNotExist(err) {
				t.Errorf("the container wrote into the rootfs, not the volume")
			}
			if _, err := s2.ReleaseAll(id); err != nil {
				t.Fatal(err)
			}
		})
	}
}
