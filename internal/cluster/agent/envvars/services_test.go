package envvars

import (
	"context"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func TestServiceEnv(t *testing.T) {
	services := []*corev1.Service{
		svc("default", "kubernetes", "10.96.0.1", corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}),
		svc("ns1", "my-db", "10.96.0.7", corev1.ServicePort{Port: 5432}, corev1.ServicePort{Name: "metrics-http", Port: 9187, Protocol: corev1.ProtocolUDP}),
		svc("ns1", "headless", "None", corev1.ServicePort{Port: 80}),
		svc("other", "elsewhere", "10.96.0.9", corev1.ServicePort{Port: 80}),
	}
	got := ServiceEnv(services, "ns1", true)
	want := map[string]string{
		"KUBERNETES_SERVICE_HOST":       "10.96.0.1",
		"KUBERNETES_SERVICE_PORT":       "443",
		"KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT":               "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP":       "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO": "tcp",
		"KUBERNETES_PORT_443_TCP_PORT":  "443",
		"KUBERNETES_PORT_443_TCP_ADDR":  "10.96.0.1",

		"MY_DB_SERVICE_HOST":              "10.96.0.7",
		"MY_DB_SERVICE_PORT":              "5432",
		"MY_DB_SERVICE_PORT_METRICS_HTTP": "9187",
		"MY_DB_PORT":                      "tcp://10.96.0.7:5432",
		"MY_DB_PORT_5432_TCP":             "tcp://10.96.0.7:5432",
		"MY_DB_PORT_5432_TCP_PROTO":       "tcp",
		"MY_DB_PORT_5432_TCP_PORT":        "5432",
		"MY_DB_PORT_5432_TCP_ADDR":        "10.96.0.7",
		"MY_DB_PORT_9187_UDP":             "udp://10.96.0.7:9187",
		"MY_DB_PORT_9187_UDP_PROTO":       "udp",
		"MY_DB_PORT_9187_UDP_PORT":        "9187",
		"MY_DB_PORT_9187_UDP_ADDR":        "10.96.0.7",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	// enableServiceLinks false keeps only the API server's service.
	off := ServiceEnv(services, "ns1", false)
	if _, ok := off["MY_DB_SERVICE_HOST"]; ok || off["KUBERNETES_SERVICE_HOST"] != "10.96.0.1" {
		t.Errorf("enableServiceLinks=false: got %v", off)
	}
}

func TestResolveWithServices(t *testing.T) {
	pod := testPod()
	pod.Spec.Containers = []corev1.Container{{Name: "app", Env: []corev1.EnvVar{
		{Name: "DB", Value: "postgres://$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT)"},
		{Name: "MY_DB_SERVICE_PORT", Value: "6000"},
	}}}
	senv := map[string]string{"MY_DB_SERVICE_HOST": "10.96.0.7", "MY_DB_SERVICE_PORT": "5432", "A_SERVICE_HOST": "10.96.0.2"}
	got, err := ResolveWithServices(context.Background(), newSource(), pod, &pod.Spec.Containers[0], "", "", nil, senv)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"DB=postgres://10.96.0.7:5432", "MY_DB_SERVICE_PORT=6000", "A_SERVICE_HOST=10.96.0.2", "MY_DB_SERVICE_HOST=10.96.0.7"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
