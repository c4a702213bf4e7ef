// Package prober runs a container's liveness, readiness and startup
// probes as the kubelet does: one attempt (Probe) and a per-container
// Worker that applies the timing fields and thresholds and reports the
// resulting state when it changes. It also owns the HTTP request and
// port rules that lifecycle hooks share.
package prober

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Result is the outcome of a probe attempt or the state a Worker reports.
type Result int

const (
	// Unknown means the probe could not be run (a bad spec, an exec
	// error other than a timeout). Like the kubelet, a Worker does not
	// count it towards either threshold.
	Unknown Result = iota
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "Success"
	case Failure:
		return "Failure"
	}
	return "Unknown"
}

// Kind is which of a container's probes this is.
type Kind int

const (
	Liveness Kind = iota
	Readiness
	Startup
)

func (k Kind) String() string {
	switch k {
	case Liveness:
		return "Liveness"
	case Readiness:
		return "Readiness"
	}
	return "Startup"
}

// ExecFunc runs cmd in the container and returns its exit code and
// combined output. It must give up when ctx is done (the probe's
// timeout) and then return ctx.Err() (possibly wrapped).
type ExecFunc func(ctx context.Context, cmd []string) (exitCode int, output []byte, err error)

// UserAgent is sent with HTTP probes and hooks; applications commonly
// recognise probes by the "kube-probe/" prefix.
const UserAgent = "kube-probe/1.37"

// maxOutput bounds what is kept of a response body or command output.
const maxOutput = 10 * 1024

// Probe runs one attempt of p against a container at podIP. A named
// port cannot be resolved without the container: use ProbeContainer.
func Probe(ctx context.Context, p *corev1.Probe, podIP string, exec ExecFunc) (Result, string) {
	return ProbeContainer(ctx, p, nil, podIP, exec)
}

// ProbeContainer runs one attempt of p, c's probe, against podIP within
// p's timeoutSeconds (default 1). The string says what happened: the
// body or command output on success, the reason on failure.
func ProbeContainer(ctx context.Context, p *corev1.Probe, c *corev1.Container, podIP string, exec ExecFunc) (Result, string) {
	return probe(ctx, p, c, podIP, exec, seconds(p.TimeoutSeconds, 1, time.Second))
}

func seconds(v, def int32, unit time.Duration) time.Duration {
	if v <= 0 {
		v = def
	}
	return time.Duration(v) * unit
}

func probe(ctx context.Context, p *corev1.Probe, c *corev1.Container, podIP string, exec ExecFunc, timeout time.Duration) (Result, string) {
	if p == nil {
		return Unknown, "no probe given"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := p.ProbeHandler
	switch {
	case h.Exec != nil:
		return probeExec(ctx, h.Exec.Command, exec, timeout)
	case h.HTTPGet != nil:
		return probeHTTP(ctx, h.HTTPGet, c, podIP)
	case h.TCPSocket != nil:
		return probeTCP(ctx, h.TCPSocket, c, podIP)
	case h.GRPC != nil:
		return probeGRPC(ctx, h.GRPC, podIP)
	}
	return Unknown, "probe sets none of exec, httpGet, tcpSocket, grpc"
}

func probeExec(ctx context.Context, cmd []string, exec ExecFunc, timeout time.Duration) (Result, string) {
	if exec == nil {
		return Unknown, "exec probe: this node cannot run commands in containers"
	}
	if len(cmd) == 0 {
		return Unknown, "exec probe: command is empty"
	}
	code, out, err := exec(ctx, cmd)
	msg := truncate(out)
	switch {
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded):
		return Failure, fmt.Sprintf("command %q timed out after %s", cmd, timeout)
	case err != nil:
		return Unknown, fmt.Sprintf("exec probe %q: %v", cmd, err)
	case code != 0:
		if msg == "" {
			return Failure, fmt.Sprintf("command %q exited with %d", cmd, code)
		}
		return Failure, fmt.Sprintf("command %q exited with %d: %s", cmd, code, msg)
	}
	return Success, msg
}

func truncate(b []byte) string {
	if len(b) > maxOutput {
		b = b[:maxOutput]
	}
	return strings.TrimRight(string(b), "\n")
}

