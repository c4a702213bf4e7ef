package scheduler

import (
	"fmt"
	"math"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// Decision is where a pod goes, or why it can go nowhere.
type Decision struct {
	// Node is the chosen node; "" when no node fits.
	Node string
	// Rejected names, for each node found unsuitable, why (Kubernetes'
	// wording: "Insufficient memory", "node(s) were unschedulable", …).
	// Filled only when no node fits.
	Rejected map[string][]string
	// NumNodes is the number of nodes in the cluster; Examined how many the
	// placement filtered and Feasible how many of those fit.
	NumNodes, Examined, Feasible int
	// Err is set when the pod itself is malformed (an invalid selector);
	// such a pod cannot be placed until it is fixed.
	Err error

	codes uint32 // every rejection reason seen, for the loop's retries
}

// Message says why no node fits, as kube-scheduler does:
// "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory."
func (d Decision) Message() string {
	if d.Err != nil {
		return d.Err.Error()
	}
	if d.NumNodes == 0 {
		return "no nodes available to schedule pods"
	}
	counts := map[string]int{}
	for _, rs := range d.Rejected {
		for _, r := range rs {
			counts[r]++
		}
	}
	parts := make([]string, 0, len(counts))
	for r, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s.", d.NumNodes, strings.Join(parts, ", "))
}

// Why a node was rejected; a node can fail several resource checks at once.
const (
	rUnschedulable uint32 = 1 << iota
	rNotReady
	rNodeName
	rTaint
	rNodeAffinity
	rPorts
	rCPU
	rMemory
	rEphemeral
	rPods
	rScalar
	rSpread
	rSpreadLabel
	rExistingAnti
	rPodAffinity
	rPodAnti
	rVolumeUnresolvable
	rVolumeConflict
	rLast = rVolumeConflict
)

var reasonText = map[uint32]string{
	rUnschedulable:  "node(s) were unschedulable",
	rNotReady:       "node(s) had untolerated taint {" + TaintNotReady + ": }",
	rNodeName:       "node(s) didn't match the requested node name",
	rNodeAffinity:   "node(s) didn't match Pod's node affinity/selector",
	rPorts:          "node(s) didn't have free ports for the requested pod ports",
	rCPU:            "Insufficient cpu",
	rMemory:         "Insufficient memory",
	rEphemeral:      "Insufficient ephemeral-storage",
	rPods:           "Too many pods",
	rSpread:         "node(s) didn't match pod topology spread constraints",
	rSpreadLabel:    "node(s) didn't match pod topology spread constraints (missing required label)",
	rExistingAnti:   "node(s) didn't satisfy existing pods anti-affinity rules",
	rPodAffinity:    "node(s) didn't match pod affinity rules",
	rPodAnti:        "node(s) didn't match pod anti-affinity rules",
	rVolumeConflict: "node(s) had volume node affinity conflict",
}

// rejection is a node and why it was rejected; kept free of pointers (the
// details of a taint or an extended resource are looked up again for the
// message) because the placement loop appends one per rejected node.
type rejection struct {
	idx  int32
	code uint32
}

func (st *podState) reasons(ni *nodeInfo, code uint32) []string {
	var out []string
	for bit := uint32(1); bit <= rLast; bit <<= 1 {
		if code&bit == 0 {
			continue
		}
		switch bit {
		case rTaint:
			for i := range ni.hardTaints {
				if t := &ni.hardTaints[i]; !tolerates(st.pod.Spec.Tolerations, t) {
					out = append(out, fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value))
					break
				}
			}
		case rScalar:
			_, name := st.fits(ni)
			out = append(out, "Insufficient "+string(name))
		case rVolumeUnresolvable:
			out = append(out, st.volumes.Unresolvable)
		default:
			out = append(out, reasonText[bit])
		}
	}
	return out
}

// spreadConstraint is one topology spread constraint of the pod being
// placed, resolved against the view.
type spreadConstraint struct {
	t       *tracker
	maxSkew int32
	min     int32   // the least count over eligible domains
	self    int32   // 1 if the pod matches its own selector
	counts  []int32 // per-domain counts over eligible nodes only; nil: t's
	weight  float64 // for scoring
}

