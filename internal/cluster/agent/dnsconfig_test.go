package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestPodDNS(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0 ndots:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := dnsSettings{clusterDNS: "169.254.20.10", domain: "cluster.local", resolvConf: rc}
	off := dnsSettings{domain: "cluster.local", resolvConf: rc}
	v := "2"
	cluster := podDNS{Nameservers: []string{"169.254.20.10"}, Searches: []string{"ns1.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"}, Options: []string{"ndots:5"}}
	node := podDNS{Nameservers: []string{"192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"edns0", "ndots:1"}}
	nodeHost := podDNS{Nameservers: []string{"127.0.0.53", "192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"edns0", "ndots:1"}}
	tests := []struct {
		name        string
		d           dnsSettings
		mod         func(*corev1.Pod)
		want        podDNS
		hostDefault bool
	}{
		{"default policy is ClusterFirst", d, nil, cluster, false},
		{"ClusterFirst", d, func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSClusterFirst }, cluster, false},
		{"no cluster DNS: the node's", off, nil, node, true},
		{"Default: the node's, loopback servers dropped", d, func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSDefault }, node, true},
		{"hostNetwork ClusterFirst: the node's as is", d, func(p *corev1.Pod) { p.Spec.HostNetwork = true }, nodeHost, true},
		{"ClusterFirstWithHostNet", d, func(p *corev1.Pod) {
			p.Spec.HostNetwork, p.Spec.DNSPolicy = true, corev1.DNSClusterFirstWithHostNet
		}, cluster, false},
		{"ClusterFirstWithHostNet off the host network", d, func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet }, cluster, false},
		{"None: dnsConfig only", d, func(p *corev1.Pod) {
			p.Spec.DNSPolicy = corev1.DNSNone
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: []string{"a.example"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &v}}}
		}, podDNS{Nameservers: []string{"192.0.2.1"}, Searches: []string{"a.example"}, Options: []string{"ndots:2"}}, false},
		{"dnsConfig merged into ClusterFirst", d, func(p *corev1.Pod) {
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "169.254.20.10"}, Searches: []string{"svc.cluster.local", "b.example"},
				Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &v}, {Name: "edns0"}}}
		}, podDNS{Nameservers: []string{"169.254.20.10", "192.0.2.1"}, Searches: []string{"ns1.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "b.example"},
			Options: []string{"ndots:2", "edns0"}}, false},
		{"at most 3 nameservers", d, func(p *corev1.Pod) {
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}}
		}, podDNS{Nameservers: []string{"169.254.20.10", "192.0.2.1", "192.0.2.2"}, Searches: cluster.Searches, Options: cluster.Options}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testPod("p", tc.mod)
			p.Namespace = "ns1"
			got, hostDefault, err := tc.d.forPod(p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || hostDefault != tc.hostDefault {
				t.Errorf("got %+v (host default %v), want %+v (%v)", got, hostDefault, tc.want, tc.hostDefault)
			}
		})
	}

	// The sandbox request carries it; a hostNetwork pod with the node's
	// configuration keeps the host's file.
	p := testPod("p", nil)
	p.Namespace = "ns1"
	req, err := sandboxRequest(p, 0, d)
	if err != nil || !reflect.DeepEqual(req.HostConfig.DNS, cluster.Nameservers) || !reflect.DeepEqual(req.HostConfig.DNSSearch, cluster.Searches) || !reflect.DeepEqual(req.HostConfig.DNSOptions, cluster.Options) {
		t.Errorf("sandbox DNS: %v %v %v %v, want %+v", err, req.HostConfig.DNS, req.HostConfig.DNSSearch, req.HostConfig.DNSOptions, cluster)
	}
	hp := testPod("h", func(p *corev1.Pod) { p.Spec.HostNetwork = true })
	if req, _ := sandboxRequest(hp, 0, d); req.HostConfig.DNS != nil || req.HostConfig.DNSSearch != nil {
		t.Errorf("hostNetwork sandbox: DNS %v search %v, want the host's file", req.HostConfig.DNS, req.HostConfig.DNSSearch)
	}

	// Errors name the field.
	none := testPod("n", func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSNone })
	if _, _, err := d.forPod(none); err == nil || !strings.Contains(err.Error(), "dnsConfig") {
		t.Errorf("None without dnsConfig: %v, want an error naming dnsConfig", err)
	}
	badNS := testPod("b", func(p *corev1.Pod) { p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"dns.example"}} })
	if _, err := sandboxRequest(badNS, 0, d); err == nil || !strings.Contains(err.Error(), `"dns.example"`) {
		t.Errorf("bad nameserver: %v, want an error naming it", err)
	}
}

func TestPodHostnameFQDN(t *testing.T) {
	d := dnsSettings{domain: "cluster.local"}
	yes := true
	tests := []struct {
		mod  func(*corev1.Pod)
		want string
	}{
		{nil, "web-0"},
		{func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "db-0", "db" }, "db-0"},
		{func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain, p.Spec.SetHostnameAsFQDN = "db-0", "db", &yes }, "db-0.db.ns1.svc.cluster.local"},
		{func(p *corev1.Pod) { p.Spec.SetHostnameAsFQDN = &yes }, "web-0"}, // no subdomain
	}
	for _, tc := range tests {
		p := testPod("web-0", tc.mod)
		p.Namespace = "ns1"
		req, err := sandboxRequest(p, 0, d)
		if err != nil || req.Hostname != tc.want {
			t.Errorf("hostname %q (%v), want %q", req.Hostname, err, tc.want)
		}
	}
	long := testPod("x", func(p *corev1.Pod) {
		p.Spec.Hostname, p.Spec.Subdomain, p.Spec.SetHostnameAsFQDN = strings.Repeat("h", 40), "sub", &yes
	})
	if _, err := sandboxRequest(long, 0, d); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("long FQDN: %v, want a too-long error", err)
	}
}
