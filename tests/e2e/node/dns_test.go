package node

import (
	"strings"
	"testing"
	"time"
)

const dnsYAML = `apiVersion: v1
kind: Service
metadata: {name: dnsweb}
spec:
  selector: {app: dnsweb}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: dnsdb}
spec:
  clusterIP: None
  selector: {app: dnsdb}
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dnsdb-manual
  labels: {kubernetes.io/service-name: dnsdb}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- addresses: ["192.0.2.10"]
  hostname: dnsdb-0
  conditions: {ready: true}
---
apiVersion: v1
kind: Pod
metadata: {name: dnsc}
spec:
  nodeName: NODE
  hostname: dnsc-0
  subdomain: dnsdb
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox:e2e, command: ["sleep", "3600"]}
  - {name: side, image: busybox:e2e, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: dnsdefault}
spec:
  nodeName: NODE
  dnsPolicy: Default
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox:e2e, command: ["sleep", "3600"]}
`

// Pods resolve services through the agent's cluster DNS: their
// resolv.conf (every container of the pod shares the sandbox's) names
// 169.254.20.10 with the Kubernetes search path, and busybox's nslookup
// resolves the kubernetes service, a ClusterIP service by its short name
// and a headless endpoint by its hostname.
func TestClusterDNS(t *testing.T) {
	env.apply(t, strings.ReplaceAll(dnsYAML, "NODE", env.node))
	defer env.kubectl("", "delete", "pod,svc,endpointslice", "dnsc", "dnsdefault", "dnsweb", "dnsdb", "dnsdb-manual", "--wait=false")
	for _, p := range []string{"dnsc", "dnsdefault"} {
		env.waitPod(t, p, 30*time.Second, "Running", func(p *podJSON) bool { return p.Status.Phase == "Running" })
	}
	for _, c := range []string{"main", "side"} {
		rc := env.kube(t, "exec", "dnsc", "-c", c, "--", "cat", "/etc/resolv.conf")
		for _, want := range []string{"nameserver 169.254.20.10\n", "search default.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5\n"} {
			if !strings.Contains(rc, want) {
				t.Errorf("%s: /etc/resolv.conf lacks %q:\n%s", c, want, rc)
			}
		}
	}
	if rc := env.kube(t, "exec", "dnsdefault", "--", "cat", "/etc/resolv.conf"); strings.Contains(rc, "169.254.20.10") || strings.Contains(rc, "svc.cluster.local") {
		t.Errorf("dnsPolicy Default: /etc/resolv.conf names the cluster DNS:\n%s", rc)
	}
	if h := strings.TrimSpace(env.kube(t, "exec", "dnsc", "-c", "main", "--", "hostname")); h != "dnsc-0" {
		t.Errorf("hostname %q, want spec.hostname dnsc-0", h)
	}

	kubeIP := strings.TrimSpace(env.kube(t, "get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"))
	webIP := strings.TrimSpace(env.kube(t, "get", "svc", "dnsweb", "-o", "jsonpath={.spec.clusterIP}"))
	if kubeIP == "" || webIP == "" {
		t.Fatalf("service IPs: kubernetes %q, dnsweb %q", kubeIP, webIP)
	}
	lookups := []struct{ name, want string }{
		// busybox's nslookup applies the search path to dotless names
		// only (and fails if any search entry does: its exit code is not
		// looked at).
		{"kubernetes", kubeIP},
		{"kubernetes.default.svc.cluster.local", kubeIP},
		{"dnsweb", webIP},                                         // the pod's namespace
		{"dnsweb.default.svc.cluster.local", webIP},               // fully qualified
		{"dnsdb-0.dnsdb.default.svc.cluster.local", "192.0.2.10"}, // headless endpoint hostname
		{"10-1-2-3.default.pod.cluster.local", "10.1.2.3"},
	}
	for _, l := range lookups {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := env.kubectl("", "exec", "dnsc", "-c", "main", "--", "busybox", "nslookup", l.name)
			if strings.Contains(out, "Address: "+l.want) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("nslookup %s: %v\n%s\nwant Address: %s", l.name, err, out, l.want)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if out, err := env.kubectl("", "exec", "dnsc", "-c", "main", "--", "busybox", "nslookup", "nope.default.svc.cluster.local"); err == nil && strings.Contains(out, "Address: 10.") {
		t.Errorf("nslookup of an unknown service answered:\n%s", out)
	} else if !strings.Contains(out, "NXDOMAIN") && !strings.Contains(strings.ToLower(out), "can't find") {
		t.Errorf("nslookup of an unknown service: %v\n%s\nwant NXDOMAIN", err, out)
	}
}