func (s *spreadConstraint) count(idx int32) (int32, bool) {
	if s.counts == nil {
		return s.t.domainCount(idx)
	}
	d := s.t.key.nodeDomain[idx]
	if d < 0 {
		return 0, false
	}
	return s.counts[d], true
}

type weightedTracker struct {
	t      *tracker
	weight int64
}

type forbiddenDomain struct {
	key    *topoKey
	domain int32
}

// podState is everything about the pod being placed that the filters and
// scores need, computed once per placement.
type podState struct {
	pod     *corev1.Pod
	req     resources
	nonZero resources
	empty   bool // requests nothing
	ports   []hostPort

	tolerateUnschedulable, tolerateNotReady bool

	nodeAffinity *nodeaffinity.RequiredNodeAffinity // nil: none
	preferred    *nodeaffinity.PreferredSchedulingTerms

	hardSpread, softSpread []spreadConstraint

	volumes *VolumeConstraints // nil: the pod uses no claims

	affinity      []*tracker
	skipAffinity  bool // no pod matches the affinity terms but the pod matches them itself
	antiAffinity  []*tracker
	forbidden     []forbiddenDomain
	preferredPods []weightedTracker
}

type candidate struct {
	idx           int32
	fit           float64
	nodeAffinity  int64
	taints        int64
	podAffinity   int64
	spread        float64
	spreadIgnored bool
}

type scratch struct {
	rejected   []rejection
	feasible   []int32
	candidates []candidate
}

var discard = klog.Background()

func tolerates(tols []corev1.Toleration, t *corev1.Taint) bool {
	for i := range tols {
		if tols[i].ToleratesTaint(discard, t, false) {
			return true
		}
	}
	return false
}

// Place decides where pod goes, without changing the view: the pod is not
// added (see Assume), and the only state that moves is where the next
// placement starts (plus memoised counts). Placements are deterministic
// for a given sequence of calls: each starts examining nodes where the
// previous one stopped, so equally good nodes take turns.
func (c *Cluster) Place(pod *corev1.Pod) Decision { return c.PlaceWith(pod, nil) }

// PlaceWith is Place for a pod whose claims constrain its node (see
// VolumeConstraints); nil v is Place.
func (c *Cluster) PlaceWith(pod *corev1.Pod, v *VolumeConstraints) Decision {
	c.buildOrder()
	d := Decision{NumNodes: len(c.order)}
	if len(c.order) == 0 {
		return d
	}
	st, err := c.prepare(pod, v)
	if err != nil {
		d.Err = err
		return d
	}
	sc := &c.scratch
	sc.rejected = sc.rejected[:0]
	sc.feasible = sc.feasible[:0]

	n := len(c.order)
	want := c.feasibleToFind(n)
	examined := 0
	if pod.Spec.NodeName != "" {
		// Only the named node can fit; the others are rejected wholesale.
		want = 1
		if ni := c.byName[pod.Spec.NodeName]; ni != nil && ni.node != nil {
			examined = n
			if code := st.filter(c, ni); code != 0 {
				sc.rejected = append(sc.rejected, rejection{ni.idx, code})
			} else {
				sc.feasible = append(sc.feasible, ni.idx)
			}
		}
	} else {
		start := c.next
		for i := 0; i < n && len(sc.feasible) < want; i++ {
			idx := c.order[(start+i)%n]
			examined++
			if code := st.filter(c, c.nodes[idx]); code != 0 {
				sc.rejected = append(sc.rejected, rejection{idx, code})
				continue
			}
			sc.feasible = append(sc.feasible, idx)
		}
		// Start the next placement after the nodes just examined; when that
		// was all of them, one further on, so that ties rotate.
		c.next = (start + examined) % n
		if c.next == start {
			c.next = (start + 1) % n
		}
	}
	d.Examined, d.Feasible = examined, len(sc.feasible)

	switch len(sc.feasible) {
	case 0:
		d.Rejected = make(map[string][]string, n)
		for _, r := range sc.rejected {
			ni := c.nodes[r.idx]
			d.Rejected[ni.name] = st.reasons(ni, r.code)
			d.codes |= r.code
		}
		if pod.Spec.NodeName != "" {
			for _, idx := range c.order {
				if ni := c.nodes[idx]; ni.name != pod.Spec.NodeName {
					d.Rejected[ni.name] = []string{reasonText[rNodeName]}
					d.codes |= rNodeName
				}
			}
		}
		return d
	case 1:
		d.Node = c.nodes[sc.feasible[0]].name
		return d
	}
	sc.candidates = sc.candidates[:0]
	for _, idx := range sc.feasible {
		sc.candidates = append(sc.candidates, candidate{idx: idx})
	}
	d.Node = st.score(c, sc.candidates).name
	return d
}

