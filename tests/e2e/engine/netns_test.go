package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
)

// TestEngineInNetns runs a second engine inside a network namespace the
// test makes (`ip netns exec NS berth daemon …`, as a multi-node test runs
// one engine per node) beside the shared engine on the host: its pod gets
// a bridge IP reachable inside the namespace only, and its containers'
// cgroups are under its own --cgroup-parent.
func TestEngineInNetns(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip(8) is not installed (apt-get install iproute2)")
	}
	ns := fmt.Sprintf("berth-e2e-ns%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	exec.Command("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up").Run()

	d, err := newDaemonIn(ns, "netns")
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
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))
	cl, err := client.New("unix://" + d.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t0 := time.Now()
	sb, err := cl.ContainerCreate(ctx, "k8s_POD_p_default_u_0", api.CreateRequest{
		Config: api.Config{Image: pauseImage}, HostConfig: &api.HostConfig{IpcMode: "shareable"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ContainerStart(ctx, sb.ID); err != nil {
		t.Fatalf("starting a sandbox in the engine in %s: %v", ns, err)
	}
	app, err := cl.ContainerCreate(ctx, "k8s_app_p_default_u_0", api.CreateRequest{
		Config:     api.Config{Image: "busybox", Cmd: []string{"sh", "-c", "while :; do echo pong | nc -l -p 7070; done"}},
		HostConfig: &api.HostConfig{NetworkMode: "container:" + sb.ID, IpcMode: "container:" + sb.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ContainerStart(ctx, app.ID); err != nil {
		t.Fatal(err)
	}
	t.Logf("pod (sandbox and one container) started in the netns engine in %s", time.Since(t0).Round(time.Millisecond))
	j, err := cl.ContainerInspect(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(j.NetworkSettings.IPAddress)
	_, subnet, _ := net.ParseCIDR(d.subnet)
	if ip == nil || !subnet.Contains(ip) {
		t.Fatalf("sandbox IP %q, want one in %s", j.NetworkSettings.IPAddress, d.subnet)
	}
	// The engine's bridge is in the namespace, not on the host.
	if _, err := net.InterfaceByName(d.bridge); err == nil {
		t.Errorf("bridge %s is on the host; want it only in %s", d.bridge, ns)
	}
	var reply string
	waitFor(t, 5*time.Second, "the pod's port from inside "+ns, func() bool {
		reply, err = dialIn(ns, net.JoinHostPort(ip.String(), "7070"))
		return err == nil && reply == "pong\n"
	})
	// Its containers' cgroups are under its own parent.
	aj, err := cl.ContainerInspect(ctx, app.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", aj.State.Pid))
	if err != nil || !strings.Contains(string(b), "/"+d.cgroupParent+"/"+app.ID) {
		t.Errorf("cgroups of a container of the netns engine: %s %v; want /%s/%s", b, err, d.cgroupParent, app.ID)
	}
	// The host's engine runs side by side.
	if out := must(t, "run", "--rm", "busybox", "echo", "host engine"); out != "host engine\n" {
		t.Errorf("host engine: %q", out)
	}
}

// dialIn connects to addr from inside the network namespace ns and reads
// what the server says.
func dialIn(ns, addr string) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// This thread enters ns and never leaves it: it ends with the
		// goroutine, unlocked never.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		ch <- res{string(buf[:n]), err}
	}()
	r := <-ch
	return r.s, r.err
}
