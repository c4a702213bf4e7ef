package network

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berth/berth/internal/engine/network/dns"
	"github.com/berth/berth/internal/engine/network/nft"
	"github.com/berth/berth/internal/errdefs"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network manager tests need root (netlink, nftables, namespaces); run them as root")
	}
}

func rnd(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// freeSubnet picks a /24 in 10.213.0.0/16 that no host route and no
// earlier pick of this test binary overlaps.
var picked = map[string]bool{}

func freeSubnet(t *testing.T) string {
	t.Helper()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for range 500 {
		var b [1]byte
		rand.Read(b[:])
		p := netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", b[0]))
		if picked[p.String()] {
			continue
		}
		clash := false
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			a, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			if ones > 0 && netip.PrefixFrom(a.Unmap(), ones).Overlaps(p) {
				clash = true
			}
		}
		if !clash {
			picked[p.String()] = true
			return p.String()
		}
	}
	t.Fatal("no free /24 in 10.213.0.0/16")
	return ""
}

type env struct {
	t   *testing.T
	m   *Manager
	cfg Config
	up  *dns.Server
}

// newEnv starts a Manager with its own state dir, bridge, subnet, table and
// a fake upstream resolver on loopback that knows "upstream.test".
func newEnv(t *testing.T) *env {
	t.Helper()
	needRoot(t)
	up, err := dns.Listen(dns.Options{Addr: "127.0.0.1:0", Lookup: func(n string) []netip.Addr {
		if n == "upstream.test" {
			return []netip.Addr{netip.MustParseAddr("192.0.2.250")}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	cfg := Config{
		StateDir:      filepath.Join(t.TempDir(), "state"),
		BridgeName:    "bt" + rnd(8),
		DefaultSubnet: freeSubnet(t),
		DNSUpstreams:  []string{up.Addr()},
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, m: m, cfg: cfg, up: up}
	t.Cleanup(func() {
		if err := e.m.Close(true); err != nil {
			t.Errorf("Close(true): %v", err)
		}
		if ok, _ := nft.Exists(cfg.NftTable); ok {
			t.Errorf("table %s left behind after Close(true)", e.m.Table())
		}
	})
	return e
}

// container creates a namespace and connects it to network.
func (e *env) container(network string, opts EndpointOpts) (id, path string, ep Endpoint) {
	e.t.Helper()
	id = "c" + rnd(16)
	path, err := e.m.CreateNetNS(id)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { e.m.DisconnectAll(id); e.m.DeleteNetNS(id) })
	ep, err = e.m.Connect(id, path, network, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return id, path, ep
}

// inNS runs fn on a locked OS thread inside the namespace at path; sockets
// created there stay in that namespace.
func inNS(t *testing.T, path string, fn func()) {
	t.Helper()
	if err := inNSErr(path, fn); err != nil {
		t.Fatal(err)
	}
}

func inNSErr(path string, fn func()) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic("cannot return to the host network namespace: " + err.Error())
		}
		runtime.UnlockOSThread()
	}()
	fn()
	return nil
}

// echoServer listens on addr inside the namespace (path "" = host) and
// answers each line with tag+line.
func echoServer(t *testing.T, path, proto, addr, tag string) {
	t.Helper()
	start := func() {
		if proto == "udp" {
			pc, err := net.ListenPacket("udp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pc.Close() })
			go func() {
				buf := make([]byte, 1500)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo(append([]byte(tag), buf[:n]...), from)
				}
			}()
			return
		}
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					l, err := bufio.NewReader(c).ReadString('\n')
					if err == nil {
						c.Write([]byte(tag + l))
					}
				}()
			}
		}()
	}
	if path == "" {
		start()
	} else {
		inNS(t, path, start)
	}
}

