package engine

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// echo sends msg to addr over TCP and returns what comes back.
func echo(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// hostAddr is a non-loopback IPv4 address of this host.
func hostAddr(t *testing.T) string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !strings.HasPrefix(n.IP.String(), "10.1") && !strings.HasPrefix(n.IP.String(), "172.") {
			return n.IP.String()
		}
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this host")
	return ""
}

func TestNetworking(t *testing.T) {
	d, err := newDaemon("net")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer func() { d.stop() }()
	for _, img := range []string{"busybox-docker.tar", "progs.tar"} {
		mustOn(t, d, "load", "-i", filepath.Join(imagesDir, img))
	}

	// none: loopback only; host: the host's interfaces; bridge: eth0 on
	// the daemon's subnet, the embedded DNS in resolv.conf.
	if got := mustOn(t, d, "run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"); got != "lo\n" {
		t.Errorf("--network none: interfaces %q, want lo only", got)
	}
	if got := mustOn(t, d, "run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"); !strings.Contains(got, d.bridge) {
		t.Errorf("--network host: interfaces %q lack the host's %s", got, d.bridge)
	}
	prefix := strings.TrimSuffix(d.subnet, "0/24")
	out := mustOn(t, d, "run", "--rm", "busybox", "sh", "-c", "ip -4 addr show eth0 | grep inet; grep nameserver /etc/resolv.conf")
	if !strings.Contains(out, "inet "+prefix) || !strings.Contains(out, "nameserver "+prefix+"1") {
		t.Errorf("default bridge: got %q, want an address in %s and the gateway as nameserver", out, d.subnet)
	}

	out = mustOn(t, d, "run", "--rm", "--dns", "192.0.2.53", "--dns-search", "example.test", "--add-host", "db.local:192.0.2.10", "busybox", "sh", "-c", "cat /etc/resolv.conf /etc/hosts")
	for _, want := range []string{"nameserver 192.0.2.53", "search example.test", "192.0.2.10\tdb.local"} {
		if !strings.Contains(out, want) {
			t.Errorf("--dns/--dns-search/--add-host: %q lacks %q", out, want)
		}
	}

	// Two user networks: names resolve and TCP works within one; nothing
	// crosses between them.
	mustOn(t, d, "network", "create", "--subnet", fmt.Sprintf("10.%d.%d.0/24", 180+os.Getpid()%40, 100+daemonSeq), "front")
	mustOn(t, d, "network", "create", "back")
	if r := d.run("network", "create", "--subnet", fmt.Sprintf("10.%d.%d.0/25", 180+os.Getpid()%40, 100+daemonSeq), "overlap"); r.code == 0 || !strings.Contains(r.stderr, "overlap") {
		t.Errorf("overlapping subnet: %s", r)
	}
	srv := strings.TrimSpace(mustOn(t, d, "run", "-d", "--name", "srv", "--network", "front", "--network-alias", "echo-svc", "progs", "echoserver", "7000"))
	defer d.run("rm", "-f", srv)
	waitFor(t, 5*time.Second, "echoserver listening", func() bool { return strings.Contains(d.run("logs", "srv").stdout, "listening") })
	for _, name := range []string{"srv", "echo-svc"} {
		if got := mustOn(t, d, "run", "--rm", "--network", "front", "busybox", "sh", "-c", "echo hello-"+name+" | nc -w 1 "+name+" 7000"); got != "hello-"+name+"\n" {
			t.Errorf("TCP to %s by name on the same network: got %q", name, got)
		}
	}
	srvIP := strings.TrimSpace(mustOn(t, d, "inspect", "-f", "{{.NetworkSettings.Networks.front.IPAddress}}", "srv"))
	if r := d.run("run", "--rm", "--network", "back", "busybox", "sh", "-c", "echo x | nc -w 1 "+srvIP+" 7000"); strings.Contains(r.stdout, "x") {
		t.Errorf("a container on another network reached %s: %s", srvIP, r)
	}
	if r := d.run("run", "--rm", "--network", "back", "busybox", "nslookup", "srv"); r.code == 0 && strings.Contains(r.stdout, srvIP) {
		t.Errorf("a container on another network resolved srv: %s", r)
	}
	if r := d.run("run", "--rm", "--network", "front", "--ip", "192.0.2.7", "busybox", "true"); r.code != 125 || !strings.Contains(r.stderr, "192.0.2.7") {
		t.Errorf("--ip outside the subnet: %s", r)
	}
	if r := d.run("run", "--rm", "--network", "nosuchnet", "busybox", "true"); r.code != 125 || !strings.Contains(r.stderr, "nosuchnet") {
		t.Errorf("unknown network: %s", r)
	}

	// Published ports: on 127.0.0.1 and the host address; a 127.0.0.1
	// binding stays private; a taken port is a clear error.
	host := hostAddr(t)
	pub := strings.TrimSpace(mustOn(t, d, "run", "-d", "--name", "pub", "-p", "17080:7000", "-p", "127.0.0.1::7000", "progs", "echoserver", "7000"))
	defer d.run("rm", "-f", pub)
	waitFor(t, 5*time.Second, "echoserver listening", func() bool { return strings.Contains(d.run("logs", "pub").stdout, "listening") })
	for _, addr := range []string{"127.0.0.1:17080", host + ":17080"} {
		if got, err := echo(addr, "via-"+addr); err != nil || got != "via-"+addr {
			t.Errorf("published port at %s: got %q, %v", addr, got, err)
		}
	}
	private := strings.TrimSpace(mustOn(t, d, "inspect", "-f", `{{range (index .NetworkSettings.Ports "7000/tcp")}}{{if eq .HostIp "127.0.0.1"}}{{.HostPort}}{{end}}{{end}}`, "pub"))
	if got, err := echo("127.0.0.1:"+private, "lo"); err != nil || got != "lo" {
		t.Errorf("127.0.0.1-bound random port %s: %q, %v", private, got, err)
	}
	if _, err := echo(host+":"+private, "leak"); err == nil {
		t.Errorf("a port bound to 127.0.0.1 answered on %s", host)
	}
	if ps := mustOn(t, d, "ps", "--filter", "name=pub", "--format", "{{.Ports}}"); !strings.Contains(ps, "17080->7000/tcp") {
		t.Errorf("ps Ports: %q", ps)
	}
	// Hairpin: a container reaches a published port through the host address.
	if got := mustOn(t, d, "run", "--rm", "busybox", "sh", "-c", "echo hairpin | nc -w 1 "+host+" 17080"); got != "hairpin\n" {
		t.Errorf("hairpin to %s:17080 from a container: %q", host, got)
	}
	if r := d.run("run", "--rm", "-p", "17080:7000", "busybox", "true"); r.code == 0 || !strings.Contains(r.stderr, "17080") {
		t.Errorf("taken host port: %s", r)
	}
	if r := d.run("run", "--rm", "-p", "70000:1", "busybox", "true"); r.code != 125 || !strings.Contains(r.stderr, "70000") {
		t.Errorf("invalid -p: %s", r)
	}

	// Daemon SIGKILL with networked containers: after a restart they still
	// talk to each other and the published port still answers.
	d.kill()
	if got, err := echo("127.0.0.1:17080", "while-down"); err != nil || got != "while-down" {
		t.Errorf("published port while the daemon is down: %q, %v", got, err)
	}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	if got, err := echo(host+":17080", "after-restart"); err != nil || got != "after-restart" {
		t.Errorf("published port after a daemon restart: %q, %v", got, err)
	}
	if got := mustOn(t, d, "run", "--rm", "--network", "front", "busybox", "sh", "-c", "echo again | nc -w 1 srv 7000"); got != "again\n" {
		t.Errorf("name resolution and TCP after a daemon restart: %q", got)
	}
	if r := d.run("network", "rm", "front"); r.code == 0 || !strings.Contains(r.stderr, srv[:12]) {
		t.Errorf("network rm of a network in use: %s", r)
	}
	mustOn(t, d, "rm", "-f", "srv", "pub")
	mustOn(t, d, "network", "rm", "front", "back")
	assertNoLeaks(t, d)
	assertNoNetLeaks(t, d)
}

