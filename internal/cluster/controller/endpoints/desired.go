package endpoints

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Label keys and values the controller writes. The Endpoints label is
// Kubernetes' own (its value too), so that tools that tell the
// controller's Endpoints from users' read berth's the same way.
const (
	// ManagedBy is the endpointslice.kubernetes.io/managed-by value on
	// the slices this controller writes; slices with another value (a
	// user's, another controller's) are left alone.
	ManagedBy = "endpointslice-controller.berth.dev"
	// LabelEndpointsManagedBy marks Endpoints written by this controller,
	// so that only those are deleted when their Service goes or loses
	// its selector (a selectorless Service's Endpoints are the user's).
	LabelEndpointsManagedBy = "endpoints.kubernetes.io/managed-by"
	// EndpointsManagedBy is LabelEndpointsManagedBy's value.
	EndpointsManagedBy = "endpoint-controller"
	// AnnotationOverCapacity is set to "truncated" on an Endpoints that
	// holds only the first maxEndpointsAddresses addresses.
	AnnotationOverCapacity = "endpoints.kubernetes.io/over-capacity"
)

// maxEndpointsAddresses is how many addresses one Endpoints holds at most
// (Kubernetes' limit; EndpointSlices have none).
const maxEndpointsAddresses = 1000

// podReady reports the pod's Ready condition.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podIPv4 returns the pod's IPv4 address, or "" if it has none yet. The
// slices are addressType IPv4 and berth's pod network is IPv4 only.
func podIPv4(p *corev1.Pod) string {
	ips := []string{p.Status.PodIP}
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
			return a.String()
		}
	}
	return ""
}

// inEndpoints reports whether a pod can have endpoints at all: it has an
// address and has not finished. Terminating pods are kept only if
// includeTerminating (the slices always carry them, flagged; the legacy
// Endpoints only when publishNotReadyAddresses asks for every pod).
func inEndpoints(p *corev1.Pod, includeTerminating bool) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if podIPv4(p) == "" {
		return false
	}
	return includeTerminating || p.DeletionTimestamp == nil
}

// findPort resolves a service port's targetPort on pod: a number is used
// as is; a name is looked up among the pod's container ports with the
// service port's protocol. A pod without the named port has no endpoint
// for that service port.
func findPort(p *corev1.Pod, sp *corev1.ServicePort) (int32, bool) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		proto := cmp.Or(sp.Protocol, corev1.ProtocolTCP)
		// Sidecars (init containers that keep running) serve too.
		var cs []corev1.Container
		for _, c := range p.Spec.InitContainers {
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				cs = append(cs, c)
			}
		}
		cs = append(cs, p.Spec.Containers...)
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name == tp.StrVal && cmp.Or(cp.Protocol, corev1.ProtocolTCP) == proto {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	default:
		// An unset targetPort means the service port (the API server
		// defaults it; an old object may lack it).
		return sp.Port, true
	}
}

// setHostname reports whether pod's endpoint carries its hostname: a pod
// with spec.hostname whose spec.subdomain names the Service (the headless
// Service of a StatefulSet), as Kubernetes does.
func setHostname(p *corev1.Pod, svc *corev1.Service) bool {
	return p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name && p.Namespace == svc.Namespace
}

func headless(svc *corev1.Service) bool { return svc.Spec.ClusterIP == corev1.ClusterIPNone }

func podRef(p *corev1.Pod) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}
}

// ownLabels are the Service's labels plus the keys the controller owns.
func ownLabels(svc *corev1.Service, own map[string]string) map[string]string {
	l := maps.Clone(svc.Labels)
	if l == nil {
		l = map[string]string{}
	}
	// The controller's keys win over the Service's copies of them.
	delete(l, corev1.IsHeadlessService)
	maps.Copy(l, own)
	if headless(svc) {
		l[corev1.IsHeadlessService] = ""
	}
	return l
}

// desiredEndpoints computes the legacy Endpoints' subsets, labels and
// annotations for svc from its selected pods.
func desiredEndpoints(svc *corev1.Service, pods []*corev1.Pod) *corev1.Endpoints {
	tolerate := svc.Spec.PublishNotReadyAddresses
	// Each address with the ports it serves, ready or not: Kubernetes
	// groups addresses with the same port set into one subset.
	type entry struct {
		addr  corev1.EndpointAddress
		ready bool
		ports []corev1.EndpointPort
	}
	var entries []entry
	for _, p := range pods {
		if !inEndpoints(p, tolerate) {
			continue
		}
		e := entry{
			addr:  corev1.EndpointAddress{IP: podIPv4(p), TargetRef: podRef(p)},
			ready: tolerate || podReady(p),
		}
		if p.Spec.NodeName != "" {
			e.addr.NodeName = &p.Spec.NodeName
		}
		if setHostname(p, svc) {
			e.addr.Hostname = p.Spec.Hostname
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, ok := findPort(p, sp)
			if !ok {
				continue
			}
			e.ports = append(e.ports, corev1.EndpointPort{Name: sp.Name, Port: port, Protocol: cmp.Or(sp.Protocol, corev1.ProtocolTCP), AppProtocol: sp.AppProtocol})
		}
		// A pod that resolves none of the ports has no endpoint, unless
		// the Service is headless without ports (DNS-only).
		if len(e.ports) == 0 && !(headless(svc) && len(svc.Spec.Ports) == 0) {
			continue
		}
		sortPorts(e.ports)
		entries = append(entries, e)
	}
	// Over capacity: keep ready addresses first, as Kubernetes does.
	truncated := len(entries) > maxEndpointsAddresses
	if truncated {
		slices.SortStableFunc(entries, func(a, b entry) int {
			if a.ready != b.ready {
				if a.ready {
					return -1
				}
				return 1
			}
			return 0
		})
		entries = entries[:maxEndpointsAddresses]
	}
	bySet := map[string]*corev1.EndpointSubset{}
	var keys []string
	for _, e := range entries {
		k := portsKey(e.ports)
		s := bySet[k]
		if s == nil {
			s = &corev1.EndpointSubset{Ports: e.ports}
			bySet[k] = s
			keys = append(keys, k)
		}
		if e.ready {
			s.Addresses = append(s.Addresses, e.addr)
		} else {
			s.NotReadyAddresses = append(s.NotReadyAddresses, e.addr)
		}
	}
	slices.Sort(keys)
	ep := &corev1.Endpoints{}
	ep.Name, ep.Namespace = svc.Name, svc.Namespace
	ep.Labels = ownLabels(svc, map[string]string{LabelEndpointsManagedBy: EndpointsManagedBy})
	if truncated {
		ep.Annotations = map[string]string{AnnotationOverCapacity: "truncated"}
	}
	for _, k := range keys {
		s := bySet[k]
		sortAddresses(s.Addresses)
		sortAddresses(s.NotReadyAddresses)
		ep.Subsets = append(ep.Subsets, *s)
	}
	return ep
}

