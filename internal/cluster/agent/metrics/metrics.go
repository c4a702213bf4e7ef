// Package metrics samples the CPU and memory usage of a node and of the pod
// containers its agent runs, the kubelet's part of the resource metrics
// pipeline (`kubectl top`, the HorizontalPodAutoscaler). CPU is a counter,
// so usage is a rate over two samples: the Collector samples every
// Interval and keeps the last two per container.
//
// Container usage comes from the engine's stats (the container's cgroup):
// cores = Δcpu_stats.cpu_usage.total_usage / Δtime, memory = the working
// set, usage minus inactive_file, as the kubelet reports it. Node usage
// comes from /proc/stat and /proc/meminfo; nodes that share a kernel (the
// multi-node lab) all report the host's numbers.
package metrics

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/cluster/metricsapi"
	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
)

// The labels of the agent/engine contract (see internal/cluster/agent/spec.go).
const (
	labelPodName      = "io.kubernetes.pod.name"
	labelPodNamespace = "io.kubernetes.pod.namespace"
	labelPodUID       = "io.kubernetes.pod.uid"
	labelContainer    = "io.kubernetes.container.name"
	labelKind         = "io.berth.kind"
	labelNode         = "io.berth.node"
)

// DefaultInterval is how often the Collector samples.
const DefaultInterval = 5 * time.Second

// Source is what the Collector needs from the engine.
type Source interface {
	// Running lists the running containers carrying label=value.
	Running(ctx context.Context, label, value string) ([]api.ContainerSummary, error)
	// Stats returns one sample of a container.
	Stats(ctx context.Context, id string) (*api.Stats, error)
}

// EngineSource is a Source over the engine client.
func EngineSource(c *client.Client) Source { return engineSource{c} }

type engineSource struct{ c *client.Client }

func (e engineSource) Running(ctx context.Context, label, value string) ([]api.ContainerSummary, error) {
	return e.c.ContainerList(ctx, client.ListOptions{Filters: client.Filters{"label": {label + "=" + value}}})
}

func (e engineSource) Stats(ctx context.Context, id string) (*api.Stats, error) {
	return e.c.ContainerStats(ctx, id)
}

// Options configures a Collector.
type Options struct {
	NodeName string
	Source   Source
	// Interval between samples (default DefaultInterval).
	Interval time.Duration
	// ProcRoot is where stat and meminfo are read (default /proc).
	ProcRoot string
	Logger   *slog.Logger
}

// raw is one cumulative reading.
type raw struct {
	at       time.Time
	cpuNanos uint64 // cumulative CPU time
	memory   uint64 // working set
}

// series is the last two readings of one container or the node.
type series struct{ prev, cur raw }

func (s *series) add(r raw) { s.prev, s.cur = s.cur, r }

// rate returns the usage over the window between the two readings, or
// false when there is no valid window yet (one reading, a clock that did
// not advance, or a counter that went back: a new cgroup).
func (s *series) rate() (metricsapi.Sample, bool) {
	return usage(s.prev, s.cur)
}

// usage computes a Sample from two cumulative readings.
func usage(prev, cur raw) (metricsapi.Sample, bool) {
	if prev.at.IsZero() || !cur.at.After(prev.at) || cur.cpuNanos < prev.cpuNanos {
		return metricsapi.Sample{}, false
	}
	window := cur.at.Sub(prev.at)
	// nanoseconds of CPU per second of wall time = nanocores.
	cores := float64(cur.cpuNanos-prev.cpuNanos) / window.Seconds()
	return metricsapi.Sample{CPUNanoCores: uint64(cores), MemoryBytes: cur.memory, Timestamp: cur.at, Window: window}, true
}

type ctrKey struct{ id string }

type ctrInfo struct {
	ns, pod, uid, name string
	s                  series
}

// Collector samples a node and its pods. Create with New, Run it, and
// serve Summary (or ServeHTTP).
type Collector struct {
	o Options

	mu      sync.Mutex
	ctrs    map[ctrKey]*ctrInfo
	node    series
	lastRun time.Time
}

// New returns a collector; Run starts sampling.
func New(o Options) *Collector {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Collector{o: o, ctrs: map[ctrKey]*ctrInfo{}}
}