// feasibleToFind is how many feasible nodes a placement looks for, by
// kube-scheduler's rule (percentageOfNodesToScore).
func (c *Cluster) feasibleToFind(n int) int {
	const minFeasible = 100
	if n < minFeasible {
		return n
	}
	pct := c.opts.PercentageOfNodesToScore
	if pct <= 0 {
		pct = max(50-n/125, 5)
	}
	if pct >= 100 {
		return n
	}
	return max(n*pct/100, minFeasible)
}

func (c *Cluster) prepare(pod *corev1.Pod, v *VolumeConstraints) (*podState, error) {
	st := &podState{
		pod:     pod,
		volumes: v,
		req:     podRequests(pod, false),
		nonZero: podRequests(pod, true),
		ports:   podPorts(pod),
	}
	st.empty = st.req.milliCPU == 0 && st.req.memory == 0 && st.req.ephemeral == 0 && len(st.req.scalar) == 0
	tols := pod.Spec.Tolerations
	st.tolerateUnschedulable = tolerates(tols, &corev1.Taint{Key: TaintUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	st.tolerateNotReady = tolerates(tols, &corev1.Taint{Key: TaintNotReady, Effect: corev1.TaintEffectNoSchedule})

	aff := pod.Spec.Affinity
	if len(pod.Spec.NodeSelector) > 0 || (aff != nil && aff.NodeAffinity != nil && aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil) {
		na := nodeaffinity.GetRequiredNodeAffinity(pod)
		st.nodeAffinity = &na
	}
	if aff != nil && aff.NodeAffinity != nil && len(aff.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
		p, err := nodeaffinity.NewPreferredSchedulingTerms(aff.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		if err != nil {
			return nil, fmt.Errorf("spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution: %w", err)
		}
		st.preferred = p
	}
	if err := c.prepareSpread(st); err != nil {
		return nil, err
	}
	if err := c.preparePodAffinity(st); err != nil {
		return nil, err
	}
	return st, nil
}

func (c *Cluster) prepareSpread(st *podState) error {
	pod := st.pod
	if len(pod.Spec.TopologySpreadConstraints) == 0 {
		// kube-scheduler's default constraints spread the replicas of one
		// controller over hosts and zones, as a preference.
		ref := controllerOf(pod)
		if ref == nil {
			return nil
		}
		for _, key := range []string{LabelHostname, LabelZone} {
			k := c.topoKey(key)
			if k.liveUsable == 0 {
				continue
			}
			st.softSpread = append(st.softSpread, spreadConstraint{t: c.ownerTracker(ref.UID, key), self: 1, weight: math.Log(float64(k.liveUsable + 2))})
		}
		return nil
	}
	for i := range pod.Spec.TopologySpreadConstraints {
		tsc := &pod.Spec.TopologySpreadConstraints[i]
		sel, err := spreadSelector(pod, tsc)
		if err != nil {
			return fmt.Errorf("spec.topologySpreadConstraints[%d].labelSelector: %w", i, err)
		}
		sc := spreadConstraint{
			t:       c.selectorTracker([]string{pod.Namespace}, false, sel, tsc.TopologyKey, true),
			maxSkew: tsc.MaxSkew,
		}
		if sel.Matches(labels.Set(pod.Labels)) {
			sc.self = 1
		}
		k := sc.t.key
		eligible := k.liveUsable
		if st.nodeAffinity != nil && (tsc.NodeAffinityPolicy == nil || *tsc.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor) {
			// Only nodes the pod may go to make up the domains, and only
			// pods on them count: sum per domain over those nodes.
			sc.counts = make([]int32, len(k.domainNodes))
			seen := make([]bool, len(k.domainNodes))
			eligible = 0
			for _, ni := range c.nodes {
				if ni == nil || ni.node == nil {
					continue
				}
				d := k.nodeDomain[ni.idx]
				if d < 0 || !k.usable[ni.idx] {
					continue
				}
				if ok, _ := st.nodeAffinity.Match(ni.node); !ok {
					continue
				}
				if int(ni.idx) < len(sc.t.nodes) {
					sc.counts[d] += sc.t.nodes[ni.idx]
				}
				if !seen[d] {
					seen[d] = true
					eligible++
				}
			}
			sc.min = math.MaxInt32
			for d, ok := range seen {
				if ok && sc.counts[d] < sc.min {
					sc.min = sc.counts[d]
				}
			}
			if eligible == 0 {
				sc.min = 0
			}
		} else {
			sc.min = sc.t.globalMin()
		}
		if tsc.WhenUnsatisfiable == corev1.ScheduleAnyway {
			sc.weight = math.Log(float64(eligible + 2))
			st.softSpread = append(st.softSpread, sc)
			continue
		}
		if tsc.MinDomains != nil && int32(eligible) < *tsc.MinDomains {
			sc.min = 0
		}
		st.hardSpread = append(st.hardSpread, sc)
	}
	return nil
}

// spreadSelector is a constraint's selector with its matchLabelKeys
// folded in (key = the pod's own value).
func spreadSelector(pod *corev1.Pod, tsc *corev1.TopologySpreadConstraint) (labels.Selector, error) {
	if tsc.LabelSelector == nil {
		return labels.Nothing(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
	if err != nil {
		return nil, err
	}
	for _, key := range tsc.MatchLabelKeys {
		v, ok := pod.Labels[key]
		if !ok {
			continue
		}
		r, err := labels.NewRequirement(key, selection.Equals, []string{v})
		if err != nil {
			return nil, err
		}
		sel = sel.Add(*r)
	}
	return sel, nil
}

func termSelector(term *corev1.PodAffinityTerm, pod *corev1.Pod) (labels.Selector, error) {
	if term.LabelSelector == nil {
		return labels.Nothing(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		return nil, err
	}
	for _, key := range term.MatchLabelKeys {
		if v, ok := pod.Labels[key]; ok {
			r, err := labels.NewRequirement(key, selection.Equals, []string{v})
			if err != nil {
				return nil, err
			}
			sel = sel.Add(*r)
		}
	}
	for _, key := range term.MismatchLabelKeys {
		if v, ok := pod.Labels[key]; ok {
			r, err := labels.NewRequirement(key, selection.NotEquals, []string{v})
			if err != nil {
				return nil, err
			}
			sel = sel.Add(*r)
		}
	}
	return sel, nil
}

func (c *Cluster) termTracker(pod *corev1.Pod, term *corev1.PodAffinityTerm) (*tracker, labels.Selector, []string, bool, error) {
	sel, err := termSelector(term, pod)
	if err != nil {
		return nil, nil, nil, false, err
	}
	nss, all := termNamespaces(pod, term)
	return c.selectorTracker(nss, all, sel, term.TopologyKey, false), sel, nss, all, nil
}

func (c *Cluster) preparePodAffinity(st *podState) error {
	pod := st.pod
	// Placed pods whose required anti-affinity the pod would violate.
	for _, pi := range c.antiPods {
		if pi.node.node == nil {
			continue
		}
		terms := pi.pod.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		for i := range terms {
			term := &terms[i]
			sel, err := termSelector(term, pi.pod)
			if err != nil {
				continue // the placed pod's problem, not this one's
			}
			nss, all := termNamespaces(pi.pod, term)
			if !all && !contains(nss, pod.Namespace) || !sel.Matches(labels.Set(pod.Labels)) {
				continue
			}
			k := c.topoKey(term.TopologyKey)
			if d := k.nodeDomain[pi.node.idx]; d >= 0 {
				st.forbidden = append(st.forbidden, forbiddenDomain{key: k, domain: d})
			}
		}
	}
	aff := pod.Spec.Affinity
	if aff == nil {
		return nil
	}
	if pa := aff.PodAffinity; pa != nil {
		total, selfAll := 0, true
		for i := range pa.RequiredDuringSchedulingIgnoredDuringExecution {
			term := &pa.RequiredDuringSchedulingIgnoredDuringExecution[i]
			t, sel, nss, all, err := c.termTracker(pod, term)
			if err != nil {
				return fmt.Errorf("spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[%d]: %w", i, err)
			}
			st.affinity = append(st.affinity, t)
			total += t.total
			if !(all || contains(nss, pod.Namespace)) || !sel.Matches(labels.Set(pod.Labels)) {
				selfAll = false
			}
		}
		// The first pod of a group that wants to be together may go
		// anywhere its own terms would accept it.
		st.skipAffinity = total == 0 && selfAll
		for i := range pa.PreferredDuringSchedulingIgnoredDuringExecution {
			w := &pa.PreferredDuringSchedulingIgnoredDuringExecution[i]
			t, _, _, _, err := c.termTracker(pod, &w.PodAffinityTerm)
			if err != nil {
				return fmt.Errorf("spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[%d]: %w", i, err)
			}
			st.preferredPods = append(st.preferredPods, weightedTracker{t: t, weight: int64(w.Weight)})
		}
	}
	if pa := aff.PodAntiAffinity; pa != nil {
		for i := range pa.RequiredDuringSchedulingIgnoredDuringExecution {
			t, _, _, _, err := c.termTracker(pod, &pa.RequiredDuringSchedulingIgnoredDuringExecution[i])
			if err != nil {
				return fmt.Errorf("spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[%d]: %w", i, err)
			}
			st.antiAffinity = append(st.antiAffinity, t)
		}
		for i := range pa.PreferredDuringSchedulingIgnoredDuringExecution {
			w := &pa.PreferredDuringSchedulingIgnoredDuringExecution[i]
			t, _, _, _, err := c.termTracker(pod, &w.PodAffinityTerm)
			if err != nil {
				return fmt.Errorf("spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[%d]: %w", i, err)
			}
			st.preferredPods = append(st.preferredPods, weightedTracker{t: t, weight: -int64(w.Weight)})
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// filter checks one node in kube-scheduler's filter order and stops at the
// first filter that fails (resource fit reports every short resource).
func (st *podState) filter(c *Cluster, ni *nodeInfo) uint32 {
	h := &c.hot[ni.idx]
	if h.unschedulable && !st.tolerateUnschedulable {
		return rUnschedulable
	}
	if h.notReady && !st.tolerateNotReady {
		return rNotReady
	}
	if st.pod.Spec.NodeName != "" && st.pod.Spec.NodeName != ni.name {
		return rNodeName
	}
	if st.volumes != nil {
		if code := st.volumes.filter(ni); code != 0 {
			return code
		}
	}
	if h.hardTaints {
		for i := range ni.hardTaints {
			if t := &ni.hardTaints[i]; !tolerates(st.pod.Spec.Tolerations, t) {
				return rTaint
			}
		}
	}
	if st.nodeAffinity != nil {
		if ok, _ := st.nodeAffinity.Match(ni.node); !ok {
			return rNodeAffinity
		}
	}
	if len(st.ports) > 0 && h.ports && portsConflict(ni.ports, st.ports) {
		return rPorts
	}
	if code := st.fitsHot(h); code != 0 {
		return code
	}
	if len(st.req.scalar) > 0 {
		if code, _ := st.fits(ni); code != 0 {
			return code
		}
	}
	for i := range st.hardSpread {
		sc := &st.hardSpread[i]
		n, ok := sc.count(ni.idx)
		if !ok {
			return rSpreadLabel
		}
		if n+sc.self-sc.min > sc.maxSkew {
			return rSpread
		}
	}
	for _, f := range st.forbidden {
		if f.key.nodeDomain[ni.idx] == f.domain {
			return rExistingAnti
		}
	}
	if !st.skipAffinity {
		for _, t := range st.affinity {
			if n, ok := t.domainCount(ni.idx); !ok || n == 0 {
				return rPodAffinity
			}
		}
	}
	for _, t := range st.antiAffinity {
		if n, ok := t.domainCount(ni.idx); ok && n > 0 {
			return rPodAnti
		}
	}
	return 0
}

// fitsHot checks the pod count, cpu, memory and ephemeral storage.
func (st *podState) fitsHot(h *nodeHot) uint32 {
	var code uint32
	if h.numPods+1 > h.allocPods {
		code |= rPods
	}
	if st.empty {
		return code
	}
	if st.req.milliCPU > 0 && h.allocCPU < h.reqCPU+st.req.milliCPU {
		code |= rCPU
	}
	if st.req.memory > 0 && h.allocMem < h.reqMem+st.req.memory {
		code |= rMemory
	}
	if st.req.ephemeral > 0 && h.allocEph < h.reqEph+st.req.ephemeral {
		code |= rEphemeral
	}
	return code
}

// fits is fitsHot plus extended resources, naming the first one short.
func (st *podState) fits(ni *nodeInfo) (uint32, corev1.ResourceName) {
	var code uint32
	if int64(ni.numPods)+1 > ni.allocPods {
		code |= rPods
	}
	if st.empty {
		return code, ""
	}
	if st.req.milliCPU > 0 && ni.alloc.milliCPU < ni.requested.milliCPU+st.req.milliCPU {
		code |= rCPU
	}
	if st.req.memory > 0 && ni.alloc.memory < ni.requested.memory+st.req.memory {
		code |= rMemory
	}
	if st.req.ephemeral > 0 && ni.alloc.ephemeral < ni.requested.ephemeral+st.req.ephemeral {
		code |= rEphemeral
	}
	var scalar corev1.ResourceName
	if len(st.req.scalar) == 0 {
		return code, ""
	}
	for name, v := range st.req.scalar {
		if v > 0 && ni.alloc.scalar[name] < ni.requested.scalar[name]+v {
			code |= rScalar
			scalar = name
			break
		}
	}
	return code, scalar
}

func portsConflict(used map[hostPort]int, want []hostPort) bool {
	for _, w := range want {
		if w.ip != "" {
			if used[w] > 0 || used[hostPort{protocol: w.protocol, port: w.port}] > 0 {
				return true
			}
			continue
		}
		for u := range used {
			if u.protocol == w.protocol && u.port == w.port {
				return true
			}
		}
	}
	return false
}

// Score weights, as kube-scheduler's default profile sets them.
const (
	weightFit          = 1 // NodeResourcesFit (least allocated)
	weightBalanced     = 1 // NodeResourcesBalancedAllocation
	weightNodeAffinity = 2
	weightTaints       = 3 // TaintToleration (PreferNoSchedule)
	weightPodAffinity  = 2 // InterPodAffinity
	weightSpread       = 2 // PodTopologySpread
)

// score picks the best candidate; each score is 0–100 and they add up
// with kube-scheduler's weights. Ties go to the first candidate examined,
// which rotates from one placement to the next.
func (st *podState) score(c *Cluster, cands []candidate) *nodeInfo {
	var maxAff, maxTaints int64
	minPA, maxPA := int64(math.MaxInt64), int64(math.MinInt64)
	minSp, maxSp := math.Inf(1), math.Inf(-1)
	for i := range cands {
		cd := &cands[i]
		ni := c.nodes[cd.idx]
		cd.fit = st.resourceScore(&c.hot[cd.idx])
		if st.preferred != nil {
			cd.nodeAffinity = st.preferred.Score(ni.node)
			maxAff = max(maxAff, cd.nodeAffinity)
		}
		if c.hot[cd.idx].softTaints {
			for j := range ni.softTaints {
				if !tolerates(st.pod.Spec.Tolerations, &ni.softTaints[j]) {
					cd.taints++
				}
			}
		}
		maxTaints = max(maxTaints, cd.taints)
		if len(st.preferredPods) > 0 {
			for _, wt := range st.preferredPods {
				if n, ok := wt.t.domainCount(ni.idx); ok {
					cd.podAffinity += wt.weight * int64(n)
				}
			}
			minPA, maxPA = min(minPA, cd.podAffinity), max(maxPA, cd.podAffinity)
		}
		if len(st.softSpread) > 0 {
			for j := range st.softSpread {
				sc := &st.softSpread[j]
				n, ok := sc.count(ni.idx)
				if !ok {
					cd.spreadIgnored = true
					break
				}
				cd.spread += sc.weight * float64(n+sc.self)
			}
			if !cd.spreadIgnored {
				minSp, maxSp = min(minSp, cd.spread), max(maxSp, cd.spread)
			}
		}
	}
	var best *nodeInfo
	bestScore := math.Inf(-1)
	for i := range cands {
		cd := &cands[i]
		s := cd.fit
		if maxAff > 0 {
			s += weightNodeAffinity * 100 * float64(cd.nodeAffinity) / float64(maxAff)
		}
		if maxTaints > 0 {
			s += weightTaints * (100 - 100*float64(cd.taints)/float64(maxTaints))
		} else {
			s += weightTaints * 100
		}
		if maxPA > minPA {
			s += weightPodAffinity * 100 * float64(cd.podAffinity-minPA) / float64(maxPA-minPA)
		}
		if len(st.softSpread) > 0 && !cd.spreadIgnored {
			if maxSp > minSp {
				s += weightSpread * 100 * (maxSp - cd.spread) / (maxSp - minSp)
			} else {
				s += weightSpread * 100
			}
		}
		if s > bestScore {
			best, bestScore = c.nodes[cd.idx], s
		}
	}
	return best
}

// resourceScore is least-allocated plus balanced-allocation over cpu and
// memory, counting the pod (request-less containers count as 100m/200Mi).
func (st *podState) resourceScore(h *nodeHot) float64 {
	cpuFree, cpuFrac := freeAndFraction(h.allocCPU, h.nzCPU+st.nonZero.milliCPU)
	memFree, memFrac := freeAndFraction(h.allocMem, h.nzMem+st.nonZero.memory)
	least := (cpuFree + memFree) / 2
	balanced := (1 - math.Abs(cpuFrac-memFrac)/2) * 100
	return weightFit*least + weightBalanced*balanced
}

func freeAndFraction(alloc, req int64) (free, frac float64) {
	if alloc <= 0 {
		return 0, 1
	}
	if req >= alloc {
		return 0, 1
	}
	return float64(alloc-req) * 100 / float64(alloc), float64(req) / float64(alloc)
}

// Assume records that pod goes to node before the binding is confirmed, so
// that the next placements see it. It returns the copy it keeps (pod with
// spec.nodeName set); pod itself is not modified.
func (c *Cluster) Assume(pod *corev1.Pod, node string) *corev1.Pod {
	p := *pod
	p.Spec.NodeName = node
	c.SetPod(&p)
	return &p
}

// Plan places pending pods one after another, as the scheduler loop would,
// on a snapshot of nodes and already placed pods: a snapshot in, one
// decision per pending pod out. It modifies none of its inputs.
func Plan(nodes []*corev1.Node, placed, pending []*corev1.Pod, o Options) []Decision {
	c := NewCluster(o)
	for _, n := range nodes {
		c.SetNode(n)
	}
	for _, p := range placed {
		c.SetPod(p)
	}
	out := make([]Decision, len(pending))
	for i, p := range pending {
		out[i] = c.Place(p)
		if out[i].Node != "" {
			c.Assume(p, out[i].Node)
		}
	}
	return out
}
