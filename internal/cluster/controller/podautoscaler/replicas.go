package podautoscaler

import (
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
)

// Tolerance is how far the usage ratio may stray from 1.0 before the HPA
// acts (Kubernetes' --horizontal-pod-autoscaler-tolerance default).
const Tolerance = 0.1

// podGroups splits the target's pods as Kubernetes' algorithm does:
// ready pods with metrics (in usage), unready pods (pending, or not Ready
// for cpu, whose usage at start-up is misleading) and pods without
// metrics. Deleted and failed pods are ignored.
func podGroups(pods []*corev1.Pod, metrics map[string]PodUsage, res corev1.ResourceName) (usage map[string]int64, unready, missing []string) {
	usage = map[string]int64{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		if p.Status.Phase == corev1.PodPending {
			unready = append(unready, p.Name)
			continue
		}
		m, ok := metrics[p.Name]
		q, hasRes := m[res]
		if !ok || !hasRes {
			missing = append(missing, p.Name)
			continue
		}
		if res == corev1.ResourceCPU && !podReady(p) {
			unready = append(unready, p.Name)
			continue
		}
		usage[p.Name] = q.MilliValue()
	}
	return usage, unready, missing
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podRequests sums each pod's container requests for res (milli-units);
// a container without one is an error, as utilization is undefined.
func podRequests(pods []*corev1.Pod, res corev1.ResourceName) (map[string]int64, error) {
	out := make(map[string]int64, len(pods))
	for _, p := range pods {
		var sum int64
		for _, c := range p.Spec.Containers {
			q, ok := c.Resources.Requests[res]
			if !ok {
				return nil, fmt.Errorf("missing request for %s in container %s of Pod %s", res, c.Name, p.Name)
			}
			sum += q.MilliValue()
		}
		out[p.Name] = sum
	}
	return out, nil
}

// utilization is the usage of the pods in usage as a percentage of their
// requests, and the average raw usage.
func utilization(usage, requests map[string]int64) (percent float64, avgMilli int64, err error) {
	var u, r int64
	for name, v := range usage {
		req, ok := requests[name]
		if !ok {
			continue
		}
		u += v
		r += req
	}
	if r == 0 {
		return 0, 0, fmt.Errorf("no metrics returned matched known pods")
	}
	return float64(u) * 100 / float64(r), u / int64(len(usage)), nil
}

// replicaProposal is one metric's answer.
type replicaProposal struct {
	replicas    int32
	utilization int32 // percent of request (Utilization targets)
	averageMil  int64 // average usage in milli-units
}

// proposeReplicas computes the replica count one resource metric asks for,
// following Kubernetes' algorithm: ratio = current/target over the ready
// pods with metrics; within Tolerance nothing changes. Pods without
// metrics count as using the target when scaling down and nothing when
// scaling up; unready pods count as using nothing when scaling up (and are
// left out when scaling down). If those assumptions reverse the direction
// or bring the ratio within tolerance, the count stays.
//
// targetUtil > 0 selects a Utilization target (percent of request);
// otherwise targetMilli is an AverageValue target.
func proposeReplicas(current int32, pods []*corev1.Pod, metrics map[string]PodUsage, res corev1.ResourceName, targetUtil int32, targetMilli int64) (replicaProposal, error) {
	usage, unready, missing := podGroups(pods, metrics, res)
	if len(usage) == 0 {
		return replicaProposal{}, fmt.Errorf("did not receive metrics for targeted pods (pods might be unready)")
	}
	var requests map[string]int64
	ratio := func(u map[string]int64) (float64, replicaProposal, error) {
		if targetUtil > 0 {
			pct, avg, err := utilization(u, requests)
			if err != nil {
				return 0, replicaProposal{}, err
			}
			return pct / float64(targetUtil), replicaProposal{utilization: int32(pct), averageMil: avg}, nil
		}
		var sum int64
		for _, v := range u {
			sum += v
		}
		avg := sum / int64(len(u))
		return float64(sum) / float64(len(u)) / float64(targetMilli), replicaProposal{averageMil: avg}, nil
	}
	if targetUtil > 0 {
		var err error
		if requests, err = podRequests(pods, res); err != nil {
			return replicaProposal{}, err
		}
	}
	r, out, err := ratio(usage)
	if err != nil {
		return replicaProposal{}, err
	}
	if len(missing) == 0 && len(unready) == 0 {
		if math.Abs(1-r) <= Tolerance {
			out.replicas = current
		} else {
			out.replicas = int32(math.Ceil(r * float64(len(usage))))
		}
		return out, nil
	}
	scaleUp := r > 1
	adjusted := make(map[string]int64, len(usage)+len(missing)+len(unready))
	for k, v := range usage {
		adjusted[k] = v
	}
	for _, name := range missing {
		switch {
		case scaleUp:
			adjusted[name] = 0
		case targetUtil > 0:
			adjusted[name] = requests[name] * int64(targetUtil) / 100
		default:
			adjusted[name] = targetMilli
		}
	}
	if scaleUp {
		for _, name := range unready {
			adjusted[name] = 0
		}
	}
	nr, _, err := ratio(adjusted)
	if err != nil {
		return replicaProposal{}, err
	}
	if math.Abs(1-nr) <= Tolerance || (r > 1 && nr < 1) || (r < 1 && nr > 1) {
		out.replicas = current
		return out, nil
	}
	out.replicas = int32(math.Ceil(nr * float64(len(adjusted))))
	return out, nil
}
