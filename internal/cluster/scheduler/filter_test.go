package scheduler

import (
	"reflect"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// feasible lists the nodes the filters accept for pod, sorted.
func feasible(t *testing.T, c *Cluster, pod *corev1.Pod) []string {
	t.Helper()
	c.buildOrder()
	st, err := c.prepare(pod, nil)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	out := []string{}
	for _, idx := range c.order {
		if code := st.filter(c, c.nodes[idx]); code == 0 {
			out = append(out, c.nodes[idx].name)
		}
	}
	sort.Strings(out)
	return out
}

func TestFilters(t *testing.T) {
	initPod := func(cpu string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "init", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}})
		}
	}
	sidecar := func(cpu string) func(*corev1.Pod) {
		always := corev1.ContainerRestartPolicyAlways
		return func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "side", RestartPolicy: &always, Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}})
		}
	}
	nodeAffinityIn := func(key string, vals ...string) func(*corev1.Pod) {
		return affinity(func(a *corev1.Affinity) {
			a.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: vals}}}}}}
		})
	}
	three := func(opts ...func(*corev1.Node)) []*corev1.Node {
		return []*corev1.Node{mkNode("n1", "2", "4Gi", opts...), mkNode("n2", "2", "4Gi", opts...), mkNode("n3", "2", "4Gi", opts...)}
	}
	zoned := []*corev1.Node{
		mkNode("a1", "4", "8Gi", zone("a")), mkNode("a2", "4", "8Gi", zone("a")),
		mkNode("b1", "4", "8Gi", zone("b")), mkNode("b2", "4", "8Gi", zone("b")),
	}
	cases := []struct {
		name   string
		nodes  []*corev1.Node
		placed []*corev1.Pod
		pod    *corev1.Pod
		want   []string
	}{
		{"fits everywhere", three(), nil, mkPod("p", "1", "1Gi"), []string{"n1", "n2", "n3"}},
		{"cpu fit counts placed pods", three(), []*corev1.Pod{mkPod("x", "1500m", "", on("n1"))}, mkPod("p", "1", ""), []string{"n2", "n3"}},
		{"memory too big", three(), nil, mkPod("p", "", "5Gi"), []string{}},
		{"exact fit", three(), nil, mkPod("p", "2", "4Gi"), []string{"n1", "n2", "n3"}},
		{"ephemeral storage", three(), nil, func() *corev1.Pod {
			p := mkPod("p", "", "")
			p.Spec.Containers[0].Resources.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse("11Gi")
			return p
		}(), []string{}},
		{"pods count", []*corev1.Node{mkNode("n1", "2", "4Gi", func(n *corev1.Node) { n.Status.Allocatable[corev1.ResourcePods] = resource.MustParse("1") }), mkNode("n2", "2", "4Gi")},
			[]*corev1.Pod{mkPod("x", "", "", on("n1"))}, mkPod("p", "", ""), []string{"n2"}},
		{"init container max rule: init bigger than apps", three(), []*corev1.Pod{mkPod("x", "500m", "", on("n1"))}, mkPod("p", "100m", "", initPod("1600m")), []string{"n2", "n3"}},
		{"init container max rule: apps bigger than init", three(), nil, mkPod("p", "1900m", "", initPod("1")), []string{"n1", "n2", "n3"}},
		{"sidecars add up", three(), nil, mkPod("p", "1500m", "", sidecar("600m")), []string{}},
		{"limit counts as request", three(), nil, func() *corev1.Pod {
			p := mkPod("p", "", "")
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}
			return p
		}(), []string{}},
		{"extended resource", []*corev1.Node{mkNode("n1", "2", "4Gi", func(n *corev1.Node) { n.Status.Allocatable["example.com/gpu"] = resource.MustParse("1") }), mkNode("n2", "2", "4Gi")},
			nil, func() *corev1.Pod {
				p := mkPod("p", "", "")
				p.Spec.Containers[0].Resources.Requests["example.com/gpu"] = resource.MustParse("1")
				return p
			}(), []string{"n1"}},
		{"nodeName", three(), nil, mkPod("p", "", "", on("n2")), []string{"n2"}},
		{"nodeSelector", []*corev1.Node{mkNode("n1", "2", "4Gi", nodeLabel("disk", "ssd")), mkNode("n2", "2", "4Gi")}, nil,
			mkPod("p", "", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }), []string{"n1"}},
		{"required node affinity", zoned, nil, mkPod("p", "", "", nodeAffinityIn(LabelZone, "b")), []string{"b1", "b2"}},
		{"NoSchedule taint", []*corev1.Node{mkNode("n1", "2", "4Gi", taint("dedicated", "db", corev1.TaintEffectNoSchedule)), mkNode("n2", "2", "4Gi")}, nil,
			mkPod("p", "", ""), []string{"n2"}},
		{"NoExecute taint", []*corev1.Node{mkNode("n1", "2", "4Gi", taint("dedicated", "db", corev1.TaintEffectNoExecute)), mkNode("n2", "2", "4Gi")}, nil,
			mkPod("p", "", ""), []string{"n2"}},
		{"PreferNoSchedule taint does not filter", []*corev1.Node{mkNode("n1", "2", "4Gi", taint("dedicated", "db", corev1.TaintEffectPreferNoSchedule)), mkNode("n2", "2", "4Gi")}, nil,
			mkPod("p", "", ""), []string{"n1", "n2"}},
		{"toleration", []*corev1.Node{mkNode("n1", "2", "4Gi", taint("dedicated", "db", corev1.TaintEffectNoSchedule)), mkNode("n2", "2", "4Gi")}, nil,
			mkPod("p", "", "", tolerate("dedicated", corev1.TaintEffectNoSchedule)), []string{"n1", "n2"}},
		{"toleration of the wrong effect", []*corev1.Node{mkNode("n1", "2", "4Gi", taint("dedicated", "db", corev1.TaintEffectNoExecute))}, nil,
			mkPod("p", "", "", tolerate("dedicated", corev1.TaintEffectNoSchedule)), []string{}},
		{"cordoned", []*corev1.Node{mkNode("n1", "2", "4Gi", func(n *corev1.Node) { n.Spec.Unschedulable = true }), mkNode("n2", "2", "4Gi")}, nil,
			mkPod("p", "", ""), []string{"n2"}},
		{"cordoned but tolerated", []*corev1.Node{mkNode("n1", "2", "4Gi", func(n *corev1.Node) { n.Spec.Unschedulable = true })}, nil,
			mkPod("p", "", "", tolerate(TaintUnschedulable, corev1.TaintEffectNoSchedule)), []string{"n1"}},
		{"not ready", []*corev1.Node{mkNode("n1", "2", "4Gi", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown }), mkNode("n2", "2", "4Gi")}, nil,
			mkPod("p", "", ""), []string{"n2"}},
		{"no Ready condition", []*corev1.Node{mkNode("n1", "2", "4Gi", func(n *corev1.Node) { n.Status.Conditions = nil })}, nil,
			mkPod("p", "", ""), []string{}},
		{"host port taken", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), hostPortOpt(8080, ""))}, mkPod("p", "", "", hostPortOpt(8080, "")), []string{"n2", "n3"}},
		{"host port on another address is free", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), hostPortOpt(8080, "10.0.0.1"))}, mkPod("p", "", "", hostPortOpt(8080, "10.0.0.2")), []string{"n1", "n2", "n3"}},
		{"host port on all addresses clashes with one", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), hostPortOpt(8080, "10.0.0.1"))}, mkPod("p", "", "", hostPortOpt(8080, "")), []string{"n2", "n3"}},
		{"different host port", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), hostPortOpt(8080, ""))}, mkPod("p", "", "", hostPortOpt(8081, "")), []string{"n1", "n2", "n3"}},
		{"anti-affinity hostname", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), podLabel("app", "web"))},
			mkPod("p", "", "", podLabel("app", "web"), podAntiAffinity("web", LabelHostname)), []string{"n2", "n3"}},
		{"anti-affinity zone", zoned, []*corev1.Pod{mkPod("x", "", "", on("a1"), podLabel("app", "web"))},
			mkPod("p", "", "", podAntiAffinity("web", LabelZone)), []string{"b1", "b2"}},
		{"anti-affinity other namespace does not count", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), podLabel("app", "web"), func(p *corev1.Pod) { p.Namespace = "other" })},
			mkPod("p", "", "", podAntiAffinity("web", LabelHostname)), []string{"n1", "n2", "n3"}},
		{"existing pod's anti-affinity", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), podAntiAffinity("web", LabelHostname))},
			mkPod("p", "", "", podLabel("app", "web")), []string{"n2", "n3"}},
		{"affinity hostname", three(), []*corev1.Pod{mkPod("x", "", "", on("n2"), podLabel("app", "db"))},
			mkPod("p", "", "", podAffinity("db", LabelHostname)), []string{"n2"}},
		{"affinity zone", zoned, []*corev1.Pod{mkPod("x", "", "", on("b2"), podLabel("app", "db"))},
			mkPod("p", "", "", podAffinity("db", LabelZone)), []string{"b1", "b2"}},
		{"affinity with no match anywhere", three(), nil, mkPod("p", "", "", podAffinity("db", LabelHostname)), []string{}},
		{"affinity first of its group", three(), nil, mkPod("p", "", "", podLabel("app", "db"), podAffinity("db", LabelHostname)), []string{"n1", "n2", "n3"}},
		{"spread hostname DoNotSchedule", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), podLabel("app", "web"))},
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelHostname, 1, corev1.DoNotSchedule, "web")), []string{"n2", "n3"}},
		{"spread hostname skew 2", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), podLabel("app", "web"))},
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelHostname, 2, corev1.DoNotSchedule, "web")), []string{"n1", "n2", "n3"}},
		{"spread zone DoNotSchedule", zoned, []*corev1.Pod{mkPod("x", "", "", on("a1"), podLabel("app", "web")), mkPod("y", "", "", on("a2"), podLabel("app", "web")), mkPod("z", "", "", on("b1"), podLabel("app", "web"))},
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelZone, 1, corev1.DoNotSchedule, "web")), []string{"b1", "b2"}},
		{"spread ignores other apps", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), podLabel("app", "db"))},
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelHostname, 1, corev1.DoNotSchedule, "web")), []string{"n1", "n2", "n3"}},
		{"spread ignores terminating pods", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), podLabel("app", "web"), func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} })},
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelHostname, 1, corev1.DoNotSchedule, "web")), []string{"n1", "n2", "n3"}},
		{"spread missing label", []*corev1.Node{mkNode("a1", "2", "4Gi", zone("a")), mkNode("n2", "2", "4Gi")}, nil,
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelZone, 1, corev1.DoNotSchedule, "web")), []string{"a1"}},
		{"spread hostname without the label uses the node name", []*corev1.Node{
			mkNode("n1", "2", "4Gi", func(n *corev1.Node) { delete(n.Labels, LabelHostname) }),
			mkNode("n2", "2", "4Gi", func(n *corev1.Node) { delete(n.Labels, LabelHostname) })},
			[]*corev1.Pod{mkPod("x", "", "", on("n1"), podLabel("app", "web"))},
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelHostname, 1, corev1.DoNotSchedule, "web")), []string{"n2"}},
		{"spread ScheduleAnyway does not filter", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), podLabel("app", "web"))},
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelHostname, 1, corev1.ScheduleAnyway, "web")), []string{"n1", "n2", "n3"}},
		{"spread minDomains", zoned[:2], []*corev1.Pod{mkPod("x", "", "", on("a1"), podLabel("app", "web"))},
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelZone, 1, corev1.DoNotSchedule, "web"), func(p *corev1.Pod) {
				two := int32(2)
				p.Spec.TopologySpreadConstraints[0].MinDomains = &two
			}), []string{}},
		{"spread honours node affinity for domains", zoned, []*corev1.Pod{mkPod("x", "", "", on("a1"), podLabel("app", "web"))},
			// Only a1 and a2 are eligible: a2 is the emptier one.
			mkPod("p", "", "", podLabel("app", "web"), spread(LabelHostname, 1, corev1.DoNotSchedule, "web"), nodeAffinityIn(LabelZone, "a")), []string{"a2"}},
		{"spread matchLabelKeys", three(), []*corev1.Pod{mkPod("x", "", "", on("n1"), podLabel("app", "web"), podLabel("hash", "v1"))},
			mkPod("p", "", "", podLabel("app", "web"), podLabel("hash", "v2"), spread(LabelHostname, 1, corev1.DoNotSchedule, "web"), func(p *corev1.Pod) {
				p.Spec.TopologySpreadConstraints[0].MatchLabelKeys = []string{"hash"}
			}), []string{"n1", "n2", "n3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := clusterOf(tc.nodes, tc.placed)
			if got := feasible(t, c, tc.pod); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got feasible %v, want %v", got, tc.want)
			}
			d := c.Place(tc.pod)
			if len(tc.want) == 0 && d.Node != "" {
				t.Errorf("Place chose %q, want no node", d.Node)
			}
			if len(tc.want) > 0 && !contains(tc.want, d.Node) {
				t.Errorf("Place chose %q, want one of %v (%s)", d.Node, tc.want, d.Message())
			}
		})
	}
}

