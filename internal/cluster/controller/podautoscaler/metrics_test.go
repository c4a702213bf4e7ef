package podautoscaler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestRESTMetrics checks the URL RESTMetrics asks and how it sums the
// containers of a metrics.k8s.io/v1beta1 PodMetricsList.
func TestRESTMetrics(t *testing.T) {
	var gotPath, gotSel, gotAccept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotSel, gotAccept = r.URL.Path, r.URL.Query().Get("labelSelector"), r.Header.Get("Accept")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"PodMetricsList","apiVersion":"metrics.k8s.io/v1beta1","metadata":{},"items":[
{"metadata":{"name":"web-0","namespace":"shop"},"timestamp":"2026-01-01T00:00:10Z","window":"10s","containers":[
  {"name":"a","usage":{"cpu":"250m","memory":"64Mi"}},{"name":"b","usage":{"cpu":"50000000n","memory":"1Mi"}}]},
{"metadata":{"name":"web-1","namespace":"shop"},"timestamp":"2026-01-01T00:00:05Z","window":"10s","containers":[
  {"name":"a","usage":{"cpu":"1","memory":"128Mi"}}]}]}`))
	}))
	defer srv.Close()
	// A protobuf-preferring client (as some components are) must still
	// ask for JSON.
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf"}})
	if err != nil {
		t.Fatal(err)
	}
	sel := labels.SelectorFromSet(labels.Set{"app": "web"})
	got, ts, err := RESTMetrics{Client: cs.CoreV1().RESTClient()}.PodMetrics(context.Background(), "shop", sel)
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods" || gotSel != "app=web" {
		t.Errorf("asked %s ?labelSelector=%s", gotPath, gotSel)
	}
	if gotAccept != "application/json" {
		t.Errorf("Accept %q, want application/json", gotAccept)
	}
	cpu0, mem0, cpu1 := got["web-0"]["cpu"], got["web-0"]["memory"], got["web-1"]["cpu"]
	if cpu0.MilliValue() != 300 || mem0.Value() != 65*1024*1024 || cpu1.MilliValue() != 1000 {
		t.Errorf("usage %v", got)
	}
	if ts.Second() != 5 {
		t.Errorf("timestamp %v, want the oldest sample's", ts)
	}

	srv.Config.Handler = http.NotFoundHandler()
	if _, _, err := (RESTMetrics{Client: cs.CoreV1().RESTClient()}).PodMetrics(context.Background(), "shop", sel); err == nil {
		t.Error("a missing metrics API gave no error")
	}
}
