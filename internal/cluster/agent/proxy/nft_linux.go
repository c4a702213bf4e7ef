package proxy

import (
	"fmt"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth/berth/internal/engine/network/nft"
)

// affinitySeed seeds the client-address hash of ClientIP affinity; a
// constant, so every node and every apply map a client alike.
const affinitySeed = 0x62657274 // "bert"

// MasqueradeMark is the packet mark bit that says "DNATed by a Service
// rule, masquerade on the way out" (the bit kube-proxy uses).
const MasqueradeMark = 0x4000

// Names inside the table.
const (
	chainPrerouting  = "nat-prerouting"
	chainOutput      = "nat-output"
	chainPostrouting = "nat-postrouting"
	chainServices    = "services"
	chainFilterIn    = "filter-input"
	chainFilterFwd   = "filter-forward"
	chainFilterOut   = "filter-output"
	chainNoEndpoints = "no-endpoints"
	chainReject      = "reject"
	mapServiceIPs    = "service-ips"
	mapNodePorts     = "service-nodeports"
	mapNoEndpointIPs = "no-endpoint-services"
	mapNoEndpointNPs = "no-endpoint-nodeports"
	setClusterIPs    = "cluster-ips"
)

var (
	keyIPProtoPort = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	keyProtoPort   = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
)

// Apply replaces table (family ip) in the calling thread's network
// namespace with rs, in one netlink transaction: the table is created if
// missing, else emptied and rebuilt, so applying twice leaves one copy.
func Apply(table string, rs Ruleset) error {
	c, err := nftables.New(nftables.WithSockOptions(bigBuffers))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := build(c, table, rs); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: apply table ip %s (%d service ports): %w", table, len(rs.Services), err)
	}
	return nil
}

// bigBuffers lets one transaction carry thousands of Services: the whole
// batch goes out in one sendmsg, which the socket's send buffer must hold
// (else EMSGSIZE), and every message is acknowledged. As root the limits
// of net.core.[wr]mem_max do not apply (SO_*BUFFORCE).
func bigBuffers(nc *netlink.Conn) error {
	const size = 64 << 20
	rc, err := nc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size); serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		}
	}); err != nil {
		return err
	}
	if serr != nil { // no CAP_NET_ADMIN: as large as the sysctls allow
		_ = nc.SetWriteBuffer(size)
		_ = nc.SetReadBuffer(size)
	}
	return nil
}

// Delete removes table; a missing table is not an error.
func Delete(table string) error { return nft.Delete(table) }

// Exists reports whether table is present.
func Exists(table string) (bool, error) { return nft.Exists(table) }

// EnableForwarding turns on net.ipv4.ip_forward: pods' service traffic is
// DNATed to other pods and nodes, i.e. routed through this namespace.
func EnableForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enabling IPv4 forwarding (%s): %w", p, err)
	}
	return nil
}

