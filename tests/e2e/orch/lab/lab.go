// Package lab runs a berth cluster of several nodes on one machine for
// multi-node tests and for people: a control plane (bin/berth-server) on
// the host and N nodes, each in its own network namespace joined to a
// bridge the lab creates, each with its own engine (bin/berth daemon)
// and node agent (bin/berth agent). A node can be killed outright like a
// power loss, cut from the network and healed, and have its agent
// restarted. Everything the lab makes carries its prefix, so a crashed
// run's leftovers are found and removed by the next one.
//
// Layout with the default prefix "blab" and subnet 10.77.0:
//
//	bridge blab0 10.77.0.1/24 (host side; the server listens here)
//	node i:  netns blab-<name>, veth blabv<i> on the bridge, eth0 10.77.0.(10+i),
//	         engine bridge berth0 with pod subnet 10.88.i.0/24 inside the netns,
//	         PID 1 a reaper in its own PID and mount namespaces
//	state:   /var/lib/blab (lab.json, server/, nodes/<name>/…)
//	runtime: /run/blab/<name> (a tmpfs inside the node's mount namespace)
//
// Root only; needs ip(8), nsenter(1) and unshare(1).
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config describes a lab. Zero fields take the defaults of Defaults.
type Config struct {
	// Prefix names everything the lab creates (netns, links, cgroups,
	// directories); two labs with different prefixes and subnets can run
	// side by side.
	Prefix string
	// Subnet is the first three octets of the lab's /24 (bridge .1, node
	// i .10+i).
	Subnet string
	// PodNet is the first two octets of the node pod subnets (node i gets
	// PodNet.i.0/24).
	PodNet string
	// Dir holds the lab's state, logs, the server's data and the engines'
	// roots; it is wiped by Up. Default /var/lib/<prefix>.
	Dir string
	// BinDir holds berth, berth-shim, berth-pause and berth-server.
	BinDir string
	// Images are image archives (docker save / OCI layout) loaded into
	// every node's engine; Tags are extra names given to loaded images
	// (new name → existing name).
	Images []string
	Tags   map[string]string
	// ServerArgs are appended to `berth-server server …`.
	ServerArgs []string
	// AgentArgs are appended to every `berth agent …`.
	AgentArgs []string
	// NoAgent boots nodes with an engine only (no node agent).
	NoAgent bool
	// Log receives the harness's progress; default: discarded.
	Log *slog.Logger `json:"-"`
}

// NodeSpec is one node's name and capacity as its agent reports it ("" =
// the agent's default).
type NodeSpec struct {
	Name    string `json:"name"`
	CPUs    string `json:"cpus,omitempty"`
	Memory  string `json:"memory,omitempty"`
	MaxPods int    `json:"maxPods,omitempty"`
}

// Server is the running control plane.
type Server struct {
	PID            int    `json:"pid"`
	Port           int    `json:"port"`
	EtcdClientPort int    `json:"etcdClientPort"`
	EtcdPeerPort   int    `json:"etcdPeerPort"`
	DataDir        string `json:"dataDir"`
}

// Node is one lab node's state.
type Node struct {
	Spec      NodeSpec `json:"spec"`
	Index     int      `json:"index"`
	IP        string   `json:"ip"`
	PodSubnet string   `json:"podSubnet"`
	// Host PIDs: the node's PID 1 and, inside its namespace, the engine
	// and the agent. Zero when not running.
	InitPID   int `json:"initPid"`
	EnginePID int `json:"enginePid"`
	AgentPID  int `json:"agentPid"`
	// Killed is set by Kill and cleared by Boot; Partitioned by Partition
	// and cleared by Heal.
	Killed      bool `json:"killed"`
	Partitioned bool `json:"partitioned"`
}

// Lab is a running (or stopped) lab. Its methods are safe for concurrent
// use; the state is saved to Dir/lab.json after every change so another
// process (the berth-lab command) can pick it up with Open.
type Lab struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	Server Server           `json:"server"`
	Nodes  map[string]*Node `json:"nodes"`
	Next   int              `json:"next"` // index of the next node
	Cfg    Config           `json:"config"`
}

