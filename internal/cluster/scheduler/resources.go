package scheduler

import (
	corev1 "k8s.io/api/core/v1"
)

// Requests a pod makes that do not name an explicit amount still occupy
// something; for scoring (never for fit) Kubernetes counts them as these
// defaults so that an empty node still looks emptier than one full of
// request-less pods.
const (
	defaultMilliCPU = 100
	defaultMemory   = 200 * 1024 * 1024
)

// resources is an amount of the resources the scheduler accounts for.
type resources struct {
	milliCPU  int64
	memory    int64
	ephemeral int64
	// scalar holds every other resource (extended resources, hugepages),
	// nil when there are none.
	scalar map[corev1.ResourceName]int64
}

func (r *resources) add(o resources) {
	r.milliCPU += o.milliCPU
	r.memory += o.memory
	r.ephemeral += o.ephemeral
	for k, v := range o.scalar {
		if r.scalar == nil {
			r.scalar = map[corev1.ResourceName]int64{}
		}
		r.scalar[k] += v
	}
}

func (r *resources) sub(o resources) {
	r.milliCPU -= o.milliCPU
	r.memory -= o.memory
	r.ephemeral -= o.ephemeral
	for k, v := range o.scalar {
		if r.scalar != nil {
			r.scalar[k] -= v
			if r.scalar[k] == 0 {
				delete(r.scalar, k)
			}
		}
	}
}

// max raises each amount of r to at least o's.
func (r *resources) max(o resources) {
	r.milliCPU = max(r.milliCPU, o.milliCPU)
	r.memory = max(r.memory, o.memory)
	r.ephemeral = max(r.ephemeral, o.ephemeral)
	for k, v := range o.scalar {
		if r.scalar == nil {
			r.scalar = map[corev1.ResourceName]int64{}
		}
		r.scalar[k] = max(r.scalar[k], v)
	}
}

func resourcesOf(rl corev1.ResourceList) resources {
	var r resources
	for name, q := range rl {
		switch name {
		case corev1.ResourceCPU:
			r.milliCPU = q.MilliValue()
		case corev1.ResourceMemory:
			r.memory = q.Value()
		case corev1.ResourceEphemeralStorage:
			r.ephemeral = q.Value()
		case corev1.ResourcePods:
			// Not a container request.
		default:
			if r.scalar == nil {
				r.scalar = map[corev1.ResourceName]int64{}
			}
			r.scalar[name] = q.Value()
		}
	}
	return r
}

// containerRequests is what one container asks for; a limit without a
// request counts as the request, as the API server defaults it.
func containerRequests(c *corev1.Container, nonZero bool) resources {
	rl := c.Resources.Requests
	if len(rl) == 0 && len(c.Resources.Limits) > 0 {
		rl = c.Resources.Limits
	} else if len(c.Resources.Limits) > 0 {
		merged := make(corev1.ResourceList, len(rl)+len(c.Resources.Limits))
		for k, v := range c.Resources.Limits {
			merged[k] = v
		}
		for k, v := range rl {
			merged[k] = v
		}
		rl = merged
	}
	r := resourcesOf(rl)
	if nonZero {
		if _, ok := rl[corev1.ResourceCPU]; !ok {
			r.milliCPU = defaultMilliCPU
		}
		if _, ok := rl[corev1.ResourceMemory]; !ok {
			r.memory = defaultMemory
		}
	}
	return r
}

// podRequests is the effective request of a pod, by Kubernetes' rule: the
// sum of its app containers and of its restartable init containers
// (sidecars), or the largest need of any init container while it runs
// (itself plus the sidecars started before it) when that is more; plus the
// pod's overhead. nonZero substitutes the scoring defaults for missing cpu
// and memory requests.
func podRequests(p *corev1.Pod, nonZero bool) resources {
	var apps resources
	for i := range p.Spec.Containers {
		apps.add(containerRequests(&p.Spec.Containers[i], nonZero))
	}
	var sidecars, initMax resources
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		r := containerRequests(c, nonZero)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars.add(r)
			initMax.max(sidecars)
			continue
		}
		r.add(sidecars)
		initMax.max(r)
	}
	apps.add(sidecars)
	apps.max(initMax)
	if p.Spec.Overhead != nil {
		apps.add(resourcesOf(p.Spec.Overhead))
	}
	return apps
}
