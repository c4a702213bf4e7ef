package endpoints

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// harness is the controller on a fake clientset whose informer caches the
// test fills by hand (refresh), so that it can also make them lag.
type harness struct {
	t      testing.TB
	client *fake.Clientset
	f      informers.SharedInformerFactory
	c      *Controller
	seq    atomic.Int32
}

func newHarness(t testing.TB, objs ...runtime.Object) *harness {
	h := &harness{t: t, client: fake.NewClientset(objs...)}
	// The fake tracker implements neither generateName nor uids.
	h.client.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		m, ok := a.(k8stesting.CreateAction).GetObject().(metav1.Object)
		if !ok {
			return false, nil, nil
		}
		n := h.seq.Add(1)
		if m.GetName() == "" && m.GetGenerateName() != "" {
			m.SetName(fmt.Sprintf("%s%05d", m.GetGenerateName(), n))
		}
		if m.GetUID() == "" {
			m.SetUID(types.UID(fmt.Sprintf("uid-%d", n)))
		}
		return false, nil, nil
	})
	h.f = informers.NewSharedInformerFactory(h.client, 0)
	h.c = New(h.client, h.f, record.NewFakeRecorder(100), nil)
	h.refresh()
	return h
}

func replace[T any](h *harness, inf cache.SharedIndexInformer, items []T) {
	var objs []any
	for i := range items {
		objs = append(objs, &items[i])
	}
	if err := inf.GetIndexer().Replace(objs, ""); err != nil {
		h.t.Fatal(err)
	}
}

// refresh makes the caches show what the API holds.
func (h *harness) refresh() {
	h.t.Helper()
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			h.t.Fatal(err)
		}
	}
	svcs, err := h.client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	must(err)
	replace(h, h.f.Core().V1().Services().Informer(), svcs.Items)
	pods, err := h.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	must(err)
	replace(h, h.f.Core().V1().Pods().Informer(), pods.Items)
	eps, err := h.client.CoreV1().Endpoints("").List(ctx, metav1.ListOptions{})
	must(err)
	replace(h, h.f.Core().V1().Endpoints().Informer(), eps.Items)
	sl, err := h.client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	must(err)
	replace(h, h.f.Discovery().V1().EndpointSlices().Informer(), sl.Items)
	nodes, err := h.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	must(err)
	replace(h, h.f.Core().V1().Nodes().Informer(), nodes.Items)
}

// sync refreshes the caches and syncs key, failing on an error. A sync
// that asks to look again once the caches show its writes (deletes before
// a mirror) is run again on refreshed caches, as the queue would.
func (h *harness) sync(key string) {
	h.t.Helper()
	h.refresh()
	h.client.ClearActions()
	for i := 0; ; i++ {
		after, err := h.c.Sync(context.Background(), key)
		if err != nil || (after != 0 && i == 3) {
			h.t.Fatalf("sync %s: got retry %v, error %v; want neither", key, after, err)
		}
		if after == 0 {
			return
		}
		h.refresh()
	}
}

// writes counts the write actions since the last sync, as "verb resource".
func (h *harness) writes() map[string]int {
	n := map[string]int{}
	for _, a := range h.client.Actions() {
		switch a.GetVerb() {
		case "create", "update", "delete", "patch":
			n[a.GetVerb()+" "+a.GetResource().Resource]++
		}
	}
	return n
}

func (h *harness) endpoints(name string) *corev1.Endpoints {
	h.t.Helper()
	ep, err := h.client.CoreV1().Endpoints("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return ep
}

func (h *harness) slices(svc string) []discoveryv1.EndpointSlice {
	h.t.Helper()
	l, err := h.client.DiscoveryV1().EndpointSlices("ns").List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		h.t.Fatal(err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items
}

func (h *harness) createPod(p *corev1.Pod) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) updatePod(p *corev1.Pod) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Pods(p.Namespace).Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) pod(name string) *corev1.Pod {
	h.t.Helper()
	p, err := h.client.CoreV1().Pods("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

func newService(name string, ports ...corev1.ServicePort) *corev1.Service {
	if len(ports) == 0 {
		ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name + "-uid"), Labels: map[string]string{"team": "a"}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, ClusterIP: "10.43.0.10", Ports: ports, Type: corev1.ServiceTypeClusterIP},
	}
}

