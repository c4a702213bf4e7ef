package network

import (
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestHostFirewallInteraction documents how published ports meet a host
// firewall in another nftables table: DNAT happens in prerouting, so an
// INPUT rule dropping the host port does not protect a published port
// (as with Docker); a FORWARD drop does, for traffic from other machines
// and containers, while the host's own 127.0.0.1 traffic (OUTPUT) still
// gets through.
func TestHostFirewallInteraction(t *testing.T) {
	e := newEnv(t)
	a, pa, _ := e.container(DefaultNetwork, EndpointOpts{Name: "a"})
	echoServer(t, pa, "tcp", ":80", "a:")
	got, err := e.m.PublishPorts(a, []PortMapping{{ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	hp := got[0].HostPort
	other := "tf" + rnd(6)
	if _, err := e.m.Create(other, freeSubnet(t), "", false, nil); err != nil {
		t.Fatal(err)
	}
	_, client, _ := e.container(other, EndpointOpts{Name: "client"}) // stands in for another machine
	host := hostAddress(t, e.m)
	if host == "" {
		t.Skip("host has no global IPv4 address to publish on")
	}
	remote := net.JoinHostPort(host, fmt.Sprint(hp))
	local := fmt.Sprintf("127.0.0.1:%d", hp)

	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: "berthfw" + rnd(6), Family: nftables.TableFamilyIPv4}
	t.Cleanup(func() {
		c.DelTable(tbl)
		c.Flush()
	})
	c.AddTable(tbl)
	in := c.AddChain(&nftables.Chain{Name: "input", Table: tbl, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: in, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(hp)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if ans, err := talk(t, client, "tcp", remote); err != nil || ans != "a:ping\n" {
		t.Errorf("with an INPUT drop on port %d, remote client = %q, %v; want the published port to answer (DNAT bypasses INPUT)", hp, ans, err)
	}

	drop := nftables.ChainPolicyDrop
	c.AddChain(&nftables.Chain{Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if ans, err := talk(t, client, "tcp", remote); err == nil {
		t.Errorf("with a FORWARD policy drop, remote client reached the published port: %q", ans)
	}
	if ans, err := talk(t, "", "tcp", local); err != nil || ans != "a:ping\n" {
		t.Errorf("with a FORWARD policy drop, host -> %s = %q, %v; want an answer (local traffic is not forwarded)", local, ans, err)
	}
}

// TestContainerCannotReachHostLoopback: route_localnet is on for the
// bridges (so 127.0.0.1 DNAT works); a container that forges packets to
// 127.0.0.1 via its gateway must still not reach the host's loopback-only
// services (CVE-2020-8558). The control step removes berth's input rule and
// shows the attack then succeeds, so the test can fail.
func TestContainerCannotReachHostLoopback(t *testing.T) {
	e := newEnv(t)
	_, pa, epa := e.container(DefaultNetwork, EndpointOpts{Name: "a"})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	target := ln.Addr().String()
	echoServer(t, "", "tcp", target, "host:")
	// Inside a: drop the loopback's local routes and route 127.0.0.1 to the gateway.
	inNS(t, pa, func() {
		h, err := netlink.NewHandle()
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		lo, _ := h.LinkByName("lo")
		addrs, _ := h.AddrList(lo, netlink.FAMILY_V4)
		for _, a := range addrs {
			h.AddrDel(lo, &a)
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/eth0/route_localnet", []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
		eth, _ := h.LinkByName("eth0")
		_, dst, _ := net.ParseCIDR("127.0.0.1/32")
		if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: dst, Gw: net.ParseIP(epa.Gateway)}); err != nil {
			t.Fatal(err)
		}
	})
	if ans, err := talk(t, pa, "tcp", target); err == nil {
		t.Fatalf("container reached the host's 127.0.0.1 service: %q", ans)
	}
	// Control: without berth's input chain the forged connection succeeds.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: e.m.Table(), Family: nftables.TableFamilyIPv4}
	c.FlushChain(&nftables.Chain{Name: "input", Table: tbl})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	ans, err := talk(t, pa, "tcp", target)
	e.m.mu.Lock()
	rerr := e.m.applyRules()
	e.m.mu.Unlock()
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil || ans != "host:ping\n" {
		t.Errorf("control without the input rule = %q, %v; want the forged connection to work (else this test proves nothing)", ans, err)
	}
}
