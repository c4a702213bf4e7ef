// Package clusterdns is the cluster DNS each node agent serves to its pods
// (the role CoreDNS plays in Kubernetes, at the node-local address of
// NodeLocal DNSCache). It answers the names of the Kubernetes DNS-based
// service discovery specification (kubernetes/dns docs/specification.md,
// schema 1.1.0) under the cluster domain from the Services and
// EndpointSlices the agent watches, and forwards every other name to the
// node's resolvers. records.go holds the record logic (pure: question in,
// reply out); server.go the informers, the listener and its address.
package clusterdns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/berth/berth/internal/engine/network/dns"
)

// TTL of every record, in seconds. Short, as CoreDNS's kubernetes plugin
// (5 s): endpoints change as pods come and go.
const TTL = 5

// SchemaVersion is the DNS schema served in dns-version.<domain> TXT.
const SchemaVersion = "1.1.0"

// Index names the Resolver needs on its stores (see Indexers).
const (
	indexClusterIP = "clusterIP"       // Services by each cluster IP
	indexService   = "service"         // EndpointSlices by "<ns>/<service>"
	indexAddress   = "endpointAddress" // EndpointSlices by each endpoint address
)

// ServiceIndexers are the indexes the Services store must have.
func ServiceIndexers() cache.Indexers {
	return cache.Indexers{
		cache.NamespaceIndex: cache.MetaNamespaceIndexFunc,
		indexClusterIP: func(obj any) ([]string, error) {
			s, ok := obj.(*corev1.Service)
			if !ok {
				return nil, nil
			}
			var out []string
			for _, ip := range clusterIPs(s) {
				out = append(out, ip.String())
			}
			return out, nil
		},
	}
}

// SliceIndexers are the indexes the EndpointSlices store must have.
func SliceIndexers() cache.Indexers {
	return cache.Indexers{
		indexService: func(obj any) ([]string, error) {
			es, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok || es.Labels[discoveryv1.LabelServiceName] == "" {
				return nil, nil
			}
			return []string{es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]}, nil
		},
		indexAddress: func(obj any) ([]string, error) {
			es, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok {
				return nil, nil
			}
			var out []string
			for _, ep := range es.Endpoints {
				for _, a := range ep.Addresses {
					if ip, err := netip.ParseAddr(a); err == nil {
						out = append(out, ip.String())
					}
				}
			}
			return out, nil
		},
	}
}

// Resolver answers questions about the cluster domain. It reads the
// stores at each question, so answers follow the informers at once.
type Resolver struct {
	domain   string // lower case, no trailing dot
	services cache.Indexer
	slices   cache.Indexer
	// Chase, if set, resolves the target of an ExternalName service
	// outside the cluster domain (through the upstreams), so the reply
	// carries its addresses after the CNAME as a recursive server's does.
	Chase func(name dnsmessage.Name, qtype dnsmessage.Type) []dnsmessage.Resource
}

// NewResolver answers for domain from services and slices, stores with
// ServiceIndexers and SliceIndexers.
func NewResolver(domain string, services, slices cache.Indexer) *Resolver {
	return &Resolver{domain: strings.ToLower(strings.Trim(domain, ".")), services: services, slices: slices}
}

// Resolve answers q. local=false means the name is not the cluster's: the
// caller forwards the query upstream.
func (r *Resolver) Resolve(q dnsmessage.Question) (reply dns.Reply, local bool) {
	return r.resolve(q, 0)
}

func (r *Resolver) resolve(q dnsmessage.Question, depth int) (dns.Reply, bool) {
	if q.Class != dnsmessage.ClassINET && q.Class != dnsmessage.ClassANY {
		return dns.Reply{}, false
	}
	name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
	if strings.HasSuffix(name, ".in-addr.arpa") || strings.HasSuffix(name, ".ip6.arpa") {
		return r.reverse(q, name)
	}
	var rel string
	switch {
	case name == r.domain:
	case strings.HasSuffix(name, "."+r.domain):
		rel = strings.TrimSuffix(name, "."+r.domain)
	default:
		return dns.Reply{}, false
	}
	rrs, exists := r.lookup(q, rel, depth)
	if !exists {
		return r.negative(dnsmessage.RCodeNameError), true
	}
	if len(rrs) == 0 {
		return r.negative(dnsmessage.RCodeSuccess), true // NODATA
	}
	rep := dns.Reply{Answers: rrs}
	// The addresses of SRV targets, as the specification allows.
	for _, rr := range rrs {
		if srv, ok := rr.Body.(*dnsmessage.SRVResource); ok {
			a, _ := r.resolve(dnsmessage.Question{Name: srv.Target, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}, depth+1)
			rep.Additionals = append(rep.Additionals, a.Answers...)
		}
	}
	return rep, true
}

