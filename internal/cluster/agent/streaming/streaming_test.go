package streaming

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"

	"github.com/berth/berth/internal/cluster/agent/streaming/streamingtest"
	"github.com/berth/berth/internal/engine/api"
)

// fixture is one pod made of labelled engine containers, as the agent
// would create them, served by a streaming Server over plain HTTP.
type fixture struct {
	eng *streamingtest.Engine
	srv *httptest.Server
	pod streamingtest.Pod
	s   *Server
	// hostPort is where the host-network pod's httpd listens.
	hostPort int
}

func setup(t *testing.T) *fixture {
	t.Helper()
	eng := streamingtest.Start(t)
	p := streamingtest.Pod{Namespace: "default", Name: "web", UID: "uid-1"}
	sb := eng.Sandbox(t, p, "sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www")
	prev := eng.Container(t, p, sb, "app", 0, api.Config{Cmd: []string{"sh", "-c", "echo previous run"}})
	eng.Wait(t, prev)
	eng.Container(t, p, sb, "app", 1, api.Config{Cmd: []string{"sh", "-c", "echo line1; sleep 0.1; echo line2 >&2; sleep 0.1; echo line3; exec sleep 3600"}})
	eng.Container(t, p, sb, "ticker", 0, api.Config{Cmd: []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"}})
	// A terminal: the engine's shim closes a non-tty container's stdin
	// when an attached client leaves, whatever StdinOnce says.
	eng.Container(t, p, sb, "att", 0, api.Config{OpenStdin: true, Tty: true, Cmd: []string{"sh", "-c", "while read l; do echo got:$l; done"}})
	// A host-network pod: port-forward dials 127.0.0.1.
	hp := streamingtest.Pod{Namespace: "default", Name: "hostpod", UID: "uid-2"}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	eng.Run(t, "k8s_POD_hostpod_default_uid-2_0", api.Config{Image: "busybox", Labels: hp.Labels("POD", "sandbox", 0),
		Cmd: []string{"sh", "-c", fmt.Sprintf("mkdir -p /www && echo hello-from-host-pod > /www/index.html && exec httpd -f -p 127.0.0.1:%d -h /www", hostPort)}},
		&api.HostConfig{NetworkMode: "host"})
	s := New(Options{Engine: eng.Client})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &fixture{eng: eng, srv: srv, pod: p, s: s, hostPort: hostPort}
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStreaming(t *testing.T) {
	f := setup(t)
	t.Run("logs", f.testLogs)
	t.Run("logsFollow", f.testLogsFollow)
	for _, proto := range []string{"spdy", "websocket"} {
		t.Run("exec/"+proto, func(t *testing.T) { f.testExec(t, proto) })
		t.Run("attach/"+proto, func(t *testing.T) { f.testAttach(t, proto) })
		t.Run("portforward/"+proto, func(t *testing.T) { f.testPortForward(t, proto) })
	}
	t.Run("portforward/hostNetwork", f.testPortForwardHost)
	t.Run("portforward/refused", f.testPortForwardRefused)
	t.Run("badRequests", f.testBadRequests)
}

func (f *fixture) testLogs(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, body := f.get(t, "/containerLogs/default/web/app"); strings.Contains(body, "line3") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// stdout and stderr merge, in order, as the kubelet serves them.
	if code, body := f.get(t, "/containerLogs/default/web/app"); code != 200 || body != "line1\nline2\nline3\n" {
		t.Errorf("logs: got %d %q, want 200 \"line1\\nline2\\nline3\\n\"", code, body)
	}
	if _, body := f.get(t, "/containerLogs/default/web/app?tailLines=1"); body != "line3\n" {
		t.Errorf("tailLines=1: got %q, want \"line3\\n\"", body)
	}
	if _, body := f.get(t, "/containerLogs/default/web/app?previous=true"); body != "previous run\n" {
		t.Errorf("previous: got %q, want \"previous run\\n\"", body)
	}
	if _, body := f.get(t, "/containerLogs/default/web/app?limitBytes=3"); body != "lin" {
		t.Errorf("limitBytes=3: got %q, want \"lin\"", body)
	}
	_, body := f.get(t, "/containerLogs/default/web/app?timestamps=true")
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		ts, rest, _ := strings.Cut(l, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasPrefix(rest, "line") {
			t.Errorf("timestamps: line %q does not start with an RFC 3339 time", l)
		}
	}
	future := url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if _, body := f.get(t, "/containerLogs/default/web/app?sinceTime="+future); body != "" {
		t.Errorf("sinceTime in the future: got %q, want nothing", body)
	}
	if code, body := f.get(t, "/containerLogs/default/web/ticker?previous=true"); code != 400 || !strings.Contains(body, `previous terminated container \"ticker\"`) {
		t.Errorf("previous without one: got %d %s, want 400 naming the container", code, body)
	}
	// The agent cannot tell a container it has not made yet from an
	// unknown one (the API server checks names against the pod spec).
	if code, body := f.get(t, "/containerLogs/default/web/nope"); code != 400 || !strings.Contains(body, "nope") {
		t.Errorf("unknown container: got %d %s, want 400 naming it", code, body)
	}
	if code, body := f.get(t, "/containerLogs/default/web/app?tailLines=x"); code != 400 || !strings.Contains(body, "tailLines") {
		t.Errorf("bad tailLines: got %d %s, want 400 naming tailLines", code, body)
	}
}

func (f *fixture) testLogsFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/containerLogs/default/web/ticker?follow=true&tailLines=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// New lines arrive while the stream stays open: flushed per write.
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for len(lines) < 3 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 3 {
		t.Fatalf("follow: got %q before the stream ended (%v), want 3 lines", lines, sc.Err())
	}
	var first, last int
	fmt.Sscanf(lines[0], "tick %d", &first)
	fmt.Sscanf(lines[2], "tick %d", &last)
	if last != first+2 {
		t.Errorf("follow: got %q, want consecutive ticks", lines)
	}
}

func (f *fixture) config() *rest.Config { return &rest.Config{Host: f.srv.URL} }

func (f *fixture) executor(t *testing.T, proto, path string, q url.Values) remotecommand.Executor {
	t.Helper()
	u, _ := url.Parse(f.srv.URL + path + "?" + q.Encode())
	var ex remotecommand.Executor
	var err error
	if proto == "spdy" {
		ex, err = remotecommand.NewSPDYExecutor(f.config(), "POST", u)
	} else {
		ex, err = remotecommand.NewWebSocketExecutor(f.config(), "GET", u.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func execQuery(stdin, tty bool, cmd ...string) url.Values {
	q := url.Values{"command": cmd, "stdout": {"true"}}
	if !tty {
		q.Set("stderr", "true")
	}
	if stdin {
		q.Set("stdin", "true")
	}
	if tty {
		q.Set("tty", "true")
	}
	return q
}

// oneSize reports one terminal size, then blocks until done.
type oneSize struct {
	sent bool
	done chan struct{}
}

func (o *oneSize) Next() *remotecommand.TerminalSize {
	if !o.sent {
		o.sent = true
		return &remotecommand.TerminalSize{Width: 100, Height: 30}
	}
	<-o.done
	return nil
}

func (f *fixture) testExec(t *testing.T, proto string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := f.executor(t, proto, "/exec/default/web/app", execQuery(false, false, "sh", "-c", "echo hi; echo oops >&2; exit 3")).
		StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	var ce exec.CodeExitError
	if !errors.As(err, &ce) || ce.Code != 3 {
		t.Errorf("exit 3: got error %v, want exit code 3", err)
	}
	if out.String() != "hi\n" || errOut.String() != "oops\n" {
		t.Errorf("exit 3: got stdout %q stderr %q, want \"hi\\n\" and \"oops\\n\"", out.String(), errOut.String())
	}

	out.Reset()
	err = f.executor(t, proto, "/exec/default/web/app", execQuery(true, false, "cat")).
		StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("hello\nworld\n"), Stdout: &out, Stderr: io.Discard})
	if err != nil || out.String() != "hello\nworld\n" {
		t.Errorf("stdin to cat: got %q, %v; want the input back and no error", out.String(), err)
	}

	// A terminal: the size reaches it, and the exit code comes back.
	out.Reset()
	sizes := &oneSize{done: make(chan struct{})}
	defer close(sizes.done)
	pr, pw := io.Pipe()
	go func() {
		time.Sleep(300 * time.Millisecond) // let the resize land first
		io.WriteString(pw, "stty size; exit 5\n")
	}()
	err = f.executor(t, proto, "/exec/default/web/app", execQuery(true, true, "sh")).
		StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: pr, Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
	pw.Close()
	if !errors.As(err, &ce) || ce.Code != 5 {
		t.Errorf("tty: got error %v, want exit code 5", err)
	}
	if !strings.Contains(out.String(), "30 100") {
		t.Errorf("tty: output %q lacks the terminal size \"30 100\"", out.String())
	}

	// A command that does not exist fails visibly.
	out.Reset()
	errOut.Reset()
	err = f.executor(t, proto, "/exec/default/web/app", execQuery(false, false, "no-such-command")).
		StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	if err == nil {
		t.Errorf("missing command: got no error; stdout %q stderr %q", out.String(), errOut.String())
	}
}

func (f *fixture) testAttach(t *testing.T, proto string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	out := &lineWaiter{want: "got:" + proto, found: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- f.executor(t, proto, "/attach/default/web/att", url.Values{"stdin": {"true"}, "stdout": {"true"}, "stderr": {"true"}}).
			StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: pr, Stdout: out, Stderr: io.Discard})
	}()
	go io.WriteString(pw, proto+"\n")
	select {
	case <-out.found:
	case err := <-done:
		t.Fatalf("attach ended before echoing: %v; output %q", err, out.String())
	case <-ctx.Done():
		t.Fatalf("attach: no %q in the output %q", out.want, out.String())
	}
	cancel()
	<-done
	// The client left: the agent's session (and engine attach) ends.
	deadline := time.Now().Add(5 * time.Second)
	for f.s.sessions.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("attach: %d sessions still running 5s after the client left", f.s.sessions.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lineWaiter collects output and signals when want appears.
type lineWaiter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	want  string
	found chan struct{}
	once  sync.Once
}

func (l *lineWaiter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if strings.Contains(l.b.String(), l.want) {
		l.once.Do(func() { close(l.found) })
	}
	return len(p), nil
}

func (l *lineWaiter) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func (f *fixture) testPortForward(t *testing.T, proto string) {
	u, _ := url.Parse(f.srv.URL + "/portForward/default/web")
	var dialer httpstream.Dialer
	if proto == "spdy" {
		tr, up, err := spdy.RoundTripperFor(f.config())
		if err != nil {
			t.Fatal(err)
		}
		dialer = spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u)
	} else {
		d, err := portforward.NewSPDYOverWebsocketDialer(u, f.config())
		if err != nil {
			t.Fatal(err)
		}
		dialer = d
	}
	stop, ready := make(chan struct{}), make(chan struct{})
	var errOut bytes.Buffer
	pf, err := portforward.New(dialer, []string{"0:8080"}, stop, ready, io.Discard, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	defer func() { close(stop); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("port-forward not ready in 10s")
	}
	ports, _ := pf.GetPorts()
	for i := 0; i < 3; i++ { // several connections over one session
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", ports[0].Local))
		if err != nil {
			t.Fatalf("GET through the forwarded port: %v (%s)", err, errOut.String())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello-from-pod\n" {
			t.Fatalf("GET through the forwarded port: got %q, want \"hello-from-pod\\n\"", b)
		}
	}
}

func (f *fixture) spdyDialer(t *testing.T, pod string) httpstream.Dialer {
	t.Helper()
	u, _ := url.Parse(f.srv.URL + "/portForward/default/" + pod)
	tr, up, err := spdy.RoundTripperFor(f.config())
	if err != nil {
		t.Fatal(err)
	}
	return spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u)
}

func (f *fixture) testPortForwardHost(t *testing.T) {
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.New(f.spdyDialer(t, "hostpod"), []string{fmt.Sprintf("0:%d", f.hostPort)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	defer func() { close(stop); <-done }()
	<-ready
	ports, _ := pf.GetPorts()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", ports[0].Local))
	if err != nil {
		t.Fatalf("GET through the forwarded port of a host-network pod: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello-from-host-pod\n" {
		t.Errorf("host-network pod: got %q, want \"hello-from-host-pod\\n\"", b)
	}
}

// testPortForwardRefused speaks the protocol by hand: a port nothing
// listens on is reported on the connection's error stream.
func (f *fixture) testPortForwardRefused(t *testing.T) {
	conn, proto, err := f.spdyDialer(t, "web").Dial("portforward.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if proto != "portforward.k8s.io" {
		t.Errorf("negotiated %q, want portforward.k8s.io", proto)
	}
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", "8081")
	h.Set("requestID", "0")
	errStream, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	errStream.Close()
	h.Set("streamType", "data")
	if _, err := conn.CreateStream(h); err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(errStream)
	if !strings.Contains(string(msg), "error forwarding port 8081 to pod default/web") || !strings.Contains(string(msg), "refused") {
		t.Errorf("refused port: error stream says %q, want it to name the port, the pod and the refusal", msg)
	}
}

func (f *fixture) testBadRequests(t *testing.T) {
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/exec/default/web/app?stdout=true", 400, "command"},
		{"/exec/default/web/app?command=ls", 400, "stdin, stdout, stderr"},
		{"/exec/default/web/app?command=ls&stdout=true", 400, "upgrade"},
		{"/exec/default/nope/app?command=ls&stdout=true", 404, "nope"},
		{"/portForward/default/nope", 404, "nope"},
		{"/attach/default/web/app?stdin=true&stdout=true", 400, "stdin"},
		{"/bogus", 404, "/containerLogs"},
	} {
		code, body := f.get(t, c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: got %d %s, want %d mentioning %q", c.path, code, body, c.code, c.want)
		}
	}
}
