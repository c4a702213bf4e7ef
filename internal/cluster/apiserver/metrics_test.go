package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	apiresource "k8s.io/apimachinery/pkg/api/resource"

	"github.com/berth/berth/internal/cluster/metricsapi"
	"github.com/berth/berth/internal/cluster/pki"
)

// metricsAgent is a node agent's /stats/metrics: it answers what the test
// sets, after delay.
type metricsAgent struct {
	srv   *httptest.Server
	mu    sync.Mutex
	sum   metricsapi.NodeSummary
	delay time.Duration
	hits  int
}

func newMetricsAgent(t *testing.T, p *proxyAPI) *metricsAgent {
	a := &metricsAgent{}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats/metrics" || r.TLS.PeerCertificates[0].Subject.CommonName != pki.KubeletClientCN {
			http.Error(w, "unexpected "+r.URL.Path, 404)
			return
		}
		a.mu.Lock()
		a.hits++
		d, b := a.delay, a.sum
		a.mu.Unlock()
		time.Sleep(d)
		_ = json.NewEncoder(w).Encode(b)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	a.srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.serving(t, p.ca)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *metricsAgent) port() int { return a.srv.Listener.Addr().(*net.TCPAddr).Port }

func podUID(t *testing.T, ns, name string) string {
	r := do(t, "GET", "/api/v1/namespaces/"+ns+"/pods/"+name, nil)
	mustCode(t, r, 200)
	return r.str("metadata.uid")
}

