package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/berth/berth/internal/cluster/controller/endpoints"
	"github.com/berth/berth/internal/cluster/kube"
)

// TestEndpointsController runs a real server (etcd, API server, the
// controllers under leader election) and plays the node agent: it creates
// a Service and pods, sets the pods' status.podIP and readiness through
// the API, and waits for the Endpoints and EndpointSlice the endpoints
// controller writes, which the API server's validation must accept.
func TestEndpointsController(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	ready := make(chan struct{})
	o := Options{Name: "ep-server", DataDir: dir, BindAddress: "127.0.0.1", Port: freePort(t), EtcdClientPort: freePort(t), EtcdPeerPort: freePort(t),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: ready}
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, o) }()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("server: %v", err)
	}
	cfg, err := kube.ConfigFromKubeconfig(filepath.Join(dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := "default"
	// The pods' node, alive: the node lifecycle controller deletes pods
	// bound to a node that does not exist or stops renewing its Lease.
	registerNode(ctx, t, c, "node1", map[string]string{corev1.LabelTopologyZone: "zone-a"})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("web")},
			{Name: "admin", Port: 9000},
		}},
	}
	if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"web-a", "web-b", "web-c"} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "c", Image: "nginx",
				Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: int32(8080 + i)}}}}},
		}
		p, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if name == "web-c" {
			continue // never gets an address: not listed
		}
		readyStatus := corev1.ConditionTrue
		if name == "web-b" {
			readyStatus = corev1.ConditionFalse
		}
		ip := fmt.Sprintf("10.88.0.%d", 10+i)
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: readyStatus}}}
		if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	summary := func() (string, string) {
		var eps, sl []string
		if ep, err := c.CoreV1().Endpoints(ns).Get(ctx, "web", metav1.GetOptions{}); err == nil {
			for _, s := range ep.Subsets {
				var ports []string
				for _, p := range s.Ports {
					ports = append(ports, fmt.Sprintf("%s=%d", p.Name, p.Port))
				}
				for _, a := range s.Addresses {
					eps = append(eps, fmt.Sprintf("%s %s ready", a.IP, strings.Join(ports, ",")))
				}
				for _, a := range s.NotReadyAddresses {
					eps = append(eps, fmt.Sprintf("%s %s notready", a.IP, strings.Join(ports, ",")))
				}
			}
		}
		list, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err == nil {
			for _, s := range list.Items {
				var ports []string
				for _, p := range s.Ports {
					ports = append(ports, fmt.Sprintf("%s=%d", *p.Name, *p.Port))
				}
				slices.Sort(ports)
				for _, e := range s.Endpoints {
					c := e.Conditions
					sl = append(sl, fmt.Sprintf("%s %s %v/%v/%v %s", e.Addresses[0], strings.Join(ports, ","), *c.Ready, *c.Serving, *c.Terminating, deref(e.Zone)))
				}
			}
		}
		slices.Sort(eps)
		slices.Sort(sl)
		return strings.Join(eps, "; "), strings.Join(sl, "; ")
	}
	waitFor := func(what, wantEp, wantSl string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			gotEp, gotSl := summary()
			if gotEp == wantEp && gotSl == wantSl {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s:\nendpoints got  %q\n          want %q\nslices    got  %q\n          want %q", what, gotEp, wantEp, gotSl, wantSl)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	start := time.Now()
	waitFor("initial endpoints",
		"10.88.0.10 admin=9000,http=8080 ready; 10.88.0.11 admin=9000,http=8081 notready",
		"10.88.0.10 admin=9000,http=8080 true/true/false zone-a; 10.88.0.11 admin=9000,http=8081 false/false/false zone-a")
	t.Logf("endpoints and slices written %v after the last pod status", time.Since(start).Round(time.Millisecond))

	// Everything the controller wrote carries what consumers select on.
	list, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelManagedBy + "=" + endpoints.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		if ref := metav1.GetControllerOf(&s); ref == nil || ref.Kind != "Service" || ref.Name != "web" || !strings.HasPrefix(s.Name, "web-") {
			t.Errorf("slice %s: controller %+v, want Service web and name web-…", s.Name, ref)
		}
	}

	if kc, err := exec.LookPath("kubectl"); err == nil {
		run := func(args ...string) string {
			t.Helper()
			home := t.TempDir()
			cmd := exec.CommandContext(ctx, kc, append([]string{"--kubeconfig", filepath.Join(dir, "kubeconfig")}, args...)...)
			cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl %v: %v\n%s", args, err, out)
			}
			return string(out)
		}
		out := run("get", "endpoints", "web")
		// Ready addresses only, port by port, as Kubernetes prints them.
		for _, want := range []string{"NAME", "ENDPOINTS", "AGE", "10.88.0.10:9000,10.88.0.10:8080"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl get endpoints lacks %q:\n%s", want, out)
			}
		}
		out = run("get", "endpointslices", "-l", "kubernetes.io/service-name=web")
		// One slice per resolved port set: the named port differs.
		for _, want := range []string{"ADDRESSTYPE", "PORTS", "ENDPOINTS", "IPv4   ", "8080,9000   10.88.0.10 ", "8081,9000   10.88.0.11 "} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl get endpointslices lacks %q:\n%s", want, out)
			}
		}
		t.Logf("kubectl get endpoints,endpointslices:\n%s%s", run("get", "endpoints", "web"), out)
	}

	// The ready pod starts terminating (a graceful delete waits for its
	// node agent): the slice flags it, the Endpoints drop it.
	if err := c.CoreV1().Pods(ns).Delete(ctx, "web-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("pod terminating",
		"10.88.0.11 admin=9000,http=8081 notready",
		"10.88.0.10 admin=9000,http=8080 false/true/true zone-a; 10.88.0.11 admin=9000,http=8081 false/false/false zone-a")

	// Without a selector the Service's endpoints are the user's: the
	// controller's go.
	cur, err := c.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Selector = nil
	if _, err := c.CoreV1().Services(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("selector removed", "", "")
	if _, err := c.CoreV1().Endpoints(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("endpoints after the selector was removed: got %v, want not found", err)
	}
	// The API server's own Service (no selector) keeps its Endpoints,
	// mirrored into a slice for the consumers that read only slices.
	if ep, err := c.CoreV1().Endpoints(ns).Get(ctx, "kubernetes", metav1.GetOptions{}); err != nil || len(ep.Subsets) != 1 {
		t.Errorf("kubernetes endpoints: %v %+v, want the server's address", err, ep)
	}
	want := fmt.Sprintf("127.0.0.1:%d ready", o.Port)
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && got != want; time.Sleep(50 * time.Millisecond) {
		got = ""
		l, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes," + discoveryv1.LabelManagedBy + "=" + endpoints.MirrorManagedBy})
		if err == nil && len(l.Items) == 1 && len(l.Items[0].Endpoints) == 1 && len(l.Items[0].Ports) == 1 {
			s := l.Items[0]
			got = fmt.Sprintf("%s:%d ready", s.Endpoints[0].Addresses[0], *s.Ports[0].Port)
			if !*s.Endpoints[0].Conditions.Ready {
				got += "=false"
			}
		}
	}
	if got != want {
		t.Errorf("kubernetes service slice: got %q, want %q", got, want)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// registerNode creates a Ready node and renews its Lease until ctx ends,
// as a node agent does.
func registerNode(ctx context.Context, t *testing.T, c kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	n, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	dur := int32(4)
	renew := metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &dur, RenewTime: &renew}}
	if _, err := c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, l, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for ctx.Err() == nil {
			time.Sleep(time.Second)
			l, err := c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				continue
			}
			now := metav1.NewMicroTime(time.Now())
			l.Spec.RenewTime = &now
			_, _ = c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(ctx, l, metav1.UpdateOptions{})
		}
	}()
}
