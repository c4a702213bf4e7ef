package endpoints

import (
	"cmp"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// MirrorManagedBy is the endpointslice.kubernetes.io/managed-by value on
// the slices mirrored from the Endpoints of a Service without a selector.
//
// Kubernetes' EndpointSliceMirroring controller does the same: consumers
// that read only slices (berth's service proxy and DNS, like kube-proxy)
// then also reach Services whose endpoints the user (or the API server,
// for the "kubernetes" Service) writes as Endpoints.
const MirrorManagedBy = "endpointslicemirroring-controller.berth.dev"

// mirrorable reports whether ep is a user's Endpoints to mirror: not the
// controller's own, and not opted out with
// endpointslice.kubernetes.io/skip-mirror=true.
func mirrorable(ep *corev1.Endpoints) bool {
	return ep.Labels[LabelEndpointsManagedBy] != EndpointsManagedBy && ep.Labels[discoveryv1.LabelSkipMirror] != "true"
}

// mirrorSlices turns ep's subsets into slice endpoints grouped by port
// set. Only IPv4 addresses are mirrored (the slices are IPv4); an address
// listed twice under one port set counts once, ready first.
func mirrorSlices(ep *corev1.Endpoints) map[string]*sliceGroup {
	groups := map[string]*sliceGroup{}
	for _, s := range ep.Subsets {
		ports := make([]discoveryv1.EndpointPort, 0, len(s.Ports))
		for _, p := range s.Ports {
			ports = append(ports, discoveryv1.EndpointPort{Name: ptr(p.Name), Port: ptr(p.Port), Protocol: ptr(cmp.Or(p.Protocol, corev1.ProtocolTCP)), AppProtocol: p.AppProtocol})
		}
		k := slicePortsKey(ports)
		g := groups[k]
		if g == nil {
			g = &sliceGroup{ports: ports, eps: map[string]discoveryv1.Endpoint{}}
			groups[k] = g
		}
		add := func(a corev1.EndpointAddress, ready bool) {
			ip, err := netip.ParseAddr(a.IP)
			if err != nil || !ip.Is4() {
				return
			}
			e := discoveryv1.Endpoint{
				Addresses:  []string{ip.String()},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(ready), Terminating: ptr(false)},
				NodeName:   a.NodeName,
			}
			if a.TargetRef != nil {
				e.TargetRef = a.TargetRef.DeepCopy()
			}
			if a.Hostname != "" {
				e.Hostname = ptr(a.Hostname)
			}
			k := endpointKey(&e)
			if _, dup := g.eps[k]; !dup {
				g.eps[k] = e
			}
		}
		for _, a := range s.Addresses {
			add(a, true)
		}
		for _, a := range s.NotReadyAddresses {
			add(a, false)
		}
		if len(g.eps) == 0 {
			delete(groups, k)
		}
	}
	return groups
}