// talk sends "ping\n" to addr from the namespace at path ("" = host) and
// returns the answer.
func talk(t *testing.T, path, proto, addr string) (string, error) {
	t.Helper()
	var (
		c   net.Conn
		err error
	)
	dial := func() { c, err = net.DialTimeout(proto+"4", addr, time.Second) }
	if path == "" {
		dial()
	} else {
		inNS(t, path, dial)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	if proto == "udp" {
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		return string(buf[:n]), err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func resolve(t *testing.T, path, server, name string) ([]string, error) {
	t.Helper()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var (
			c   net.Conn
			err error
		)
		if nserr := inNSErr(path, func() {
			var d net.Dialer
			c, err = d.DialContext(ctx, "udp4", net.JoinHostPort(server, "53"))
		}); nserr != nil {
			return nil, nserr
		}
		return c, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// A trailing dot keeps the host's search domains out of the test.
	ips, err := r.LookupIP(ctx, "ip4", name+".")
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out, err
}

func TestContainersTalkAndResolveByName(t *testing.T) {
	e := newEnv(t)
	nw := "tn" + rnd(6)
	if _, err := e.m.Create(nw, freeSubnet(t), "", false, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	_, pa, epa := e.container(nw, EndpointOpts{Name: "alpha"})
	_, pb, epb := e.container(nw, EndpointOpts{Name: "beta", Aliases: []string{"db"}, Hostname: "beta-host"})
	if epa.IfName != "eth0" || epa.DNS != epa.Gateway {
		t.Errorf("endpoint = %+v, want eth0 with DNS on the gateway", epa)
	}
	echoServer(t, pb, "tcp", ":7000", "beta:")
	for _, name := range []string{"beta", "db", "BETA", "beta-host", epb.ContainerID[:12]} {
		got, err := resolve(t, pa, epa.DNS, name)
		if err != nil || len(got) != 1 || got[0] != epb.IP {
			t.Errorf("resolve %q from alpha = %v, %v; want [%s]", name, got, err, epb.IP)
		}
	}
	got, err := resolve(t, pa, epa.DNS, "upstream.test")
	if err != nil || len(got) != 1 || got[0] != "192.0.2.250" {
		t.Errorf("forwarded lookup = %v, %v; want [192.0.2.250] from the upstream", got, err)
	}
	ans, err := talk(t, pa, "tcp", net.JoinHostPort(epb.IP, "7000"))
	if err != nil || ans != "beta:ping\n" {
		t.Errorf("alpha -> beta:7000 = %q, %v; want %q", ans, err, "beta:ping\n")
	}
	// The default route points at the gateway.
	inNS(t, pa, func() {
		rs, err := netlink.RouteGet(net.ParseIP("198.51.100.1"))
		if err != nil || len(rs) == 0 || rs[0].Gw.String() != epa.Gateway {
			t.Errorf("route from alpha to the outside = %+v, %v; want via %s", rs, err, epa.Gateway)
		}
	})
	n, err := e.m.Get(nw)
	if err != nil || len(n.Endpoints) != 2 || n.Labels["k"] != "v" {
		t.Errorf("Get(%q) = %+v, %v; want 2 endpoints and label k=v", nw, n, err)
	}
	if err := e.m.Remove(nw); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Remove of a network with endpoints = %v, want ErrConflict", err)
	}
}

func TestNetworksAreIsolated(t *testing.T) {
	e := newEnv(t)
	x, y := "tx"+rnd(6), "ty"+rnd(6)
	nx, err := e.m.Create(x, freeSubnet(t), "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ny, err := e.m.Create(y, freeSubnet(t), "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, pa, _ := e.container(x, EndpointOpts{Name: "a"})
	_, pb, epb := e.container(y, EndpointOpts{Name: "b"})
	_, pc, _ := e.container(y, EndpointOpts{Name: "c"})
	echoServer(t, pb, "tcp", ":7000", "b:")
	// Positive control: a neighbour on y reaches b.
	if ans, err := talk(t, pc, "tcp", net.JoinHostPort(epb.IP, "7000")); err != nil || ans != "b:ping\n" {
		t.Fatalf("c -> b on the same network = %q, %v; want an answer", ans, err)
	}
	if ans, err := talk(t, pa, "tcp", net.JoinHostPort(epb.IP, "7000")); err == nil {
		t.Errorf("a on %s reached b on %s: %q; want no connection", x, y, ans)
	}
	if got, err := resolve(t, pa, nx.Gateway, "b"); err == nil {
		t.Errorf("a resolved b of another network: %v", got)
	}
	if got, err := resolve(t, pa, ny.Gateway, "b"); err == nil {
		t.Errorf("a resolved b through the other network's DNS server: %v", got)
	}
}

func TestInternalNetworkHasNoEgress(t *testing.T) {
	e := newEnv(t)
	nw := "ti" + rnd(6)
	n, err := e.m.Create(nw, freeSubnet(t), "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, pa, _ := e.container(nw, EndpointOpts{Name: "a"})
	_, pb, epb := e.container(nw, EndpointOpts{Name: "b"})
	echoServer(t, pb, "tcp", ":7000", "b:")
	if ans, err := talk(t, pa, "tcp", net.JoinHostPort(epb.IP, "7000")); err != nil || ans != "b:ping\n" {
		t.Errorf("a -> b on an internal network = %q, %v; want an answer", ans, err)
	}
	// The host's loopback is outside the network: forwarding is dropped,
	// so use a listener on a host address of our own (the default bridge
	// gateway) reached via routing: input, not forward, so it is allowed;
	// what must fail is leaving through another interface.
	def, _ := e.m.Get(DefaultNetwork)
	_, pd, epd := e.container(DefaultNetwork, EndpointOpts{Name: "d"})
	_ = def
	echoServer(t, pd, "tcp", ":7000", "d:")
	if ans, err := talk(t, pa, "tcp", net.JoinHostPort(epd.IP, "7000")); err == nil {
		t.Errorf("internal a reached d on the default network: %q", ans)
	}
	if got, err := resolve(t, pa, n.Gateway, "upstream.test"); err == nil {
		t.Errorf("internal network forwarded a lookup: %v", got)
	}
	if _, err := e.m.PublishPorts(id, []PortMapping{{ContainerPort: 80}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("PublishPorts on an internal-only container = %v, want ErrInvalidArgument", err)
	}
}

// hostAddress returns a global IPv4 address of the host that is not ours.
func hostAddress(t *testing.T, m *Manager) string {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	ours := map[int]bool{}
	for _, n := range m.List() {
		if l, err := netlink.LinkByName(n.Bridge); err == nil {
			ours[l.Attrs().Index] = true
		}
	}
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() && !ours[a.LinkIndex] && !strings.HasPrefix(a.IP.String(), "10.213.") {
			return a.IP.String()
		}
	}
	return ""
}

func TestPublishedPorts(t *testing.T) {
	e := newEnv(t)
	a, pa, _ := e.container(DefaultNetwork, EndpointOpts{Name: "a"})
	_, pb, _ := e.container(DefaultNetwork, EndpointOpts{Name: "b"})
	echoServer(t, pa, "tcp", ":80", "a:")
	echoServer(t, pa, "udp", ":53", "a-udp:")
	got, err := e.m.PublishPorts(a, []PortMapping{{ContainerPort: 80}, {ContainerPort: 53, Proto: "udp"}, {HostIP: "127.0.0.1", ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].HostPort == 0 || got[2].HostIP != "127.0.0.1" {
		t.Fatalf("PublishPorts = %+v; want 3 mappings with host ports chosen", got)
	}
	pub, udp, private := fmt.Sprint(got[0].HostPort), fmt.Sprint(got[1].HostPort), fmt.Sprint(got[2].HostPort)
	check := func(desc, path, proto, addr, want string) {
		t.Helper()
		if ans, err := talk(t, path, proto, addr); err != nil || ans != want {
			t.Errorf("%s (%s %s) = %q, %v; want %q", desc, proto, addr, ans, err, want)
		}
	}
	check("host -> 127.0.0.1", "", "tcp", "127.0.0.1:"+pub, "a:ping\n")
	check("host -> 127.0.0.1 udp", "", "udp", "127.0.0.1:"+udp, "a-udp:ping\n")
	check("host -> 127.0.0.1 on the private port", "", "tcp", "127.0.0.1:"+private, "a:ping\n")
	// Another network's container reaches the published port via the host too.
	other := "to" + rnd(6)
	if _, err := e.m.Create(other, freeSubnet(t), "", false, nil); err != nil {
		t.Fatal(err)
	}
	_, pc, _ := e.container(other, EndpointOpts{Name: "c"})
	if h := hostAddress(t, e.m); h != "" {
		check("host -> host address", "", "tcp", net.JoinHostPort(h, pub), "a:ping\n")
		check("b -> host address (hairpin to a neighbour)", pb, "tcp", net.JoinHostPort(h, pub), "a:ping\n")
		check("a -> host address (hairpin to itself)", pa, "tcp", net.JoinHostPort(h, pub), "a:ping\n")
		check("c on another network -> host address", pc, "tcp", net.JoinHostPort(h, pub), "a:ping\n")
		if ans, err := talk(t, "", "tcp", net.JoinHostPort(h, private)); err == nil {
			t.Errorf("port bound to 127.0.0.1 answered on host address %s: %q", h, ans)
		}
	} else {
		t.Log("host has no global IPv4 address: host-address checks skipped")
	}
	// Unpublish removes the rules: the port no longer answers.
	if err := e.m.UnpublishPorts(a); err != nil {
		t.Fatal(err)
	}
	if ans, err := talk(t, "", "tcp", "127.0.0.1:"+pub); err == nil {
		t.Errorf("unpublished port still answers: %q", ans)
	}
	if n, _ := nft.RuleCount(e.m.Table()); n[nft.ChainPrerouting] != 0 || n[nft.ChainOutput] != 0 {
		t.Errorf("DNAT rules left after UnpublishPorts: %v", n)
	}
}

func TestPortConflict(t *testing.T) {
	e := newEnv(t)
	a, _, _ := e.container(DefaultNetwork, EndpointOpts{Name: "a"})
	b, _, _ := e.container(DefaultNetwork, EndpointOpts{Name: "b"})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	before, _ := nft.RuleCount(e.m.Table())
	for _, p := range []PortMapping{
		{HostIP: "127.0.0.1", HostPort: uint16(taken), ContainerPort: 80},
		{HostPort: uint16(taken), ContainerPort: 80},
	} {
		if _, err := e.m.PublishPorts(a, []PortMapping{{ContainerPort: 81}, p}); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), fmt.Sprint(taken)) {
			t.Errorf("PublishPorts(%+v) on a taken port = %v; want ErrConflict naming port %d", p, err, taken)
		}
	}
	got, err := e.m.PublishPorts(a, []PortMapping{{ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.PublishPorts(b, []PortMapping{{HostPort: got[0].HostPort, ContainerPort: 80}}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second container on the same host port = %v, want ErrConflict", err)
	}
	if p := e.m.Ports(b); len(p) != 0 {
		t.Errorf("failed publish left ports %+v", p)
	}
	if _, err := e.m.PublishPorts(a, []PortMapping{{HostIP: "203.0.113.7", ContainerPort: 80}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("host ip not on this host = %v, want ErrInvalidArgument", err)
	}
	after, _ := nft.RuleCount(e.m.Table())
	if after[nft.ChainPrerouting] != before[nft.ChainPrerouting]+1 {
		t.Errorf("prerouting rules = %d, want %d (only the one successful publish)", after[nft.ChainPrerouting], before[nft.ChainPrerouting]+1)
	}
}

func linkNames(t *testing.T) map[string]bool {
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range links {
		out[l.Attrs().Name] = true
	}
	return out
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	sub := freeSubnet(t)
	nw := "tb" + rnd(6)
	if _, err := e.m.Create(nw, sub, "", false, nil); err != nil {
		t.Fatal(err)
	}
	linksBefore := linkNames(t)
	var hostRoute string
	routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones > 0 && !strings.HasPrefix(r.Dst.String(), "10.213.") {
			hostRoute = r.Dst.String()
			break
		}
	}
	tests := []struct {
		desc, name, subnet, gw string
		want                   error
	}{
		{"same subnet", "tb" + rnd(6), sub, "", errdefs.ErrConflict},
		{"overlapping subnet", "tb" + rnd(6), strings.TrimSuffix(sub, "/24") + "/25", "", errdefs.ErrConflict},
		{"invalid CIDR", "tb" + rnd(6), "10.213.1.0/33", "", errdefs.ErrInvalidArgument},
		{"not a CIDR", "tb" + rnd(6), "banana", "", errdefs.ErrInvalidArgument},
		{"gateway outside", "tb" + rnd(6), freeSubnet(t), "10.99.0.1", errdefs.ErrInvalidArgument},
		{"duplicate name", nw, freeSubnet(t), "", errdefs.ErrAlreadyExists},
		{"bad name", "bad name", freeSubnet(t), "", errdefs.ErrInvalidArgument},
		{"reserved name", "host", freeSubnet(t), "", errdefs.ErrConflict},
	}
	if hostRoute != "" {
		tests = append(tests, struct {
			desc, name, subnet, gw string
			want                   error
		}{"host route " + hostRoute, "tb" + rnd(6), hostRoute, "", errdefs.ErrConflict})
	}
	for _, tt := range tests {
		_, err := e.m.Create(tt.name, tt.subnet, tt.gw, false, nil)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Create(%q, %q, %q) = %v, want %v", tt.desc, tt.name, tt.subnet, tt.gw, err, tt.want)
		} else if !strings.Contains(err.Error(), tt.subnet) && !strings.Contains(err.Error(), tt.name) && !strings.Contains(err.Error(), tt.gw) {
			t.Errorf("%s: error %q does not name the input", tt.desc, err)
		}
	}
	if got := len(e.m.List()); got != 2 {
		t.Errorf("after failed creates List has %d networks, want 2", got)
	}
	if _, err := e.m.Get("nosuchnet"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(nosuchnet) = %v, want ErrNotFound", err)
	}
	id := "c" + rnd(16)
	path, err := e.m.CreateNetNS(id)
	if err != nil {
		t.Fatal(err)
	}
	defer e.m.DeleteNetNS(id)
	if _, err := e.m.CreateNetNS(id); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("CreateNetNS twice = %v, want ErrAlreadyExists", err)
	}
	for _, tt := range []struct {
		desc, network string
		opts          EndpointOpts
		want          error
	}{
		{"unknown network", "nosuchnet", EndpointOpts{}, errdefs.ErrNotFound},
		{"address outside the subnet", nw, EndpointOpts{IP: "10.99.0.5"}, errdefs.ErrInvalidArgument},
		{"gateway address", nw, EndpointOpts{IP: strings.TrimSuffix(sub, "0/24") + "1"}, errdefs.ErrInvalidArgument},
		{"bad mac", nw, EndpointOpts{MAC: "zz"}, errdefs.ErrInvalidArgument},
	} {
		if _, err := e.m.Connect(id, path, tt.network, tt.opts); !errors.Is(err, tt.want) {
			t.Errorf("%s: Connect = %v, want %v", tt.desc, err, tt.want)
		}
	}
	if _, err := e.m.Connect(id, "/nonexistent/netns", nw, EndpointOpts{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Connect with a missing netns = %v, want ErrNotFound", err)
	}
	// Static address works and a second container cannot take it.
	static := strings.TrimSuffix(sub, "0/24") + "77"
	ep, err := e.m.Connect(id, path, nw, EndpointOpts{IP: static})
	if err != nil || ep.IP != static {
		t.Fatalf("Connect with --ip %s = %+v, %v", static, ep, err)
	}
	id2 := "c" + rnd(16)
	path2, _ := e.m.CreateNetNS(id2)
	defer e.m.DeleteNetNS(id2)
	if _, err := e.m.Connect(id2, path2, nw, EndpointOpts{IP: static}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second --ip %s = %v, want ErrConflict", static, err)
	}
	if _, err := e.m.Connect(id, path, nw, EndpointOpts{}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("connecting twice = %v, want ErrAlreadyExists", err)
	}
	if err := e.m.DisconnectAll(id); err != nil {
		t.Fatal(err)
	}
	// What the failed operations could have made: the host ends of the
	// two containers' veths on this manager's networks, and user-network
	// bridges ("br-…"). Other links that come and go meanwhile belong to
	// other processes on the machine.
	ours := map[string]bool{}
	for _, n := range e.m.List() {
		ours[vethName(n.ID, id)], ours[vethName(n.ID, id2)] = true, true
	}
	for l := range linkNames(t) {
		if !linksBefore[l] && (ours[l] || strings.HasPrefix(l, "br-")) {
			t.Errorf("link %s left behind by failed operations", l)
		}
	}
	if err := e.m.Remove(DefaultNetwork); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("Remove(bridge) = %v, want ErrForbidden", err)
	}
	if err := e.m.Remove(nw); err != nil {
		t.Errorf("Remove(%s) = %v", nw, err)
	}
	if linkNames(t)[nw] {
		t.Errorf("bridge of %s still exists", nw)
	}
}

func mountsUnder(t *testing.T, dir string) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			n++
		}
	}
	return n
}

func TestThousandCyclesLeakNothing(t *testing.T) {
	e := newEnv(t)
	cycles := 1000
	if testing.Short() {
		cycles = 50
	}
	nw := "tl" + rnd(6)
	if _, err := e.m.Create(nw, freeSubnet(t), "", false, nil); err != nil {
		t.Fatal(err)
	}
	rulesBefore, _ := nft.RuleCount(e.m.Table())
	// The host ends of this test's veths: other daemons on the machine make
	// "vb…" links of their own meanwhile.
	var netIDs []string
	for _, n := range e.m.List() {
		if n.Name == nw || n.Name == DefaultNetwork {
			netIDs = append(netIDs, n.ID)
		}
	}
	ours := map[string]bool{}
	start := time.Now()
	for i := range cycles {
		id := fmt.Sprintf("leak%d-%s", i, rnd(6))
		for _, nid := range netIDs {
			ours[vethName(nid, id)] = true
		}
		path, err := e.m.CreateNetNS(id)
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if _, err := e.m.Connect(id, path, nw, EndpointOpts{Name: "x"}); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if _, err := e.m.Connect(id, path, DefaultNetwork, EndpointOpts{}); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if i%100 == 0 {
			if _, err := e.m.PublishPorts(id, []PortMapping{{HostIP: "127.0.0.1", ContainerPort: 80}}); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
		}
		if err := e.m.DisconnectAll(id); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := e.m.DeleteNetNS(id); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	t.Logf("%d cycles in %v (%v each)", cycles, time.Since(start), time.Since(start)/time.Duration(cycles))
	if len(netIDs) != 2 {
		t.Fatalf("found %d of the 2 networks the cycles use", len(netIDs))
	}
	for l := range linkNames(t) {
		if ours[l] {
			t.Errorf("link %s left behind", l)
		}
	}
	for _, n := range e.m.List() {
		if len(n.Endpoints) != 0 {
			t.Errorf("network %s still has %d endpoints", n.Name, len(n.Endpoints))
		}
	}
	e.m.mu.Lock()
	for _, n := range e.m.st.Networks {
		if l := len(n.Pool.Leases); l != 0 {
			t.Errorf("network %s still has %d address leases", n.Name, l)
		}
		if br, err := netlink.LinkByName(n.Bridge); err == nil {
			links, _ := netlink.LinkList()
			for _, l := range links {
				if l.Attrs().MasterIndex == br.Attrs().Index {
					t.Errorf("bridge %s still has port %s", n.Bridge, l.Attrs().Name)
				}
			}
		}
	}
	if len(e.m.st.Ports) != 0 || len(e.m.reserved) != 0 {
		t.Errorf("ports left: %v, reservations: %d", e.m.st.Ports, len(e.m.reserved))
	}
	e.m.mu.Unlock()
	if rulesAfter, _ := nft.RuleCount(e.m.Table()); fmt.Sprint(rulesAfter) != fmt.Sprint(rulesBefore) {
		t.Errorf("rules after = %v, want %v", rulesAfter, rulesBefore)
	}
	dir := filepath.Join(e.cfg.StateDir, "netns")
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d namespace files left in %s", len(ents), dir)
	}
	if n := mountsUnder(t, dir); n != 0 {
		t.Errorf("%d namespace mounts left under %s", n, dir)
	}
}

func TestRestartKeepsEndpoints(t *testing.T) {
	e := newEnv(t)
	nw := "tr" + rnd(6)
	if _, err := e.m.Create(nw, freeSubnet(t), "", false, nil); err != nil {
		t.Fatal(err)
	}
	a, pa, epa := e.container(nw, EndpointOpts{Name: "a"})
	b, pb, epb := e.container(nw, EndpointOpts{Name: "b"})
	echoServer(t, pb, "tcp", ":7000", "b:")
	ports, err := e.m.PublishPorts(b, []PortMapping{{HostIP: "127.0.0.1", ContainerPort: 7000}})
	if err != nil {
		t.Fatal(err)
	}
	local := fmt.Sprintf("127.0.0.1:%d", ports[0].HostPort)
	// Leave a stray veth on the bridge as a crash mid-Connect would.
	n, _ := e.m.Get(nw)
	br, _ := netlink.LinkByName(n.Bridge)
	stray := "vb" + rnd(12)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: stray, MasterIndex: br.Attrs().Index}, PeerName: "vp" + rnd(12)}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(false); err != nil {
		t.Fatal(err)
	}
	// While the daemon is down, containers keep talking and the port answers.
	if ans, err := talk(t, pa, "tcp", net.JoinHostPort(epb.IP, "7000")); err != nil || ans != "b:ping\n" {
		t.Errorf("a -> b with the daemon down = %q, %v", ans, err)
	}
	m2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m2
	if linkNames(t)[stray] {
		t.Errorf("stray veth %s survived New", stray)
	}
	if eps := m2.Endpoints(a); len(eps) != 1 || eps[0].IP != epa.IP {
		t.Errorf("endpoints of a after restart = %+v, want IP %s", eps, epa.IP)
	}
	if got, err := resolve(t, pa, epa.DNS, "b"); err != nil || len(got) != 1 || got[0] != epb.IP {
		t.Errorf("resolve b after restart = %v, %v; want [%s]", got, err, epb.IP)
	}
	if ans, err := talk(t, pa, "tcp", net.JoinHostPort(epb.IP, "7000")); err != nil || ans != "b:ping\n" {
		t.Errorf("a -> b after restart = %q, %v", ans, err)
	}
	if ans, err := talk(t, "", "tcp", local); err != nil || ans != "b:ping\n" {
		t.Errorf("published %s after restart = %q, %v", local, ans, err)
	}
	// The port is reserved again: nobody else can bind it.
	if l, err := net.Listen("tcp4", local); err == nil {
		l.Close()
		t.Errorf("published port %s was not reserved again after restart", local)
	}
	// A new container gets a fresh address, not a leased one.
	_, _, epc := e.container(nw, EndpointOpts{Name: "c"})
	if epc.IP == epa.IP || epc.IP == epb.IP {
		t.Errorf("new container got leased address %s", epc.IP)
	}
	// Recover releases what belongs to containers that no longer run.
	if err := m2.Recover(func(id string) bool { return id != b }); err != nil {
		t.Fatal(err)
	}
	if eps := m2.Endpoints(b); len(eps) != 0 {
		t.Errorf("b still has endpoints after Recover: %+v", eps)
	}
	if _, err := os.Stat(pb); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace file of b still there after Recover: %v", err)
	}
	if linkNames(t)[epb.HostIfName] {
		t.Errorf("veth %s of b still there after Recover", epb.HostIfName)
	}
	if _, err := os.Stat(pa); err != nil {
		t.Errorf("namespace file of running a removed by Recover: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(pa, &st); err != nil {
		t.Error(err)
	}
}

func TestNewAdoptsBridgeWithoutState(t *testing.T) {
	e := newEnv(t)
	if err := e.m.Close(false); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.cfg.StateDir, "network.json")); err != nil {
		t.Fatal(err)
	}
	m2, err := New(e.cfg)
	if err != nil {
		t.Fatalf("New over a leftover bridge %s without state: %v", e.cfg.BridgeName, err)
	}
	e.m = m2
	n, err := m2.Get(DefaultNetwork)
	if err != nil || n.Bridge != e.cfg.BridgeName || n.Subnet != e.cfg.DefaultSubnet {
		t.Errorf("default network = %+v, %v; want bridge %s subnet %s", n, err, e.cfg.BridgeName, e.cfg.DefaultSubnet)
	}
}