// Defaults fills the zero fields of c.
func (c Config) Defaults() Config {
	if c.Prefix == "" {
		c.Prefix = "blab"
	}
	if c.Subnet == "" {
		c.Subnet = "10.77.0"
	}
	if c.PodNet == "" {
		c.PodNet = "10.88"
	}
	if c.Dir == "" {
		c.Dir = "/var/lib/" + c.Prefix
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(discard{}, nil))
	}
	return c
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (c Config) validate() error {
	if len(c.Prefix) > 8 || strings.ContainsAny(c.Prefix, "/ -.") {
		return fmt.Errorf("lab prefix %q: want at most 8 characters without '/', ' ', '-', '.'", c.Prefix)
	}
	if c.BinDir == "" {
		return errors.New("lab: BinDir is empty: point it at the directory with berth, berth-shim, berth-pause and berth-server (make build)")
	}
	need := []string{"berth", "berth-shim", "berth-pause", "berth-server"}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(c.BinDir, b)); err != nil {
			return fmt.Errorf("lab: %s is missing: run `make build`", filepath.Join(c.BinDir, b))
		}
	}
	for _, img := range c.Images {
		if _, err := os.Stat(img); err != nil {
			return fmt.Errorf("lab: image archive %s is missing: run `make testimages`", img)
		}
	}
	for _, tool := range []string{"ip", "nsenter", "unshare"} {
		if _, err := lookPath(tool); err != nil {
			return fmt.Errorf("lab: %s not found on PATH (Debian: apt-get install iproute2 util-linux)", tool)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("lab: needs root (network namespaces, bridges, mounts)")
	}
	return nil
}

// BridgeIP is the host's address on the lab bridge; the server listens there.
func (l *Lab) BridgeIP() string { return l.cfg.Subnet + ".1" }

// URL is the API server's address as nodes reach it.
func (l *Lab) URL() string { return fmt.Sprintf("https://%s:%d", l.BridgeIP(), l.Server.Port) }

// Kubeconfig is the admin kubeconfig's path.
func (l *Lab) Kubeconfig() string { return filepath.Join(l.Server.DataDir, "kubeconfig") }

// Dir is the lab's state directory.
func (l *Lab) Dir() string { return l.cfg.Dir }

// Config returns the lab's configuration (defaults filled).
func (l *Lab) Config() Config { return l.cfg }

func (l *Lab) statePath() string { return filepath.Join(l.cfg.Dir, "lab.json") }

// save writes the state; callers hold l.mu.
func (l *Lab) save() error {
	l.Cfg = l.cfg
	l.Cfg.Log = nil
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, l.statePath())
}

// Open loads the lab saved under dir by a previous Up (in this or another
// process). log may be nil.
func Open(dir string, log *slog.Logger) (*Lab, error) {
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no lab in %s (start one with `berth-lab up`)", dir)
		}
		return nil, err
	}
	l := &Lab{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "lab.json"), err)
	}
	l.Cfg.Log = log
	l.cfg = l.Cfg.Defaults()
	l.log = l.cfg.Log
	if l.Nodes == nil {
		l.Nodes = map[string]*Node{}
	}
	return l, nil
}

// NodeNames lists the nodes by index.
func (l *Lab) NodeNames() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var names []string
	for n := range l.Nodes {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return l.Nodes[names[i]].Index < l.Nodes[names[j]].Index })
	return names
}

// Node returns a copy of one node's state.
func (l *Lab) Node(name string) (Node, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.Nodes[name]
	if !ok {
		return Node{}, fmt.Errorf("no node %q in the lab", name)
	}
	return *n, nil
}

