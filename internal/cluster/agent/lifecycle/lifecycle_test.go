package lifecycle

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestRun(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/shutdown" && r.Header.Get("X-Hook") == "pre" {
			w.Write([]byte("bye"))
			return
		}
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	c := &corev1.Container{Name: "app", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: int32(port)}}}
	var gotCmd []string
	exec := func(code int, out string, err error) func(context.Context, []string) (int, []byte, error) {
		return func(ctx context.Context, cmd []string) (int, []byte, error) {
			gotCmd = cmd
			return code, []byte(out), err
		}
	}
	tests := []struct {
		name    string
		h       *corev1.LifecycleHandler
		exec    func(context.Context, []string) (int, []byte, error)
		ctx     time.Duration
		wantOut string
		wantErr string
	}{
		{name: "nil handler", h: nil},
		{name: "exec ok", h: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo hi"}}}, exec: exec(0, "hi\n", nil), wantOut: "hi"},
		{name: "exec exit 2", h: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, exec: exec(2, "boom", nil),
			wantErr: `Exec lifecycle hook ([false]) for Container "app" failed - error: command 'false' exited with 2: boom, message: "boom"`},
		{name: "exec error", h: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"x"}}}, exec: exec(0, "", errors.New("no such container")),
			wantErr: "error: no such container"},
		{name: "exec without ExecFunc", h: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"x"}}}, wantErr: "cannot run commands"},
		{name: "http ok by named port", h: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/shutdown", Port: intstr.FromString("web"),
			HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Hook", Value: "pre"}}}}, wantOut: "bye"},
		{name: "http 500 still counts as run", h: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/other", Port: intstr.FromInt32(int32(port))}}, wantOut: "nope\n"},
		{name: "http refused", h: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/x", Port: intstr.FromInt32(int32(closed))}},
			wantErr: `HTTP lifecycle hook (/x) for Container "app" failed - error: Get "http://127.0.0.1:`},
		{name: "http bad port name", h: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/x", Port: intstr.FromString("admin")}}, wantErr: `port "admin"`},
		{name: "sleep", h: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}},
		{name: "sleep cut short", h: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 30}}, ctx: 50 * time.Millisecond,
			wantErr: "container terminated before sleep hook finished"},
		{name: "tcpSocket", h: &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}, wantErr: "tcpSocket is not supported"},
		{name: "empty", h: &corev1.LifecycleHandler{}, wantErr: "sets none of exec, httpGet, sleep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctx)
				defer cancel()
			}
			start := time.Now()
			out, err := Run(ctx, tt.h, c, "127.0.0.1", tt.exec)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("got error %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if tt.wantErr != "" && out != err.Error() {
				t.Errorf("on failure the output %q should be the event message %q", out, err)
			}
			if tt.wantErr == "" && out != tt.wantOut {
				t.Errorf("output %q, want %q", out, tt.wantOut)
			}
			if tt.name == "sleep" && time.Since(start) < time.Second {
				t.Errorf("sleep hook returned after %s, want 1s", time.Since(start))
			}
			if tt.name == "sleep cut short" && time.Since(start) > time.Second {
				t.Errorf("cancelled sleep took %s", time.Since(start))
			}
		})
	}
	if strings.Join(gotCmd, " ") != "x" {
		t.Errorf("last exec command %q", gotCmd)
	}
	if hits.Load() != 2 {
		t.Errorf("server got %d requests, want 2", hits.Load())
	}
}