func defaultGateway(t *testing.T, path string) string {
	t.Helper()
	gw := ""
	inNS(t, path, func() {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			if r.Dst == nil {
				gw = r.Gw.String()
			} else if ones, _ := r.Dst.Mask.Size(); ones == 0 {
				gw = r.Gw.String()
			}
		}
	})
	return gw
}

func TestSecondNetworkAndPrune(t *testing.T) {
	e := newEnv(t)
	in, x, y, empty := "ti"+rnd(6), "tx"+rnd(6), "ty"+rnd(6), "te"+rnd(6)
	for _, nw := range []struct {
		name     string
		internal bool
	}{{in, true}, {x, false}, {y, false}, {empty, false}} {
		if _, err := e.m.Create(nw.name, freeSubnet(t), "", nw.internal, nil); err != nil {
			t.Fatal(err)
		}
	}
	id, path, epi := e.container(in, EndpointOpts{})
	if gw := defaultGateway(t, path); gw != "" {
		t.Errorf("internal network gave a default route via %s", gw)
	}
	epx, err := e.m.Connect(id, path, x, EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	epy, err := e.m.Connect(id, path, y, EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if epi.IfName != "eth0" || epx.IfName != "eth1" || epy.IfName != "eth2" {
		t.Errorf("interfaces = %s %s %s, want eth0 eth1 eth2", epi.IfName, epx.IfName, epy.IfName)
	}
	if gw := defaultGateway(t, path); gw != epx.Gateway {
		t.Errorf("default route via %q, want the first non-internal network's gateway %s", gw, epx.Gateway)
	}
	if err := e.m.Disconnect(id, x); err != nil {
		t.Fatal(err)
	}
	if gw := defaultGateway(t, path); gw != epy.Gateway {
		t.Errorf("after disconnecting %s the default route is via %q, want %s", x, gw, epy.Gateway)
	}
	if err := e.m.Disconnect(id, x); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("second Disconnect = %v, want ErrNotFound", err)
	}
	// A reconnect takes the free eth1 again.
	if ep, err := e.m.Connect(id, path, x, EndpointOpts{}); err != nil || ep.IfName != "eth1" {
		t.Errorf("reconnect = %+v, %v; want eth1", ep, err)
	}
	got, err := e.m.Prune()
	if err != nil || len(got) != 1 || got[0] != empty {
		t.Errorf("Prune = %v, %v; want [%s]", got, err, empty)
	}
	if _, err := e.m.Get(empty); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("pruned network still there: %v", err)
	}
	if len(e.m.List()) != 4 {
		t.Errorf("List after prune has %d networks, want 4", len(e.m.List()))
	}
}