// build queues the whole table into c:
//
//	nat-prerouting, nat-output (dstnat): jump services
//	services: ip daddr . l4proto . th dport vmap @service-ips
//	          fib daddr type local l4proto . th dport vmap @service-nodeports
//	svc-<name>: set mark 0x4000;
//	            numgen random mod N == 0 dnat to ep0; numgen random mod N-1 == 0 dnat to ep1; … dnat to epN-1
//	            (jhash ip saddr mod N == i dnat to epi for sessionAffinity ClientIP)
//	nat-postrouting (srcnat): mark 0x4000 → masquerade
//	filter-{input,forward,output}: ct state new → no-endpoints
//	no-endpoints: the same keys in @no-endpoint-* → goto reject;
//	              ip daddr @cluster-ips (any other port) → goto reject
func build(c *nftables.Conn, table string, rs Ruleset) error {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept})
	}
	regular := func(name string) *nftables.Chain { return c.AddChain(&nftables.Chain{Name: name, Table: t}) }
	add := func(ch *nftables.Chain, e ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e}) }
	filterPrio := nftables.ChainPriorityRef(-5) // before the usual filter chains, which might drop first

	pre := base(chainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := base(chainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := base(chainPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	fin := base(chainFilterIn, nftables.ChainTypeFilter, nftables.ChainHookInput, filterPrio)
	ffwd := base(chainFilterFwd, nftables.ChainTypeFilter, nftables.ChainHookForward, filterPrio)
	fout := base(chainFilterOut, nftables.ChainTypeFilter, nftables.ChainHookOutput, filterPrio)
	services := regular(chainServices)
	noEp := regular(chainNoEndpoints)
	reject := regular(chainReject)

	svcIPs := &nftables.Set{Table: t, Name: mapServiceIPs, IsMap: true, KeyType: keyIPProtoPort, DataType: nftables.TypeVerdict, Concatenation: true}
	nodePorts := &nftables.Set{Table: t, Name: mapNodePorts, IsMap: true, KeyType: keyProtoPort, DataType: nftables.TypeVerdict, Concatenation: true}
	noEpIPs := &nftables.Set{Table: t, Name: mapNoEndpointIPs, IsMap: true, KeyType: keyIPProtoPort, DataType: nftables.TypeVerdict, Concatenation: true}
	noEpNPs := &nftables.Set{Table: t, Name: mapNoEndpointNPs, IsMap: true, KeyType: keyProtoPort, DataType: nftables.TypeVerdict, Concatenation: true}
	clusterIPs := &nftables.Set{Table: t, Name: setClusterIPs, KeyType: nftables.TypeIPAddr}
	var svcElems, npElems, noEpElems, noEpNPElems, ipElems []nftables.SetElement
	seenIP := map[[4]byte]bool{}
	gotoReject := &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainReject}

	for _, s := range rs.Services {
		proto, err := protoNum(s.Proto)
		if err != nil {
			return fmt.Errorf("service %s: %w", s.Name, err)
		}
		if ip := s.ClusterIP.As4(); !seenIP[ip] {
			seenIP[ip] = true
			ipElems = append(ipElems, nftables.SetElement{Key: ip[:]})
		}
		if len(s.Endpoints) == 0 {
			noEpElems = append(noEpElems, nftables.SetElement{Key: ipProtoPortKey(s.ClusterIP.As4(), proto, s.Port), VerdictData: gotoReject})
			if s.NodePort != 0 {
				noEpNPElems = append(noEpNPElems, nftables.SetElement{Key: protoPortKey(proto, s.NodePort), VerdictData: gotoReject})
			}
			continue
		}
		name := "svc-" + s.Name + "/" + s.Proto
		svc := regular(chainName(name))
		svcElems = append(svcElems, nftables.SetElement{Key: ipProtoPortKey(s.ClusterIP.As4(), proto, s.Port), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: svc.Name}})
		if s.NodePort != 0 {
			npElems = append(npElems, nftables.SetElement{Key: protoPortKey(proto, s.NodePort), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: svc.Name}})
		}
		add(svc, setMark(MasqueradeMark)...)
		if len(s.Endpoints) == 1 {
			add(svc, dnat(s.Endpoints[0].Addr().As4(), s.Endpoints[0].Port())...)
			continue
		}
		// One rule per endpoint, each taking the connection with the
		// probability that makes the choice uniform: 1/N, then 1/(N-1)
		// of the rest, ..., the last one always (iptables' statistic
		// mode). NAT chains only see a connection's first packet;
		// conntrack keeps the choice. No sets and no chains per
		// endpoint: the kernel checks the whole table at every commit,
		// and looks sets up by a walk of the transaction, so objects
		// per Service make an apply grow with the square of their
		// number.
		n := len(s.Endpoints)
		for i, e := range s.Endpoints {
			var pick []expr.Any
			switch {
			case s.ClientIP:
				// Session affinity without state: a hash of the
				// client's address picks the same endpoint for as long
				// as the endpoints stay the same (and survives the
				// table's replacement, which a set of recent clients
				// would not).
				if i < n-1 {
					pick = []expr.Any{
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
						&expr.Hash{SourceRegister: 1, DestRegister: 1, Length: 4, Modulus: uint32(n), Seed: affinitySeed, Type: expr.HashTypeJenkins},
						&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(uint32(i))},
					}
				}
			case i < n-1:
				pick = []expr.Any{
					&expr.Numgen{Register: 1, Modulus: uint32(n - i), Type: unix.NFT_NG_RANDOM},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
				}
			}
			add(svc, cat(pick, dnat(e.Addr().As4(), e.Port()))...)
		}
	}
	for _, m := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{svcIPs, svcElems}, {nodePorts, npElems}, {noEpIPs, noEpElems}, {noEpNPs, noEpNPElems}, {clusterIPs, ipElems}} {
		if err := addSet(c, m.set, m.elems); err != nil {
			return fmt.Errorf("nftables: map %s: %w", m.set.Name, err)
		}
	}

	add(pre, &expr.Verdict{Kind: expr.VerdictJump, Chain: chainServices})
	add(out, &expr.Verdict{Kind: expr.VerdictJump, Chain: chainServices})
	add(services, cat(ipProtoPortLookup(), vmap(svcIPs))...)
	add(services, cat(fibDaddrLocal(), protoPortLookup(), vmap(nodePorts))...)

	add(post, cat(markSet(MasqueradeMark), []expr.Any{&expr.Masq{}})...)

	for _, ch := range []*nftables.Chain{fin, ffwd, fout} {
		add(ch, cat(ctStateNew(), []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainNoEndpoints}})...)
	}
	add(noEp, cat(ipProtoPortLookup(), vmap(noEpIPs))...)
	add(noEp, cat(fibDaddrLocal(), protoPortLookup(), vmap(noEpNPs))...)
	// A cluster IP on a port no Service has: nothing will ever answer.
	add(noEp,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: clusterIPs.Name, SetID: clusterIPs.ID},
		gotoReject)
	// TCP clients get a reset, others an ICMP port unreachable: either
	// way connect() or the next read fails at once (ECONNREFUSED).
	add(reject, cat(l4proto(unix.IPPROTO_TCP), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})...)
	add(reject, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}) // port unreachable
	return nil
}

