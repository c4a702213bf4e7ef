package lab

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	MaybeRunInit()
	os.Exit(m.Run())
}

// TestLab checks the harness itself with engines only (no agents): nodes
// boot with images, a kill leaves no process of the node, a killed node
// boots again, a partition cuts the node from the server and a heal
// restores it, and Down leaves nothing behind.
func TestLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root")
	}
	bin := os.Getenv("BERTH_BIN_DIR")
	if bin == "" {
		bin = "../../../../bin"
	}
	bin, _ = filepath.Abs(bin)
	img := os.Getenv("BERTH_TESTIMAGES")
	if img == "" {
		img = filepath.Join(bin, "testimages")
	}
	cfg := Config{Prefix: "bltest", Subnet: "10.79.0", PodNet: "10.90", BinDir: bin, NoAgent: true,
		Images: []string{filepath.Join(img, "busybox-docker.tar")}, Tags: map[string]string{"lab/app:v1": "busybox:latest"},
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if err := cfg.Defaults().validate(); err != nil {
		t.Skip(err)
	}
	// A leftover of a crashed run: a stray netns and link with the prefix.
	_ = ip("netns", "add", "bltest-stale")
	_ = ip("link", "add", "bltestv9", "type", "dummy")
	start := time.Now()
	l, err := Up(cfg, NodeSpec{Name: "n1"}, NodeSpec{Name: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Down(false); err != nil {
			t.Error(err)
		}
	}()
	t.Logf("lab of 2 nodes (engines only) up in %v", time.Since(start).Round(time.Millisecond))
	if names := l.NodeNames(); strings.Join(names, ",") != "n1,n2" {
		t.Errorf("nodes %v, want n1,n2", names)
	}
	n1, _ := l.Node("n1")
	if n1.IP != "10.79.0.11" || n1.PodSubnet != "10.90.1.0/24" {
		t.Errorf("n1 addresses %s %s", n1.IP, n1.PodSubnet)
	}
	if _, err := l.Berth("n1", "run", "-d", "--name", "c1", "lab/app:v1", "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	// The node reaches the server's port; a partition cuts it, a heal
	// restores it.
	reach := func() bool {
		_, err := l.Exec("n1", "timeout", "2", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", l.BridgeIP(), l.Server.Port))
		return err == nil
	}
	if !reach() {
		t.Fatal("node n1 cannot reach the server")
	}
	if err := l.Partition("n1"); err != nil {
		t.Fatal(err)
	}
	if reach() {
		t.Error("partitioned node n1 still reaches the server")
	}
	if err := l.Heal("n1"); err != nil {
		t.Fatal(err)
	}
	if !reach() {
		t.Error("healed node n1 cannot reach the server")
	}

	// A kill leaves no process in the node; the other node is untouched.
	n2, _ := l.Node("n2")
	if err := l.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	if pids, _ := l.Processes("n1"); len(pids) != 0 {
		t.Errorf("processes left in killed n1: %v", pids)
	}
	if !alive(n2.EnginePID) {
		t.Error("killing n1 killed n2's engine")
	}
	if _, err := l.Berth("n1", "version"); err == nil {
		t.Error("killed n1's engine still answers")
	}
	if err := l.Boot("n1"); err != nil {
		t.Fatal(err)
	}
	out, err := l.Berth("n1", "ps", "-a", "--format", "{{.Names}} {{.State}}")
	if err != nil || !strings.Contains(out, "c1 exited") {
		t.Errorf("after the reboot: ps %q %v, want c1 exited", out, err)
	}
	// An engine restart and a signal to the agent slot behave.
	if err := l.StopEngine("n2", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := l.StartEngine("n2"); err != nil {
		t.Fatal(err)
	}
	// Another process picks the lab up from its state file.
	l2, err := Open(l.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := l2.Node("n2"); n.EnginePID == 0 || strconv.Itoa(n.Index) != "2" {
		t.Errorf("reopened lab: n2 %+v", n)
	}
}
