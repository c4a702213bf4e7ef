// Package lifecycle runs a container's postStart and preStop hooks
// (exec, httpGet, sleep) the way the kubelet does.
//
// The agent bounds a hook with ctx: postStart has no deadline of its own
// in Kubernetes (the container is not Running until it returns), preStop
// is cut short by the pod's termination grace period.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/berth/berth/internal/cluster/agent/prober"
	corev1 "k8s.io/api/core/v1"
)

// Event reasons the agent records when a hook fails, as the kubelet's.
const (
	FailedPostStartHook = "FailedPostStartHook"
	FailedPreStopHook   = "FailedPreStopHook"
)

// Run runs handler h of container c (at podIP). On success it returns
// the hook's output (a command's output, an HTTP body); on failure, as
// the kubelet's handler runner, the message for the FailedPostStartHook
// or FailedPreStopHook event, which is also the error's text.
func Run(ctx context.Context, h *corev1.LifecycleHandler, c *corev1.Container, podIP string, exec prober.ExecFunc) (string, error) {
	out, err := run(ctx, h, c, podIP, exec)
	if err != nil {
		return err.Error(), err
	}
	return out, nil
}

func run(ctx context.Context, h *corev1.LifecycleHandler, c *corev1.Container, podIP string, exec prober.ExecFunc) (string, error) {
	name := ""
	if c != nil {
		name = c.Name
	}
	switch {
	case h == nil:
		return "", nil
	case h.Exec != nil:
		if exec == nil {
			return "", fmt.Errorf("Exec lifecycle hook (%v) for Container %q failed - error: this node cannot run commands in containers", h.Exec.Command, name)
		}
		if len(h.Exec.Command) == 0 {
			return "", fmt.Errorf("Exec lifecycle hook for Container %q failed - error: command is empty", name)
		}
		code, out, err := exec(ctx, h.Exec.Command)
		msg := strings.TrimRight(string(out), "\n")
		if err == nil && code != 0 {
			err = fmt.Errorf("command '%s' exited with %d: %s", strings.Join(h.Exec.Command, " "), code, msg)
		}
		if err != nil {
			return msg, fmt.Errorf("Exec lifecycle hook (%v) for Container %q failed - error: %v, message: %q", h.Exec.Command, name, err, msg)
		}
		return msg, nil
	case h.HTTPGet != nil:
		out, err := runHTTP(ctx, h.HTTPGet, c, podIP)
		if err != nil {
			return out, fmt.Errorf("HTTP lifecycle hook (%s) for Container %q failed - error: %v", h.HTTPGet.Path, name, err)
		}
		return out, nil
	case h.Sleep != nil:
		if h.Sleep.Seconds < 0 {
			return "", fmt.Errorf("Sleep lifecycle hook (%d) for Container %q failed - error: seconds must not be negative", h.Sleep.Seconds, name)
		}
		t := time.NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("Sleep lifecycle hook (%d) for Container %q failed - error: container terminated before sleep hook finished", h.Sleep.Seconds, name)
		case <-t.C:
			return "", nil
		}
	case h.TCPSocket != nil:
		// The API still carries tcpSocket for compatibility, but the
		// kubelet has never run it as a hook.
		return "", fmt.Errorf("lifecycle hook for Container %q: tcpSocket is not supported as a lifecycle handler (use exec, httpGet or sleep)", name)
	}
	return "", fmt.Errorf("lifecycle hook for Container %q sets none of exec, httpGet, sleep", name)
}

// runHTTP sends the hook's GET. Like the kubelet, any response counts as
// done (the status code is not checked); only a failure to get one is an
// error.
func runHTTP(ctx context.Context, g *corev1.HTTPGetAction, c *corev1.Container, podIP string) (string, error) {
	req, err := prober.NewHTTPRequest(ctx, g, c, podIP)
	if err != nil {
		return "", err
	}
	resp, err := prober.NewHTTPClient().Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			return "", fmt.Errorf("Get %q: %w", req.URL.String(), ue.Unwrap())
		}
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 10*1024))
	return string(body), nil
}