// The bridge keeps one MAC address while containers come and go: a bridge
// whose address follows its lowest port changed it when a container left,
// and the others' cached gateway MAC then black-holed their traffic for
// seconds (found by the services scenario: DNS and services stalled on a
// node whenever one of its pods was deleted).
func TestBridgeMACIsStable(t *testing.T) {
	e := newEnv(t)
	nw := "tm" + rnd(6)
	n, err := e.m.Create(nw, freeSubnet(t), "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	macOf := func() string {
		t.Helper()
		l, err := netlink.LinkByName(n.Bridge)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().HardwareAddr.String()
	}
	_, _, a := e.container(nw, EndpointOpts{Name: "a"})
	want := macFor(netip.MustParseAddr(a.Gateway)).String()
	if got := macOf(); got != want {
		t.Fatalf("bridge MAC %s, want %s (derived from the gateway)", got, want)
	}
	ids := []string{}
	for i := 0; i < 4; i++ {
		id, _, _ := e.container(nw, EndpointOpts{Name: fmt.Sprintf("c%d", i)})
		ids = append(ids, id)
		if got := macOf(); got != want {
			t.Fatalf("after container %d joined: bridge MAC %s, want %s", i, got, want)
		}
	}
	for _, id := range ids {
		if err := e.m.Disconnect(id, nw); err != nil {
			t.Fatal(err)
		}
		if got := macOf(); got != want {
			t.Fatalf("after a container left: bridge MAC %s, want %s", got, want)
		}
	}
}
