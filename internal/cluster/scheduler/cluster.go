package scheduler

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Well-known labels and taints the scheduler understands.
const (
	LabelHostname = "kubernetes.io/hostname"
	LabelZone     = "topology.kubernetes.io/zone"

	TaintUnschedulable = "node.kubernetes.io/unschedulable"
	TaintNotReady      = "node.kubernetes.io/not-ready"
)

// Cluster is the scheduler's read-only view of the cluster: the nodes and
// the pods placed on them (bound, or assumed by the scheduler while their
// binding is in flight). Place decides where one more pod goes without
// changing the view; the caller records the decision with SetPod.
//
// Cluster keeps counts per topology domain up to date as pods come and go,
// so that a placement costs O(nodes examined), not O(pods × nodes). It never
// modifies the objects it is given and keeps pointers to them: callers must
// not modify them afterwards either (give it copies). It is not safe for
// concurrent use.
type Cluster struct {
	opts Options

	byName map[string]*nodeInfo
	nodes  []*nodeInfo // by index; nil: free slot
	hot    []nodeHot   // by index: what every filter reads, packed together
	free   []int32

	order      []int32 // live nodes, zones interleaved; rebuilt when dirty
	orderDirty bool
	next       int // where the next placement starts in order

	pods     map[types.UID]*podInfo
	antiPods map[types.UID]*podInfo // placed pods with required anti-affinity

	keys     map[string]*topoKey
	trackers map[string]*tracker
	byNS     map[string][]*tracker // "" holds trackers spanning all namespaces
	byOwner  map[types.UID][]*tracker

	scratch scratch
}

// Options tune placement.
type Options struct {
	// PercentageOfNodesToScore bounds how many feasible nodes a placement
	// looks for before it stops filtering and scores them, as in
	// kube-scheduler: 0 adapts to the cluster size (50% less 1% per 125
	// nodes, at least 5%, never fewer than 100 nodes); 100 examines every
	// node.
	PercentageOfNodesToScore int
}

type nodeInfo struct {
	idx  int32
	name string
	node *corev1.Node // nil: pods name this node but it is not (or no longer) known

	alloc     resources
	allocPods int64

	requested resources
	nonZero   resources // requests with scoring defaults, for the scores
	numPods   int       // len(pods), kept beside the other hot fields
	pods      map[types.UID]*podInfo
	ports     map[hostPort]int

	ready         bool
	unschedulable bool
	hardTaints    []corev1.Taint // NoSchedule and NoExecute
	softTaints    []corev1.Taint // PreferNoSchedule
}

// nodeHot mirrors the fields of a nodeInfo that the filters and the
// resource score read for every node examined, in one flat array: the scan
// over thousands of nodes then walks contiguous memory instead of chasing a
// pointer per node.
type nodeHot struct {
	allocCPU, allocMem, allocEph, allocPods int64
	reqCPU, reqMem, reqEph                  int64
	nzCPU, nzMem                            int64
	numPods                                 int64
	unschedulable, notReady                 bool
	hardTaints, softTaints, ports, scalars  bool
}

func (c *Cluster) syncHot(ni *nodeInfo) {
	h := &c.hot[ni.idx]
	*h = nodeHot{
		allocCPU: ni.alloc.milliCPU, allocMem: ni.alloc.memory, allocEph: ni.alloc.ephemeral, allocPods: ni.allocPods,
		reqCPU: ni.requested.milliCPU, reqMem: ni.requested.memory, reqEph: ni.requested.ephemeral,
		nzCPU: ni.nonZero.milliCPU, nzMem: ni.nonZero.memory,
		numPods:       int64(ni.numPods),
		unschedulable: ni.unschedulable, notReady: !ni.ready,
		hardTaints: len(ni.hardTaints) > 0, softTaints: len(ni.softTaints) > 0, ports: len(ni.ports) > 0,
		scalars: len(ni.alloc.scalar) > 0 || len(ni.requested.scalar) > 0,
	}
}