// ResolvePort turns a probe or hook port (a number or the name of one of
// c's ports) into a port number.
func ResolvePort(port intstr.IntOrString, c *corev1.Container) (int, error) {
	if port.Type == intstr.Int {
		if port.IntVal < 1 || port.IntVal > 65535 {
			return 0, fmt.Errorf("port %d is not between 1 and 65535", port.IntVal)
		}
		return int(port.IntVal), nil
	}
	name := port.StrVal
	if name == "" {
		return 0, errors.New("port is empty")
	}
	if n, err := strconv.Atoi(name); err == nil {
		return ResolvePort(intstr.FromInt32(int32(n)), c)
	}
	if c != nil {
		for _, p := range c.Ports {
			if p.Name == name {
				return int(p.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("port %q is not the name of one of the container's ports", name)
}

// NewHTTPRequest builds the GET request an httpGet probe or hook sends:
// host defaults to podIP, path to "/", a Host header sets the virtual
// host, User-Agent and Accept default as the kubelet's.
func NewHTTPRequest(ctx context.Context, g *corev1.HTTPGetAction, c *corev1.Container, podIP string) (*http.Request, error) {
	port, err := ResolvePort(g.Port, c)
	if err != nil {
		return nil, err
	}
	host := g.Host
	if host == "" {
		host = podIP
	}
	if host == "" {
		return nil, errors.New("no host: the pod has no IP yet and httpGet.host is empty")
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	if scheme != "http" && scheme != "https" {
		return nil, fmt.Errorf("scheme %q is not HTTP or HTTPS", g.Scheme)
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", g.Path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		if strings.EqualFold(h.Name, "User-Agent") || strings.EqualFold(h.Name, "Accept") {
			req.Header.Del(h.Name)
		}
		req.Header.Add(h.Name, h.Value)
	}
	return req, nil
}

// NewHTTPClient returns a client like the kubelet's prober: no proxy, no
// keep-alive, certificates not verified, redirects followed only on the
// same host (at most 10); a redirect elsewhere is returned as the
// response, which counts as success.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:              nil,
			DisableKeepAlives:  true,
			DisableCompression: true,
			TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // probes target the pod, as the kubelet's do
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
}

func probeHTTP(ctx context.Context, g *corev1.HTTPGetAction, c *corev1.Container, podIP string) (Result, string) {
	req, err := NewHTTPRequest(ctx, g, c, podIP)
	if err != nil {
		return Unknown, "httpGet probe: " + err.Error()
	}
	resp, err := NewHTTPClient().Do(req)
	if err != nil {
		return Failure, fmt.Sprintf("Get %q: %v", req.URL.String(), unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxOutput))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		if resp.StatusCode >= 300 {
			return Success, fmt.Sprintf("probe terminated redirects, response: HTTP %d to %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		return Success, truncate(body)
	}
	return Failure, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

// unwrapURLError drops url.Error's repetition of the method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if errors.Is(ue.Err, context.DeadlineExceeded) {
			return errors.New("context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
		}
		return ue.Err
	}
	return err
}

func probeTCP(ctx context.Context, t *corev1.TCPSocketAction, c *corev1.Container, podIP string) (Result, string) {
	port, err := ResolvePort(t.Port, c)
	if err != nil {
		return Unknown, "tcpSocket probe: " + err.Error()
	}
	host := t.Host
	if host == "" {
		host = podIP
	}
	if host == "" {
		return Unknown, "tcpSocket probe: no host: the pod has no IP yet and tcpSocket.host is empty"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return Failure, err.Error()
	}
	conn.Close()
	return Success, ""
}

func probeGRPC(ctx context.Context, g *corev1.GRPCAction, podIP string) (Result, string) {
	if podIP == "" {
		return Unknown, "grpc probe: the pod has no IP yet"
	}
	if g.Port < 1 || g.Port > 65535 {
		return Unknown, fmt.Sprintf("grpc probe: port %d is not between 1 and 65535", g.Port)
	}
	addr := net.JoinHostPort(podIP, strconv.Itoa(int(g.Port)))
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(UserAgent))
	if err != nil {
		return Failure, fmt.Sprintf("failed to connect service %q: %v", addr, err)
	}
	defer conn.Close()
	service := ""
	if g.Service != nil {
		service = *g.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		if ctx.Err() != nil {
			return Failure, "timeout: health rpc did not complete within the probe's timeoutSeconds"
		}
		return Failure, fmt.Sprintf("error: health rpc probe failed: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return Failure, fmt.Sprintf("service unhealthy (responded with %q)", resp.GetStatus())
	}
	return Success, ""
}
