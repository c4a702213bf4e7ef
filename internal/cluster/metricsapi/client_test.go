package metricsapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestListPodMetrics(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.RequestURI()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"PodMetricsList","apiVersion":"metrics.k8s.io/v1beta1","metadata":{},"items":[
{"metadata":{"name":"web-1","namespace":"shop","labels":{"app":"web"}},"timestamp":"2026-01-02T03:04:05Z","window":"5.002s",
 "containers":[{"name":"app","usage":{"cpu":"250m","memory":"64Mi"}},{"name":"side","usage":{"cpu":"1234567n","memory":"1Mi"}}]}]}`))
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	list, err := ListPodMetrics(context.Background(), cs.CoreV1().RESTClient(), "shop", "app=web")
	if err != nil {
		t.Fatal(err)
	}
	if got != "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods?labelSelector=app%3Dweb" {
		t.Errorf("requested %s", got)
	}
	if len(list.Items) != 1 || len(list.Items[0].Containers) != 2 {
		t.Fatalf("got %+v", list)
	}
	pm := list.Items[0]
	cpu, side := pm.Containers[0].Usage.Cpu(), pm.Containers[1].Usage.Cpu()
	if cpu.MilliValue() != 250 || side.ScaledValue(-9) != 1234567 || pm.Containers[0].Usage.Memory().Value() != 64<<20 || pm.Window.Duration.Milliseconds() != 5002 || pm.Labels["app"] != "web" {
		t.Errorf("decoded %+v", pm)
	}
	if PodsPath("") != "/apis/metrics.k8s.io/v1beta1/pods" {
		t.Errorf("PodsPath(\"\") = %s", PodsPath(""))
	}
}