type hostPort struct {
	protocol corev1.Protocol
	ip       string // "" for all addresses
	port     int32
}

type podInfo struct {
	pod         *corev1.Pod
	node        *nodeInfo
	req         resources
	nonZero     resources
	ports       []hostPort
	owner       types.UID
	terminating bool
}

// NewCluster returns an empty view.
func NewCluster(o Options) *Cluster {
	return &Cluster{
		opts:     o,
		byName:   map[string]*nodeInfo{},
		pods:     map[types.UID]*podInfo{},
		antiPods: map[types.UID]*podInfo{},
		keys:     map[string]*topoKey{},
		trackers: map[string]*tracker{},
		byNS:     map[string][]*tracker{},
		byOwner:  map[types.UID][]*tracker{},
	}
}

// NumNodes is the number of known nodes.
func (c *Cluster) NumNodes() int { return len(c.byName) - c.ghosts() }

func (c *Cluster) ghosts() int {
	n := 0
	for _, ni := range c.byName {
		if ni.node == nil {
			n++
		}
	}
	return n
}

func (c *Cluster) nodeInfo(name string) *nodeInfo {
	if ni := c.byName[name]; ni != nil {
		return ni
	}
	ni := &nodeInfo{name: name, pods: map[types.UID]*podInfo{}}
	if n := len(c.free); n > 0 {
		ni.idx = c.free[n-1]
		c.free = c.free[:n-1]
		c.nodes[ni.idx] = ni
	} else {
		ni.idx = int32(len(c.nodes))
		c.nodes = append(c.nodes, ni)
		c.hot = append(c.hot, nodeHot{})
	}
	c.syncHot(ni)
	c.byName[name] = ni
	for _, k := range c.keys {
		k.grow(len(c.nodes))
	}
	return ni
}

// SetNode adds or updates a node.
func (c *Cluster) SetNode(n *corev1.Node) {
	ni := c.nodeInfo(n.Name)
	old := ni.node
	wasUsable := usable(ni)
	ni.node = n
	ni.alloc = resourcesOf(n.Status.Allocatable)
	ni.allocPods = n.Status.Allocatable.Pods().Value()
	ni.unschedulable = n.Spec.Unschedulable
	ni.ready = nodeReady(n)
	ni.hardTaints, ni.softTaints = nil, nil
	for _, t := range n.Spec.Taints {
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute:
			ni.hardTaints = append(ni.hardTaints, t)
		case corev1.TaintEffectPreferNoSchedule:
			ni.softTaints = append(ni.softTaints, t)
		}
	}
	c.syncHot(ni)
	relabelled := old == nil || !labels.Equals(old.Labels, n.Labels)
	if relabelled {
		c.orderDirty = true
	}
	if relabelled || usable(ni) != wasUsable {
		for _, k := range c.keys {
			k.setNode(ni.idx, n, usable(ni))
		}
		if old != nil || len(ni.pods) > 0 {
			// Pods already counted moved with the node's labels, or
			// started or stopped counting for spreading; recount lazily.
			c.dropTrackers()
		}
	}
}

// RemoveNode forgets a node. Pods still bound to it keep their place until
// they are removed.
func (c *Cluster) RemoveNode(name string) {
	ni := c.byName[name]
	if ni == nil || ni.node == nil {
		return
	}
	ni.node = nil
	c.orderDirty = true
	for _, k := range c.keys {
		k.setNode(ni.idx, nil, false)
	}
	c.dropTrackers()
	c.maybeFree(ni)
}