func TestFailureMessage(t *testing.T) {
	nodes := []*corev1.Node{
		mkNode("n1", "2", "1Gi"), mkNode("n2", "2", "1Gi"),
		mkNode("n3", "2", "8Gi", taint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
		mkNode("n4", "2", "8Gi", func(n *corev1.Node) { n.Spec.Unschedulable = true }),
		mkNode("n5", "100m", "1Gi"),
	}
	c := clusterOf(nodes, nil)
	d := c.Place(mkPod("p", "1", "2Gi"))
	if d.Node != "" {
		t.Fatalf("placed on %s, want nowhere", d.Node)
	}
	want := "0/5 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable, 3 Insufficient memory."
	if got := d.Message(); got != want {
		t.Errorf("got message\n%q, want\n%q", got, want)
	}
	if got := d.Rejected["n5"]; !reflect.DeepEqual(got, []string{"Insufficient cpu", "Insufficient memory"}) {
		t.Errorf("n5 rejected for %v, want cpu and memory", got)
	}

	if got, want := NewCluster(Options{}).Place(mkPod("p", "", "")).Message(), "no nodes available to schedule pods"; got != want {
		t.Errorf("empty cluster: got %q, want %q", got, want)
	}

	d = clusterOf(nodes[:2], nil).Place(mkPod("p", "", "", on("n9")))
	if want := "0/2 nodes are available: 2 node(s) didn't match the requested node name."; d.Message() != want {
		t.Errorf("nodeName: got %q, want %q", d.Message(), want)
	}
}

func TestBadSelectorIsAnError(t *testing.T) {
	c := clusterOf([]*corev1.Node{mkNode("n1", "2", "4Gi")}, nil)
	p := mkPod("p", "", "", func(p *corev1.Pod) {
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: LabelHostname, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Bogus"}}}}}
	})
	d := c.Place(p)
	if d.Err == nil || d.Node != "" {
		t.Fatalf("got node %q err %v, want an error", d.Node, d.Err)
	}
	if want := "spec.topologySpreadConstraints[0].labelSelector"; !contains([]string{d.Message()[:len(want)]}, want) {
		t.Errorf("message %q does not name %s", d.Message(), want)
	}
}
