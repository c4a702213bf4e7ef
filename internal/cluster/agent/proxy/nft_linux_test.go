package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/network/nft"
)

// lab is a node network namespace with an engine-like bridge (10.99.0.1/24,
// the engine's own nft table on it), three pod namespaces on the bridge
// ("b1", "b2" backends, "c" a client), and a link to "remote", another
// node whose own address is the third backend and which has no route back
// to the pod subnet (only masquerading gets its answers home).
type lab struct {
	node, c string
	ns      map[string]string // backend name -> namespace
	ips     map[string]string
}

func newLab(t *testing.T) *lab {
	needRoot(t)
	l := &lab{node: newNetns(t, "node"), ns: map[string]string{}, ips: map[string]string{"b1": "10.99.0.11", "b2": "10.99.0.12", "c": "10.99.0.20", "remote": "10.98.0.2"}}
	sh(t, "ip", "-n", l.node, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", l.node, "addr", "add", "10.99.0.1/24", "dev", "br0")
	sh(t, "ip", "-n", l.node, "link", "set", "br0", "up")
	for i, name := range []string{"b1", "b2", "c"} {
		ns := newNetns(t, name)
		l.ns[name] = ns
		veth := fmt.Sprintf("v%d", i)
		sh(t, "ip", "-n", l.node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		sh(t, "ip", "-n", l.node, "link", "set", veth, "master", "br0", "up")
		// As the engine does for every container: with br_netfilter a
		// frame DNATed back to the pod it came from must leave by the
		// port it came in on.
		sh(t, "ip", "-n", l.node, "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
		sh(t, "ip", "-n", ns, "addr", "add", l.ips[name]+"/24", "dev", "eth0")
		sh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		sh(t, "ip", "-n", ns, "route", "add", "default", "via", "10.99.0.1")
	}
	l.c = l.ns["c"]
	remote := newNetns(t, "remote")
	l.ns["remote"] = remote
	sh(t, "ip", "-n", l.node, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", remote)
	sh(t, "ip", "-n", l.node, "addr", "add", "10.98.0.1/24", "dev", "up0")
	sh(t, "ip", "-n", l.node, "link", "set", "up0", "up")
	sh(t, "ip", "-n", remote, "addr", "add", "10.98.0.2/24", "dev", "eth0")
	sh(t, "ip", "-n", remote, "link", "set", "eth0", "up")
	// The node's default route (a real node has one; the node's own
	// connections to a ClusterIP need some route before DNAT).
	sh(t, "ip", "-n", l.node, "route", "add", "default", "via", "10.98.0.2")
	// The engine's rules for its bridge, notrack of bridge-local traffic
	// included: the service rules must work beside them.
	if err := inNetns(t, l.node, func() error {
		return nft.Apply("berth-engine", nft.Ruleset{Bridges: []nft.Bridge{{Name: "br0", Subnet: netip.MustParsePrefix("10.99.0.0/24"), Gateway: netip.MustParseAddr("10.99.0.1")}}})
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"b1", "b2", "remote"} {
		serve(t, l.ns[name], name)
	}
	return l
}

// serve answers every TCP connection and UDP datagram on :8080 in ns with
// name.
func serve(t *testing.T, ns, name string) {
	var ln net.Listener
	var pc net.PacketConn
	if err := inNetns(t, ns, func() (err error) {
		if ln, err = net.Listen("tcp4", ":8080"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(name))
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	}()
}

func (l *lab) apply(t *testing.T, rs Ruleset) {
	t.Helper()
	if err := inNetns(t, l.node, func() error {
		if err := EnableForwarding(); err != nil {
			return err
		}
		return Apply(DefaultTable, rs)
	}); err != nil {
		t.Fatal(err)
	}
}

// hit connects n times from ns to addr over proto and counts the names
// that answered; failures are counted under their error.
func hit(t *testing.T, ns, proto, addr string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	if err := inNetns(t, ns, func() error {
		for i := 0; i < n; i++ {
			seen[ask(proto, addr)]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seen
}

func ask(proto, addr string) string {
	c, err := net.DialTimeout(proto, addr, 2*time.Second)
	if err != nil {
		return errName(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if proto == "udp4" {
		if _, err := c.Write([]byte("?")); err != nil {
			return errName(err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return errName(err)
		}
		return string(buf[:n])
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return errName(err)
	}
	return string(b)
}

func errName(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error: " + err.Error()
}

func ep(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func svc(name, ip, proto string, port uint16, eps ...string) Service {
	s := Service{Name: name, ClusterIP: netip.MustParseAddr(ip), Proto: proto, Port: port}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, ep(e))
	}
	return s
}

func wantSeen(t *testing.T, what string, got map[string]int, want ...string) {
	t.Helper()
	for _, w := range want {
		if got[w] == 0 {
			t.Errorf("%s: %s never answered; got %v", what, w, got)
		}
	}
	for k := range got {
		found := false
		for _, w := range want {
			found = found || k == w
		}
		if !found {
			t.Errorf("%s: unexpected answer %q (%d times); want only %v", what, k, got[k], want)
		}
	}
}

// TestKernelServices drives real packets through the applied table: load
// balancing over every endpoint (TCP and UDP, local and on another node),
// endpoint changes, fast refusal without endpoints, hairpin, the node's
// own connections and NodePorts.
func TestKernelServices(t *testing.T) {
	l := newLab(t)
	const n = 60
	web := svc("default/web:http", "10.43.0.10", "tcp", 80, "10.99.0.11:8080", "10.99.0.12:8080", "10.98.0.2:8080")
	web.NodePort = 30080
	dns := svc("default/dns:dns", "10.43.0.10", "udp", 53, "10.99.0.11:8080", "10.99.0.12:8080", "10.98.0.2:8080")
	self := svc("default/self:80", "10.43.0.11", "tcp", 80, "10.99.0.11:8080")
	empty := svc("default/empty:80", "10.43.0.12", "tcp", 80)
	emptyUDP := svc("default/empty:53", "10.43.0.12", "udp", 53)
	sticky := svc("default/sticky:80", "10.43.0.13", "tcp", 80, "10.99.0.11:8080", "10.99.0.12:8080", "10.98.0.2:8080")
	sticky.ClientIP = true
	l.apply(t, Ruleset{Services: []Service{web, dns, self, empty, emptyUDP, sticky}})

	// A Service with many endpoints (600 entries over the three
	// backends): the choice stays uniform enough to reach all three.
	big := svc("default/big:80", "10.43.0.14", "tcp", 80)
	for i := 0; i < 600; i++ {
		big.Endpoints = append(big.Endpoints, ep([]string{"10.99.0.11:8080", "10.99.0.12:8080", "10.98.0.2:8080"}[i%3]))
	}
	l.apply(t, Ruleset{Services: []Service{big}})
	wantSeen(t, "pod -> Service with 600 endpoints", hit(t, l.c, "tcp4", "10.43.0.14:80", n), "b1", "b2", "remote")
	l.apply(t, Ruleset{Services: []Service{web, dns, self, empty, emptyUDP, sticky}})

	// Uniform: 300 connections over 3 endpoints, 100 ± 40 each (more
	// than 4 standard deviations).
	spread := hit(t, l.c, "tcp4", "10.43.0.10:80", 300)
	wantSeen(t, "pod -> ClusterIP tcp", spread, "b1", "b2", "remote")
	for _, b := range []string{"b1", "b2", "remote"} {
		if spread[b] < 60 || spread[b] > 140 {
			t.Errorf("300 connections spread %v, want about 100 each", spread)
			break
		}
	}
	t.Logf("300 connections: %v", spread)
	wantSeen(t, "pod -> ClusterIP udp", hit(t, l.c, "udp4", "10.43.0.10:53", n), "b1", "b2", "remote")
	wantSeen(t, "node -> ClusterIP tcp", hit(t, l.node, "tcp4", "10.43.0.10:80", n), "b1", "b2", "remote")
	// Hairpin: a backend reaching a Service backed by itself, and by
	// itself and its neighbour on the same bridge.
	wantSeen(t, "b1 -> own service", hit(t, l.ns["b1"], "tcp4", "10.43.0.11:80", 10), "b1")
	wantSeen(t, "b1 -> shared service", hit(t, l.ns["b1"], "tcp4", "10.43.0.10:80", n), "b1", "b2", "remote")
	// NodePort on the node's addresses, from a pod and from the other node.
	wantSeen(t, "pod -> NodePort", hit(t, l.c, "tcp4", "10.99.0.1:30080", n), "b1", "b2", "remote")
	wantSeen(t, "remote node -> NodePort", hit(t, l.ns["remote"], "tcp4", "10.98.0.1:30080", n), "b1", "b2", "remote")

	// sessionAffinity ClientIP: one client, one endpoint; still one after
	// the table is applied again.
	for _, ns := range []string{l.c, l.ns["b1"], l.node} {
		got := hit(t, ns, "tcp4", "10.43.0.13:80", 20)
		l.apply(t, Ruleset{Services: []Service{web, dns, self, empty, emptyUDP, sticky}})
		for k, v := range hit(t, ns, "tcp4", "10.43.0.13:80", 10) {
			got[k] += v
		}
		if len(got) != 1 || got["refused"] > 0 || got["timeout"] > 0 {
			t.Errorf("ClientIP affinity from %s: answers %v, want one backend every time", ns, got)
		}
	}

	// No endpoints: refused at once, not a timeout.
	start := time.Now()
	wantSeen(t, "pod -> service without endpoints tcp", hit(t, l.c, "tcp4", "10.43.0.12:80", 5), "refused")
	wantSeen(t, "pod -> service without endpoints udp", hit(t, l.c, "udp4", "10.43.0.12:53", 5), "refused")
	wantSeen(t, "node -> service without endpoints", hit(t, l.node, "tcp4", "10.43.0.12:80", 5), "refused")
	wantSeen(t, "pod -> ClusterIP on a port no Service has", hit(t, l.c, "tcp4", "10.43.0.10:81", 5), "refused")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("15 refusals took %v, want fast failures", d)
	}

	// Endpoints change: the next connections follow.
	web.Endpoints = []netip.AddrPort{ep("10.99.0.12:8080")}
	empty.Endpoints = []netip.AddrPort{ep("10.99.0.11:8080")}
	l.apply(t, Ruleset{Services: []Service{web, dns, self, empty, emptyUDP, sticky}})
	wantSeen(t, "after change, web", hit(t, l.c, "tcp4", "10.43.0.10:80", 20), "b2")
	wantSeen(t, "after change, formerly empty", hit(t, l.c, "tcp4", "10.43.0.12:80", 5), "b1")
	web.Endpoints = nil
	l.apply(t, Ruleset{Services: []Service{web, dns, self, empty, emptyUDP, sticky}})
	wantSeen(t, "after all endpoints left", hit(t, l.c, "tcp4", "10.43.0.10:80", 5), "refused")

	// Applying again replaces the table: one copy, same content.
	before := sh(t, "ip", "netns", "exec", l.node, "nft", "list", "table", "ip", DefaultTable)
	for _, want := range []string{
		"ip daddr . meta l4proto . th dport vmap @service-ips",
		"10.43.0.10 . udp . 53 : goto svc-default/dns:dns/udp",
		"numgen random mod 3 0 dnat to 10.99.0.11:8080\n\t\tnumgen random mod 2 0 dnat to 10.99.0.12:8080\n\t\tdnat to 10.98.0.2:8080",
		"tcp . 30080 : goto reject", // web has no endpoint left
		"meta mark & 0x00004000 != 0x00000000 masquerade",
		"jhash ip saddr mod 3 seed 0x62657274 0 dnat to 10.99.0.11:8080\n\t\tjhash ip saddr mod 3 seed 0x62657274 1 dnat to 10.99.0.12:8080\n\t\tdnat to 10.98.0.2:8080",
		"10.43.0.10 . tcp . 80 : goto reject",
	} {
		if !strings.Contains(before, want) {
			t.Errorf("nft list table lacks %q; got:\n%s", want, before)
		}
	}
	l.apply(t, Ruleset{Services: []Service{web, dns, self, empty, emptyUDP, sticky}})
	if after := sh(t, "ip", "netns", "exec", l.node, "nft", "list", "table", "ip", DefaultTable); after != before {
		t.Errorf("re-applying the same ruleset changed the table:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Removal leaves the engine's table alone.
	if err := inNetns(t, l.node, func() error { return Delete(DefaultTable) }); err != nil {
		t.Fatal(err)
	}
	tables := sh(t, "ip", "netns", "exec", l.node, "nft", "list", "tables")
	if strings.Contains(tables, DefaultTable) || !strings.Contains(tables, "berth-engine") {
		t.Errorf("after Delete, tables are:\n%s\nwant berth-engine only", tables)
	}
	if out, _ := exec.Command("ip", "netns", "exec", l.node, "cat", "/proc/sys/net/ipv4/ip_forward").Output(); strings.TrimSpace(string(out)) != "1" {
		t.Errorf("ip_forward in the node namespace is %q, want 1", out)
	}
}

// TestApplyScale measures a full apply of 1,000 Services × 3 endpoints
// (and a replacing one) in a fresh namespace; BERTH_PROXY_SCALE=N changes
// the number of Services.
func TestApplyScale(t *testing.T) {
	needRoot(t)
	ns := newNetns(t, "scale")
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("BERTH_PROXY_SCALE")); err == nil && v > 0 && v <= 60000 {
		n = v
	}
	var rs Ruleset
	for i := 0; i < n; i++ {
		s := svc(fmt.Sprintf("ns%d/svc%d:http", i%10, i), fmt.Sprintf("10.43.%d.%d", i/250, 1+i%250), "tcp", 80)
		for j := 0; j < 3; j++ {
			k := 3*i + j
			s.Endpoints = append(s.Endpoints, ep(fmt.Sprintf("10.%d.%d.%d:8080", 88+k/62500, k/250%250, 1+k%250)))
		}
		rs.Services = append(rs.Services, s)
	}
	for _, round := range []string{"create", "replace"} {
		start := time.Now()
		if err := inNetns(t, ns, func() error { return Apply(DefaultTable, rs) }); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		t.Logf("%s: %d services x 3 endpoints applied in %v", round, n, d)
		if d > time.Duration(n/100)*time.Second {
			t.Errorf("%s took %v, want well under 10s", round, d)
		}
	}
	// Every element arrived (a netlink attribute holds at most 64 KiB;
	// past it elements were lost or the apply failed).
	out := sh(t, "ip", "netns", "exec", ns, "nft", "list", "table", "ip", DefaultTable)
	if got := strings.Count(out, "chain svc-"); got != n {
		t.Errorf("%d service chains, want %d", got, n)
	}
	if got := strings.Count(out, ": goto svc-"); got != n {
		t.Errorf("%d elements in @service-ips, want %d", got, n)
	}
	if got := strings.Count(out, ":8080"); got != 3*n {
		t.Errorf("%d endpoints (dnat to …:8080), want %d", got, 3*n)
	}
}

// TestKernelStaleUDP: a client that keeps its UDP socket (a resolver)
// keeps its conntrack entry, and with it its endpoint while that lives;
// FlushConntrack of StaleUDP's entries moves it to the new endpoint.
func TestKernelStaleUDP(t *testing.T) {
	l := newLab(t)
	var c net.Conn
	if err := inNetns(t, l.c, func() (err error) {
		c, err = net.Dial("udp4", "10.43.0.20:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	askOn := func() string {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("?")); err != nil {
			return errName(err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return errName(err)
		}
		return string(buf[:n])
	}
	change := func(prev, next Ruleset) {
		t.Helper()
		l.apply(t, next)
		if err := inNetns(t, l.node, func() error { _, err := FlushConntrack(StaleUDP(prev, next)); return err }); err != nil {
			t.Fatal(err)
		}
	}
	none := Ruleset{Services: []Service{svc("kube-system/dns:dns", "10.43.0.20", "udp", 53)}}
	b1 := Ruleset{Services: []Service{svc("kube-system/dns:dns", "10.43.0.20", "udp", 53, "10.99.0.11:8080")}}
	b2 := Ruleset{Services: []Service{svc("kube-system/dns:dns", "10.43.0.20", "udp", 53, "10.99.0.12:8080")}}

	l.apply(t, none)
	if got := askOn(); got != "refused" {
		t.Fatalf("without endpoints: got %q, want refused", got)
	}
	// (A refused packet never confirms its conntrack entry, so nothing
	// holds the refusal here; the flush is for rules that let the first
	// packets through un-NATed.)
	change(none, b1)
	if got := askOn(); got != "b1" {
		t.Fatalf("after the first endpoint came: got %q, want b1", got)
	}
	// b1 is still alive: only the flush moves the flow to b2.
	l.apply(t, b2)
	if got := askOn(); got != "b1" {
		t.Errorf("without a flush the flow left its endpoint (got %q): the test proves nothing", got)
	}
	change(b1, b2)
	if got := askOn(); got != "b2" {
		t.Fatalf("after b1 left: got %q, want b2", got)
	}
}