// newPod is a running pod of app on node1 with address ip; ready sets its
// Ready condition. Its container serves "web" on 8080.
func newPod(name, app, ip string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name + "-uid"), Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "c", Image: "img",
			Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func terminating(p *corev1.Pod) *corev1.Pod {
	now := metav1.Now()
	p.DeletionTimestamp = &now
	return p
}

func ips(as []corev1.EndpointAddress) string {
	var s []string
	for _, a := range as {
		s = append(s, a.IP)
	}
	return strings.Join(s, ",")
}

// sliceView is one slice endpoint as "name:ready/serving/terminating".
func sliceView(sl []discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range sl {
		for _, e := range s.Endpoints {
			c := e.Conditions
			out = append(out, fmt.Sprintf("%s:%v/%v/%v", e.TargetRef.Name, *c.Ready, *c.Serving, *c.Terminating))
		}
	}
	slices.Sort(out)
	return out
}

func TestReadyNotReadyTerminating(t *testing.T) {
	done := newPod("done", "web", "10.88.0.6", false)
	done.Status.Phase = corev1.PodSucceeded
	h := newHarness(t, newService("web"),
		newPod("a", "web", "10.88.0.2", true),
		newPod("b", "web", "10.88.0.3", false),
		terminating(newPod("c", "web", "10.88.0.4", true)),
		newPod("noip", "web", "", true),
		done,
		newPod("other", "db", "10.88.0.9", true),
	)
	h.sync("ns/web")

	ep := h.endpoints("web")
	if len(ep.Subsets) != 1 {
		t.Fatalf("endpoints subsets: got %+v, want one", ep.Subsets)
	}
	s := ep.Subsets[0]
	if ips(s.Addresses) != "10.88.0.2" || ips(s.NotReadyAddresses) != "10.88.0.3" {
		t.Errorf("endpoints addresses %q notReady %q, want 10.88.0.2 and 10.88.0.3 (terminating, finished and address-less pods left out)", ips(s.Addresses), ips(s.NotReadyAddresses))
	}
	if len(s.Ports) != 1 || s.Ports[0] != (corev1.EndpointPort{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}) {
		t.Errorf("endpoints ports: got %+v, want http 8080/TCP", s.Ports)
	}
	a := s.Addresses[0]
	if a.NodeName == nil || *a.NodeName != "node1" || a.TargetRef == nil || a.TargetRef.Kind != "Pod" || a.TargetRef.Name != "a" || a.TargetRef.UID != "a-uid" || a.TargetRef.Namespace != "ns" {
		t.Errorf("address: got %+v nodeName %v targetRef %+v", a, a.NodeName, a.TargetRef)
	}
	if ep.Labels[LabelEndpointsManagedBy] != EndpointsManagedBy || ep.Labels["team"] != "a" {
		t.Errorf("endpoints labels: got %v, want the service's plus managed-by", ep.Labels)
	}

	sl := h.slices("web")
	if len(sl) != 1 {
		t.Fatalf("got %d slices, want 1", len(sl))
	}
	got := sliceView(sl)
	want := []string{"a:true/true/false", "b:false/false/false", "c:false/true/true"}
	if !slices.Equal(got, want) {
		t.Errorf("slice endpoints (ready/serving/terminating): got %v, want %v", got, want)
	}
	x := sl[0]
	if !strings.HasPrefix(x.Name, "web-") || x.GenerateName != "web-" || x.AddressType != discoveryv1.AddressTypeIPv4 {
		t.Errorf("slice name %q generateName %q addressType %q", x.Name, x.GenerateName, x.AddressType)
	}
	if x.Labels[discoveryv1.LabelServiceName] != "web" || x.Labels[discoveryv1.LabelManagedBy] != ManagedBy || x.Labels["team"] != "a" {
		t.Errorf("slice labels: %v", x.Labels)
	}
	ref := metav1.GetControllerOf(&x)
	if ref == nil || ref.Kind != "Service" || ref.Name != "web" || ref.UID != "web-uid" || ref.APIVersion != "v1" {
		t.Errorf("slice controller ref: %+v, want the Service", ref)
	}
	if len(x.Ports) != 1 || *x.Ports[0].Name != "http" || *x.Ports[0].Port != 8080 || *x.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("slice ports: %+v", x.Ports)
	}
	e := x.Endpoints[0]
	if !slices.Equal(e.Addresses, []string{"10.88.0.2"}) || e.NodeName == nil || *e.NodeName != "node1" || e.TargetRef.Name != "a" || e.TargetRef.UID != "a-uid" {
		t.Errorf("slice endpoint: %+v", e)
	}
}

