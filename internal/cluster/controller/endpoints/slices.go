package endpoints

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxEndpointsPerSlice is how many endpoints one slice holds, Kubernetes'
// default (--max-endpoints-per-slice).
const maxEndpointsPerSlice = 100

var kindService = corev1.SchemeGroupVersion.WithKind("Service")

// slicePlan is what one sync writes: slices to create, to update (copies
// of cached ones, changed) and to delete. Unchanged slices are in none.
type slicePlan struct {
	create, update, delete []*discoveryv1.EndpointSlice
}

func (p *slicePlan) empty() bool {
	return len(p.create) == 0 && len(p.update) == 0 && len(p.delete) == 0
}

// ownedBy reports whether s is controlled by svc (this incarnation of it:
// a slice of a deleted namesake awaits the garbage collector).
func ownedBy(s *discoveryv1.EndpointSlice, svc *corev1.Service) bool {
	ref := metav1.GetControllerOf(s)
	return ref != nil && ref.Kind == "Service" && ref.UID == svc.UID
}

func sliceLabels(svc *corev1.Service, managedBy string) map[string]string {
	return ownLabels(svc, map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: managedBy})
}

func newSlice(svc *corev1.Service) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    svc.Name + "-",
			Namespace:       svc.Namespace,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(svc, kindService)},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
}

// slot is one slice being filled: an existing one (cached, or a spare
// being recycled) or a new one.
type slot struct {
	orig    *discoveryv1.EndpointSlice // nil for a new slice
	ports   []discoveryv1.EndpointPort
	eps     []discoveryv1.Endpoint
	changed bool
}

// planSlices works out the writes that make existing (the controller's
// slices labelled with svc's name) hold groups, at most max endpoints a
// slice. It keeps every endpoint in the slice it is in and adds new ones
// to slices with room before creating slices, so that one pod's change
// rewrites one slice, not all of them (Kubernetes' reconciler does the
// same). A Service with no endpoints keeps one empty slice, as in
// Kubernetes, so that consumers can tell "no endpoints" from "not yet
// processed". Mirrored slices (managedBy MirrorManagedBy) have no such
// placeholder, as in Kubernetes.
func planSlices(svc *corev1.Service, groups map[string]*sliceGroup, existing []*discoveryv1.EndpointSlice, max int, managedBy string) slicePlan {
	var plan slicePlan
	existing = slices.Clone(existing)
	slices.SortFunc(existing, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	labels := sliceLabels(svc, managedBy)

	var spare []*discoveryv1.EndpointSlice // ours, but no longer fitting a port set
	byKey := map[string][]*slot{}
	// placed: endpoints already in a kept slice, by port set and key (a
	// mirrored address may serve two port sets).
	placed := map[[2]string]bool{}
	for _, s := range existing {
		if !ownedBy(s, svc) || s.AddressType != discoveryv1.AddressTypeIPv4 {
			plan.delete = append(plan.delete, s)
			continue
		}
		k := slicePortsKey(s.Ports)
		g := groups[k]
		if g == nil {
			spare = append(spare, s)
			continue
		}
		sl := &slot{orig: s, ports: g.ports, changed: !eqSlicePorts(s.Ports, g.ports)}
		for i := range s.Endpoints {
			name := endpointKey(&s.Endpoints[i])
			want, ok := g.eps[name]
			if !ok || placed[[2]string{k, name}] {
				sl.changed = true // gone, or a duplicate of one in another slice
				continue
			}
			placed[[2]string{k, name}] = true
			if !eqSliceEndpoint(&want, &s.Endpoints[i]) {
				sl.changed = true
			}
			sl.eps = append(sl.eps, want)
		}
		byKey[k] = append(byKey[k], sl)
	}

	var out []*slot
	keys := slices.Sorted(maps.Keys(groups))
	for _, k := range keys {
		g := groups[k]
		var todo []string
		for name := range g.eps {
			if !placed[[2]string{k, name}] {
				todo = append(todo, name)
			}
		}
		slices.Sort(todo)
		slots := byKey[k]
		// Slices being written anyway take new endpoints first.
		slices.SortStableFunc(slots, func(a, b *slot) int {
			if a.changed != b.changed {
				if a.changed {
					return -1
				}
				return 1
			}
			return 0
		})
		for _, sl := range slots {
			for len(todo) > 0 && len(sl.eps) < max {
				sl.eps = append(sl.eps, g.eps[todo[0]])
				todo = todo[1:]
				sl.changed = true
			}
		}
		for len(todo) > 0 {
			sl := &slot{ports: g.ports, changed: true}
			if len(spare) > 0 {
				// Recycle a slice whose port set went: one update
				// instead of a delete and a create.
				sl.orig, spare = spare[0], spare[1:]
			}
			n := min(max, len(todo))
			for _, name := range todo[:n] {
				sl.eps = append(sl.eps, g.eps[name])
			}
			todo = todo[n:]
			slots = append(slots, sl)
		}
		out = append(out, slots...)
	}

	// Emptied slices go; with no endpoints at all one stays, portless.
	var live []*slot
	for _, sl := range out {
		if len(sl.eps) == 0 {
			spare = append(spare, sl.orig)
			continue
		}
		live = append(live, sl)
	}
	if len(live) == 0 && managedBy == ManagedBy {
		sl := &slot{changed: true}
		if len(spare) > 0 {
			slices.SortFunc(spare, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
			sl.orig, spare = spare[0], spare[1:]
			sl.changed = len(sl.orig.Endpoints) > 0 || len(sl.orig.Ports) > 0
		}
		live = append(live, sl)
	}
	plan.delete = append(plan.delete, spare...)

	for _, sl := range live {
		if sl.orig != nil && !maps.Equal(sl.orig.Labels, labels) {
			sl.changed = true
		}
		if !sl.changed {
			continue
		}
		var s *discoveryv1.EndpointSlice
		if sl.orig == nil {
			s = newSlice(svc)
		} else {
			s = sl.orig.DeepCopy()
		}
		s.Labels = maps.Clone(labels)
		s.Ports = sl.ports
		s.Endpoints = sl.eps
		if s.Endpoints == nil {
			s.Endpoints = []discoveryv1.Endpoint{}
		}
		sortSliceEndpoints(s.Endpoints)
		if sl.orig == nil {
			plan.create = append(plan.create, s)
		} else {
			if !ownedBy(s, svc) {
				s.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(svc, kindService)}
			}
			plan.update = append(plan.update, s)
		}
	}
	return plan
}
