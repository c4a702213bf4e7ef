package agent

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth/berth/internal/engine/api"
)

// containerEnv resolves a container's environment and mounts.
func (a *Agent) containerEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, podIP string) ([]string, []api.Mount, error) {
	var env []string
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	return env, nil, nil
}

// preStop runs the container's preStop hook within the grace period.
func (a *Agent) preStop(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, grace int) {
}

// podRemoved releases what the agent holds for a removed pod.
func (a *Agent) podRemoved(pod *corev1.Pod, uid types.UID) {}

// containerReady tells whether a running container passes its readiness
// probe (true without one).
func (a *Agent) containerReady(pod *corev1.Pod, c *corev1.Container, id string) bool { return true }