func TestPublishNotReadyAddresses(t *testing.T) {
	svc := newService("web")
	svc.Spec.PublishNotReadyAddresses = true
	h := newHarness(t, svc, newPod("a", "web", "10.88.0.2", true), newPod("b", "web", "10.88.0.3", false), terminating(newPod("c", "web", "10.88.0.4", true)))
	h.sync("ns/web")
	s := h.endpoints("web").Subsets
	if len(s) != 1 || ips(s[0].Addresses) != "10.88.0.2,10.88.0.3,10.88.0.4" || len(s[0].NotReadyAddresses) != 0 {
		t.Errorf("endpoints: got %+v, want every pod ready", s)
	}
	got := sliceView(h.slices("web"))
	want := []string{"a:true/true/false", "b:true/false/false", "c:true/true/true"}
	if !slices.Equal(got, want) {
		t.Errorf("slice endpoints: got %v, want %v", got, want)
	}
}

func TestNamedTargetPort(t *testing.T) {
	svc := newService("web", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")})
	p2 := newPod("p2", "web", "10.88.0.3", true)
	p2.Spec.Containers[0].Ports[0].ContainerPort = 9090
	p3 := newPod("p3", "web", "10.88.0.4", true)
	p3.Spec.Containers[0].Ports[0].Name = "other"
	p4 := newPod("p4", "web", "10.88.0.5", true)
	p4.Spec.Containers[0].Ports[0].Protocol = corev1.ProtocolUDP // same name, wrong protocol
	h := newHarness(t, svc, newPod("p1", "web", "10.88.0.2", true), p2, p3, p4)
	h.sync("ns/web")
	var got []string
	for _, s := range h.endpoints("web").Subsets {
		got = append(got, fmt.Sprintf("%s@%d", ips(s.Addresses), s.Ports[0].Port))
	}
	slices.Sort(got)
	if want := []string{"10.88.0.2@8080", "10.88.0.3@9090"}; !slices.Equal(got, want) {
		t.Errorf("endpoints subsets: got %v, want %v (pods without the named port left out)", got, want)
	}
	got = nil
	for _, s := range h.slices("web") {
		for _, e := range s.Endpoints {
			got = append(got, fmt.Sprintf("%s@%d", e.Addresses[0], *s.Ports[0].Port))
		}
	}
	slices.Sort(got)
	if want := []string{"10.88.0.2@8080", "10.88.0.3@9090"}; !slices.Equal(got, want) {
		t.Errorf("slices: got %v, want %v in one slice per port", got, want)
	}
}

func TestMultiplePorts(t *testing.T) {
	svc := newService("web",
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)},
		corev1.ServicePort{Name: "metrics", Port: 9100, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("metrics")},
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(5353)},
	)
	p1 := newPod("p1", "web", "10.88.0.2", true)
	p1.Spec.Containers[0].Ports = append(p1.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: 9100, Protocol: corev1.ProtocolTCP})
	h := newHarness(t, svc, p1, newPod("p2", "web", "10.88.0.3", true))
	h.sync("ns/web")
	var got []string
	for _, s := range h.endpoints("web").Subsets {
		var ps []string
		for _, p := range s.Ports {
			ps = append(ps, fmt.Sprintf("%s=%d/%s", p.Name, p.Port, p.Protocol))
		}
		got = append(got, ips(s.Addresses)+" "+strings.Join(ps, ","))
	}
	slices.Sort(got)
	want := []string{"10.88.0.2 dns=5353/UDP,http=8080/TCP,metrics=9100/TCP", "10.88.0.3 dns=5353/UDP,http=8080/TCP"}
	if !slices.Equal(got, want) {
		t.Errorf("endpoints subsets: got %q, want %q", got, want)
	}
	sl := h.slices("web")
	if len(sl) != 2 {
		t.Fatalf("got %d slices, want 2 (one per port set)", len(sl))
	}
	for _, s := range sl {
		n := len(s.Ports)
		if (n == 3) != (s.Endpoints[0].TargetRef.Name == "p1") || len(s.Endpoints) != 1 {
			t.Errorf("slice %s: %d ports for %v", s.Name, n, sliceView([]discoveryv1.EndpointSlice{s}))
		}
		// Ports keep the Service's order.
		if *s.Ports[0].Name != "http" {
			t.Errorf("slice %s: first port %s, want http", s.Name, *s.Ports[0].Name)
		}
	}
}

