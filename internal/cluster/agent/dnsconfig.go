package agent

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/berth/berth/internal/engine/network/dns"
)

// podDNS is the resolver configuration of a pod's sandbox, as the kubelet
// derives it from pod.spec.dnsPolicy and pod.spec.dnsConfig. Empty fields
// leave the engine's default (the network's DNS server; the host's file
// on the host network).
type podDNS struct {
	Nameservers, Searches, Options []string
}

// dnsSettings are the node's: the cluster DNS address ("" when the agent
// serves none), the cluster domain and the node's resolv.conf.
type dnsSettings struct {
	clusterDNS string
	domain     string
	resolvConf string
}

// Limits glibc's resolver honours (and the kubelet enforces).
const (
	maxNameservers = 3
	maxSearches    = 32
)

// hostResolv reads the node's resolv.conf. Loopback nameservers (a local
// stub such as systemd-resolved) are dropped: a pod on the bridge cannot
// reach them, and the engine's network DNS forwards to them instead.
func (s dnsSettings) hostResolv(hostNetwork bool) podDNS {
	data, err := os.ReadFile(s.resolvConf)
	if err != nil {
		return podDNS{}
	}
	rc := dns.ParseResolvConf(data)
	out := podDNS{Searches: rc.Search, Options: rc.Options}
	for _, ns := range rc.Nameservers {
		if a, err := netip.ParseAddr(ns); err == nil && (hostNetwork || !a.IsLoopback()) {
			out.Nameservers = append(out.Nameservers, ns)
		}
	}
	return out
}

// forPod computes the pod's resolver configuration (the kubelet's
// GetPodDNS):
//   - ClusterFirst (the default): the cluster DNS, searches
//     <ns>.svc.<domain> svc.<domain> <domain> then the node's, ndots:5;
//     a hostNetwork pod, or a node without cluster DNS, gets Default;
//   - ClusterFirstWithHostNet: ClusterFirst, also on the host network;
//   - Default: the node's resolv.conf;
//   - None: pod.spec.dnsConfig alone.
//
// dnsConfig is merged in as Kubernetes does: nameservers and searches
// appended (duplicates dropped), options replacing those of the same name.
// hostDefault reports that the result is exactly the node's file (a
// hostNetwork pod then simply sees it).
func (s dnsSettings) forPod(pod *corev1.Pod) (cfg podDNS, hostDefault bool, err error) {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	cluster := s.clusterDNS != "" &&
		(policy == corev1.DNSClusterFirstWithHostNet || policy == corev1.DNSClusterFirst && !pod.Spec.HostNetwork)
	switch {
	case policy == corev1.DNSNone:
		if pod.Spec.DNSConfig == nil {
			return podDNS{}, false, fmt.Errorf("pod %s/%s: dnsPolicy None needs spec.dnsConfig (nameservers, searches or options)", pod.Namespace, pod.Name)
		}
	case cluster:
		cfg.Nameservers = []string{s.clusterDNS}
		cfg.Searches = []string{pod.Namespace + ".svc." + s.domain, "svc." + s.domain, s.domain}
		cfg.Searches = append(cfg.Searches, s.hostResolv(pod.Spec.HostNetwork).Searches...)
		cfg.Options = []string{"ndots:5"}
	default:
		cfg = s.hostResolv(pod.Spec.HostNetwork)
		hostDefault = pod.Spec.DNSConfig == nil
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		cfg.Nameservers = append(cfg.Nameservers, dc.Nameservers...)
		cfg.Searches = append(cfg.Searches, dc.Searches...)
		for _, o := range dc.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			cfg.Options = mergeOption(cfg.Options, o.Name, opt)
		}
	}
	cfg.Nameservers = dedupe(cfg.Nameservers)
	cfg.Searches = dedupe(cfg.Searches)
	for _, ns := range cfg.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			return podDNS{}, false, fmt.Errorf("pod %s/%s: dnsConfig nameserver %q: want an IP address", pod.Namespace, pod.Name, ns)
		}
	}
	if len(cfg.Nameservers) > maxNameservers {
		cfg.Nameservers = cfg.Nameservers[:maxNameservers]
	}
	if len(cfg.Searches) > maxSearches {
		cfg.Searches = cfg.Searches[:maxSearches]
	}
	return cfg, hostDefault, nil
}

// mergeOption sets option name (rendered as opt) in opts, replacing an
// option of the same name.
func mergeOption(opts []string, name, opt string) []string {
	for i, o := range opts {
		if n, _, _ := strings.Cut(o, ":"); n == name {
			out := slices.Clone(opts)
			out[i] = opt
			return out
		}
	}
	return append(opts, opt)
}

func dedupe(in []string) []string {
	var out []string
	for _, s := range in {
		s = strings.TrimSuffix(s, ".")
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// podHostnameFQDN is the hostname of the pod's sandbox: podHostname, or
// with setHostnameAsFQDN and a subdomain <hostname>.<subdomain>.<ns>.svc.<domain>
// (at most 64 characters, as the kubelet requires).
func (s dnsSettings) podHostnameFQDN(pod *corev1.Pod) (string, error) {
	h := podHostname(pod)
	if pod.Spec.SetHostnameAsFQDN == nil || !*pod.Spec.SetHostnameAsFQDN || pod.Spec.Subdomain == "" {
		return h, nil
	}
	fqdn := h + "." + pod.Spec.Subdomain + "." + pod.Namespace + ".svc." + s.domain
	if len(fqdn) > 64 {
		return "", fmt.Errorf("pod %s/%s: setHostnameAsFQDN: FQDN %s is too long (64 characters is the max, %d characters requested)", pod.Namespace, pod.Name, fqdn, len(fqdn))
	}
	return fqdn, nil
}
