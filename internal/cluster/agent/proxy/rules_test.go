package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func service(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Ports: ports, Type: corev1.ServiceTypeClusterIP}}
}

func sport(name string, proto corev1.Protocol, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: port}
}

type endpoint struct {
	ip                          string
	node                        string
	ready, serving, terminating *bool
}

func slice(ns, svc, name string, ports []discoveryv1.EndpointPort, eps ...endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: ports,
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.node != "" {
			ep.NodeName = ptr.To(e.node)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func eport(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(proto), Port: ptr.To(port)}
}

var (
	yes = ptr.To(true)
	no  = ptr.To(false)
)

func TestBuild(t *testing.T) {
	httpPorts := []discoveryv1.EndpointPort{eport("http", corev1.ProtocolTCP, 8080)}
	unnamed := []discoveryv1.EndpointPort{eport("", corev1.ProtocolTCP, 9090)}
	nodePort := service("default", "np", "10.43.0.5", corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080})
	nodePort.Spec.Type = corev1.ServiceTypeNodePort
	local := service("default", "local", "10.43.0.6", sport("http", corev1.ProtocolTCP, 80))
	local.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	sticky := service("default", "sticky", "10.43.0.7", sport("http", corev1.ProtocolTCP, 80))
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	ext := service("default", "ext", "", sport("", corev1.ProtocolTCP, 80))
	ext.Spec.Type = corev1.ServiceTypeExternalName
	ext.Spec.ExternalName = "example.org"

	for _, tc := range []struct {
		name   string
		svcs   []*corev1.Service
		slices []*discoveryv1.EndpointSlice
		want   string
	}{
		{
			name: "ready endpoints only, nil ready counts as ready, sorted, deduplicated across slices",
			svcs: []*corev1.Service{service("default", "web", "10.43.0.10", sport("http", "TCP", 80))},
			slices: []*discoveryv1.EndpointSlice{
				slice("default", "web", "web-a", httpPorts, endpoint{ip: "10.88.1.3", ready: yes}, endpoint{ip: "10.88.1.2"}, endpoint{ip: "10.88.1.4", ready: no}),
				slice("default", "web", "web-b", httpPorts, endpoint{ip: "10.88.1.3", ready: yes}),
			},
			want: "default/web:http 10.43.0.10:80/tcp -> 10.88.1.2:8080 10.88.1.3:8080\n",
		},
		{
			name: "no ready endpoint: serving and terminating ones take over",
			svcs: []*corev1.Service{service("default", "web", "10.43.0.10", sport("http", "TCP", 80))},
			slices: []*discoveryv1.EndpointSlice{slice("default", "web", "web-a", httpPorts,
				endpoint{ip: "10.88.1.2", ready: no, serving: yes, terminating: yes},
				endpoint{ip: "10.88.1.3", ready: no, serving: no, terminating: yes},
				endpoint{ip: "10.88.1.4", ready: no, serving: yes})},
			want: "default/web:http 10.43.0.10:80/tcp -> 10.88.1.2:8080\n",
		},
		{
			name: "a ready endpoint wins over terminating ones",
			svcs: []*corev1.Service{service("default", "web", "10.43.0.10", sport("http", "TCP", 80))},
			slices: []*discoveryv1.EndpointSlice{slice("default", "web", "web-a", httpPorts,
				endpoint{ip: "10.88.1.2", ready: no, serving: yes, terminating: yes}, endpoint{ip: "10.88.1.5", ready: yes})},
			want: "default/web:http 10.43.0.10:80/tcp -> 10.88.1.5:8080\n",
		},
		{
			name: "no endpoints: reject; slices of other namespaces, services and ports do not count",
			svcs: []*corev1.Service{service("default", "web", "10.43.0.10", sport("http", "TCP", 80))},
			slices: []*discoveryv1.EndpointSlice{
				slice("other", "web", "web-a", httpPorts, endpoint{ip: "10.88.1.2"}),
				slice("default", "web2", "web2-a", httpPorts, endpoint{ip: "10.88.1.3"}),
				slice("default", "web", "web-b", []discoveryv1.EndpointPort{eport("http", corev1.ProtocolUDP, 8080)}, endpoint{ip: "10.88.1.4"}),
				slice("default", "web", "web-c", unnamed, endpoint{ip: "10.88.1.5"}),
			},
			want: "default/web:http 10.43.0.10:80/tcp -> reject\n",
		},
		{
			name: "headless and ExternalName services get no rules; SCTP is skipped; TCP and UDP on one port",
			svcs: []*corev1.Service{
				service("default", "headless", "None", sport("", "TCP", 80)),
				ext,
				service("kube-system", "dns", "10.43.0.2", sport("dns", "UDP", 53), sport("dns-tcp", "TCP", 53), sport("x", "SCTP", 9)),
			},
			slices: []*discoveryv1.EndpointSlice{slice("kube-system", "dns", "dns-a",
				[]discoveryv1.EndpointPort{eport("dns", corev1.ProtocolUDP, 5353), eport("dns-tcp", corev1.ProtocolTCP, 5354)}, endpoint{ip: "10.88.2.9"})},
			want: "kube-system/dns:dns-tcp 10.43.0.2:53/tcp -> 10.88.2.9:5354\nkube-system/dns:dns 10.43.0.2:53/udp -> 10.88.2.9:5353\n",
		},
		{
			name: "unnamed single port; NodePort; internalTrafficPolicy Local keeps this node's endpoints",
			svcs: []*corev1.Service{service("default", "one", "10.43.0.4", sport("", "", 80)), nodePort, local, sticky},
			slices: []*discoveryv1.EndpointSlice{
				slice("default", "one", "one-a", unnamed, endpoint{ip: "10.88.1.2"}),
				slice("default", "np", "np-a", httpPorts, endpoint{ip: "10.88.1.3"}),
				slice("default", "local", "local-a", httpPorts, endpoint{ip: "10.88.1.7", node: "n1"}, endpoint{ip: "10.88.2.7", node: "n2"}, endpoint{ip: "10.88.3.7"}),
			},
			want: "default/one:80 10.43.0.4:80/tcp -> 10.88.1.2:9090\n" +
				"default/np:http 10.43.0.5:80/tcp nodePort 30080 -> 10.88.1.3:8080\n" +
				"default/local:http 10.43.0.6:80/tcp -> 10.88.1.7:8080\n" +
				"default/sticky:http 10.43.0.7:80/tcp affinity ClientIP -> reject\n",
		},
		{
			name: "IPv6 slices and addresses are ignored",
			svcs: []*corev1.Service{service("default", "web", "10.43.0.10", sport("http", "TCP", 80))},
			slices: []*discoveryv1.EndpointSlice{func() *discoveryv1.EndpointSlice {
				s := slice("default", "web", "web-v6", httpPorts, endpoint{ip: "fd00::1"})
				s.AddressType = discoveryv1.AddressTypeIPv6
				return s
			}(), slice("default", "web", "web-a", httpPorts, endpoint{ip: "fd00::2"}, endpoint{ip: "10.88.1.2"})},
			want: "default/web:http 10.43.0.10:80/tcp -> 10.88.1.2:8080\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Build(tc.svcs, tc.slices, "n1").String()
			if got != tc.want {
				t.Errorf("got:\n%swant:\n%s", got, tc.want)
			}
		})
	}
}

