package endpoints

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Hand-written equality for what every sync compares: reflection
// (apiequality.Semantic.DeepEqual) was 40% of a no-op resync of a
// 1000-pod Service. Like Semantic, a nil and an empty list are equal.
// equal_test.go fails when the API types gain a field these miss.

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func eqRef(a, b *corev1.ObjectReference) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func eqSliceEndpoint(a, b *discoveryv1.Endpoint) bool {
	return slices.Equal(a.Addresses, b.Addresses) &&
		eqPtr(a.Conditions.Ready, b.Conditions.Ready) &&
		eqPtr(a.Conditions.Serving, b.Conditions.Serving) &&
		eqPtr(a.Conditions.Terminating, b.Conditions.Terminating) &&
		eqPtr(a.Hostname, b.Hostname) &&
		eqRef(a.TargetRef, b.TargetRef) &&
		maps.Equal(a.DeprecatedTopology, b.DeprecatedTopology) &&
		eqPtr(a.NodeName, b.NodeName) &&
		eqPtr(a.Zone, b.Zone) &&
		eqHints(a.Hints, b.Hints)
}

func eqHints(a, b *discoveryv1.EndpointHints) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.ForZones, b.ForZones) && slices.Equal(a.ForNodes, b.ForNodes)
}

func eqSlicePorts(a, b []discoveryv1.EndpointPort) bool {
	return slices.EqualFunc(a, b, func(x, y discoveryv1.EndpointPort) bool {
		return eqPtr(x.Name, y.Name) && eqPtr(x.Protocol, y.Protocol) && eqPtr(x.Port, y.Port) && eqPtr(x.AppProtocol, y.AppProtocol)
	})
}

func eqAddresses(a, b []corev1.EndpointAddress) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.EndpointAddress) bool {
		return x.IP == y.IP && x.Hostname == y.Hostname && eqPtr(x.NodeName, y.NodeName) && eqRef(x.TargetRef, y.TargetRef)
	})
}

func eqSubsets(a, b []corev1.EndpointSubset) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.EndpointSubset) bool {
		return eqAddresses(x.Addresses, y.Addresses) && eqAddresses(x.NotReadyAddresses, y.NotReadyAddresses) &&
			slices.EqualFunc(x.Ports, y.Ports, func(p, q corev1.EndpointPort) bool {
				return p.Name == q.Name && p.Port == q.Port && p.Protocol == q.Protocol && eqPtr(p.AppProtocol, q.AppProtocol)
			})
	})
}