// maxElemsPerMessage keeps each message's element list well under the
// 64 KiB that a netlink attribute's 16-bit length can say: past it the
// length wraps and the kernel reads garbage (seen as ENOENT, or worse,
// as fewer elements). Elements here take 30-70 bytes.
const maxElemsPerMessage = 500

// addSet queues a named set and its elements in chunks of
// maxElemsPerMessage (all in the same transaction).
func addSet(c *nftables.Conn, set *nftables.Set, elems []nftables.SetElement) error {
	if err := c.AddSet(set, nil); err != nil {
		return err
	}
	for len(elems) > 0 {
		n := min(len(elems), maxElemsPerMessage)
		if err := c.SetAddElements(set, elems[:n]); err != nil {
			return err
		}
		elems = elems[n:]
	}
	return nil
}

// chainName keeps a chain name within the kernel's limit.
func chainName(s string) string {
	const max = unix.NFT_CHAIN_MAXNAMELEN - 1
	if len(s) > max {
		s = s[:max]
	}
	return s
}

func protoNum(p string) (byte, error) {
	switch p {
	case "tcp":
		return unix.IPPROTO_TCP, nil
	case "udp":
		return unix.IPPROTO_UDP, nil
	}
	return 0, fmt.Errorf("protocol %q: want tcp or udp", p)
}

// Concatenated keys: each field is padded to a 4-byte register.
func ipProtoPortKey(a [4]byte, proto byte, port uint16) []byte {
	return []byte{a[0], a[1], a[2], a[3], proto, 0, 0, 0, byte(port >> 8), byte(port), 0, 0}
}

func protoPortKey(proto byte, port uint16) []byte {
	return []byte{proto, 0, 0, 0, byte(port >> 8), byte(port), 0, 0}
}

const reg32 = 8 // NFT_REG32_00: concatenations load into consecutive 32-bit registers

func ipProtoPortLookup() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg32, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32 + 1},
		&expr.Payload{DestRegister: reg32 + 2, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

func protoPortLookup() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32},
		&expr.Payload{DestRegister: reg32 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

func vmap(s *nftables.Set) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: reg32, DestRegister: 0, IsDestRegSet: true, SetName: s.Name, SetID: s.ID}}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

func ctStateNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

// setMark: meta mark set meta mark | bit.
func setMark(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// markSet: meta mark & bit != 0.
func markSet(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bit), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func dnat(a [4]byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}