func TestManyEndpoints(t *testing.T) {
	objs := []runtime.Object{newService("web")}
	for i := range 250 {
		objs = append(objs, newPod(fmt.Sprintf("p%03d", i), "web", fmt.Sprintf("10.88.%d.%d", i/200, 2+i%200), true))
	}
	h := newHarness(t, objs...)
	h.sync("ns/web")
	sl := h.slices("web")
	var sizes []int
	seen := map[string]bool{}
	for _, s := range sl {
		sizes = append(sizes, len(s.Endpoints))
		for _, e := range s.Endpoints {
			if seen[e.TargetRef.Name] {
				t.Errorf("pod %s in two slices", e.TargetRef.Name)
			}
			seen[e.TargetRef.Name] = true
		}
	}
	if !slices.Equal(sizes, []int{100, 100, 50}) || len(seen) != 250 {
		t.Errorf("slice sizes %v holding %d pods, want [100 100 50] holding 250", sizes, len(seen))
	}
	if n := len(h.endpoints("web").Subsets[0].Addresses); n != 250 {
		t.Errorf("endpoints: %d addresses, want 250", n)
	}

	// One more pod fills the slice with room: one update, nothing else.
	h.createPod(newPod("p250", "web", "10.88.2.1", true))
	h.sync("ns/web")
	if w := h.writes(); w["update endpointslices"] != 1 || w["create endpointslices"] != 0 || w["delete endpointslices"] != 0 || w["update endpoints"] != 1 {
		t.Errorf("adding one pod wrote %v, want one slice update and one endpoints update", w)
	}
	// One pod's readiness change rewrites the one slice holding it.
	p := h.pod("p007")
	p.Status.Conditions[0].Status = corev1.ConditionFalse
	h.updatePod(p)
	h.sync("ns/web")
	if w := h.writes(); w["update endpointslices"] != 1 || len(w) != 2 {
		t.Errorf("one pod turning unready wrote %v, want one slice update and one endpoints update", w)
	}
	// Scaling down to 30 leaves no empty slices behind.
	for i := 30; i <= 250; i++ {
		if err := h.client.CoreV1().Pods("ns").Delete(context.Background(), fmt.Sprintf("p%03d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	h.sync("ns/web")
	sl = h.slices("web")
	if len(sl) != 1 || len(sl[0].Endpoints) != 30 {
		t.Errorf("after scaling to 30: %d slices, first with %d endpoints; want 1 with 30", len(sl), len(sl[0].Endpoints))
	}
}

func TestEndpointsOverCapacity(t *testing.T) {
	objs := []runtime.Object{newService("web")}
	for i := range maxEndpointsAddresses + 5 {
		objs = append(objs, newPod(fmt.Sprintf("p%04d", i), "web", fmt.Sprintf("10.88.%d.%d", i/250, 1+i%250), i >= 5))
	}
	h := newHarness(t, objs...)
	h.sync("ns/web")
	ep := h.endpoints("web")
	s := ep.Subsets[0]
	if len(s.Addresses) != maxEndpointsAddresses || len(s.NotReadyAddresses) != 0 || ep.Annotations[AnnotationOverCapacity] != "truncated" {
		t.Errorf("endpoints: %d ready %d not ready, annotation %q; want %d ready (ready kept first) and truncated",
			len(s.Addresses), len(s.NotReadyAddresses), ep.Annotations[AnnotationOverCapacity], maxEndpointsAddresses)
	}
	n := 0
	for _, sl := range h.slices("web") {
		n += len(sl.Endpoints)
	}
	if n != maxEndpointsAddresses+5 {
		t.Errorf("slices hold %d endpoints, want all %d", n, maxEndpointsAddresses+5)
	}
}

func TestNoopResyncDoesNotWrite(t *testing.T) {
	h := newHarness(t, newService("web"), newPod("a", "web", "10.88.0.2", true), newPod("b", "web", "10.88.0.3", false))
	h.sync("ns/web")
	if w := h.writes(); w["create endpoints"] != 1 || w["create endpointslices"] != 1 {
		t.Fatalf("first sync wrote %v, want the endpoints and one slice created", w)
	}
	h.sync("ns/web")
	if w := h.writes(); len(w) != 0 {
		t.Errorf("second sync wrote %v, want nothing", w)
	}
	// A status change that does not touch endpoints writes nothing.
	p := h.pod("a")
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", RestartCount: 3}}
	h.updatePod(p)
	h.sync("ns/web")
	if w := h.writes(); len(w) != 0 {
		t.Errorf("sync after a restart count change wrote %v, want nothing", w)
	}
	// Neither does a service with no pods, once its placeholder is there.
	h2 := newHarness(t, newService("lonely"))
	h2.sync("ns/lonely")
	sl := h2.slices("lonely")
	if len(sl) != 1 || len(sl[0].Endpoints) != 0 || len(sl[0].Ports) != 0 {
		t.Errorf("service without pods: got slices %+v, want one empty placeholder", sl)
	}
	if s := h2.endpoints("lonely").Subsets; len(s) != 0 {
		t.Errorf("service without pods: endpoints subsets %+v, want none", s)
	}
	h2.sync("ns/lonely")
	if w := h2.writes(); len(w) != 0 {
		t.Errorf("second sync of a service without pods wrote %v, want nothing", w)
	}
}

func TestCacheLagWaits(t *testing.T) {
	h := newHarness(t, newService("web"), newPod("a", "web", "10.88.0.2", true))
	h.sync("ns/web")
	// The caches do not show the created objects yet: the next sync must
	// not create a second slice but look again shortly.
	for _, inf := range []cache.SharedIndexInformer{h.f.Discovery().V1().EndpointSlices().Informer(), h.f.Core().V1().Endpoints().Informer()} {
		if err := inf.GetIndexer().Replace(nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	h.client.ClearActions()
	after, err := h.c.Sync(context.Background(), "ns/web")
	if err != nil || after <= 0 {
		t.Errorf("sync on a lagging cache: got retry %v error %v, want a retry and no error", after, err)
	}
	if w := h.writes(); len(w) != 0 {
		t.Errorf("sync on a lagging cache wrote %v, want nothing", w)
	}
	h.sync("ns/web")
	if n := len(h.slices("web")); n != 1 {
		t.Errorf("got %d slices, want 1", n)
	}
}

func TestSelectorRemovedAndServiceDeleted(t *testing.T) {
	manual := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "manual", Namespace: "ns", UID: "manual-uid"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	userEp := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "manual", Namespace: "ns"}, Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "192.0.2.1"}}, Ports: []corev1.EndpointPort{{Port: 80}}}}}
	h := newHarness(t, newService("web"), newService("gone"), manual, userEp, newPod("a", "web", "10.88.0.2", true), newPod("g", "gone", "10.88.0.3", true))
	h.sync("ns/web")
	h.sync("ns/gone")
	h.sync("ns/manual")
	if w := h.writes(); len(w) != 1 || w["create endpointslices"] != 1 {
		t.Errorf("sync of a selectorless service wrote %v, want its Endpoints mirrored into one slice", w)
	}
	h.sync("ns/manual")
	if w := h.writes(); len(w) != 0 {
		t.Errorf("second sync of a selectorless service wrote %v, want nothing", w)
	}

	svc, _ := h.client.CoreV1().Services("ns").Get(context.Background(), "web", metav1.GetOptions{})
	svc.Spec.Selector = nil
	if _, err := h.client.CoreV1().Services("ns").Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sync("ns/web")
	if _, err := h.client.CoreV1().Endpoints("ns").Get(context.Background(), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("endpoints after the selector was removed: got %v, want not found", err)
	}
	if n := len(h.slices("web")); n != 0 {
		t.Errorf("%d slices after the selector was removed, want 0", n)
	}

	// Being deleted in the foreground: nothing is written that would hold
	// up the garbage collector.
	g, _ := h.client.CoreV1().Services("ns").Get(context.Background(), "gone", metav1.GetOptions{})
	now := metav1.Now()
	g.DeletionTimestamp = &now
	if _, err := h.client.CoreV1().Services("ns").Update(context.Background(), g, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.createPod(newPod("g2", "gone", "10.88.0.4", true))
	h.sync("ns/gone")
	if w := h.writes(); len(w) != 0 {
		t.Errorf("sync of a service being deleted wrote %v, want nothing", w)
	}
	if err := h.client.CoreV1().Services("ns").Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sync("ns/gone")
	if _, err := h.client.CoreV1().Endpoints("ns").Get(context.Background(), "gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("endpoints after the service was deleted: got %v, want not found", err)
	}
	if n := len(h.slices("gone")); n != 0 {
		t.Errorf("%d slices after the service was deleted, want 0", n)
	}
	if ep := h.endpoints("manual"); ips(ep.Subsets[0].Addresses) != "192.0.2.1" {
		t.Errorf("user's endpoints changed: %+v", ep.Subsets)
	}
}

