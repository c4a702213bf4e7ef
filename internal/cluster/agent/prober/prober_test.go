package prober

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func hostPort(t *testing.T, rawURL string) (string, int) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	return u.Hostname(), port
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func httpProbe(port intstr.IntOrString, path string, headers ...corev1.HTTPHeader) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: port, Path: path, HTTPHeaders: headers}}}
}

func TestProbeHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "fine") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "sick", http.StatusInternalServerError) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/moved-to-404", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/nope", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://other.invalid/", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "example.test" || r.Header.Get("X-Probe") != "yes" || !strings.HasPrefix(r.UserAgent(), "kube-probe/") {
			http.Error(w, fmt.Sprintf("host %q x-probe %q ua %q", r.Host, r.Header.Get("X-Probe"), r.UserAgent()), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "headers ok")
	})
	mux.HandleFunc("/query", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("full") != "1" {
			http.Error(w, "no query", http.StatusBadRequest)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	ip, port := hostPort(t, srv.URL)
	_, tlsPort := hostPort(t, tlsSrv.URL)
	c := &corev1.Container{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	num := intstr.FromInt32(int32(port))

	tests := []struct {
		name    string
		probe   *corev1.Probe
		want    Result
		wantMsg string
	}{
		{name: "200", probe: httpProbe(num, "/ok"), want: Success, wantMsg: "fine"},
		{name: "500", probe: httpProbe(num, "/fail"), want: Failure, wantMsg: "statuscode: 500"},
		{name: "404", probe: httpProbe(num, "/missing"), want: Failure, wantMsg: "statuscode: 404"},
		{name: "same-host redirect followed", probe: httpProbe(num, "/moved"), want: Success, wantMsg: "fine"},
		{name: "redirect to a 404", probe: httpProbe(num, "/moved-to-404"), want: Failure, wantMsg: "statuscode: 404"},
		{name: "other-host redirect is success", probe: httpProbe(num, "/elsewhere"), want: Success, wantMsg: "HTTP 302"},
		{name: "redirect loop", probe: httpProbe(num, "/loop"), want: Failure, wantMsg: "stopped after 10 redirects"},
		{name: "named port", probe: httpProbe(intstr.FromString("http"), "ok"), want: Success, wantMsg: "fine"},
		{name: "empty port name", probe: httpProbe(intstr.FromString(""), "/ok"), want: Unknown, wantMsg: "port is empty"},
		{name: "port number as string", probe: httpProbe(intstr.FromString(strconv.Itoa(port)), "/ok"), want: Success, wantMsg: "fine"},
		{name: "unknown named port", probe: httpProbe(intstr.FromString("admin"), "/ok"), want: Unknown, wantMsg: `port "admin"`},
		{name: "headers", probe: httpProbe(num, "/headers", corev1.HTTPHeader{Name: "Host", Value: "example.test"}, corev1.HTTPHeader{Name: "X-Probe", Value: "yes"}), want: Success, wantMsg: "headers ok"},
		{name: "query in path", probe: httpProbe(num, "/query?full=1"), want: Success},
		{name: "https unverified", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Scheme: corev1.URISchemeHTTPS, Port: intstr.FromInt32(int32(tlsPort)), Path: "/ok"}}}, want: Success, wantMsg: "fine"},
		{name: "timeout", probe: func() *corev1.Probe { p := httpProbe(num, "/slow"); p.TimeoutSeconds = 1; return p }(), want: Failure, wantMsg: "deadline exceeded"},
		{name: "connection refused", probe: httpProbe(intstr.FromInt32(int32(closedPort(t))), "/"), want: Failure, wantMsg: "connection refused"},
		{name: "bad scheme", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Scheme: "FTP", Port: num}}}, want: Unknown, wantMsg: `scheme "FTP"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			got, msg := ProbeContainer(context.Background(), tt.probe, c, ip, nil)
			if got != tt.want || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("got %v %q, want %v containing %q", got, msg, tt.want, tt.wantMsg)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
	// Probe without a container cannot resolve a named port.
	if got, msg := Probe(context.Background(), httpProbe(intstr.FromString("http"), "/ok"), ip, nil); got != Unknown {
		t.Errorf("Probe with named port and no container: %v %q, want Unknown", got, msg)
	}
	// Host defaults to the pod IP; an explicit host wins.
	p := httpProbe(num, "/ok")
	p.HTTPGet.Host = ip
	if got, msg := Probe(context.Background(), p, "192.0.2.1", nil); got != Success {
		t.Errorf("explicit host: %v %q", got, msg)
	}
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := ln.Addr().(*net.TCPAddr).Port
	c := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "db", ContainerPort: int32(open)}}}
	tcp := func(port intstr.IntOrString) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}}
	}
	tests := []struct {
		name    string
		p       *corev1.Probe
		podIP   string
		want    Result
		wantMsg string
	}{
		{name: "open", p: tcp(intstr.FromInt32(int32(open))), podIP: "127.0.0.1", want: Success},
		{name: "named", p: tcp(intstr.FromString("db")), podIP: "127.0.0.1", want: Success},
		{name: "closed", p: tcp(intstr.FromInt32(int32(closedPort(t)))), podIP: "127.0.0.1", want: Failure, wantMsg: "connection refused"},
		{name: "no pod IP", p: tcp(intstr.FromInt32(int32(open))), want: Unknown, wantMsg: "no host"},
		{name: "port out of range", p: tcp(intstr.FromInt32(70000)), podIP: "127.0.0.1", want: Unknown, wantMsg: "between 1 and 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg := ProbeContainer(context.Background(), tt.p, c, tt.podIP, nil)
			if got != tt.want || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("got %v %q, want %v containing %q", got, msg, tt.want, tt.wantMsg)
			}
		})
	}
}

// fakeExec returns canned results and records the commands.
func fakeExec(code int, out string, err error, delay time.Duration) ExecFunc {
	return func(ctx context.Context, cmd []string) (int, []byte, error) {
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return -1, nil, ctx.Err()
			}
		}
		return code, []byte(out), err
	}
}

func TestProbeExec(t *testing.T) {
	execProbe := &corev1.Probe{TimeoutSeconds: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/healthy"}}}}
	tests := []struct {
		name    string
		exec    ExecFunc
		want    Result
		wantMsg string
	}{
		{name: "exit 0", exec: fakeExec(0, "ok\n", nil, 0), want: Success, wantMsg: "ok"},
		{name: "exit 1", exec: fakeExec(1, "cat: /tmp/healthy: No such file or directory\n", nil, 0), want: Failure, wantMsg: "exited with 1: cat: /tmp/healthy"},
		{name: "timeout", exec: fakeExec(0, "", nil, 3*time.Second), want: Failure, wantMsg: "timed out"},
		{name: "exec error", exec: fakeExec(0, "", errors.New("container not running"), 0), want: Unknown, wantMsg: "container not running"},
		{name: "no exec", exec: nil, want: Unknown, wantMsg: "cannot run commands"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg := Probe(context.Background(), execProbe, "", tt.exec)
			if got != tt.want || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("got %v %q, want %v containing %q", got, msg, tt.want, tt.wantMsg)
			}
		})
	}
}

func TestProbeGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	defer srv.Stop()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	svc := func(s string) *string { return &s }
	tests := []struct {
		name    string
		action  corev1.GRPCAction
		want    Result
		wantMsg string
	}{
		{name: "serving", action: corev1.GRPCAction{Port: port}, want: Success},
		{name: "not serving", action: corev1.GRPCAction{Port: port, Service: svc("db")}, want: Failure, wantMsg: "NOT_SERVING"},
		{name: "unknown service", action: corev1.GRPCAction{Port: port, Service: svc("nope")}, want: Failure, wantMsg: "NotFound"},
		{name: "closed port", action: corev1.GRPCAction{Port: int32(closedPort(t))}, want: Failure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.action
			got, msg := Probe(context.Background(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &a}}, "127.0.0.1", nil)
			if got != tt.want || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("got %v %q, want %v containing %q", got, msg, tt.want, tt.wantMsg)
			}
		})
	}
}