func sortPorts(ps []corev1.EndpointPort) {
	slices.SortFunc(ps, func(a, b corev1.EndpointPort) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol))
	})
}

func portsKey(ps []corev1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ps {
		ap := ""
		if p.AppProtocol != nil {
			ap = *p.AppProtocol
		}
		fmt.Fprintf(&b, "%s/%d/%s/%s,", p.Name, p.Port, p.Protocol, ap)
	}
	return b.String()
}

func sortAddresses(as []corev1.EndpointAddress) {
	slices.SortFunc(as, func(a, b corev1.EndpointAddress) int {
		return cmp.Or(compareIP(a.IP, b.IP), cmp.Compare(refName(a.TargetRef), refName(b.TargetRef)))
	})
}

func compareIP(a, b string) int {
	x, errx := netip.ParseAddr(a)
	y, erry := netip.ParseAddr(b)
	if errx != nil || erry != nil {
		return cmp.Compare(a, b)
	}
	return x.Compare(y)
}

func refName(r *corev1.ObjectReference) string {
	if r == nil {
		return ""
	}
	return r.Name
}

// sliceGroup is the endpoints of the pods that resolve the Service's
// ports to the same numbers: one group of slices each, as in Kubernetes.
type sliceGroup struct {
	ports []discoveryv1.EndpointPort
	// eps by pod name (the pods of one namespace).
	eps map[string]discoveryv1.Endpoint
}

// desiredSlices computes the slice endpoints of svc's pods, grouped by
// resolved port set (keyed by slicePortsKey). zone returns a node's
// topology.kubernetes.io/zone ("" if unknown).
func desiredSlices(svc *corev1.Service, pods []*corev1.Pod, zone func(node string) string) map[string]*sliceGroup {
	groups := map[string]*sliceGroup{}
	for _, p := range pods {
		if !inEndpoints(p, true) {
			continue
		}
		var ports []discoveryv1.EndpointPort
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, ok := findPort(p, sp)
			if !ok {
				continue
			}
			ports = append(ports, discoveryv1.EndpointPort{Name: ptr(sp.Name), Port: ptr(port), Protocol: ptr(cmp.Or(sp.Protocol, corev1.ProtocolTCP)), AppProtocol: sp.AppProtocol})
		}
		if len(ports) == 0 && !(headless(svc) && len(svc.Spec.Ports) == 0) {
			continue
		}
		serving := podReady(p)
		terminating := p.DeletionTimestamp != nil
		// A terminating pod is never ready, unless the Service publishes
		// every address (Kubernetes' rule, for compatibility).
		ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
		ep := discoveryv1.Endpoint{
			Addresses:  []string{podIPv4(p)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(serving), Terminating: ptr(terminating)},
			TargetRef:  podRef(p),
		}
		if p.Spec.NodeName != "" {
			ep.NodeName = ptr(p.Spec.NodeName)
			if z := zone(p.Spec.NodeName); z != "" {
				ep.Zone = ptr(z)
			}
		}
		if setHostname(p, svc) {
			ep.Hostname = ptr(p.Spec.Hostname)
		}
		k := slicePortsKey(ports)
		g := groups[k]
		if g == nil {
			g = &sliceGroup{ports: ports, eps: map[string]discoveryv1.Endpoint{}}
			groups[k] = g
		}
		g.eps[endpointKey(&ep)] = ep
	}
	return groups
}

// slicePortsKey identifies a port set regardless of order.
func slicePortsKey(ps []discoveryv1.EndpointPort) string {
	keys := make([]string, 0, len(ps))
	for _, p := range ps {
		keys = append(keys, fmt.Sprintf("%s/%d/%s/%s", deref(p.Name), deref(p.Port), deref(p.Protocol), deref(p.AppProtocol)))
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// endpointKey identifies a slice endpoint within a Service: the name of
// its pod, or "ip/" and its address for one without a pod (mirrored from
// a user's Endpoints). Names cannot hold a "/", so the two never meet.
func endpointKey(ep *discoveryv1.Endpoint) string {
	if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && ep.TargetRef.Name != "" {
		return ep.TargetRef.Name
	}
	if len(ep.Addresses) > 0 {
		return "ip/" + ep.Addresses[0]
	}
	return ""
}

func sortSliceEndpoints(eps []discoveryv1.Endpoint) {
	slices.SortFunc(eps, func(a, b discoveryv1.Endpoint) int {
		return cmp.Compare(endpointKey(&a), endpointKey(&b))
	})
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
