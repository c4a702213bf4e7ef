package orch

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestServiceProxy: the node agents' service proxies. Three web pods
// (one per node) answer their own name; a Service without a selector
// and an EndpointSlice written here (so that the test needs no endpoints
// controller) point at them. A client pod reaches every pod through the
// cluster IP and a NodePort of another node; a web pod reaches itself
// (hairpin); the rules follow the slice; a Service without endpoints is
// refused at once.
func TestServiceProxy(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "svc-proxy")
	apply(t, ns, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
`+fmt.Sprintf(spreadHostname, "web")+`
      containers:
      - name: app
        image: lab/app:v1
        imagePullPolicy: IfNotPresent
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
`)
	apply(t, ns, `apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: lab/app:v1
    imagePullPolicy: IfNotPresent
    command: [sleep, "100000"]
`)
	apply(t, ns, `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  # Explicit: the API server does not allocate node ports yet.
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
`)
	web, _ := waitReady(t, ns, "app=web", 3, 90*time.Second)
	if len(web) != 3 {
		t.Fatalf("web pods: %s", describe(web))
	}
	var names []string
	for _, p := range web {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	waitReady(t, ns, "app=client", 1, 60*time.Second)

	svc, err := client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := client.CoreV1().Services(ns).Get(ctx, "empty", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeSlice := func(pods []corev1.Pod) {
		t.Helper()
		port, proto := int32(8080), corev1.ProtocolTCP
		name := "http"
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-manual", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
		}
		for _, p := range pods {
			node := p.Spec.NodeName
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.Status.PodIP}, NodeName: &node})
		}
		old, err := client.DiscoveryV1().EndpointSlices(ns).Get(ctx, es.Name, metav1.GetOptions{})
		if err == nil {
			es.ResourceVersion = old.ResourceVersion
			_, err = client.DiscoveryV1().EndpointSlices(ns).Update(ctx, es, metav1.UpdateOptions{})
		} else {
			_, err = client.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// seen asks http://addr/ n times from pod and returns the sorted
	// distinct answers (failures as "ERR"). busybox nc, as the lab's
	// busybox wget crashes in containers.
	seen := func(pod, addr string, n int) []string {
		t.Helper()
		host, port, _ := strings.Cut(addr, ":")
		script := fmt.Sprintf(`for i in $(seq %d); do r=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 %s %s 2>/dev/null | tail -n 1); echo "R:${r:-ERR}"; done`, n, host, port)
		out, _ := kubectl(t, "", "exec", "-n", ns, pod, "--", "sh", "-c", script)
		set := map[string]bool{}
		for _, l := range strings.Split(out, "\n") {
			if r, ok := strings.CutPrefix(strings.TrimSpace(l), "R:"); ok {
				set[strings.TrimSpace(r)] = true
			}
		}
		var got []string
		for s := range set {
			got = append(got, s)
		}
		sort.Strings(got)
		return got
	}
	expect := func(what, pod, url string, n int, want []string) time.Duration {
		t.Helper()
		return waitFor(t, 30*time.Second, what, func() (bool, string) {
			got := seen(pod, url, n)
			return strings.Join(got, " ") == strings.Join(want, " "), fmt.Sprintf("%s answered %v, want %v", url, got, want)
		})
	}

	start := time.Now()
	writeSlice(web)
	clusterAddr := svc.Spec.ClusterIP + ":80"
	waitFor(t, 30*time.Second, "the cluster IP answers", func() (bool, string) {
		got := seen("client", clusterAddr, 1)
		return len(got) == 1 && got[0] != "ERR", fmt.Sprintf("%s answered %v", clusterAddr, got)
	})
	firstAnswer := time.Since(start)
	expect("client -> cluster IP reaches every pod", "client", clusterAddr, 30, names)
	// Hairpin: a web pod through the Service, itself among the answers.
	expect("web pod -> cluster IP (hairpin)", web[0].Name, clusterAddr, 30, names)
	// NodePort on another node's address.
	nodeIP := ""
	clientPod := pods(t, ns, "app=client")[0]
	for _, p := range web {
		if p.Spec.NodeName != clientPod.Spec.NodeName {
			n, err := client.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					nodeIP = a.Address
				}
			}
			break
		}
	}
	if nodeIP == "" {
		t.Fatalf("no node other than the client's (%s) has a web pod: %s", clientPod.Spec.NodeName, describe(web))
	}
	npAddr := fmt.Sprintf("%s:%d", nodeIP, svc.Spec.Ports[0].NodePort)
	expect("client -> NodePort of another node", "client", npAddr, 30, names)

	// The rules follow the slice.
	writeSlice(web[:1])
	follow := expect("after the slice shrank", "client", clusterAddr, 10, []string{web[0].Name})

	// No endpoints: refused at once (nc fails quickly, no timeout).
	t0 := time.Now()
	if got := seen("client", empty.Spec.ClusterIP+":80", 5); strings.Join(got, " ") != "ERR" {
		t.Errorf("Service without endpoints answered %v, want only failures", got)
	}
	refused := time.Since(t0)
	if refused > 5*time.Second { // 5 timeouts of 2 s would take 10 s; kubectl exec itself ~0.3 s
		t.Errorf("5 requests to a Service without endpoints took %v: refused slowly (timeouts?)", refused)
	}
	report(t, "x-service-proxy", "slice_to_first_answer", firstAnswer, "slice_change_followed", follow, "5_refusals", refused)
}