// negative is NXDOMAIN or NODATA with the zone's SOA in the authority
// section, so resolvers may cache the absence for its minimum TTL.
func (r *Resolver) negative(rcode dnsmessage.RCode) dns.Reply {
	return dns.Reply{RCode: rcode, Authorities: []dnsmessage.Resource{r.soa()}}
}

func (r *Resolver) soa() dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: mustName(r.domain), Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET, TTL: TTL},
		Body: &dnsmessage.SOAResource{NS: mustName("ns.dns." + r.domain), MBox: mustName("hostmaster." + r.domain),
			Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, MinTTL: TTL},
	}
}

// lookup returns the records of type q.Type at rel (the name less the
// cluster domain) and whether the name exists at all.
func (r *Resolver) lookup(q dnsmessage.Question, rel string, depth int) ([]dnsmessage.Resource, bool) {
	if rel == "" {
		if q.Type == dnsmessage.TypeSOA || q.Type == dnsmessage.TypeALL {
			soa := r.soa()
			soa.Header.Name = q.Name
			return []dnsmessage.Resource{soa}, true
		}
		return nil, true
	}
	labels := strings.Split(rel, ".")
	n := len(labels)
	switch {
	case rel == "dns-version":
		if q.Type == dnsmessage.TypeTXT || q.Type == dnsmessage.TypeALL {
			return []dnsmessage.Resource{rr(q.Name, &dnsmessage.TXTResource{TXT: []string{SchemaVersion}})}, true
		}
		return nil, true
	case labels[n-1] == "svc":
		return r.lookupService(q, labels[:n-1], depth)
	case labels[n-1] == "pod":
		return r.lookupPod(q, labels[:n-1])
	}
	return nil, false
}

// lookupService answers <svc>.<ns>.svc, <host>.<svc>.<ns>.svc and
// _<port>._<proto>.<svc>.<ns>.svc (labels without "svc").
func (r *Resolver) lookupService(q dnsmessage.Question, labels []string, depth int) ([]dnsmessage.Resource, bool) {
	n := len(labels)
	switch n {
	case 0: // svc.<domain>: an empty non-terminal
		return nil, true
	case 1: // <ns>.svc.<domain>: exists while the namespace has services
		objs, _ := r.services.ByIndex(cache.NamespaceIndex, labels[0])
		return nil, len(objs) > 0
	}
	if n > 4 {
		return nil, false
	}
	svc := r.service(labels[n-2], labels[n-1])
	if svc == nil {
		return nil, false
	}
	switch {
	case n == 2:
		return r.serviceRecords(q, svc, depth), true
	case n == 3 && strings.HasPrefix(labels[0], "_"):
		// _<proto>.<svc>…: exists if some named port has that protocol.
		for _, p := range svc.Spec.Ports {
			if p.Name != "" && "_"+strings.ToLower(string(protocol(p.Protocol))) == labels[0] {
				return nil, true
			}
		}
		return nil, false
	case n == 3:
		if !headless(svc) {
			return nil, false
		}
		var addrs []netip.Addr
		for _, ep := range r.endpoints(svc) {
			if ep.host == labels[0] {
				addrs = append(addrs, ep.addrs...)
			}
		}
		return addrRecords(q, uniq(addrs)), len(addrs) > 0
	default: // n == 4: _<port>._<proto>.<svc>.<ns>
		return r.srvRecords(q, svc, labels[0], labels[1])
	}
}

func (r *Resolver) serviceRecords(q dnsmessage.Question, svc *corev1.Service, depth int) []dnsmessage.Resource {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		target := strings.ToLower(strings.Trim(svc.Spec.ExternalName, "."))
		tn, err := dnsmessage.NewName(target + ".")
		if target == "" || err != nil {
			return nil
		}
		out := []dnsmessage.Resource{rr(q.Name, &dnsmessage.CNAMEResource{CNAME: tn})}
		if q.Type == dnsmessage.TypeCNAME || depth > 4 {
			return out
		}
		// Follow the alias: inside the cluster domain here, elsewhere
		// through the upstreams, as a recursive resolver does.
		next := dnsmessage.Question{Name: tn, Type: q.Type, Class: dnsmessage.ClassINET}
		if rep, local := r.resolve(next, depth+1); local {
			return append(out, rep.Answers...)
		}
		if r.Chase != nil {
			out = append(out, r.Chase(tn, q.Type)...)
		}
		return out
	}
	if headless(svc) {
		var addrs []netip.Addr
		for _, ep := range r.endpoints(svc) {
			addrs = append(addrs, ep.addrs...)
		}
		return addrRecords(q, uniq(addrs))
	}
	return addrRecords(q, clusterIPs(svc))
}