func TestHostnameZoneAndHeadless(t *testing.T) {
	svc := newService("db")
	svc.Spec.ClusterIP = corev1.ClusterIPNone
	svc.Spec.Ports = nil
	p := newPod("db-0", "db", "10.88.0.2", true)
	p.Spec.Hostname, p.Spec.Subdomain = "db-0", "db"
	q := newPod("db-1", "db", "10.88.0.3", true)
	q.Spec.Hostname, q.Spec.Subdomain = "db-1", "elsewhere"
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}}}
	h := newHarness(t, svc, p, q, node)
	h.sync("ns/db")
	ep := h.endpoints("db")
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].Ports) != 0 || len(ep.Subsets[0].Addresses) != 2 {
		t.Fatalf("headless endpoints: got %+v, want two addresses without ports", ep.Subsets)
	}
	if a := ep.Subsets[0].Addresses; a[0].Hostname != "db-0" || a[1].Hostname != "" {
		t.Errorf("hostnames: got %q %q, want db-0 and none (subdomain is another service)", a[0].Hostname, a[1].Hostname)
	}
	if _, ok := ep.Labels[corev1.IsHeadlessService]; !ok {
		t.Errorf("endpoints labels %v lack %s", ep.Labels, corev1.IsHeadlessService)
	}
	sl := h.slices("db")
	if len(sl) != 1 || len(sl[0].Endpoints) != 2 || len(sl[0].Ports) != 0 {
		t.Fatalf("headless slices: %+v", sl)
	}
	e := sl[0].Endpoints
	if e[0].Hostname == nil || *e[0].Hostname != "db-0" || e[1].Hostname != nil {
		t.Errorf("slice hostnames: %v %v", e[0].Hostname, e[1].Hostname)
	}
	if e[0].Zone == nil || *e[0].Zone != "zone-a" {
		t.Errorf("slice zone: %v, want zone-a", e[0].Zone)
	}
}

