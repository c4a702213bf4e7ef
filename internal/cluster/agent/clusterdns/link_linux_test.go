package clusterdns

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The kernel test runs this test binary as two helpers inside network
// namespaces it creates: a "node" (the agent's namespace) serving the
// cluster DNS on 169.254.20.10 on its dummy link, and a "pod" namespace
// joined to the node by a veth pair with a default route through it, as
// a pod on the engine's bridge. The pod queries the address through its
// default route.
const helperEnv = "BERTH_CLUSTERDNS_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "node":
		os.Exit(nodeHelper())
	case "pod":
		os.Exit(podHelper())
	}
	os.Exit(m.Run())
}

// nodeHelper sets the link up twice (as a restarted agent does), serves
// until SIGTERM and removes the link on the way out.
func nodeHelper() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if _, err := EnsureLink(DefaultLink, netip.MustParseAddr(DefaultAddress)); err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	cs := fake.NewClientset(svc("default", "kubernetes", "10.43.0.1", port("https", corev1.ProtocolTCP, 443)))
	err := Run(ctx, cs, Options{Address: DefaultAddress, Link: DefaultLink, RemoveLink: true,
		Upstreams: func() []string { return nil }, Logger: slog.New(slog.DiscardHandler),
		Ready: func(addr string) { fmt.Println("READY", addr) }})
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	return 0
}

func podHelper() int {
	for _, proto := range []string{"udp", "tcp"} {
		m, err := exchangeQuery(proto, DefaultAddress+":53", "kubernetes.default.svc.cluster.local.", dnsmessage.TypeA, false)
		if err != nil {
			fmt.Println("ERR", proto, err)
			return 1
		}
		if len(m.Answers) != 1 {
			fmt.Println("ERR", proto, "answers", m.Answers)
			return 1
		}
		a := m.Answers[0].Body.(*dnsmessage.AResource).A
		fmt.Printf("ANSWER %s %d.%d.%d.%d\n", proto, a[0], a[1], a[2], a[3])
	}
	return 0
}

func TestLinkInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	id := os.Getpid() % 100000
	node, pod := fmt.Sprintf("cdns-node-%d", id), fmt.Sprintf("cdns-pod-%d", id)
	vn, vp := fmt.Sprintf("cdnsn%d", id), fmt.Sprintf("cdnsp%d", id)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", node)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", node).Run() })
	ip("netns", "add", pod)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", pod).Run() })
	ip("link", "add", vn, "netns", node, "type", "veth", "peer", "name", vp, "netns", pod)
	for _, c := range [][]string{
		{"-n", node, "link", "set", "lo", "up"},
		{"-n", node, "addr", "add", "10.99.0.1/24", "dev", vn},
		{"-n", node, "link", "set", vn, "up"},
		{"-n", pod, "link", "set", "lo", "up"},
		{"-n", pod, "addr", "add", "10.99.0.2/24", "dev", vp},
		{"-n", pod, "link", "set", vp, "up"},
		{"-n", pod, "route", "add", "default", "via", "10.99.0.1"},
	} {
		ip(c...)
	}

	self, _ := os.Executable()
	srv := exec.Command("ip", "netns", "exec", node, self, "-test.run=^$")
	srv.Env = append(os.Environ(), helperEnv+"=node")
	stdout, _ := srv.StdoutPipe()
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = srv.Process.Kill()
			_ = srv.Wait()
		}
	}()
	lines := bufio.NewScanner(stdout)
	ready := make(chan string, 1)
	go func() {
		for lines.Scan() {
			ready <- lines.Text()
		}
		close(ready)
	}()
	select {
	case l := <-ready:
		if !strings.HasPrefix(l, "READY 169.254.20.10:53") {
			t.Fatalf("node helper: %q, want READY 169.254.20.10:53", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node helper not ready in 20s")
	}
	out, err := exec.Command("ip", "-n", node, "-o", "addr", "show").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "169.254.20.10/32") {
		t.Fatalf("addresses in the node namespace: %v %s, want 169.254.20.10/32", err, out)
	}
	// The dummy link where the kernel has the driver, else the loopback.
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "169.254.20.10/32") {
			t.Logf("address on: %s", strings.Fields(l)[1])
		}
	}

	q := exec.Command("ip", "netns", "exec", pod, self, "-test.run=^$")
	q.Env = append(os.Environ(), helperEnv+"=pod")
	qout, err := q.CombinedOutput()
	if err != nil || !strings.Contains(string(qout), "ANSWER udp 10.43.0.1") || !strings.Contains(string(qout), "ANSWER tcp 10.43.0.1") {
		t.Fatalf("query from the pod namespace: %v\n%s\nwant kubernetes → 10.43.0.1 over UDP and TCP", err, qout)
	}

	// A clean stop with RemoveLink takes the link away.
	_ = srv.Process.Signal(syscall.SIGTERM)
	stopped = true
	for range ready {
	}
	if err := srv.Wait(); err != nil {
		t.Fatalf("node helper: %v", err)
	}
	if out, err := exec.Command("ip", "-n", node, "link", "show", DefaultLink).CombinedOutput(); err == nil {
		t.Errorf("link %s still there after the stop:\n%s", DefaultLink, out)
	}
	if out, _ := exec.Command("ip", "-n", node, "-o", "addr", "show").CombinedOutput(); strings.Contains(string(out), "169.254.20.10") {
		t.Errorf("address still there after the stop:\n%s", out)
	}
}