// Up wipes any previous lab with the same prefix (processes, namespaces,
// links, mounts, cgroups, Dir), creates the bridge, starts the server and
// boots the given nodes (in parallel).
func Up(cfg Config, nodes ...NodeSpec) (*Lab, error) {
	cfg = cfg.Defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Lab{cfg: cfg, log: cfg.Log, Nodes: map[string]*Node{}, Next: 1}
	start := time.Now()
	if err := Clean(cfg); err != nil {
		return nil, fmt.Errorf("cleaning a previous lab: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "nodes"), 0o755); err != nil {
		return nil, err
	}
	if err := l.createBridge(); err != nil {
		return nil, err
	}
	if err := l.startServer(); err != nil {
		return l, err
	}
	l.log.Info("lab server ready", "url", l.URL(), "took", time.Since(start).Round(time.Millisecond))
	if err := l.AddNodes(nodes...); err != nil {
		return l, err
	}
	l.log.Info("lab up", "nodes", len(nodes), "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// AddNodes creates and boots nodes in parallel (numbered in order).
func (l *Lab) AddNodes(specs ...NodeSpec) error {
	nodes := make([]*Node, len(specs))
	for i, s := range specs {
		n, err := l.reserve(s)
		if err != nil {
			return err
		}
		nodes[i] = n
	}
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func(i int, n *Node) {
			defer wg.Done()
			errs[i] = l.create(n)
		}(i, n)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// AddNode creates a node (its netns and link) and boots it: it joins the
// cluster and is Ready when AddNode returns (unless NoAgent).
func (l *Lab) AddNode(s NodeSpec) error {
	n, err := l.reserve(s)
	if err != nil {
		return err
	}
	return l.create(n)
}

// reserve records a new node and gives it the next index.
func (l *Lab) reserve(s NodeSpec) (*Node, error) {
	if s.Name == "" || len(s.Name) > 30 || strings.ContainsAny(s.Name, "/ .") {
		return nil, fmt.Errorf("node name %q: want 1-30 characters without '/', ' ', '.'", s.Name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.Nodes[s.Name]; ok {
		return nil, fmt.Errorf("node %q already exists", s.Name)
	}
	idx := l.Next
	l.Next++
	n := &Node{Spec: s, Index: idx, IP: fmt.Sprintf("%s.%d", l.cfg.Subnet, 10+idx), PodSubnet: fmt.Sprintf("%s.%d.0/24", l.cfg.PodNet, idx)}
	l.Nodes[s.Name] = n
	return n, l.save()
}

func (l *Lab) create(n *Node) error {
	l.mu.Lock()
	c := *n
	l.mu.Unlock()
	if err := l.createNodeNet(&c); err != nil {
		return fmt.Errorf("node %s: %w", c.Spec.Name, err)
	}
	return l.Boot(c.Spec.Name)
}

// Down stops everything and removes every trace of the lab (see Clean);
// the state directory is removed too unless keepDir.
func (l *Lab) Down(keepDir bool) error {
	err := clean(l.cfg, !keepDir)
	if err == nil {
		err = Check(l.cfg)
	}
	return err
}

// update runs f on node name's state under the lock and saves it.
func (l *Lab) update(name string, f func(n *Node)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.Nodes[name]
	if !ok {
		return fmt.Errorf("no node %q in the lab", name)
	}
	f(n)
	return l.save()
}

func (l *Lab) nodeDir(name string) string { return filepath.Join(l.cfg.Dir, "nodes", name) }

// ExecRoot is a node's engine runtime directory (inside its tmpfs).
func (l *Lab) execRoot(name string) string { return filepath.Join("/run", l.cfg.Prefix, name) }

// EngineSocket is the unix socket of a node's engine, reachable from the
// host as well.
func (l *Lab) EngineSocket(name string) string { return filepath.Join(l.nodeDir(name), "engine.sock") }

// netnsName is a node's network namespace (ip netns name).
func (l *Lab) netnsName(name string) string { return l.cfg.Prefix + "-" + name }

// vethName is the host side of a node's link.
func (l *Lab) vethName(idx int) string { return fmt.Sprintf("%sv%d", l.cfg.Prefix, idx) }

func (l *Lab) bridgeName() string { return l.cfg.Prefix + "0" }

func (l *Lab) cgroupParent(name string) string { return l.cfg.Prefix + "-" + name }

// DefaultTags are the names the scenarios use, given to the test images
// (tests/testimages) so that no pod needs a registry: lab/app:v1 is
// busybox, lab/app:v2 is busybox plus the test programs.
var DefaultTags = map[string]string{
	"lab/app:v1": "busybox:latest",
	"lab/app:v2": "progs:latest",
}