// TestEvents runs the controller on real (fake-backed) informers: pod and
// service events alone must bring the objects up to date.
func TestEvents(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.CreateAction).GetObject().(*discoveryv1.EndpointSlice)
		if s.Name == "" {
			s.Name = s.GenerateName + fmt.Sprint(time.Now().UnixNano())
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := informers.NewSharedInformerFactory(cs, 0)
	c := New(cs, f, record.NewFakeRecorder(100), nil)
	f.Start(ctx.Done())
	go func() { _ = c.Run(ctx, 2) }()

	wait := func(what string, cond func(*corev1.Endpoints, []discoveryv1.EndpointSlice) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			ep, _ := cs.CoreV1().Endpoints("ns").Get(ctx, "web", metav1.GetOptions{})
			l, _ := cs.DiscoveryV1().EndpointSlices("ns").List(ctx, metav1.ListOptions{})
			if ep != nil && l != nil && cond(ep, l.Items) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reached; endpoints %+v", what, ep)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// settle lets the queue drain (a sync waiting for the cache looks
	// again after cacheWait), so that only the next event can bring the
	// next change.
	settle := func() {
		t.Helper()
		time.Sleep(cacheWait + 300*time.Millisecond)
		if n := c.queue.Len(); n != 0 {
			t.Fatalf("queue holds %d keys after settling, want 0", n)
		}
	}
	mustNil := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustNil(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}}, metav1.CreateOptions{}))
	mustNil(cs.CoreV1().Pods("ns").Create(ctx, newPod("a", "web", "10.88.0.2", false), metav1.CreateOptions{}))
	mustNil(cs.CoreV1().Services("ns").Create(ctx, newService("web"), metav1.CreateOptions{}))
	wait("not-ready pod listed", func(ep *corev1.Endpoints, sl []discoveryv1.EndpointSlice) bool {
		return len(ep.Subsets) == 1 && ips(ep.Subsets[0].NotReadyAddresses) == "10.88.0.2" && slices.Equal(sliceView(sl), []string{"a:false/false/false"})
	})
	p, _ := cs.CoreV1().Pods("ns").Get(ctx, "a", metav1.GetOptions{})
	p.Status.Conditions[0].Status = corev1.ConditionTrue
	mustNil(cs.CoreV1().Pods("ns").UpdateStatus(ctx, p, metav1.UpdateOptions{}))
	wait("pod turned ready", func(ep *corev1.Endpoints, sl []discoveryv1.EndpointSlice) bool {
		return len(ep.Subsets) == 1 && ips(ep.Subsets[0].Addresses) == "10.88.0.2" && slices.Equal(sliceView(sl), []string{"a:true/true/false"})
	})
	// Relabelled out of the selector: the old labels find the service.
	settle()
	p, _ = cs.CoreV1().Pods("ns").Get(ctx, "a", metav1.GetOptions{})
	p.Labels = map[string]string{"app": "other"}
	mustNil(cs.CoreV1().Pods("ns").Update(ctx, p, metav1.UpdateOptions{}))
	wait("pod relabelled away", func(ep *corev1.Endpoints, sl []discoveryv1.EndpointSlice) bool {
		return len(ep.Subsets) == 0 && len(sl) == 1 && len(sl[0].Endpoints) == 0
	})
	// Someone deletes the Endpoints: it comes back.
	mustNil(nil, cs.CoreV1().Endpoints("ns").Delete(ctx, "web", metav1.DeleteOptions{}))
	mustNil(cs.CoreV1().Pods("ns").Create(ctx, newPod("b", "web", "10.88.0.5", true), metav1.CreateOptions{}))
	wait("endpoints re-created with the new pod", func(ep *corev1.Endpoints, sl []discoveryv1.EndpointSlice) bool {
		return len(ep.Subsets) == 1 && ips(ep.Subsets[0].Addresses) == "10.88.0.5" && slices.Equal(sliceView(sl), []string{"b:true/true/false"})
	})
	// The pods' node is put in a zone: the slice says so.
	settle()
	n, _ := cs.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
	n.Labels = map[string]string{corev1.LabelTopologyZone: "zone-b"}
	mustNil(cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}))
	wait("zone from the relabelled node", func(_ *corev1.Endpoints, sl []discoveryv1.EndpointSlice) bool {
		return len(sl) == 1 && len(sl[0].Endpoints) == 1 && deref(sl[0].Endpoints[0].Zone) == "zone-b"
	})
}