// srvRecords answers _<port>._<proto>.<svc>: one record per named port of
// a ClusterIP service (target the service), one per ready endpoint of a
// headless one (target the endpoint's name).
func (r *Resolver) srvRecords(q dnsmessage.Question, svc *corev1.Service, portLabel, protoLabel string) ([]dnsmessage.Resource, bool) {
	var port *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name != "" && "_"+strings.ToLower(p.Name) == portLabel && "_"+strings.ToLower(string(protocol(p.Protocol))) == protoLabel {
			port = &svc.Spec.Ports[i]
			break
		}
	}
	if port == nil {
		return nil, false
	}
	if q.Type != dnsmessage.TypeSRV && q.Type != dnsmessage.TypeALL {
		return nil, true
	}
	svcName := svc.Name + "." + svc.Namespace + ".svc." + r.domain
	if !headless(svc) {
		t, ok := fqdn(svcName)
		if !ok {
			return nil, true
		}
		return []dnsmessage.Resource{rr(q.Name, &dnsmessage.SRVResource{Priority: 0, Weight: 100, Port: uint16(port.Port), Target: t})}, true
	}
	var out []dnsmessage.Resource
	seen := map[string]bool{}
	for _, ep := range r.endpoints(svc) {
		num, ok := ep.ports[strings.ToLower(port.Name)+"/"+string(protocol(port.Protocol))]
		t, valid := fqdn(ep.host + "." + svcName)
		if !ok || !valid || seen[ep.host] {
			continue
		}
		seen[ep.host] = true
		out = append(out, rr(q.Name, &dnsmessage.SRVResource{Priority: 0, Weight: 100, Port: uint16(num), Target: t}))
	}
	return out, true
}

// lookupPod answers <a-b-c-d>.<ns>.pod with the address spelled in the
// name, as CoreDNS's "pods insecure" mode (the Kubernetes default).
func (r *Resolver) lookupPod(q dnsmessage.Question, labels []string) ([]dnsmessage.Resource, bool) {
	switch len(labels) {
	case 0, 1:
		return nil, true
	case 2:
		ip, err := netip.ParseAddr(strings.ReplaceAll(labels[0], "-", "."))
		if err != nil || !ip.Is4() {
			return nil, false
		}
		return addrRecords(q, []netip.Addr{ip}), true
	}
	return nil, false
}

// reverse answers PTR questions for service cluster IPs and ready
// endpoint addresses; other addresses go upstream.
func (r *Resolver) reverse(q dnsmessage.Question, name string) (dns.Reply, bool) {
	ip, ok := parseReverse(name)
	if !ok {
		return dns.Reply{}, false
	}
	var targets []string
	objs, _ := r.services.ByIndex(indexClusterIP, ip.String())
	for _, o := range objs {
		s := o.(*corev1.Service)
		targets = append(targets, s.Name+"."+s.Namespace+".svc."+r.domain)
	}
	objs, _ = r.slices.ByIndex(indexAddress, ip.String())
	for _, o := range objs {
		es := o.(*discoveryv1.EndpointSlice)
		svc := r.service(es.Labels[discoveryv1.LabelServiceName], es.Namespace)
		if svc == nil {
			continue
		}
		for _, ep := range r.endpoints(svc) {
			if slices.Contains(ep.addrs, ip) {
				targets = append(targets, ep.host+"."+svc.Name+"."+svc.Namespace+".svc."+r.domain)
			}
		}
	}
	if len(targets) == 0 {
		return dns.Reply{}, false
	}
	if q.Type != dnsmessage.TypePTR && q.Type != dnsmessage.TypeALL {
		return dns.Reply{}, true
	}
	slices.Sort(targets)
	var rep dns.Reply
	for _, t := range slices.Compact(targets) {
		if n, ok := fqdn(t); ok {
			rep.Answers = append(rep.Answers, rr(q.Name, &dnsmessage.PTRResource{PTR: n}))
		}
	}
	return rep, true
}

func parseReverse(name string) (netip.Addr, bool) {
	if !strings.HasSuffix(name, ".in-addr.arpa") {
		return netip.Addr{}, false
	}
	parts := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa"), ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	slices.Reverse(parts)
	ip, err := netip.ParseAddr(strings.Join(parts, "."))
	return ip, err == nil
}

