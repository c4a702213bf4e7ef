package clusterdns

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func ptr[T any](v T) *T { return &v }

func svc(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: ports}}
	if clusterIP != "" && clusterIP != corev1.ClusterIPNone {
		s.Spec.ClusterIPs = []string{clusterIP}
	}
	return s
}

func port(name string, proto corev1.Protocol, n int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: n}
}

type ep struct {
	ip, host string
	ready    bool
}

func slice(ns, service, name string, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: ports,
	}
	for _, e := range eps {
		d := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(e.ready)}}
		if e.host != "" {
			d.Hostname = ptr(e.host)
		}
		es.Endpoints = append(es.Endpoints, d)
	}
	return es
}

// fixture is a small cluster: a ClusterIP service, a headless
// StatefulSet-style one, ExternalName services and an empty headless one.
func fixture(t testing.TB) *Resolver {
	t.Helper()
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, ServiceIndexers())
	sls := cache.NewIndexer(cache.MetaNamespaceKeyFunc, SliceIndexers())
	ext := svc("default", "ext", "")
	ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeExternalName, "Example.COM."
	alias := svc("default", "alias", "")
	alias.Spec.Type, alias.Spec.ExternalName = corev1.ServiceTypeExternalName, "web.default.svc.cluster.local"
	for _, s := range []*corev1.Service{
		svc("default", "kubernetes", "10.43.0.1", port("https", corev1.ProtocolTCP, 443)),
		svc("default", "web", "10.43.0.20", port("http", "", 80), port("dns", corev1.ProtocolUDP, 53), port("", corev1.ProtocolTCP, 8080)),
		svc("default", "db", corev1.ClusterIPNone, port("pg", corev1.ProtocolTCP, 5432)),
		svc("other", "empty", corev1.ClusterIPNone, port("x", corev1.ProtocolTCP, 1)),
		ext, alias,
	} {
		if err := svcs.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	pg := []discoveryv1.EndpointPort{{Name: ptr("pg"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(15432))}}
	for _, s := range []*discoveryv1.EndpointSlice{
		slice("default", "db", "db-a", pg, ep{"10.88.0.5", "db-0", true}, ep{"10.88.0.6", "db-1", true}, ep{"10.88.0.8", "db-3", false}),
		slice("default", "db", "db-b", pg, ep{"10.88.0.7", "", true}, ep{"10.88.0.5", "db-0", true}),
		slice("default", "web", "web-a", nil, ep{"10.88.0.30", "", true}),
	} {
		if err := sls.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	r := NewResolver("cluster.local", svcs, sls)
	r.Chase = func(name dnsmessage.Name, qtype dnsmessage.Type) []dnsmessage.Resource {
		if name.String() == "example.com." && qtype == dnsmessage.TypeA {
			return []dnsmessage.Resource{rr(name, &dnsmessage.AResource{A: [4]byte{192, 0, 2, 80}})}
		}
		return nil
	}
	return r
}

// format renders records as "TYPE data" for comparison.
func format(rrs []dnsmessage.Resource) []string {
	var out []string
	for _, r := range rrs {
		var s string
		switch b := r.Body.(type) {
		case *dnsmessage.AResource:
			s = "A " + netip.AddrFrom4(b.A).String()
		case *dnsmessage.AAAAResource:
			s = "AAAA " + netip.AddrFrom16(b.AAAA).String()
		case *dnsmessage.CNAMEResource:
			s = "CNAME " + b.CNAME.String()
		case *dnsmessage.SRVResource:
			s = fmt.Sprintf("SRV %d %d %d %s", b.Priority, b.Weight, b.Port, b.Target)
		case *dnsmessage.PTRResource:
			s = "PTR " + b.PTR.String()
		case *dnsmessage.TXTResource:
			s = "TXT " + strings.Join(b.TXT, " ")
		case *dnsmessage.SOAResource:
			s = "SOA " + b.NS.String()
		default:
			s = fmt.Sprintf("%T", b)
		}
		out = append(out, s)
	}
	return out
}

func TestResolve(t *testing.T) {
	r := fixture(t)
	const (
		noerror  = dnsmessage.RCodeSuccess
		nxdomain = dnsmessage.RCodeNameError
		forward  = dnsmessage.RCode(0xffff)
	)
	A, AAAA, SRV, PTR, TXT, SOA := dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeSRV, dnsmessage.TypePTR, dnsmessage.TypeTXT, dnsmessage.TypeSOA
	tests := []struct {
		name  string
		qtype dnsmessage.Type
		rcode dnsmessage.RCode
		want  []string
		extra []string
	}{
		{"kubernetes.default.svc.cluster.local.", A, noerror, []string{"A 10.43.0.1"}, nil},
		{"KUBERNETES.Default.SVC.Cluster.Local.", A, noerror, []string{"A 10.43.0.1"}, nil},
		{"kubernetes.default.svc.cluster.local.", AAAA, noerror, nil, nil}, // NODATA
		{"nope.default.svc.cluster.local.", A, nxdomain, nil, nil},
		{"web.nope.svc.cluster.local.", A, nxdomain, nil, nil},
		// Headless: the ready endpoints of every slice, once each.
		{"db.default.svc.cluster.local.", A, noerror, []string{"A 10.88.0.5", "A 10.88.0.6", "A 10.88.0.7"}, nil},
		{"db-0.db.default.svc.cluster.local.", A, noerror, []string{"A 10.88.0.5"}, nil},
		{"db-1.db.default.svc.cluster.local.", A, noerror, []string{"A 10.88.0.6"}, nil},
		{"db-3.db.default.svc.cluster.local.", A, nxdomain, nil, nil}, // not ready
		{"10-88-0-7.db.default.svc.cluster.local.", A, noerror, []string{"A 10.88.0.7"}, nil},
		{"db-0.web.default.svc.cluster.local.", A, nxdomain, nil, nil}, // not headless
		{"empty.other.svc.cluster.local.", A, noerror, nil, nil},       // exists, no ready endpoint
		// SRV: named ports only; headless ones name each endpoint and its port.
		{"_https._tcp.kubernetes.default.svc.cluster.local.", SRV, noerror, []string{"SRV 0 100 443 kubernetes.default.svc.cluster.local."}, []string{"A 10.43.0.1"}},
		{"_dns._udp.web.default.svc.cluster.local.", SRV, noerror, []string{"SRV 0 100 53 web.default.svc.cluster.local."}, []string{"A 10.43.0.20"}},
		{"_http._tcp.web.default.svc.cluster.local.", SRV, noerror, []string{"SRV 0 100 80 web.default.svc.cluster.local."}, []string{"A 10.43.0.20"}},
		{"_http._udp.web.default.svc.cluster.local.", SRV, nxdomain, nil, nil},
		{"_tcp.web.default.svc.cluster.local.", SRV, noerror, nil, nil},
		{"_pg._tcp.db.default.svc.cluster.local.", SRV, noerror, []string{
			"SRV 0 100 15432 db-0.db.default.svc.cluster.local.",
			"SRV 0 100 15432 db-1.db.default.svc.cluster.local.",
			"SRV 0 100 15432 10-88-0-7.db.default.svc.cluster.local.",
		}, []string{"A 10.88.0.5", "A 10.88.0.6", "A 10.88.0.7"}},
		{"_https._tcp.kubernetes.default.svc.cluster.local.", A, noerror, nil, nil},
		// ExternalName: a CNAME, followed.
		{"ext.default.svc.cluster.local.", A, noerror, []string{"CNAME example.com.", "A 192.0.2.80"}, nil},
		{"ext.default.svc.cluster.local.", dnsmessage.TypeCNAME, noerror, []string{"CNAME example.com."}, nil},
		{"alias.default.svc.cluster.local.", A, noerror, []string{"CNAME web.default.svc.cluster.local.", "A 10.43.0.20"}, nil},
		// Pods by address.
		{"10-88-1-9.default.pod.cluster.local.", A, noerror, []string{"A 10.88.1.9"}, nil},
		{"10-88-1-9.default.pod.cluster.local.", AAAA, noerror, nil, nil},
		{"not-an-ip.default.pod.cluster.local.", A, nxdomain, nil, nil},
		// The zone itself and its empty non-terminals.
		{"cluster.local.", SOA, noerror, []string{"SOA ns.dns.cluster.local."}, nil},
		{"cluster.local.", A, noerror, nil, nil},
		{"svc.cluster.local.", A, noerror, nil, nil},
		{"default.svc.cluster.local.", A, noerror, nil, nil},
		{"nons.svc.cluster.local.", A, nxdomain, nil, nil},
		{"foo.cluster.local.", A, nxdomain, nil, nil},
		{"a.b.c.d.e.svc.cluster.local.", A, nxdomain, nil, nil},
		{"dns-version.cluster.local.", TXT, noerror, []string{"TXT " + SchemaVersion}, nil},
		// Reverse: cluster IPs and endpoints; other addresses upstream.
		{"1.0.43.10.in-addr.arpa.", PTR, noerror, []string{"PTR kubernetes.default.svc.cluster.local."}, nil},
		{"5.0.88.10.in-addr.arpa.", PTR, noerror, []string{"PTR db-0.db.default.svc.cluster.local."}, nil},
		{"9.9.9.9.in-addr.arpa.", PTR, forward, nil, nil},
		// Outside the domain: forwarded.
		{"example.org.", A, forward, nil, nil},
		{"cluster.local.example.org.", A, forward, nil, nil},
		{"xcluster.local.", A, forward, nil, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%v", tc.name, tc.qtype), func(t *testing.T) {
			rep, local := r.Resolve(dnsmessage.Question{Name: dnsmessage.MustNewName(tc.name), Type: tc.qtype, Class: dnsmessage.ClassINET})
			if tc.rcode == forward {
				if local {
					t.Fatalf("answered locally (%v %v), want it forwarded", rep.RCode, format(rep.Answers))
				}
				return
			}
			if !local {
				t.Fatalf("forwarded, want a local answer")
			}
			if rep.RCode != tc.rcode {
				t.Errorf("rcode %v, want %v", rep.RCode, tc.rcode)
			}
			if got := format(rep.Answers); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("answers %q, want %q", got, tc.want)
			}
			if got := format(rep.Additionals); !reflect.DeepEqual(got, tc.extra) {
				t.Errorf("additionals %q, want %q", got, tc.extra)
			}
			for i, a := range rep.Answers {
				// Records after a CNAME carry its target's name.
				if a.Header.TTL != TTL || i == 0 && a.Header.Name.String() != tc.name {
					t.Errorf("record %v: want name %s (as asked) and TTL %d", a.Header, tc.name, TTL)
				}
			}
			if len(rep.Answers) == 0 {
				if got := format(rep.Authorities); !reflect.DeepEqual(got, []string{"SOA ns.dns.cluster.local."}) {
					t.Errorf("negative answer authority %q, want the zone's SOA", got)
				}
			}
		})
	}
}