func (c *Cluster) maybeFree(ni *nodeInfo) {
	if ni.node != nil || len(ni.pods) > 0 {
		return
	}
	delete(c.byName, ni.name)
	c.nodes[ni.idx] = nil
	c.free = append(c.free, ni.idx)
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// SetPod adds or updates a pod. Only pods with spec.nodeName take up room;
// a pod without one, or one that has finished (Succeeded, Failed), is
// removed.
func (c *Cluster) SetPod(p *corev1.Pod) {
	if old := c.pods[p.UID]; old != nil {
		c.removePod(old)
	}
	if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return
	}
	pi := &podInfo{
		pod:         p,
		node:        c.nodeInfo(p.Spec.NodeName),
		req:         podRequests(p, false),
		nonZero:     podRequests(p, true),
		ports:       podPorts(p),
		terminating: p.DeletionTimestamp != nil,
	}
	if ref := controllerOf(p); ref != nil {
		pi.owner = ref.UID
	}
	c.pods[p.UID] = pi
	ni := pi.node
	ni.pods[p.UID] = pi
	ni.numPods = len(ni.pods)
	ni.requested.add(pi.req)
	ni.nonZero.add(pi.nonZero)
	for _, hp := range pi.ports {
		if ni.ports == nil {
			ni.ports = map[hostPort]int{}
		}
		ni.ports[hp]++
	}
	c.syncHot(ni)
	if hasRequiredAntiAffinity(p) {
		c.antiPods[p.UID] = pi
	}
	c.countPod(pi, 1)
}

// RemovePod forgets a pod (by UID).
func (c *Cluster) RemovePod(p *corev1.Pod) {
	if pi := c.pods[p.UID]; pi != nil {
		c.removePod(pi)
	}
}

func (c *Cluster) removePod(pi *podInfo) {
	c.countPod(pi, -1)
	delete(c.pods, pi.pod.UID)
	delete(c.antiPods, pi.pod.UID)
	ni := pi.node
	delete(ni.pods, pi.pod.UID)
	ni.numPods = len(ni.pods)
	ni.requested.sub(pi.req)
	ni.nonZero.sub(pi.nonZero)
	for _, hp := range pi.ports {
		if ni.ports[hp]--; ni.ports[hp] <= 0 {
			delete(ni.ports, hp)
		}
	}
	c.syncHot(ni)
	c.maybeFree(ni)
}

func controllerOf(p *corev1.Pod) *metav1.OwnerReference {
	for i := range p.OwnerReferences {
		r := &p.OwnerReferences[i]
		if r.Controller != nil && *r.Controller {
			return r
		}
	}
	return nil
}

func podPorts(p *corev1.Pod) []hostPort {
	var out []hostPort
	add := func(cs []corev1.Container) {
		for i := range cs {
			for _, cp := range cs[i].Ports {
				if cp.HostPort <= 0 {
					continue
				}
				proto := cp.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				ip := cp.HostIP
				if ip == "0.0.0.0" || ip == "::" {
					ip = ""
				}
				out = append(out, hostPort{protocol: proto, ip: ip, port: cp.HostPort})
			}
		}
	}
	add(p.Spec.InitContainers)
	add(p.Spec.Containers)
	return out
}

func hasRequiredAntiAffinity(p *corev1.Pod) bool {
	a := p.Spec.Affinity
	return a != nil && a.PodAntiAffinity != nil && len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0
}

// buildOrder lists live nodes with zones interleaved (zone a's first node,
// zone b's first, …), so that examining a window of nodes from any start
// sees every zone, as kube-scheduler's node tree does.
func (c *Cluster) buildOrder() {
	if !c.orderDirty {
		return
	}
	c.orderDirty = false
	byZone := map[string][]*nodeInfo{}
	for _, ni := range c.nodes {
		if ni == nil || ni.node == nil {
			continue
		}
		z := ni.node.Labels[LabelZone]
		byZone[z] = append(byZone[z], ni)
	}
	zones := make([]string, 0, len(byZone))
	for z, ns := range byZone {
		zones = append(zones, z)
		sort.Slice(ns, func(i, j int) bool { return ns[i].name < ns[j].name })
	}
	sort.Strings(zones)
	c.order = c.order[:0]
	for i := 0; ; i++ {
		added := false
		for _, z := range zones {
			if ns := byZone[z]; i < len(ns) {
				c.order = append(c.order, ns[i].idx)
				added = true
			}
		}
		if !added {
			break
		}
	}
	if c.next >= len(c.order) {
		c.next = 0
	}
}
