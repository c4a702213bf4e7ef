package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestScores(t *testing.T) {
	preferNode := func(key, val string, weight int32) func(*corev1.Pod) {
		return affinity(func(a *corev1.Affinity) {
			a.NodeAffinity = &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
				Weight: weight, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{val}}}}}}}
		})
	}
	preferPods := func(app string, anti bool) func(*corev1.Pod) {
		return affinity(func(a *corev1.Affinity) {
			w := []corev1.WeightedPodAffinityTerm{{Weight: 100, PodAffinityTerm: appTerm(app, LabelHostname)}}
			if anti {
				a.PodAntiAffinity = &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: w}
			} else {
				a.PodAffinity = &corev1.PodAffinity{PreferredDuringSchedulingIgnoredDuringExecution: w}
			}
		})
	}
	web := func(node string) *corev1.Pod { return mkPod("w", "", "", on(node), podLabel("app", "web")) }
	three := func(opts ...func(*corev1.Node)) []*corev1.Node {
		return []*corev1.Node{mkNode("n1", "4", "4Gi", opts...), mkNode("n2", "4", "4Gi", opts...), mkNode("n3", "4", "4Gi", opts...)}
	}
	cases := []struct {
		name   string
		nodes  []*corev1.Node
		placed []*corev1.Pod
		pod    *corev1.Pod
		want   string
	}{
		{"least allocated", three(), []*corev1.Pod{mkPod("x", "2", "2Gi", on("n1")), mkPod("y", "1", "1Gi", on("n2"))}, mkPod("p", "1", "1Gi"), "n3"},
		{"request-less pods count for scoring", three(), []*corev1.Pod{mkPod("x", "", "", on("n1")), mkPod("y", "", "", on("n3"))}, mkPod("p", "", ""), "n2"},
		{"balanced allocation", []*corev1.Node{mkNode("n1", "4", "4Gi"), mkNode("n2", "4", "4Gi")},
			[]*corev1.Pod{mkPod("x", "3", "1Gi", on("n1")), mkPod("y", "2", "2Gi", on("n2"))}, mkPod("p", "100m", "100Mi"), "n2"},
		{"preferred node affinity", three(nodeLabel("disk", "hdd")), nil, mkPod("p", "", "", preferNode(LabelHostname, "n2", 10)), "n2"},
		{"preferred node affinity beats a little load", three(), []*corev1.Pod{mkPod("x", "1", "1Gi", on("n3"))}, mkPod("p", "", "", preferNode(LabelHostname, "n3", 10)), "n3"},
		{"PreferNoSchedule avoided", []*corev1.Node{mkNode("n1", "4", "4Gi", taint("k", "v", corev1.TaintEffectPreferNoSchedule)), mkNode("n2", "4", "4Gi", taint("k", "v", corev1.TaintEffectPreferNoSchedule)), mkNode("n3", "4", "4Gi")},
			nil, mkPod("p", "", ""), "n3"},
		{"preferred pod affinity", three(), []*corev1.Pod{web("n2")}, mkPod("p", "", "", preferPods("web", false)), "n2"},
		{"preferred pod anti-affinity", three(), []*corev1.Pod{web("n1"), web("n2")}, mkPod("p", "", "", preferPods("web", true)), "n3"},
		{"spread ScheduleAnyway", three(), []*corev1.Pod{web("n1"), web("n1"), web("n3")},
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelHostname, 1, corev1.ScheduleAnyway, "web")), "n2"},
		{"spread ScheduleAnyway over zones", []*corev1.Node{mkNode("a1", "4", "4Gi", zone("a")), mkNode("b1", "4", "4Gi", zone("b")), mkNode("b2", "4", "4Gi", zone("b"))},
			[]*corev1.Pod{web("b1")}, mkPod("p", "", "", podLabel("app", "web"), spread(LabelZone, 1, corev1.ScheduleAnyway, "web")), "a1"},
		{"owner's replicas spread", three(), []*corev1.Pod{mkPod("r1", "", "", on("n1"), ownedBy("rs1")), mkPod("r2", "", "", on("n2"), ownedBy("rs1")),
			mkPod("o1", "", "", on("n3"), ownedBy("rs2")), mkPod("o2", "", "", on("n3"), ownedBy("rs2"))},
			// n3 is the busiest but holds no replica of rs1.
			mkPod("p", "", "", ownedBy("rs1")), "n3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := clusterOf(tc.nodes, tc.placed)
			if d := c.Place(tc.pod); d.Node != tc.want {
				t.Errorf("got %q, want %q", d.Node, tc.want)
			}
		})
	}
}

// Equal nodes take turns, and the same inputs give the same choices.
func TestTieBreakRotatesDeterministically(t *testing.T) {
	run := func() []string {
		c := clusterOf([]*corev1.Node{mkNode("n1", "4", "4Gi"), mkNode("n2", "4", "4Gi"), mkNode("n3", "4", "4Gi")}, nil)
		var got []string
		for i := 0; i < 6; i++ {
			got = append(got, c.Place(mkPod("p", "", "")).Node) // not assumed: the view stays the same
		}
		return got
	}
	a, b := run(), run()
	want := []string{"n1", "n2", "n3", "n1", "n2", "n3"}
	for i := range want {
		if a[i] != want[i] || b[i] != want[i] {
			t.Fatalf("got %v and %v, want %v", a, b, want)
		}
	}
}

// Plan spreads a deployment 2/2/2 over three nodes with a hostname
// constraint, and the counts follow pods removed and re-added.
func TestPlanSpreadsAndCountsFollowRemovals(t *testing.T) {
	nodes := []*corev1.Node{mkNode("n1", "4", "4Gi", zone("a")), mkNode("n2", "4", "4Gi", zone("b")), mkNode("n3", "4", "4Gi", zone("c"))}
	var pending []*corev1.Pod
	for i := 0; i < 6; i++ {
		pending = append(pending, mkPod("web", "100m", "64Mi", podLabel("app", "web"), ownedBy("rs"), spread(LabelHostname, 1, corev1.DoNotSchedule, "web")))
	}
	count := map[string]int{}
	for _, d := range Plan(nodes, nil, pending, Options{}) {
		count[d.Node]++
	}
	if count["n1"] != 2 || count["n2"] != 2 || count["n3"] != 2 {
		t.Fatalf("got %v, want 2/2/2", count)
	}

	c := clusterOf(nodes, nil)
	var placed []*corev1.Pod
	for _, p := range pending[:3] {
		placed = append(placed, c.Assume(p, c.Place(p).Node))
	}
	// Remove the pod on n2: the next pod must go there (skew 1).
	for _, p := range placed {
		if p.Spec.NodeName == "n2" {
			c.RemovePod(p)
		}
	}
	if d := c.Place(pending[3]); d.Node != "n2" {
		t.Fatalf("after removal got %q, want n2", d.Node)
	}
	// Relabel n1 (one pod) into zone b, beside n2: zone counts move with it.
	zp := mkPod("z", "", "", podLabel("app", "web"), spread(LabelZone, 1, corev1.DoNotSchedule, "web"))
	c.Place(zp) // builds the zone counts
	c.SetNode(mkNode("n1", "4", "4Gi", zone("b")))
	c.Place(zp)
	st, err := c.prepare(zp, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := st.hardSpread[0]
	if n, _ := sc.count(c.byName["n2"].idx); n != 1 {
		t.Errorf("zone b (n1, n2) counts %d pods, want 1", n)
	}
	if sc.min != 1 || sc.t.key.live != 2 {
		t.Errorf("got min %d over %d zones, want 1 over 2", sc.min, sc.t.key.live)
	}
}

// A lost node (not Ready) must not hold its hostname or zone domain at
// zero: the replacements of its pods go to the remaining nodes.
func TestSpreadIgnoresLostNodes(t *testing.T) {
	for _, lose := range []struct {
		name string
		f    func(*corev1.Node)
	}{
		{"not ready", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown }},
		{"cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }},
	} {
		t.Run(lose.name, func(t *testing.T) {
			nodes := []*corev1.Node{mkNode("n1", "4", "4Gi", zone("a")), mkNode("n2", "4", "4Gi", zone("b")), mkNode("n3", "4", "4Gi", zone("c"))}
			c := clusterOf(nodes, nil)
			web := func() *corev1.Pod {
				return mkPod("web", "100m", "", podLabel("app", "web"), spread(LabelHostname, 1, corev1.DoNotSchedule, "web"), spread(LabelZone, 1, corev1.DoNotSchedule, "web"))
			}
			var placed []*corev1.Pod
			for i := 0; i < 6; i++ {
				p := web()
				d := c.Place(p)
				if d.Node == "" {
					t.Fatalf("pod %d: %s", i, d.Message())
				}
				placed = append(placed, c.Assume(p, d.Node))
			}
			lost := mkNode("n3", "4", "4Gi", zone("c"), lose.f)
			c.SetNode(lost)
			for _, p := range placed {
				if p.Spec.NodeName == "n3" {
					c.RemovePod(p)
				}
			}
			for i := 0; i < 2; i++ {
				p := web()
				d := c.Place(p)
				if d.Node != "n1" && d.Node != "n2" {
					t.Fatalf("replacement %d: got %q (%s), want n1 or n2", i, d.Node, d.Message())
				}
				c.Assume(p, d.Node)
			}
		})
	}
}
