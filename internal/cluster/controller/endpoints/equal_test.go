package endpoints

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// TestEqualityCoversTheTypes fails when an API type gains a field the
// hand-written equality does not know.
func TestEqualityCoversTheTypes(t *testing.T) {
	for _, c := range []struct {
		v    any
		want int
	}{
		{discoveryv1.Endpoint{}, 8}, {discoveryv1.EndpointConditions{}, 3}, {discoveryv1.EndpointHints{}, 2},
		{discoveryv1.EndpointPort{}, 4}, {corev1.EndpointAddress{}, 4}, {corev1.EndpointSubset{}, 3}, {corev1.EndpointPort{}, 4},
	} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.want {
			t.Errorf("%T has %d fields, equal.go knows %d: compare the new ones", c.v, n, c.want)
		}
	}
}

func TestEqualityAgreesWithSemantic(t *testing.T) {
	base := func() discoveryv1.Endpoint {
		return discoveryv1.Endpoint{
			Addresses:  []string{"10.0.0.1"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
			Hostname:   ptr("h"), NodeName: ptr("n"), Zone: ptr("z"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "p", UID: "u"},
			Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "z"}}},
		}
	}
	muts := map[string]func(*discoveryv1.Endpoint){
		"address":     func(e *discoveryv1.Endpoint) { e.Addresses[0] = "10.0.0.2" },
		"ready":       func(e *discoveryv1.Endpoint) { e.Conditions.Ready = ptr(false) },
		"serving nil": func(e *discoveryv1.Endpoint) { e.Conditions.Serving = nil },
		"terminating": func(e *discoveryv1.Endpoint) { e.Conditions.Terminating = ptr(true) },
		"hostname":    func(e *discoveryv1.Endpoint) { e.Hostname = nil },
		"node":        func(e *discoveryv1.Endpoint) { e.NodeName = ptr("m") },
		"zone":        func(e *discoveryv1.Endpoint) { e.Zone = ptr("y") },
		"target uid":  func(e *discoveryv1.Endpoint) { e.TargetRef.UID = "v" },
		"topology":    func(e *discoveryv1.Endpoint) { e.DeprecatedTopology = map[string]string{"a": "b"} },
		"hints":       func(e *discoveryv1.Endpoint) { e.Hints.ForNodes = []discoveryv1.ForNode{{Name: "n"}} },
	}
	a, b := base(), base()
	if !eqSliceEndpoint(&a, &b) || !apiequality.Semantic.DeepEqual(a, b) {
		t.Fatal("equal endpoints compare unequal")
	}
	for name, m := range muts {
		b := base()
		m(&b)
		if eqSliceEndpoint(&a, &b) || apiequality.Semantic.DeepEqual(a, b) {
			t.Errorf("%s: got equal, want unequal", name)
		}
	}
	// Like Semantic: nil and empty lists are equal.
	x, y := base(), base()
	x.DeprecatedTopology, y.DeprecatedTopology = nil, map[string]string{}
	if !eqSliceEndpoint(&x, &y) {
		t.Error("nil and empty topology: got unequal")
	}
	s1 := []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "1.1.1.1", NodeName: ptr("n")}}, Ports: []corev1.EndpointPort{{Name: "a", Port: 1, Protocol: "TCP"}}}}
	s2 := []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "1.1.1.1", NodeName: ptr("n")}}, NotReadyAddresses: []corev1.EndpointAddress{}, Ports: []corev1.EndpointPort{{Name: "a", Port: 1, Protocol: "TCP"}}}}
	if !eqSubsets(s1, s2) {
		t.Error("subsets equal but for an empty list: got unequal")
	}
	s2[0].Ports[0].AppProtocol = ptr("http")
	if eqSubsets(s1, s2) {
		t.Error("subsets with another appProtocol: got equal")
	}
	s2[0].Ports[0].AppProtocol = nil
	s2[0].Addresses[0].TargetRef = &corev1.ObjectReference{Name: "p"}
	if eqSubsets(s1, s2) {
		t.Error("subsets with another targetRef: got equal")
	}
}
