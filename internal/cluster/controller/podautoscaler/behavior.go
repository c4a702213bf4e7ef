package podautoscaler

import (
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// Kubernetes' default behavior: scale up at once by up to 4 pods or 100 %
// per 15 s, whichever is more; scale down to the highest recommendation
// of the last 300 s, by up to 100 % per 15 s.
func defaultRules(up bool) autoscalingv2.HPAScalingRules {
	max := autoscalingv2.MaxChangePolicySelect
	if up {
		return autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(0)), SelectPolicy: &max, Policies: []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
		}}
	}
	return autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(300)), SelectPolicy: &max, Policies: []autoscalingv2.HPAScalingPolicy{
		{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
	}}
}

// rules fills the unset parts of one direction's rules with the defaults.
func rules(b *autoscalingv2.HorizontalPodAutoscalerBehavior, up bool) autoscalingv2.HPAScalingRules {
	out := defaultRules(up)
	var r *autoscalingv2.HPAScalingRules
	if b != nil {
		r = b.ScaleDown
		if up {
			r = b.ScaleUp
		}
	}
	if r == nil {
		return out
	}
	if r.StabilizationWindowSeconds != nil {
		out.StabilizationWindowSeconds = r.StabilizationWindowSeconds
	}
	if r.SelectPolicy != nil {
		out.SelectPolicy = r.SelectPolicy
	}
	if len(r.Policies) > 0 {
		out.Policies = r.Policies
	}
	return out
}

type recommendation struct {
	at       time.Time
	replicas int32
}

type scaleEvent struct {
	at     time.Time
	change int32 // positive: added, negative: removed
}

// history is what the controller remembers of one HPA between syncs, as
// Kubernetes keeps it in memory: recent recommendations (stabilization)
// and recent scale changes (rate policies).
type history struct {
	recs   []recommendation
	events []scaleEvent
}

// stabilize records proposal and returns the stabilized count: no higher
// than the lowest recommendation within the scale-up window, no lower
// than the highest within the scale-down window. reason is set when the
// window held the count back.
func (h *history) stabilize(now time.Time, current, proposal int32, up, down autoscalingv2.HPAScalingRules) (int32, string) {
	upWin := time.Duration(*up.StabilizationWindowSeconds) * time.Second
	downWin := time.Duration(*down.StabilizationWindowSeconds) * time.Second
	keep := max(upWin, downWin)
	recs := h.recs[:0]
	for _, r := range h.recs {
		if now.Sub(r.at) <= keep {
			recs = append(recs, r)
		}
	}
	h.recs = append(recs, recommendation{at: now, replicas: proposal})
	upRec, downRec := proposal, proposal
	for _, r := range h.recs {
		age := now.Sub(r.at)
		// A window of 0 s means only the proposal itself.
		if age < upWin {
			upRec = min(upRec, r.replicas)
		}
		if age < downWin {
			downRec = max(downRec, r.replicas)
		}
	}
	out := current
	if out < upRec {
		out = upRec
	}
	if out > downRec {
		out = downRec
	}
	switch {
	case out < proposal:
		return out, "ScaleUpStabilized"
	case out > proposal:
		return out, "ScaleDownStabilized"
	}
	return out, ""
}

// changeIn sums the scale events of the last period, added and removed.
func (h *history) changeIn(now time.Time, period time.Duration) (added, removed int32) {
	for _, e := range h.events {
		if now.Sub(e.at) <= period {
			if e.change > 0 {
				added += e.change
			} else {
				removed -= e.change
			}
		}
	}
	return
}

// record remembers a scale change and forgets those older than keep.
func (h *history) record(now time.Time, change int32, keep time.Duration) {
	ev := h.events[:0]
	for _, e := range h.events {
		if now.Sub(e.at) <= keep {
			ev = append(ev, e)
		}
	}
	h.events = append(ev, scaleEvent{at: now, change: change})
}

// limit applies the rate policies of the direction from current toward
// desired and returns the allowed count (and true when it is limited).
func (h *history) limit(now time.Time, current, desired int32, r autoscalingv2.HPAScalingRules) (int32, bool) {
	sel := autoscalingv2.MaxChangePolicySelect
	if r.SelectPolicy != nil {
		sel = *r.SelectPolicy
	}
	if sel == autoscalingv2.DisabledPolicySelect {
		return current, desired != current
	}
	up := desired > current
	var best int32
	first := true
	for _, p := range r.Policies {
		added, removed := h.changeIn(now, time.Duration(p.PeriodSeconds)*time.Second)
		var l int32
		if up {
			start := current - added + removed
			if p.Type == autoscalingv2.PodsScalingPolicy {
				l = start + p.Value
			} else {
				l = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
			}
		} else {
			start := current + removed - added
			if p.Type == autoscalingv2.PodsScalingPolicy {
				l = start - p.Value
			} else {
				l = int32(math.Ceil(float64(start) * (1 - float64(p.Value)/100)))
			}
		}
		// Max picks the policy allowing the most change, Min the least.
		most := (up && l > best) || (!up && l < best)
		if first || (sel == autoscalingv2.MaxChangePolicySelect) == most {
			best, first = l, false
		}
	}
	if first {
		return desired, false
	}
	if up && desired > best {
		return max(best, current), true
	}
	if !up && desired < best {
		return min(max(best, 0), current), true
	}
	return desired, false
}

func ptr[T any](v T) *T { return &v }
