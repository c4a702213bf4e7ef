package apiserver

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Endpoints and EndpointSlices are written by the endpoints controller and
// by users (for Services without a selector); the node agents' proxy and
// DNS read them, so malformed addresses and ports are refused here, with
// Kubernetes' limits.

// defaultEndpoints fills Kubernetes' defaults: a port without a protocol
// is TCP; a slice port without a name has the empty name.
func defaultEndpoints(obj any) {
	switch o := obj.(type) {
	case *corev1.Endpoints:
		for i := range o.Subsets {
			for j := range o.Subsets[i].Ports {
				if p := &o.Subsets[i].Ports[j]; p.Protocol == "" {
					p.Protocol = corev1.ProtocolTCP
				}
			}
		}
	case *discoveryv1.EndpointSlice:
		for i := range o.Ports {
			p := &o.Ports[i]
			if p.Protocol == nil {
				p.Protocol = ptr(corev1.ProtocolTCP)
			}
			if p.Name == nil {
				p.Name = ptr("")
			}
		}
	}
}

func validProtocol(p corev1.Protocol) bool {
	return p == corev1.ProtocolTCP || p == corev1.ProtocolUDP || p == corev1.ProtocolSCTP
}

func protocolErr(path string, p corev1.Protocol) fieldErr {
	return fieldErr{causeNotSupported, path, fmt.Sprintf("Unsupported value: %q: supported values: \"SCTP\", \"TCP\", \"UDP\"", p)}
}

func validateEndpoints(o *corev1.Endpoints) []fieldErr {
	var errs []fieldErr
	addrs := func(path string, as []corev1.EndpointAddress) {
		for i, a := range as {
			p := fmt.Sprintf("%s[%d]", path, i)
			if ip, err := netip.ParseAddr(a.IP); err != nil || ip.Zone() != "" {
				errs = append(errs, invalid(p+".ip", a.IP, "must be a valid IP address"))
			}
			if a.Hostname != "" {
				for _, m := range validation.IsDNS1123Label(a.Hostname) {
					errs = append(errs, invalid(p+".hostname", a.Hostname, m))
				}
			}
		}
	}
	for i, s := range o.Subsets {
		sp := fmt.Sprintf("subsets[%d]", i)
		if len(s.Addresses) == 0 && len(s.NotReadyAddresses) == 0 {
			errs = append(errs, required(sp, "must specify `addresses` or `notReadyAddresses`"))
		}
		addrs(sp+".addresses", s.Addresses)
		addrs(sp+".notReadyAddresses", s.NotReadyAddresses)
		names := map[string]bool{}
		for j, p := range s.Ports {
			pp := fmt.Sprintf("%s.ports[%d]", sp, j)
			if len(s.Ports) > 1 && p.Name == "" {
				errs = append(errs, required(pp+".name", ""))
			}
			if p.Name != "" && names[p.Name] {
				errs = append(errs, duplicate(pp+".name", p.Name))
			}
			names[p.Name] = true
			if p.Port < 1 || p.Port > 65535 {
				errs = append(errs, invalid(pp+".port", p.Port, "must be between 1 and 65535, inclusive"))
			}
			if !validProtocol(p.Protocol) {
				errs = append(errs, protocolErr(pp+".protocol", p.Protocol))
			}
		}
	}
	return errs
}

func validateEndpointSlice(o *discoveryv1.EndpointSlice) []fieldErr {
	var errs []fieldErr
	switch o.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	case "":
		errs = append(errs, required("addressType", ""))
	default:
		errs = append(errs, fieldErr{causeNotSupported, "addressType", fmt.Sprintf("Unsupported value: %q: supported values: \"FQDN\", \"IPv4\", \"IPv6\"", o.AddressType)})
	}
	if len(o.Endpoints) > 1000 {
		errs = append(errs, fieldErr{metav1.CauseTypeTooMany, "endpoints", fmt.Sprintf("Too many: %d: must have at most 1000 items", len(o.Endpoints))})
	}
	for i, ep := range o.Endpoints {
		p := fmt.Sprintf("endpoints[%d]", i)
		if len(ep.Addresses) == 0 || len(ep.Addresses) > 100 {
			errs = append(errs, invalid(p+".addresses", len(ep.Addresses), "must have between 1 and 100 addresses"))
		}
		for j, a := range ep.Addresses {
			if !validSliceAddress(o.AddressType, a) {
				errs = append(errs, invalid(fmt.Sprintf("%s.addresses[%d]", p, j), a, fmt.Sprintf("must be a valid %s address", o.AddressType)))
			}
		}
		if ep.Hostname != nil {
			for _, m := range validation.IsDNS1123Label(*ep.Hostname) {
				errs = append(errs, invalid(p+".hostname", *ep.Hostname, m))
			}
		}
	}
	if len(o.Ports) > 100 {
		errs = append(errs, fieldErr{metav1.CauseTypeTooMany, "ports", fmt.Sprintf("Too many: %d: must have at most 100 items", len(o.Ports))})
	}
	names := map[string]bool{}
	for i, port := range o.Ports {
		p := fmt.Sprintf("ports[%d]", i)
		name := ""
		if port.Name != nil {
			name = *port.Name
		}
		if name != "" {
			for _, m := range validation.IsDNS1123Label(name) {
				errs = append(errs, invalid(p+".name", name, m))
			}
		}
		if names[name] {
			errs = append(errs, duplicate(p+".name", name))
		}
		names[name] = true
		if port.Port != nil && (*port.Port < 0 || *port.Port > 65535) {
			errs = append(errs, invalid(p+".port", *port.Port, "must be between 0 and 65535, inclusive"))
		}
		if port.Protocol != nil && !validProtocol(*port.Protocol) {
			errs = append(errs, protocolErr(p+".protocol", *port.Protocol))
		}
	}
	return errs
}

func validSliceAddress(t discoveryv1.AddressType, a string) bool {
	switch t {
	case discoveryv1.AddressTypeIPv4:
		ip, err := netip.ParseAddr(a)
		return err == nil && ip.Is4()
	case discoveryv1.AddressTypeIPv6:
		ip, err := netip.ParseAddr(a)
		return err == nil && ip.Is6() && ip.Zone() == ""
	case discoveryv1.AddressTypeFQDN:
		return len(validation.IsFullyQualifiedDomainName(nil, a)) == 0
	}
	return true // the addressType error says it
}
