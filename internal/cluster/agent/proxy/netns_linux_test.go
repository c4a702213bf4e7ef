package proxy

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel tests need root (network namespaces, nftables); run as root to exercise them")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("kernel tests need ip(8) (iproute2)")
	}
}

// sh runs a command and fails the test with its output on error.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace removed at the end of the test
// (with every link, address, socket and nft table in it).
func newNetns(t *testing.T, name string) string {
	t.Helper()
	name = fmt.Sprintf("bp%d-%s", os.Getpid()%100000, name)
	_ = exec.Command("ip", "netns", "del", name).Run()
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// inNetns runs fn on an OS thread switched into the namespace; sockets and
// netlink connections opened by fn belong to it.
func inNetns(t *testing.T, ns string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		// The thread is never switched back: it exits with the goroutine
		// (LockOSThread without Unlock), so no other goroutine inherits
		// the namespace.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
