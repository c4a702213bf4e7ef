package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Bridge is one berth network as the rules see it.
type Bridge struct {
	Name     string       // bridge interface name
	Subnet   netip.Prefix // container subnet
	Gateway  netip.Addr   // the bridge's own address in Subnet
	Internal bool         // no egress, no ingress from outside the bridge
}

// Port is one published port: traffic to a local address (HostIP, or any
// local address when HostIP is invalid/unspecified) on HostPort/Proto is
// DNATed to Addr:Port.
type Port struct {
	Proto    string // "tcp" or "udp"
	HostIP   netip.Addr
	HostPort uint16
	Addr     netip.Addr
	Port     uint16
}

// Ruleset is the complete desired content of the table.
type Ruleset struct {
	Bridges []Bridge
	Ports   []Port
}

// Chain names inside the table.
const (
	ChainPrerouting  = "prerouting"
	ChainOutput      = "output"
	ChainPostrouting = "postrouting"
	ChainForward     = "forward"
	ChainInput       = "input"
	ChainRaw         = "raw"
)

// Apply replaces table with rs in one atomic batch (created if missing).
func Apply(table string, rs Ruleset) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	// add (no-op if present) + delete + add: replaces the table atomically
	// whether or not it existed.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: ChainPrerouting, Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	out := c.AddChain(&nftables.Chain{Name: ChainOutput, Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: ChainPostrouting, Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	fwd := c.AddChain(&nftables.Chain{Name: ChainForward, Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	in := c.AddChain(&nftables.Chain{Name: ChainInput, Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	raw := c.AddChain(&nftables.Chain{Name: ChainRaw, Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	add := func(ch *nftables.Chain, e ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
	}

	// Container to container on one bridge needs no NAT and no state: with
	// br_netfilter loaded every bridged frame would otherwise pay for a
	// conntrack lookup (about a third of the throughput). Traffic to or
	// from the gateway stays tracked: it carries the hairpin masquerade
	// (a published port reached through a host address comes back from
	// the gateway), DNS and the host's own connections.
	for _, b := range rs.Bridges {
		if !b.Gateway.IsValid() {
			continue
		}
		add(raw, cat(ipPrefix(12, b.Subnet), ipPrefix(16, b.Subnet), ipAddrNeq(12, b.Gateway), ipAddrNeq(16, b.Gateway), notrack())...)
	}

	// Published ports: DNAT in prerouting (other hosts, containers) and
	// output (the host itself, 127.0.0.1 included).
	internal := map[netip.Addr]bool{}
	for _, b := range rs.Bridges {
		if b.Internal {
			for _, p := range rs.Ports {
				if b.Subnet.Contains(p.Addr) {
					internal[p.Addr] = true
				}
			}
		}
	}
	for _, p := range rs.Ports {
		if internal[p.Addr] {
			continue // internal networks are unreachable from outside
		}
		proto, err := protoNum(p.Proto)
		if err != nil {
			return err
		}
		var match []expr.Any
		if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
			match = append(match, ipAddr(16, p.HostIP)...)
		} else {
			match = append(match, fibDaddrLocal()...)
		}
		match = append(match, l4proto(proto)...)
		match = append(match, dport(p.HostPort)...)
		match = append(match, dnat(p.Addr, p.Port)...)
		add(pre, match...)
		add(out, match...)
	}

	for _, b := range rs.Bridges {
		// 127.0.0.1:port -> container: the source must not stay loopback.
		add(post, cat(oif(b.Name, expr.CmpOpEq), ipPrefix(12, netip.MustParsePrefix("127.0.0.0/8")), masq())...)
		// Hairpin: a container reaching a published port (of itself or a
		// neighbour) through a host address; without SNAT the answer would
		// take the short way over the bridge and never match.
		add(post, cat(oif(b.Name, expr.CmpOpEq), ipPrefix(12, b.Subnet), ctDNAT(), masq())...)
		if !b.Internal {
			add(post, cat(ipPrefix(12, b.Subnet), oif(b.Name, expr.CmpOpNeq), masq())...)
		}
	}

	// route_localnet on the bridges lets 127.0.0.1 DNAT work; it must not
	// let a container reach the host's loopback services with forged
	// packets (CVE-2020-8558): only answers may arrive for 127.0.0.0/8.
	for _, b := range rs.Bridges {
		add(in, cat(iif(b.Name, expr.CmpOpEq), ipPrefix(16, netip.MustParsePrefix("127.0.0.0/8")), ctNotEstablished(), verdict(expr.VerdictDrop))...)
	}

	// Forwarding: internal networks are closed both ways, published ports
	// are reachable from anywhere, and networks cannot reach each other.
	for _, b := range rs.Bridges {
		if b.Internal {
			add(fwd, cat(iif(b.Name, expr.CmpOpEq), oif(b.Name, expr.CmpOpNeq), verdict(expr.VerdictDrop))...)
			add(fwd, cat(oif(b.Name, expr.CmpOpEq), iif(b.Name, expr.CmpOpNeq), verdict(expr.VerdictDrop))...)
		}
	}
	add(fwd, cat(ctDNAT(), verdict(expr.VerdictAccept))...)
	for _, a := range rs.Bridges {
		for _, b := range rs.Bridges {
			if a.Name != b.Name {
				add(fwd, cat(iif(a.Name, expr.CmpOpEq), oif(b.Name, expr.CmpOpEq), verdict(expr.VerdictDrop))...)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: apply table ip %s: %w", table, err)
	}
	return nil
}

// Delete removes table; a missing table is not an error.
func Delete(table string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table ip %s: %w", table, err)
	}
	return nil
}

// Exists reports whether table is present.
func Exists(table string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	tabs, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("nftables: list tables: %w", err)
	}
	for _, t := range tabs {
		if t.Name == table {
			return true, nil
		}
	}
	return false, nil
}

// RuleCount returns the number of rules per chain of table (for tests and
// diagnostics).
func RuleCount(table string) (map[string]int, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	out := map[string]int{}
	for _, ch := range []string{ChainRaw, ChainPrerouting, ChainOutput, ChainPostrouting, ChainForward, ChainInput} {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch, Table: t})
		if err != nil {
			return nil, fmt.Errorf("nftables: list chain %s of table ip %s: %w", ch, table, err)
		}
		out[ch] = len(rules)
	}
	return out, nil
}

func protoNum(p string) (byte, error) {
	switch p {
	case "tcp", "":
		return unix.IPPROTO_TCP, nil
	case "udp":
		return unix.IPPROTO_UDP, nil
	}
	return 0, fmt.Errorf("nftables: protocol %q: want tcp or udp", p)
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func iif(name string, op expr.CmpOp) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: ifname(name)}}
}

func oif(name string, op expr.CmpOp) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: ifname(name)}}
}

// ipAddr matches the IPv4 header address at offset (12 saddr, 16 daddr).
func ipAddr(offset uint32, a netip.Addr) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b[:]},
	}
}

func ipAddrNeq(offset uint32, a netip.Addr) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: b[:]},
	}
}

func ipPrefix(offset uint32, p netip.Prefix) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	if p.Bits() == 0 {
		mask = []byte{0, 0, 0, 0}
	}
	n := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: n[:]},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func dport(p uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
	}
}

func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// ctDNAT matches connections whose destination was rewritten (ct status dnat).
func ctDNAT() []expr.Any {
	const ipsDstNAT = 1 << 5
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

// ctNotEstablished matches ct state not established/related.
func ctNotEstablished() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func dnat(a netip.Addr, port uint16) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: b[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

func notrack() []expr.Any { return []expr.Any{&expr.Notrack{}} }

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }
