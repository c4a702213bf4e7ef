package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/cgroups"
	"github.com/berth/berth/internal/errdefs"
)

func TestMissingBinary(t *testing.T) {
	r := Runtime{Name: "nosuchruntime", Root: t.TempDir()}
	_, err := r.State(context.Background(), "x")
	if err == nil {
		t.Fatal("State with a missing container succeeded")
	}
	os.MkdirAll(filepath.Join(r.Root, "x"), 0o755)
	err = r.Kill(context.Background(), "x", syscall.SIGTERM, false)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "nosuchruntime") || !strings.Contains(err.Error(), "install") {
		t.Fatalf("got %v, want ErrUnavailable naming the runtime and saying to install it", err)
	}
}

func TestBadID(t *testing.T) {
	r := Runtime{Name: "crun", Root: t.TempDir()}
	for _, id := range []string{"", "../x", "a/b", ".."} {
		if err := r.Delete(context.Background(), id, true); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Delete(%q): got %v, want ErrInvalidArgument", id, err)
		}
	}
}

// TestDriverRealRuntimes runs a detached container with each runtime
// directly (stdio on /dev/null) and drives it through the Runtime methods.
func TestDriverRealRuntimes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs real containers with crun/runc")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (busybox-static) not installed")
	}
	if err := cgroups.PrepareHost(); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755)
	data, _ := os.ReadFile(bb)
	os.WriteFile(filepath.Join(rootfs, "bin/busybox"), data, 0o755)
	os.Symlink("busybox", filepath.Join(rootfs, "bin/sleep"))
	os.Symlink("busybox", filepath.Join(rootfs, "bin/sh"))
	for _, name := range []string{"crun", "runc"} {
		path, err := exec.LookPath(name)
		if err != nil {
			t.Logf("%s not installed", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := Runtime{Name: name, Path: path, Root: filepath.Join(t.TempDir(), "state")}
			id := fmt.Sprintf("drv-%d-%s", os.Getpid(), name)
			cg := fmt.Sprintf("/berth-test-drv-%d/%s", os.Getpid(), id)
			defer func() {
				for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "freezer", "devices", "blkio", "cpuset", "hugetlb", "systemd", "unified"} {
					os.Remove(filepath.Join(cgroups.Root, c, filepath.Dir(cg)))
				}
			}()
			spec, err := Generate(SpecOpts{ID: id, Rootfs: rootfs, ReadonlyRootfs: true, Args: []string{"sh", "-c", "sleep 100 & sleep 100"},
				NoNewPrivileges: true, CgroupsPath: cg, Memory: 64 << 20, PidsLimit: 20})
			if err != nil {
				t.Fatal(err)
			}
			bundle := t.TempDir()
			b, _ := json.Marshal(spec)
			os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
			bin, _ := r.Binary()
			// stdio on /dev/null: the container must not hold our pipes.
			errf, _ := os.CreateTemp(t.TempDir(), "stderr")
			cmd := exec.Command(bin, "--root", r.Root, "run", "--detach", "--bundle", bundle, id)
			cmd.Stderr = errf
			if err := cmd.Run(); err != nil {
				out, _ := os.ReadFile(errf.Name())
				t.Fatalf("%s run: %v: %s", name, err, out)
			}
			defer r.Delete(ctx, id, true)
			st, err := r.State(ctx, id)
			if err != nil || st.Status != "running" || st.Pid <= 0 || st.ID != id {
				t.Fatalf("State = %+v, %v; want running with a pid", st, err)
			}
			var pids []int
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if pids, err = r.Ps(ctx, id); err == nil && len(pids) >= 2 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			// busybox sh execs its last command: two sleeps remain.
			if len(pids) != 2 {
				t.Errorf("Ps = %v, %v; want 2 pids (two sleeps)", pids, err)
			}
			s, err := cgroups.Stats(cg)
			if err != nil || s.Memory.Limit != 64<<20 || s.Pids.Limit != 20 || s.Pids.Current != 2 {
				t.Errorf("Stats = %+v, %v; want memory limit 64M, pids 2/20", s, err)
			}
			if err := r.Pause(ctx, id); err != nil {
				t.Fatalf("Pause: %v", err)
			}
			if st, _ := r.State(ctx, id); st.Status != "paused" {
				t.Errorf("after Pause status %q, want paused", st.Status)
			}
			if err := r.Resume(ctx, id); err != nil {
				t.Fatalf("Resume: %v", err)
			}
			if st, _ := r.State(ctx, id); st.Status != "running" {
				t.Errorf("after Resume status %q, want running", st.Status)
			}
			if err := r.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
				t.Fatalf("Kill --all: %v", err)
			}
			deadline = time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if st, _ := r.State(ctx, id); st.Status == "stopped" {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			// A runtime error carries the runtime's stderr.
			if err := r.Pause(ctx, id); err == nil || !IsRuntimeError(err) {
				t.Errorf("Pause of a stopped container: %v, want a runtime error", err)
			}
			if err := r.Delete(ctx, id, false); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := r.State(ctx, id); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("State after Delete: %v, want ErrNotFound", err)
			}
			if _, err := os.Stat(filepath.Join(cgroups.Root, "memory", cg)); !os.IsNotExist(err) {
				t.Errorf("cgroup %s left after Delete", cg)
			}
		})
	}
}