func TestCheckDomain(t *testing.T) {
	for _, d := range []string{"cluster.local", "cluster.local.", "a-b.example"} {
		if err := CheckDomain(d); err != nil {
			t.Errorf("CheckDomain(%q): %v", d, err)
		}
	}
	for _, d := range []string{"", ".", "a..b", "-a.b", "a_b.c", strings.Repeat("a", 64) + ".b"} {
		if err := CheckDomain(d); err == nil || !strings.Contains(err.Error(), "cluster.local") {
			t.Errorf("CheckDomain(%q) = %v, want an error naming an example", d, err)
		}
	}
}

// FuzzResolve: any question gets a reply that packs (no panic, no name
// too long), or is left to the upstreams.
func FuzzResolve(f *testing.F) {
	r := fixture(f)
	for _, n := range []string{"db.default.svc.cluster.local.", "_pg._tcp.db.default.svc.cluster.local.", "5.0.88.10.in-addr.arpa.", "1-2-3-4.x.pod.cluster.local.", "ext.default.svc.cluster.local."} {
		f.Add(n, uint16(dnsmessage.TypeA))
		f.Add(n, uint16(dnsmessage.TypeSRV))
	}
	f.Fuzz(func(t *testing.T, name string, qtype uint16) {
		n, err := dnsmessage.NewName(name)
		q := dnsmessage.Question{Name: n, Type: dnsmessage.Type(qtype), Class: dnsmessage.ClassINET}
		if err != nil {
			return
		}
		if _, err := (&dnsmessage.Message{Questions: []dnsmessage.Question{q}}).Pack(); err != nil {
			return // no such question comes off the wire
		}
		rep, local := r.Resolve(q)
		if !local {
			return
		}
		m := dnsmessage.Message{Header: dnsmessage.Header{Response: true, RCode: rep.RCode}, Questions: []dnsmessage.Question{q},
			Answers: rep.Answers, Authorities: rep.Authorities, Additionals: rep.Additionals}
		if _, err := m.Pack(); err != nil {
			t.Fatalf("reply to %s %v does not pack: %v", name, q.Type, err)
		}
	})
}
