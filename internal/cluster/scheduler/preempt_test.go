package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func priority(v int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Priority = &v }
}

func TestPreempt(t *testing.T) {
	never := corev1.PreemptNever
	cases := []struct {
		name        string
		placed      []*corev1.Pod
		pod         *corev1.Pod
		wantNode    string
		wantVictims []string
	}{
		{"evicts the least important node's pods",
			[]*corev1.Pod{mkPod("a-low", "1500m", "", on("n1"), priority(10)), mkPod("b-mid", "1500m", "", on("n2"), priority(50))},
			mkPod("p", "1", "", priority(100)), "n1", []string{"a-low"}},
		{"fewest victims among equals",
			[]*corev1.Pod{mkPod("a1", "1", "", on("n1"), priority(10)), mkPod("a2", "1", "", on("n1"), priority(10)), mkPod("b1", "2", "", on("n2"), priority(10))},
			mkPod("p", "2", "", priority(100)), "n2", []string{"b1"}},
		{"reprieves what it can",
			[]*corev1.Pod{mkPod("small", "500m", "", on("n1"), priority(20)), mkPod("big", "1500m", "", on("n1"), priority(10)), mkPod("x", "2", "", on("n2"), priority(1000))},
			mkPod("p", "1500m", "", priority(100)), "n1", []string{"big"}},
		{"never preempts equal or higher priority",
			[]*corev1.Pod{mkPod("a", "2", "", on("n1"), priority(100)), mkPod("b", "2", "", on("n2"), priority(200))},
			mkPod("p", "1", "", priority(100)), "", nil},
		{"preemptionPolicy Never",
			[]*corev1.Pod{mkPod("a", "2", "", on("n1")), mkPod("b", "2", "", on("n2"))},
			mkPod("p", "1", "", priority(100), func(p *corev1.Pod) { p.Spec.PreemptionPolicy = &never }), "", nil},
		{"removing pods cannot fix a node selector",
			[]*corev1.Pod{mkPod("a", "2", "", on("n1")), mkPod("b", "2", "", on("n2"))},
			mkPod("p", "1", "", priority(100), func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }), "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := clusterOf([]*corev1.Node{mkNode("n1", "2", "4Gi"), mkNode("n2", "2", "4Gi")}, tc.placed)
			before := len(c.pods)
			if d := c.Place(tc.pod); d.Node != "" {
				t.Fatalf("pod fits on %s without preemption", d.Node)
			}
			node, victims := c.Preempt(tc.pod)
			var names []string
			for _, v := range victims {
				names = append(names, v.Name)
			}
			if node != tc.wantNode || len(names) != len(tc.wantVictims) || (len(names) > 0 && names[0] != tc.wantVictims[0]) {
				t.Errorf("got node %q victims %v, want %q %v", node, names, tc.wantNode, tc.wantVictims)
			}
			if len(c.pods) != before {
				t.Errorf("view has %d pods after Preempt, want %d", len(c.pods), before)
			}
			if d := c.Place(tc.pod); d.Node != "" {
				t.Errorf("Preempt left room: pod now fits on %s", d.Node)
			}
		})
	}
}