// Run samples every Interval until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		c.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample takes one reading of the node and of every running pod container
// (not sandboxes) of this node; containers gone since are forgotten.
func (c *Collector) Sample(ctx context.Context) {
	if n, err := readNode(c.o.ProcRoot); err != nil {
		c.o.Logger.Debug("node usage", "err", err)
	} else {
		c.mu.Lock()
		c.node.add(n)
		c.mu.Unlock()
	}
	list, err := c.o.Source.Running(ctx, labelNode, c.o.NodeName)
	if err != nil {
		if ctx.Err() == nil {
			c.o.Logger.Warn("listing pod containers for metrics", "err", err)
		}
		return
	}
	seen := map[ctrKey]bool{}
	for _, ct := range list {
		l := ct.Labels
		if l[labelKind] == "sandbox" || l[labelPodUID] == "" || ct.State != "" && ct.State != "running" {
			continue
		}
		st, err := c.o.Source.Stats(ctx, ct.ID)
		if err != nil {
			c.o.Logger.Debug("container stats", "id", ct.ID, "err", err)
			continue
		}
		r := fromStats(st)
		k := ctrKey{ct.ID}
		seen[k] = true
		c.mu.Lock()
		ci := c.ctrs[k]
		if ci == nil {
			ci = &ctrInfo{ns: l[labelPodNamespace], pod: l[labelPodName], uid: l[labelPodUID], name: l[labelContainer]}
			c.ctrs[k] = ci
		}
		ci.s.add(r)
		c.mu.Unlock()
	}
	c.mu.Lock()
	for k := range c.ctrs {
		if !seen[k] {
			delete(c.ctrs, k)
		}
	}
	c.lastRun = time.Now().UTC()
	c.mu.Unlock()
}

// fromStats reads the cumulative CPU time and the working set of a stats
// sample.
func fromStats(st *api.Stats) raw {
	at := st.Read
	if at.IsZero() {
		at = time.Now()
	}
	return raw{at: at, cpuNanos: st.CPUStats.CPUUsage.TotalUsage, memory: WorkingSet(st.MemoryStats)}
}

// WorkingSet is usage minus inactive file pages (memory the kernel can
// reclaim at once), never below zero, as the kubelet and cAdvisor define
// it. cgroup v1 engines name the counter total_inactive_file.
func WorkingSet(m api.MemoryStats) uint64 {
	inactive, ok := m.Stats["inactive_file"]
	if !ok {
		inactive = m.Stats["total_inactive_file"]
	}
	if inactive > m.Usage {
		return 0
	}
	return m.Usage - inactive
}

// Summary returns the current usage of the node and its pods.
func (c *Collector) Summary() metricsapi.NodeSummary {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := metricsapi.NodeSummary{NodeName: c.o.NodeName, Timestamp: c.lastRun, Pods: []metricsapi.PodSample{}}
	if s, ok := c.node.rate(); ok {
		out.Node = &s
	}
	byUID := map[string]int{}
	for _, ci := range c.ctrs {
		s, ok := ci.s.rate()
		if !ok {
			continue
		}
		i, ok := byUID[ci.uid]
		if !ok {
			i = len(out.Pods)
			byUID[ci.uid] = i
			out.Pods = append(out.Pods, metricsapi.PodSample{Namespace: ci.ns, Name: ci.pod, UID: ci.uid})
		}
		out.Pods[i].Containers = append(out.Pods[i].Containers, metricsapi.ContainerSample{Name: ci.name, Sample: s})
	}
	return out
}

// ServeHTTP answers GET /stats/metrics with the Summary as JSON.
func (c *Collector) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	b, _ := json.Marshal(c.Summary())
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// userHZ is the unit of /proc/stat's counters (100 on every Linux port
// berth runs on).
const userHZ = 100

// readNode reads the node's cumulative busy CPU time and its working set.
func readNode(proc string) (raw, error) {
	at := time.Now()
	f, err := os.Open(filepath.Join(proc, "stat"))
	if err != nil {
		return raw{}, err
	}
	defer f.Close()
	var busy uint64
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 || fs[0] != "cpu" {
			continue
		}
		// user nice system idle iowait irq softirq steal [guest guest_nice]:
		// guest time is already in user and nice, idle and iowait are not busy.
		for i, v := range fs[1:] {
			if i == 3 || i == 4 || i >= 8 {
				continue
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			busy += n
		}
		found = true
		break
	}
	if !found {
		return raw{}, fmt.Errorf("%s/stat: no cpu line", proc)
	}
	mem, err := readMeminfo(filepath.Join(proc, "meminfo"))
	if err != nil {
		return raw{}, err
	}
	return raw{at: at, cpuNanos: busy * (1e9 / userHZ), memory: mem}, nil
}

// readMeminfo returns the node's working set: memory in use (MemTotal −
// MemFree) minus inactive file pages, the root cgroup's working set as
// the kubelet computes it.
func readMeminfo(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	kv := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(fs[0], 10, 64)
		kv[k] = n * 1024 // kB
	}
	total, free := kv["MemTotal"], kv["MemFree"]
	if total == 0 {
		return 0, fmt.Errorf("%s: no MemTotal", path)
	}
	used := total - min(free, total)
	return used - min(kv["Inactive(file)"], used), nil
}
