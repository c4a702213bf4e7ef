// Package proxy is the node's service proxy (kube-proxy's job, nftables
// mode): it watches Services and discovery.k8s.io/v1 EndpointSlices and
// keeps one nftables table (family ip, "berth-services") in the node's
// network namespace that DNATs every Service ClusterIP:port (and NodePort)
// to a ready endpoint picked at random per new connection, masquerades the
// DNATed traffic and rejects connections to Services that have no endpoint.
//
// The rules are computed by a pure function (Build: Services and
// EndpointSlices in, Ruleset out) and applied by replacing the whole table
// in one netlink transaction (Apply), so a restarted agent converges to the
// same table without duplicates and no packet ever sees half a ruleset.
package proxy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// DefaultTable is the name of the proxy's nftables table (family ip).
const DefaultTable = "berth-services"

// Ruleset is the complete desired content of the proxy's table.
type Ruleset struct {
	Services []Service
}

// Service is one Service port as the rules see it: traffic to
// ClusterIP:Port/Proto (and to any local address on NodePort/Proto, when
// NodePort is set) goes to one of Endpoints, or is rejected when there is
// none.
type Service struct {
	Name      string // namespace/name:port-name, for chain names and logs
	ClusterIP netip.Addr
	Proto     string // "tcp" or "udp"
	Port      uint16
	NodePort  uint16 // 0: none
	// ClientIP is sessionAffinity ClientIP: the endpoint is picked by a
	// hash of the client address instead of at random.
	ClientIP  bool
	Endpoints []netip.AddrPort
}

// Build computes the ruleset for node from all Services and EndpointSlices
// (as listed from the API; nothing is modified). It follows Kubernetes:
//   - headless Services (clusterIP None), ExternalName Services and those
//     without an IPv4 cluster IP get no rules; SCTP ports are skipped;
//   - an endpoint is used when its ready condition is not false; only when
//     a Service port has no ready endpoint at all, its serving and
//     terminating endpoints are used (graceful termination);
//   - internalTrafficPolicy Local keeps only the endpoints on node;
//   - a slice port matches a Service port by name and protocol;
//   - sessionAffinity ClientIP sets ClientIP (timeoutSeconds is not kept:
//     see nft_linux.go).
func Build(svcs []*corev1.Service, eps []*discoveryv1.EndpointSlice, node string) Ruleset {
	byService := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range eps {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		key := s.Namespace + "/" + name
		byService[key] = append(byService[key], s)
	}
	var rs Ruleset
	for _, svc := range svcs {
		ip := clusterIPv4(svc)
		if !ip.IsValid() || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		local := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
		for _, sp := range svc.Spec.Ports {
			proto := protoName(sp.Protocol)
			if proto == "" || sp.Port <= 0 || sp.Port > 65535 {
				continue
			}
			s := Service{Name: svc.Namespace + "/" + svc.Name + ":" + portLabel(sp), ClusterIP: ip, Proto: proto, Port: uint16(sp.Port),
				ClientIP: svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP}
			if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				if sp.NodePort > 0 && sp.NodePort <= 65535 {
					s.NodePort = uint16(sp.NodePort)
				}
			}
			s.Endpoints = endpointsFor(byService[svc.Namespace+"/"+svc.Name], sp, node, local)
			rs.Services = append(rs.Services, s)
		}
	}
	slices.SortFunc(rs.Services, func(a, b Service) int {
		return cmp.Or(a.ClusterIP.Compare(b.ClusterIP), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Name, b.Name))
	})
	// Two Services cannot share a ClusterIP (the allocator sees to it),
	// but a stale cache during a delete-and-recreate could show both for
	// a moment: keep the first, deterministically.
	rs.Services = slices.CompactFunc(rs.Services, func(a, b Service) bool {
		return a.ClusterIP == b.ClusterIP && a.Proto == b.Proto && a.Port == b.Port
	})
	return rs
}

// endpointsFor picks the endpoints of one Service port, sorted and
// without duplicates (an endpoint may show in two slices while it moves).
func endpointsFor(list []*discoveryv1.EndpointSlice, sp corev1.ServicePort, node string, local bool) []netip.AddrPort {
	var ready, terminating []netip.AddrPort
	for _, s := range list {
		port, ok := slicePort(s, sp)
		if !ok {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			// All addresses of one endpoint are fungible: the first
			// one serves (as in kube-proxy).
			a, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || !a.Is4() {
				continue
			}
			if local && (e.NodeName == nil || *e.NodeName != node) {
				continue
			}
			ap := netip.AddrPortFrom(a, port)
			isReady := e.Conditions.Ready == nil || *e.Conditions.Ready
			isServing := isReady
			if e.Conditions.Serving != nil {
				isServing = *e.Conditions.Serving
			}
			isTerminating := e.Conditions.Terminating != nil && *e.Conditions.Terminating
			switch {
			case isReady:
				ready = append(ready, ap)
			case isServing && isTerminating:
				terminating = append(terminating, ap)
			}
		}
	}
	out := ready
	if len(out) == 0 {
		out = terminating
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out)
}