func TestMirrorSelectorlessEndpoints(t *testing.T) {
	svc := newService("ext")
	svc.Spec.Selector = nil
	udp := corev1.ProtocolUDP
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "ns"},
		Subsets: []corev1.EndpointSubset{
			{
				Addresses: []corev1.EndpointAddress{
					{IP: "192.0.2.1", TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "x"}},
					{IP: "192.0.2.2"},
					{IP: "fd00::1"}, // not IPv4: not mirrored
				},
				NotReadyAddresses: []corev1.EndpointAddress{{IP: "192.0.2.3"}},
				Ports:             []corev1.EndpointPort{{Name: "a", Port: 80, Protocol: corev1.ProtocolTCP}, {Name: "b", Port: 81, Protocol: udp}},
			},
			// 192.0.2.2 serves another port set too.
			{Addresses: []corev1.EndpointAddress{{IP: "192.0.2.4"}, {IP: "192.0.2.2"}}, Ports: []corev1.EndpointPort{{Name: "a", Port: 8080, Protocol: corev1.ProtocolTCP}}},
		},
	}
	h := newHarness(t, svc, ep)
	h.sync("ns/ext")
	view := func() []string {
		var out []string
		for _, s := range h.slices("ext") {
			if s.Labels[discoveryv1.LabelManagedBy] != MirrorManagedBy || metav1.GetControllerOf(&s) == nil || metav1.GetControllerOf(&s).UID != "ext-uid" {
				t.Errorf("slice %s: labels %v owner %v, want mirrored and owned by the service", s.Name, s.Labels, s.OwnerReferences)
			}
			var ps []string
			for _, p := range s.Ports {
				ps = append(ps, fmt.Sprintf("%s=%d/%s", *p.Name, *p.Port, *p.Protocol))
			}
			for _, e := range s.Endpoints {
				out = append(out, fmt.Sprintf("%s %s ready=%v", e.Addresses[0], strings.Join(ps, ","), *e.Conditions.Ready))
			}
		}
		slices.Sort(out)
		return out
	}
	want := []string{"192.0.2.1 a=80/TCP,b=81/UDP ready=true", "192.0.2.2 a=80/TCP,b=81/UDP ready=true", "192.0.2.2 a=8080/TCP ready=true", "192.0.2.3 a=80/TCP,b=81/UDP ready=false", "192.0.2.4 a=8080/TCP ready=true"}
	if got := view(); !slices.Equal(got, want) {
		t.Errorf("mirrored slices: got %q, want %q", got, want)
	}
	h.sync("ns/ext")
	if w := h.writes(); len(w) != 0 {
		t.Errorf("second mirror sync wrote %v, want nothing", w)
	}

	// The user edits the Endpoints: one slice follows.
	cur := h.endpoints("ext")
	cur.Subsets[0].Addresses = cur.Subsets[0].Addresses[:1]
	if _, err := h.client.CoreV1().Endpoints("ns").Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sync("ns/ext")
	if w := h.writes(); len(w) != 1 || w["update endpointslices"] != 1 {
		t.Errorf("edit of the Endpoints wrote %v, want one slice update", w)
	}
	if got := view(); len(got) != 4 {
		t.Errorf("after the edit: got %q, want 4 endpoints", got)
	}

	// Opting out of mirroring removes the slices.
	cur = h.endpoints("ext")
	cur.Labels = map[string]string{discoveryv1.LabelSkipMirror: "true"}
	if _, err := h.client.CoreV1().Endpoints("ns").Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sync("ns/ext")
	if n := len(h.slices("ext")); n != 0 {
		t.Errorf("skip-mirror: %d slices left, want 0", n)
	}
	cur = h.endpoints("ext")
	cur.Labels = nil
	if _, err := h.client.CoreV1().Endpoints("ns").Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sync("ns/ext")

	// The Service gets a selector: the controller takes over from the
	// mirror.
	h.createPod(newPod("p", "ext", "10.88.0.7", true))
	s, _ := h.client.CoreV1().Services("ns").Get(context.Background(), "ext", metav1.GetOptions{})
	s.Spec.Selector = map[string]string{"app": "ext"}
	if _, err := h.client.CoreV1().Services("ns").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sync("ns/ext")
	sl := h.slices("ext")
	if len(sl) != 1 || sl[0].Labels[discoveryv1.LabelManagedBy] != ManagedBy || sliceView(sl)[0] != "p:true/true/false" {
		t.Errorf("after the selector was set: got slices %+v, want only the controller's with pod p", sl)
	}
	if e := h.endpoints("ext"); len(e.Subsets) != 1 || ips(e.Subsets[0].Addresses) != "10.88.0.7" {
		t.Errorf("endpoints after the selector was set: %+v", e.Subsets)
	}
}

