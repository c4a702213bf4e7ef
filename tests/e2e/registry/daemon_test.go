package registry

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// daemonArgs are the flags of a private daemon: its own root, exec root,
// socket, cgroup parent, bridge and subnet, cleaned up when it stops.
func daemonArgs(t *testing.T, extra ...string) []string {
	t.Helper()
	root, err := os.MkdirTemp("/var/tmp", "berth-e2e-reg-")
	if err != nil {
		t.Fatal(err)
	}
	execRoot, err := os.MkdirTemp("/run", "berth-e2e-reg-")
	if err != nil {
		t.Fatal(err)
	}
	cg := "berth-e2e-" + filepath.Base(execRoot)
	t.Cleanup(func() {
		os.RemoveAll(root)
		os.RemoveAll(execRoot)
		hs, _ := filepath.Glob("/sys/fs/cgroup/*")
		for _, h := range append(hs, "/sys/fs/cgroup") {
			os.Remove(filepath.Join(h, cg))
		}
	})
	pid := os.Getpid()
	return append([]string{"daemon", "--root", root, "--exec-root", execRoot, "--socket", filepath.Join(execRoot, "berth.sock"),
		"--cgroup-parent", cg, "--config", "/nonexistent", "--cleanup",
		"--bridge", fmt.Sprintf("btreg%d", pid%100000), "--bridge-subnet", fmt.Sprintf("10.231.%d.0/24", pid%250)}, extra...)
}

// TestDaemonServesRegistry runs `berth daemon --registry-addr` and pushes
// and pulls an image through the registry it serves.
func TestDaemonServesRegistry(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon creates namespaces, bridges and cgroups")
	}
	args := daemonArgs(t, "--registry-addr", "127.0.0.1:0")
	addr, _ := startBerth(t, args...)
	ref, err := name.ParseReference(addr+"/daemon/img:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(50_000, 2)
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push to the daemon's registry: %v", err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull from the daemon's registry: %v", err)
	}
	if a, b := mustDigest(t, img), mustDigest(t, got); a != b {
		t.Errorf("pulled %s, pushed %s", b, a)
	}
	root := args[2]
	if blobs, _ := filepath.Glob(filepath.Join(root, "registry", "blobs", "sha256", "*", "*")); len(blobs) != 4 {
		t.Errorf("%d blobs under <root>/registry, want 4 (2 layers, config, manifest)", len(blobs))
	}
}

func mustDigest(t *testing.T, img ggcr.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// TestDaemonRegistryAddrInUse: a daemon whose registry cannot listen
// stops with an error naming the address.
func TestDaemonRegistryAddrInUse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon creates namespaces, bridges and cgroups")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out, err := exec.Command(filepath.Join(binDir, "berth"), daemonArgs(t, "--registry-addr", l.Addr().String())...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "listen on "+l.Addr().String()) {
		t.Errorf("daemon with a busy --registry-addr: %v\n%s", err, out)
	}
}