// slicePort finds the slice's port for the Service port: same name (both
// empty for a single unnamed port) and protocol.
func slicePort(s *discoveryv1.EndpointSlice, sp corev1.ServicePort) (uint16, bool) {
	for _, p := range s.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if name == sp.Name && proto == cmp.Or(sp.Protocol, corev1.ProtocolTCP) && p.Port != nil && *p.Port > 0 && *p.Port <= 65535 {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

// clusterIPv4 is the Service's IPv4 cluster IP, or the zero Addr when it
// has none (headless, not yet allocated, IPv6 only).
func clusterIPv4(svc *corev1.Service) netip.Addr {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() && !a.IsUnspecified() {
			return a
		}
	}
	return netip.Addr{}
}

func protoName(p corev1.Protocol) string {
	switch p {
	case corev1.ProtocolTCP, "":
		return "tcp"
	case corev1.ProtocolUDP:
		return "udp"
	}
	return ""
}

func portLabel(sp corev1.ServicePort) string {
	if sp.Name != "" {
		return sp.Name
	}
	return fmt.Sprint(sp.Port)
}

// String renders the ruleset as one line per Service port (logs, tests).
func (rs Ruleset) String() string {
	var b strings.Builder
	for _, s := range rs.Services {
		fmt.Fprintf(&b, "%s %s:%d/%s", s.Name, s.ClusterIP, s.Port, s.Proto)
		if s.NodePort != 0 {
			fmt.Fprintf(&b, " nodePort %d", s.NodePort)
		}
		if s.ClientIP {
			b.WriteString(" affinity ClientIP")
		}
		if len(s.Endpoints) == 0 {
			b.WriteString(" -> reject\n")
			continue
		}
		b.WriteString(" ->")
		for _, e := range s.Endpoints {
			b.WriteString(" " + e.String())
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ConntrackFlush names UDP conntrack entries to delete: those to Dst
// (any local address when invalid) on Port, and, when Endpoint is valid,
// only those DNATed to it.
type ConntrackFlush struct {
	Dst      netip.Addr
	Port     uint16
	Endpoint netip.Addr
}

// StaleUDP lists the UDP conntrack entries that a change from prev to next
// leaves pointing the wrong way. UDP has no connection to end: a client
// that keeps its socket (a DNS resolver) keeps its conntrack entry, and
// with it the endpoint picked (or the refusal given) when it first sent,
// for as long as it keeps sending. So, as kube-proxy does:
//   - entries DNATed to an endpoint that is gone are deleted;
//   - entries to a Service port that had no endpoint and now has some are
//     deleted (they hold the refusal: NAT is decided at a flow's first
//     packet only).
func StaleUDP(prev, next Ruleset) []ConntrackFlush {
	type key struct {
		ip   netip.Addr
		port uint16
	}
	old := map[key]Service{}
	for _, s := range prev.Services {
		if s.Proto == "udp" {
			old[key{s.ClusterIP, s.Port}] = s
		}
	}
	var out []ConntrackFlush
	for _, s := range next.Services {
		if s.Proto != "udp" {
			continue
		}
		p, existed := old[key{s.ClusterIP, s.Port}]
		if len(s.Endpoints) > 0 && (!existed || len(p.Endpoints) == 0) {
			out = append(out, ConntrackFlush{Dst: s.ClusterIP, Port: s.Port})
			if s.NodePort != 0 {
				out = append(out, ConntrackFlush{Port: s.NodePort})
			}
			continue
		}
		delete(old, key{s.ClusterIP, s.Port})
		out = append(out, goneEndpoints(p, s.Endpoints)...)
	}
	// Service ports that are gone: their endpoints are gone with them.
	for _, p := range old {
		if !slices.ContainsFunc(next.Services, func(s Service) bool { return s.Proto == "udp" && s.ClusterIP == p.ClusterIP && s.Port == p.Port }) {
			out = append(out, goneEndpoints(p, nil)...)
		}
	}
	slices.SortFunc(out, func(a, b ConntrackFlush) int {
		return cmp.Or(a.Dst.Compare(b.Dst), cmp.Compare(a.Port, b.Port), a.Endpoint.Compare(b.Endpoint))
	})
	return slices.Compact(out)
}

func goneEndpoints(p Service, now []netip.AddrPort) []ConntrackFlush {
	var out []ConntrackFlush
	for _, e := range p.Endpoints {
		if slices.ContainsFunc(now, func(n netip.AddrPort) bool { return n.Addr() == e.Addr() }) {
			continue
		}
		out = append(out, ConntrackFlush{Dst: p.ClusterIP, Port: p.Port, Endpoint: e.Addr()})
		if p.NodePort != 0 {
			out = append(out, ConntrackFlush{Port: p.NodePort, Endpoint: e.Addr()})
		}
	}
	return out
}