func (r *Resolver) service(name, ns string) *corev1.Service {
	obj, ok, err := r.services.GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil
	}
	s, _ := obj.(*corev1.Service)
	return s
}

// endpoint is one endpoint of a service as DNS names it.
type endpoint struct {
	host  string // its hostname, or its first address with dashes
	addrs []netip.Addr
	ports map[string]int32 // "<name>/<protocol>" → port
}

// endpoints lists the ready endpoints of svc (all of them with
// publishNotReadyAddresses), from every EndpointSlice of the service.
func (r *Resolver) endpoints(svc *corev1.Service) []endpoint {
	objs, _ := r.slices.ByIndex(indexService, svc.Namespace+"/"+svc.Name)
	sls := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		sls = append(sls, o.(*discoveryv1.EndpointSlice))
	}
	// A stable order (the index's is a map's): answers do not shuffle
	// between identical queries.
	slices.SortFunc(sls, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	var out []endpoint
	for _, es := range sls {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		ports := map[string]int32{}
		for _, p := range es.Ports {
			if p.Port == nil {
				continue
			}
			var name string
			if p.Name != nil {
				name = strings.ToLower(*p.Name)
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			ports[name+"/"+string(proto)] = *p.Port
		}
		for _, ep := range es.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if !ready && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			e := endpoint{ports: ports}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					e.addrs = append(e.addrs, ip)
				}
			}
			if len(e.addrs) == 0 {
				continue
			}
			if ep.Hostname != nil && *ep.Hostname != "" {
				e.host = strings.ToLower(*ep.Hostname)
			} else {
				e.host = strings.NewReplacer(".", "-", ":", "-").Replace(e.addrs[0].String())
			}
			out = append(out, e)
		}
	}
	return out
}

func headless(s *corev1.Service) bool {
	return s.Spec.ClusterIP == corev1.ClusterIPNone || s.Spec.ClusterIP == ""
}

func clusterIPs(s *corev1.Service) []netip.Addr {
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips = []string{s.Spec.ClusterIP}
	}
	var out []netip.Addr
	for _, v := range ips {
		if ip, err := netip.ParseAddr(v); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// addrRecords are the A (or AAAA) records of addrs for q's type.
func addrRecords(q dnsmessage.Question, addrs []netip.Addr) []dnsmessage.Resource {
	var out []dnsmessage.Resource
	for _, a := range addrs {
		switch {
		case a.Is4() && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL):
			out = append(out, rr(q.Name, &dnsmessage.AResource{A: a.As4()}))
		case a.Is6() && (q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL):
			out = append(out, rr(q.Name, &dnsmessage.AAAAResource{AAAA: a.As16()}))
		}
	}
	return out
}

func uniq(addrs []netip.Addr) []netip.Addr {
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(addrs)
}

func rr(name dnsmessage.Name, body dnsmessage.ResourceBody) dnsmessage.Resource {
	var t dnsmessage.Type
	switch body.(type) {
	case *dnsmessage.AResource:
		t = dnsmessage.TypeA
	case *dnsmessage.AAAAResource:
		t = dnsmessage.TypeAAAA
	case *dnsmessage.CNAMEResource:
		t = dnsmessage.TypeCNAME
	case *dnsmessage.SRVResource:
		t = dnsmessage.TypeSRV
	case *dnsmessage.PTRResource:
		t = dnsmessage.TypePTR
	case *dnsmessage.TXTResource:
		t = dnsmessage.TypeTXT
	}
	return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: name, Type: t, Class: dnsmessage.ClassINET, TTL: TTL}, Body: body}
}

// fqdn makes a fully qualified name; false when s is too long for DNS.
func fqdn(s string) (dnsmessage.Name, bool) {
	n, err := dnsmessage.NewName(s + ".")
	return n, err == nil
}

// mustName is fqdn for the zone's own names, which CheckDomain bounds.
func mustName(s string) dnsmessage.Name {
	n, ok := fqdn(s)
	if !ok {
		panic(fmt.Sprintf("clusterdns: name %q is not a valid DNS name", s))
	}
	return n
}

// CheckDomain validates a cluster domain (--cluster-domain).
func CheckDomain(domain string) error {
	d := strings.Trim(domain, ".")
	if d == "" || len(d) > 200 {
		return fmt.Errorf("cluster domain %q: want a DNS domain such as cluster.local (at most 200 characters)", domain)
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || strings.Trim(strings.ToLower(l), "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return fmt.Errorf("cluster domain %q: label %q is not a DNS label (letters, digits and inner dashes, at most 63): want a domain such as cluster.local", domain, l)
		}
	}
	return nil
}
