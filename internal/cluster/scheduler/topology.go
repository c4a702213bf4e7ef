package scheduler

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// topoKey maps each node to its domain for one topology label key
// ("kubernetes.io/hostname", "topology.kubernetes.io/zone", …): domains are
// small integers so that per-domain counts are slices, not maps.
type topoKey struct {
	key         string
	ids         map[string]int32 // label value → domain
	nodeDomain  []int32          // by node index; -1: node lacks the label
	domainNodes []int32          // live nodes per domain
	live        int              // domains with at least one live node

	// Spread constraints count only usable nodes (Ready, not cordoned):
	// a lost node must not hold its domain at zero and so block the
	// replacement of its own pods elsewhere.
	usable       []bool  // by node index
	domainUsable []int32 // usable nodes per domain
	liveUsable   int     // domains with at least one usable node
}

func (c *Cluster) topoKey(key string) *topoKey {
	if k := c.keys[key]; k != nil {
		return k
	}
	k := &topoKey{key: key, ids: map[string]int32{}}
	k.grow(len(c.nodes))
	for _, ni := range c.nodes {
		if ni != nil && ni.node != nil {
			k.setNode(ni.idx, ni.node, usable(ni))
		}
	}
	c.keys[key] = k
	return k
}

func (k *topoKey) grow(n int) {
	for len(k.nodeDomain) < n {
		k.nodeDomain = append(k.nodeDomain, -1)
		k.usable = append(k.usable, false)
	}
}

func usable(ni *nodeInfo) bool { return ni.node != nil && ni.ready && !ni.unschedulable }

// setNode records node idx's domain (n nil: the node is gone). A node
// without a kubernetes.io/hostname label is its own hostname domain, as the
// kubelet would have labelled it.
func (k *topoKey) setNode(idx int32, n *corev1.Node, usable bool) {
	if d := k.nodeDomain[idx]; d >= 0 {
		if k.domainNodes[d]--; k.domainNodes[d] == 0 {
			k.live--
		}
		if k.usable[idx] {
			if k.domainUsable[d]--; k.domainUsable[d] == 0 {
				k.liveUsable--
			}
		}
	}
	k.usable[idx] = false
	var v string
	var ok bool
	if n != nil {
		v, ok = n.Labels[k.key]
		if !ok && k.key == LabelHostname {
			v, ok = n.Name, true
		}
	}
	if !ok {
		k.nodeDomain[idx] = -1
		return
	}
	d, ok := k.ids[v]
	if !ok {
		d = int32(len(k.domainNodes))
		k.ids[v] = d
		k.domainNodes = append(k.domainNodes, 0)
		k.domainUsable = append(k.domainUsable, 0)
	}
	if k.domainNodes[d]++; k.domainNodes[d] == 1 {
		k.live++
	}
	if usable {
		k.usable[idx] = true
		if k.domainUsable[d]++; k.domainUsable[d] == 1 {
			k.liveUsable++
		}
	}
	k.nodeDomain[idx] = d
}

// tracker counts the placed pods a matcher selects, per domain of one
// topology key and per node. It serves topology spread constraints,
// inter-pod (anti-)affinity terms and the spreading of an owner's replicas.
type tracker struct {
	key *topoKey

	// What it counts: pods of owner, or pods in namespaces (nil: all)
	// whose labels match sel. A tracker for spreading (forSpread) skips
	// terminating pods and pods on unusable nodes, and its domains are the
	// usable ones, as topology spread counts them.
	owner      types.UID
	namespaces map[string]bool
	sel        labels.Selector
	forSpread  bool

	domains []int32 // by domain
	nodes   []int32 // by node index
	total   int

	// hist[c] is the number of domains holding c ≥ 1 matching pods, and
	// minNonZero the least such c, kept as counts move by one so that the
	// global minimum of a spread constraint costs O(1).
	hist       []int32
	nonZero    int
	minNonZero int32
}

func (t *tracker) matches(pi *podInfo) bool {
	if t.forSpread && pi.terminating {
		return false
	}
	if t.owner != "" {
		return pi.owner == t.owner
	}
	if t.namespaces != nil && !t.namespaces[pi.pod.Namespace] {
		return false
	}
	return t.sel.Matches(labels.Set(pi.pod.Labels))
}

func (t *tracker) add(pi *podInfo, delta int32) {
	idx := pi.node.idx
	for int(idx) >= len(t.nodes) {
		t.nodes = append(t.nodes, 0)
	}
	t.nodes[idx] += delta
	t.total += int(delta)
	if int(idx) >= len(t.key.nodeDomain) {
		return
	}
	d := t.key.nodeDomain[idx]
	if d < 0 || t.forSpread && !t.key.usable[idx] {
		return
	}
	for int(d) >= len(t.domains) {
		t.domains = append(t.domains, 0)
	}
	old := t.domains[d]
	now := old + delta
	t.domains[d] = now
	for int(now) >= len(t.hist) {
		t.hist = append(t.hist, 0)
	}
	if old > 0 {
		t.hist[old]--
	}
	if now > 0 {
		t.hist[now]++
	}
	switch {
	case old == 0 && now > 0:
		t.nonZero++
	case old > 0 && now == 0:
		t.nonZero--
	}
	// The least non-zero count moves by at most one per change.
	switch {
	case t.nonZero == 0:
		t.minNonZero = 0
	case now > 0 && (now < t.minNonZero || t.minNonZero == 0):
		t.minNonZero = now
	case old == t.minNonZero && t.hist[old] == 0:
		for t.minNonZero = old + 1; t.hist[t.minNonZero] == 0; t.minNonZero++ {
		}
	}
}