// TestBuildDoesNotModify: the inputs come from informer caches.
func TestBuildDoesNotModify(t *testing.T) {
	s := slice("default", "web", "web-a", []discoveryv1.EndpointPort{eport("http", corev1.ProtocolTCP, 8080)}, endpoint{ip: "10.88.1.3"}, endpoint{ip: "10.88.1.2"})
	before := s.DeepCopy()
	Build([]*corev1.Service{service("default", "web", "10.43.0.10", sport("http", "TCP", 80))}, []*discoveryv1.EndpointSlice{s}, "n1")
	if s.Endpoints[0].Addresses[0] != before.Endpoints[0].Addresses[0] || !strings.HasPrefix(s.Endpoints[1].Addresses[0], "10.88.1.2") {
		t.Errorf("Build reordered its input: %v", s.Endpoints)
	}
}

func TestStaleUDP(t *testing.T) {
	a, b := "10.88.1.2:53", "10.88.1.3:53"
	dns := func(eps ...string) Service {
		s := Service{Name: "kube-system/dns:dns", ClusterIP: netip.MustParseAddr("10.43.0.2"), Proto: "udp", Port: 53, NodePort: 30053}
		for _, e := range eps {
			s.Endpoints = append(s.Endpoints, netip.MustParseAddrPort(e))
		}
		return s
	}
	web := func(eps ...string) Service { // TCP: never flushed
		s := dns(eps...)
		s.Proto = "tcp"
		return s
	}
	rs := func(s ...Service) Ruleset { return Ruleset{Services: s} }
	for _, tc := range []struct {
		name       string
		prev, next Ruleset
		want       string
	}{
		{"unchanged", rs(dns(a, b)), rs(dns(a, b)), ""},
		{"endpoint added", rs(dns(a)), rs(dns(a, b)), ""},
		{"endpoint removed", rs(dns(a, b)), rs(dns(b)), "invalid IP:30053 via 10.88.1.2; 10.43.0.2:53 via 10.88.1.2"},
		{"first endpoint", rs(dns()), rs(dns(a)), "invalid IP:30053; 10.43.0.2:53"},
		{"new service", rs(), rs(dns(a)), "invalid IP:30053; 10.43.0.2:53"},
		{"service gone", rs(dns(a)), rs(), "invalid IP:30053 via 10.88.1.2; 10.43.0.2:53 via 10.88.1.2"},
		{"last endpoint gone", rs(dns(a)), rs(dns()), "invalid IP:30053 via 10.88.1.2; 10.43.0.2:53 via 10.88.1.2"},
		{"tcp", rs(web(a, b)), rs(web()), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range StaleUDP(tc.prev, tc.next) {
				s := netip.AddrPortFrom(f.Dst, f.Port).String()
				if !f.Dst.IsValid() {
					s = fmt.Sprintf("invalid IP:%d", f.Port)
				}
				if f.Endpoint.IsValid() {
					s += " via " + f.Endpoint.String()
				}
				got = append(got, s)
			}
			if g := strings.Join(got, "; "); g != tc.want {
				t.Errorf("got %q, want %q", g, tc.want)
			}
		})
	}
}
