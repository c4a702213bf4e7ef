package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/berth/berth/internal/cluster/apiserver"
	"github.com/berth/berth/internal/cluster/apiserver/apiservertest"
	"github.com/berth/berth/internal/cluster/pki"
)

// jsonConfig is base with token, speaking JSON.
func jsonConfig(base *rest.Config, token string) *rest.Config {
	c := rest.CopyConfig(base)
	c.BearerToken = token
	c.ContentType = "application/json"
	return c
}

// TestProxyAgainstAPIServer runs the proxy with a node credential against
// the real API server (so the node authorizer must let it list and watch
// Services and EndpointSlices) and applies its table in the lab's node
// namespace: a Service created through the API answers on the cluster IP
// the API server allocated, follows its EndpointSlice, and refuses once
// the slice is gone.
func TestProxyAgainstAPIServer(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := apiservertest.Start(t, ctx, map[string]apiserver.User{
		"node": {Name: "system:node:n1", Role: pki.RoleNode, Node: "n1"},
	})
	admin := kubernetes.NewForConfigOrDie(jsonConfig(cfg, apiservertest.AdminToken))

	inNode := func(fn func() error) error { return inNetns(t, l.node, fn) }
	if err := inNode(EnableForwarding); err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(pctx, Options{Client: kubernetes.NewForConfigOrDie(jsonConfig(cfg, "node")), NodeName: "n1",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			apply:  func(table string, rs Ruleset) error { return inNode(func() error { return Apply(table, rs) }) },
			flush: func(fs []ConntrackFlush) (n uint, err error) {
				err = inNode(func() (e error) { n, e = FlushConntrack(fs); return e })
				return n, err
			},
			exists: func(table string) (ok bool, err error) {
				err = inNode(func() (e error) { ok, e = Exists(table); return e })
				return ok, err
			}})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	svc, err := admin.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(svc.Spec.ClusterIP, "80")
	waitSeen := func(what string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := hit(t, l.c, "tcp4", addr, 30)
			ok := len(got) == len(want)
			for _, w := range want {
				ok = ok && got[w] > 0
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s answered %v, want %v", what, addr, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitSeen("before any endpoint", "refused")

	port, proto := int32(8080), corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: &port, Protocol: &proto}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.99.0.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)}},
			{Addresses: []string{"10.99.0.12"}, Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)}},
			{Addresses: []string{"10.98.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(false)}},
		},
	}
	if es, err = admin.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSeen("two ready endpoints", "b1", "b2")

	es.Endpoints[0].Conditions.Ready = ptrTo(false)
	es.Endpoints[2].Conditions.Ready = ptrTo(true)
	if _, err = admin.DiscoveryV1().EndpointSlices("default").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSeen("after readiness changed", "b2", "remote")

	if err := admin.DiscoveryV1().EndpointSlices("default").Delete(ctx, es.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSeen("after the slice was deleted", "refused")
}

func ptrTo[T any](v T) *T { return &v }