// domainCount is the number of matching pods in node idx's domain, and
// whether the node has the key at all.
func (t *tracker) domainCount(idx int32) (int32, bool) {
	d := t.key.nodeDomain[idx]
	if d < 0 {
		return 0, false
	}
	if int(d) >= len(t.domains) {
		return 0, true
	}
	return t.domains[d], true
}

// globalMin is the least count over all live (for spreading: usable)
// domains.
func (t *tracker) globalMin() int32 {
	live := t.key.live
	if t.forSpread {
		live = t.key.liveUsable
	}
	if live > t.nonZero {
		return 0
	}
	return t.minNonZero
}

// countPod adds (delta 1) or removes (-1) a placed pod from every tracker
// that selects it.
func (c *Cluster) countPod(pi *podInfo, delta int32) {
	for _, t := range c.byNS[pi.pod.Namespace] {
		if t.matches(pi) {
			t.add(pi, delta)
		}
	}
	for _, t := range c.byNS[""] {
		if t.matches(pi) {
			t.add(pi, delta)
		}
	}
	if pi.owner != "" {
		for _, t := range c.byOwner[pi.owner] {
			if t.matches(pi) {
				t.add(pi, delta)
			}
		}
	}
}

// maxTrackers bounds the memoised trackers; past it they are dropped and
// rebuilt on demand.
const maxTrackers = 20000

func (c *Cluster) dropTrackers() {
	clear(c.trackers)
	clear(c.byNS)
	clear(c.byOwner)
}

func (c *Cluster) register(id string, t *tracker) *tracker {
	if len(c.trackers) >= maxTrackers {
		c.dropTrackers()
	}
	t.domains = make([]int32, len(t.key.domainNodes))
	t.nodes = make([]int32, len(c.nodes))
	for _, pi := range c.pods {
		if t.matches(pi) {
			t.add(pi, 1)
		}
	}
	c.trackers[id] = t
	switch {
	case t.owner != "":
		c.byOwner[t.owner] = append(c.byOwner[t.owner], t)
	case t.namespaces == nil:
		c.byNS[""] = append(c.byNS[""], t)
	default:
		for ns := range t.namespaces {
			c.byNS[ns] = append(c.byNS[ns], t)
		}
	}
	return t
}

// selectorTracker counts pods in namespaces (nil: all) matching sel over
// topology key key.
func (c *Cluster) selectorTracker(namespaces []string, allNamespaces bool, sel labels.Selector, key string, forSpread bool) *tracker {
	var b strings.Builder
	b.WriteString("sel\x00")
	b.WriteString(key)
	b.WriteByte(0)
	if allNamespaces {
		b.WriteString("*")
	} else {
		for _, ns := range namespaces {
			b.WriteString(ns)
			b.WriteByte(',')
		}
	}
	b.WriteByte(0)
	b.WriteString(sel.String())
	if forSpread {
		b.WriteString("\x00spread")
	}
	id := b.String()
	if t := c.trackers[id]; t != nil {
		return t
	}
	t := &tracker{key: c.topoKey(key), sel: sel, forSpread: forSpread}
	if !allNamespaces {
		t.namespaces = map[string]bool{}
		for _, ns := range namespaces {
			t.namespaces[ns] = true
		}
	}
	return c.register(id, t)
}

// ownerTracker counts the pods of one controller over topology key key,
// for spreading.
func (c *Cluster) ownerTracker(owner types.UID, key string) *tracker {
	id := "own\x00" + key + "\x00" + string(owner)
	if t := c.trackers[id]; t != nil {
		return t
	}
	return c.register(id, &tracker{key: c.topoKey(key), owner: owner, forSpread: true})
}

// termNamespaces is where an affinity term looks for pods: its namespaces,
// or the pod's own; an empty namespaceSelector means every namespace.
// (A non-empty namespaceSelector would need namespace labels, which this
// view does not hold; it is treated as naming no further namespaces.)
func termNamespaces(p *corev1.Pod, term *corev1.PodAffinityTerm) ([]string, bool) {
	if term.NamespaceSelector != nil && len(term.NamespaceSelector.MatchLabels) == 0 && len(term.NamespaceSelector.MatchExpressions) == 0 {
		return nil, true
	}
	if len(term.Namespaces) > 0 {
		return term.Namespaces, false
	}
	return []string{p.Namespace}, false
}