// assertNoNetLeaks checks that no veth is attached to the daemon's bridges
// and no namespace file is left.
func assertNoNetLeaks(t *testing.T, d *daemonProc) {
	t.Helper()
	// The daemon tears an exited container's network down in the
	// background; give it a moment.
	var left []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = nil
		ents, _ := os.ReadDir(filepath.Join(d.root, "network", "netns"))
		for _, e := range ents {
			left = append(left, "network namespace "+e.Name())
		}
		out, _ := exec.Command("ip", "-o", "link", "show", "master", d.bridge).CombinedOutput()
		if s := strings.TrimSpace(string(out)); s != "" {
			left = append(left, "links on "+d.bridge+": "+s)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range left {
		t.Errorf("left behind: %s", l)
	}
}

// TestNetworkLeaks: create/remove cycles on a bridge leave no address,
// veth, rule or namespace behind.
func TestNetworkLeaks(t *testing.T) {
	d, err := newDaemon("netleak")
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	defer func() { d.stop() }()
	mustOn(t, d, "load", "-i", filepath.Join(imagesDir, "busybox-docker.tar"))
	n := 1000
	if testing.Short() {
		n = 50
	}
	rulesBefore := nftRules(t, d)
	for i := 0; i < n; i++ {
		switch i % 3 {
		case 0:
			mustOn(t, d, "run", "--rm", "busybox", "true")
		case 1:
			mustOn(t, d, "run", "--rm", "-p", "7000", "busybox", "true")
		case 2:
			id := strings.TrimSpace(mustOn(t, d, "run", "-d", "-p", "127.0.0.1::7000", "busybox", "sleep", "10"))
			mustOn(t, d, "rm", "-f", id)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if after := nftRules(t, d); after != rulesBefore {
		t.Errorf("packet rules after %d cycles: %d, before: %d", n, after, rulesBefore)
	}
	assertNoLeaks(t, d)
	assertNoNetLeaks(t, d)
	// No endpoint is left on the network. (Addresses are handed out
	// serially, as Docker does; 1,000 cycles on a /24 wrap the pool several
	// times, so a leaked address would have exhausted it.)
	if got := strings.TrimSpace(mustOn(t, d, "network", "inspect", "-f", "{{len .Containers}}", "bridge")); got != "0" {
		t.Errorf("endpoints left on the default network: %s", got)
	}
}

// nftRules counts the rules in the daemon's nftables table (named after a
// hash of its network state directory).
func nftRules(t *testing.T, d *daemonProc) int {
	t.Helper()
	sum := sha256hex([]byte(filepath.Join(d.root, "network")))
	out, err := exec.Command("nft", "list", "table", "ip", "berth_"+sum[:8]).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return strings.Count(string(out), "\n")
}