func TestResourceMetrics(t *testing.T) {
	p := newProxyAPI(t)
	ns := newNS(t)
	n1, n2, n3 := "m1-"+ns, "m2-"+ns, "m3-"+ns
	a1, a2, slow := newMetricsAgent(t, p), newMetricsAgent(t, p), newMetricsAgent(t, p)
	createNode(t, n1, "127.0.0.1", a1.port())
	createNode(t, n2, "127.0.0.1", a2.port())
	createNode(t, n3, "127.0.0.1", slow.port())
	mustCode(t, do(t, "PATCH", "/api/v1/nodes/"+n1, map[string]any{"metadata": map[string]any{"labels": map[string]any{"zone": "a"}}}, withCT("application/merge-patch+json")), 200)
	createPod(t, ns, "web", n1, "app", "side")
	createPod(t, ns, "db", n2, "c")
	createPod(t, ns, "idle", n2, "c") // no sample: left out
	mustCode(t, do(t, "PATCH", "/api/v1/namespaces/"+ns+"/pods/web", map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "web"}}}, withCT("application/merge-patch+json")), 200)

	now := time.Now().UTC().Truncate(time.Second)
	smp := func(cpu, mem uint64) metricsapi.Sample {
		return metricsapi.Sample{CPUNanoCores: cpu, MemoryBytes: mem, Timestamp: now, Window: 5*time.Second + 123*time.Microsecond}
	}
	a1.sum = metricsapi.NodeSummary{NodeName: n1, Node: ptr(smp(1_500_000_000, 2<<30)), Pods: []metricsapi.PodSample{
		// Listed in the other order than the spec: the answer follows the spec.
		{Namespace: ns, Name: "web", UID: podUID(t, ns, "web"), Containers: []metricsapi.ContainerSample{{Name: "side", Sample: smp(1_000_000, 1<<20)}, {Name: "app", Sample: smp(750_000_000, 64<<20)}}},
		// A pod of the same name that no longer exists (another UID).
		{Namespace: ns, Name: "db", UID: "stale", Containers: []metricsapi.ContainerSample{{Name: "c", Sample: smp(9, 9)}}},
	}}
	a2.sum = metricsapi.NodeSummary{NodeName: n2, Node: ptr(smp(250_000_000, 1<<30)), Pods: []metricsapi.PodSample{
		{Namespace: ns, Name: "db", UID: podUID(t, ns, "db"), Containers: []metricsapi.ContainerSample{{Name: "c", Sample: smp(100_000_000, 32<<20)}}},
	}}
	slow.delay = metricsNodeTimeout + 500*time.Millisecond
	// A node marked NotReady is not asked at all.
	down := newMetricsAgent(t, p)
	n4 := "m4-" + ns
	createNode(t, n4, "127.0.0.1", down.port())
	mustCode(t, do(t, "PATCH", "/api/v1/nodes/"+n4+"/status", map[string]any{"status": map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "Unknown"}}}}, withCT("application/merge-patch+json")), 200)
	down.sum = metricsapi.NodeSummary{NodeName: n4, Node: ptr(smp(1, 1))}
	slow.sum = metricsapi.NodeSummary{NodeName: n3, Node: ptr(smp(1, 1))}

	// Discovery, legacy and aggregated, names the group kubectl top looks for.
	if r := do(t, "GET", "/apis", nil); !strings.Contains(string(r.body), `"name":"metrics.k8s.io"`) || !strings.Contains(string(r.body), `"groupVersion":"metrics.k8s.io/v1beta1"`) {
		t.Errorf("/apis does not list metrics.k8s.io/v1beta1: %s", r.body)
	}
	agg := do(t, "GET", "/apis", nil, withAccept("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"))
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Versions []struct {
				Version   string
				Resources []struct {
					Resource     string
					Scope        string
					Verbs        []string
					ResponseKind struct{ Kind string }
				}
			}
		}
	}
	if err := json.Unmarshal(agg.body, &list); err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, g := range list.Items {
		if g.Metadata.Name == "metrics.k8s.io" {
			for _, v := range g.Versions {
				for _, r := range v.Resources {
					found[v.Version+"/"+r.Resource] = r.ResponseKind.Kind + " " + r.Scope + " " + strings.Join(r.Verbs, ",")
				}
			}
		}
	}
	if found["v1beta1/nodes"] != "NodeMetrics Cluster get,list" || found["v1beta1/pods"] != "PodMetrics Namespaced get,list" {
		t.Errorf("aggregated discovery of metrics.k8s.io: got %v", found)
	}
	if r := do(t, "GET", "/apis/metrics.k8s.io/v1beta1", nil); r.code != 200 || !strings.Contains(string(r.body), `"kind":"PodMetrics"`) {
		t.Errorf("resource list: got %d %s", r.code, r.body)
	}

	// Node metrics: the slow node is left out and does not hold up the answer.
	start := time.Now()
	var nodes metricsapi.NodeMetricsList
	code, body := p.get(t, "/apis/metrics.k8s.io/v1beta1/nodes", "viewer-token")
	if took := time.Since(start); took > metricsNodeTimeout+time.Second {
		t.Errorf("node list took %v: the slow node held it up", took)
	}
	if code != 200 {
		t.Fatalf("list nodes: %d %s", code, body)
	}
	_ = json.Unmarshal([]byte(body), &nodes)
	byName := map[string]metricsapi.NodeMetrics{}
	for _, n := range nodes.Items {
		byName[n.Name] = n
	}
	if nodes.Kind != "NodeMetricsList" || nodes.APIVersion != "metrics.k8s.io/v1beta1" {
		t.Errorf("got kind %q apiVersion %q", nodes.Kind, nodes.APIVersion)
	}
	if _, ok := byName[n3]; ok {
		t.Errorf("the node that did not answer in time is listed")
	}
	if _, ok := byName[n4]; ok || down.hits != 0 {
		t.Errorf("the NotReady node was asked (%d times) or listed", down.hits)
	}
	m1 := byName[n1]
	if cpu, mem := m1.Usage.Cpu(), m1.Usage.Memory(); cpu.MilliValue() != 1500 || mem.Value() != 2<<30 || m1.Labels["zone"] != "a" || m1.Window.Duration != 5*time.Second || !m1.Timestamp.Time.Equal(now) {
		t.Errorf("node %s: got %+v, want 1500m CPU, 2Gi, label zone=a, window 5s", n1, m1)
	}
	if !strings.Contains(body, `"window":"5s"`) || !strings.Contains(body, `"cpu":"1500m"`) || !strings.Contains(body, `"memory":"2Gi"`) {
		t.Errorf("wire form: want window \"5s\", cpu \"1500m\", memory \"2Gi\" as metrics-server writes them: %s", body)
	}
	// Label selector on nodes; get by name.
	code, body = p.get(t, "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=zone%3Da", adminToken)
	if code != 200 || !strings.Contains(body, n1) || strings.Contains(body, n2) {
		t.Errorf("nodes with zone=a: got %d %s, want only %s", code, body, n1)
	}
	code, body = p.get(t, "/apis/metrics.k8s.io/v1beta1/nodes/"+n2, adminToken)
	if code != 200 || !strings.Contains(body, `"kind":"NodeMetrics"`) || !strings.Contains(body, `"cpu":"250m"`) {
		t.Errorf("get node %s: got %d %s, want NodeMetrics with cpu 250m", n2, code, body)
	}

	// Pod metrics in the namespace, across namespaces, by label, by name.
	var pods metricsapi.PodMetricsList
	code, body = p.get(t, "/apis/metrics.k8s.io/v1beta1/namespaces/"+ns+"/pods", "viewer-token")
	_ = json.Unmarshal([]byte(body), &pods)
	if code != 200 || pods.Kind != "PodMetricsList" || len(pods.Items) != 2 {
		t.Fatalf("list pods: got %d %s, want web and db (idle has no sample, the stale db is another pod)", code, body)
	}
	for _, pm := range pods.Items {
		switch pm.Name {
		case "web":
			if len(pm.Containers) != 2 || pm.Containers[0].Name != "app" || pm.Containers[1].Name != "side" || pm.Labels["app"] != "web" || pm.Namespace != ns {
				t.Errorf("web: got %+v, want containers app, side in spec order and label app=web", pm)
			}
			if cpu := pm.Containers[0].Usage.Cpu(); cpu.Cmp(apiresource.MustParse("750m")) != 0 {
				t.Errorf("web/app cpu: got %s, want 750m", cpu.String())
			}
		case "db":
			if len(pm.Containers) != 1 || pm.Containers[0].Usage.Memory().Value() != 32<<20 {
				t.Errorf("db: got %+v, want one container with 32Mi (not the stale pod's)", pm)
			}
		default:
			t.Errorf("unexpected pod %s", pm.Name)
		}
	}
	code, body = p.get(t, "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dweb", adminToken)
	if code != 200 || !strings.Contains(body, `"name":"web"`) || strings.Contains(body, `"name":"db"`) {
		t.Errorf("all namespaces, app=web: got %d %s, want only web", code, body)
	}
	code, body = p.get(t, "/apis/metrics.k8s.io/v1beta1/namespaces/"+ns+"/pods?fieldSelector=metadata.name%3Ddb", adminToken)
	if code != 200 || !strings.Contains(body, `"name":"db"`) || strings.Contains(body, `"name":"web"`) {
		t.Errorf("fieldSelector metadata.name=db: got %d %s, want only db", code, body)
	}
	code, body = p.get(t, "/apis/metrics.k8s.io/v1beta1/namespaces/"+ns+"/pods/web", adminToken)
	if code != 200 || !strings.Contains(body, `"kind":"PodMetrics"`) || !strings.Contains(body, `"apiVersion":"metrics.k8s.io/v1beta1"`) || !strings.Contains(body, `"cpu":"750m"`) || !strings.Contains(body, `"timestamp":"`) {
		t.Errorf("get pod web: got %d %s", code, body)
	}
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/apis/metrics.k8s.io/v1beta1/namespaces/" + ns + "/pods/idle", 404, `podmetrics.metrics.k8s.io \"` + ns + `/idle\" not found`},
		{"/apis/metrics.k8s.io/v1beta1/namespaces/" + ns + "/pods/nope", 404, "not found"},
		{"/apis/metrics.k8s.io/v1beta1/nodes/" + n3, 404, `nodemetrics.metrics.k8s.io \"` + n3 + `\" not found`},
		{"/apis/metrics.k8s.io/v1beta1/pods?watch=true", 405, "get and list only"},
	} {
		if code, body := p.get(t, c.path, adminToken); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: got %d %s, want %d with %q", c.path, code, body, c.code, c.want)
		}
	}
	if r := do(t, "DELETE", "/apis/metrics.k8s.io/v1beta1/namespaces/"+ns+"/pods/web", nil); r.code != 405 {
		t.Errorf("delete pod metrics: got %d %s, want 405", r.code, r.body)
	}
	// Answers within metricsTTL come from the cache.
	a1.mu.Lock()
	before := a1.hits
	a1.mu.Unlock()
	p.get(t, "/apis/metrics.k8s.io/v1beta1/nodes", adminToken)
	a1.mu.Lock()
	after := a1.hits
	a1.mu.Unlock()
	if time.Since(start) < metricsTTL && after != before {
		t.Errorf("agent asked again within the cache's lifetime (%d → %d)", before, after)
	}
	// Without a kubelet client certificate: 503 saying why.
	if r := do(t, "GET", "/apis/metrics.k8s.io/v1beta1/nodes", nil); r.code != 503 || !strings.Contains(string(r.body), "client certificate") {
		t.Errorf("no client certificate: got %d %s, want 503", r.code, r.body)
	}
}