// BenchmarkResync measures a sync of a Service with 1000 pods whose
// objects are up to date: what every pod event of a large Service costs.
func BenchmarkResync(b *testing.B) {
	objs := []runtime.Object{newService("web")}
	for i := range 1000 {
		objs = append(objs, newPod(fmt.Sprintf("p%04d", i), "web", fmt.Sprintf("10.88.%d.%d", i/250, 1+i%250), true))
	}
	h := newHarness(b, objs...)
	h.sync("ns/web")
	h.refresh()
	h.client.ClearActions()
	b.ResetTimer()
	for range b.N {
		if _, err := h.c.Sync(context.Background(), "ns/web"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if w := h.writes(); len(w) != 0 {
		b.Errorf("resyncs wrote %v", w)
	}
}

// TestNamespaceTerminating: creates refused because the namespace is being
// deleted are not retried or reported (its Services go with it).
func TestNamespaceTerminating(t *testing.T) {
	h := newHarness(t, newService("web"), newPod("a", "web", "10.88.0.2", true))
	h.client.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(a.GetResource().GroupResource(), "", fmt.Errorf("unable to create new content in namespace ns because it is being terminated"))
	})
	h.sync("ns/web")
	if ev := len(h.c.recorder.(*record.FakeRecorder).Events); ev != 0 {
		t.Errorf("got %d warning events, want none", ev)
	}
}
