package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/internal/cluster/metricsapi"
	"github.com/berth/berth/internal/engine/api"
)

// fakeSource serves scripted containers and stats.
type fakeSource struct {
	mu    sync.Mutex
	ctrs  []api.ContainerSummary
	stats map[string]*api.Stats
	asked []string // label=value of Running calls
}

func (f *fakeSource) Running(_ context.Context, label, value string) ([]api.ContainerSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, label+"="+value)
	return f.ctrs, nil
}

func (f *fakeSource) Stats(_ context.Context, id string) (*api.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.stats[id]
	if !ok {
		return nil, fmt.Errorf("no such container %s", id)
	}
	c := *s
	return &c, nil
}

func (f *fakeSource) set(id string, at time.Time, cpuNanos, usage, inactive uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &api.Stats{Read: at, ID: id}
	s.CPUStats.CPUUsage.TotalUsage = cpuNanos
	s.MemoryStats = api.MemoryStats{Usage: usage, Stats: map[string]uint64{"inactive_file": inactive}}
	f.stats[id] = s
}

func ctr(id, ns, pod, uid, name, kind string) api.ContainerSummary {
	return api.ContainerSummary{ID: id, State: "running", Labels: map[string]string{labelPodNamespace: ns, labelPodName: pod, labelPodUID: uid, labelContainer: name, labelKind: kind, labelNode: "n1"}}
}

func writeProc(t *testing.T, dir string, user, idle, iowait uint64, total, free, inactive uint64) {
	t.Helper()
	stat := fmt.Sprintf("cpu  %d 0 0 %d %d 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n", user, idle, iowait)
	mem := fmt.Sprintf("MemTotal:       %d kB\nMemFree:        %d kB\nMemAvailable:   1 kB\nInactive(file): %d kB\n", total, free, inactive)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "meminfo"), []byte(mem), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUsageRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, c := range []struct {
		name      string
		prev, cur raw
		ok        bool
		nanocores uint64
	}{
		{"half a core over 5s", raw{at: t0, cpuNanos: 10e9}, raw{at: t0.Add(5 * time.Second), cpuNanos: 12.5e9, memory: 7}, true, 500_000_000},
		{"two cores over 2s", raw{at: t0, cpuNanos: 0}, raw{at: t0.Add(2 * time.Second), cpuNanos: 4e9}, true, 2_000_000_000},
		{"idle", raw{at: t0, cpuNanos: 5}, raw{at: t0.Add(time.Second), cpuNanos: 5}, true, 0},
		{"one sample only", raw{}, raw{at: t0, cpuNanos: 5}, false, 0},
		{"clock did not advance", raw{at: t0, cpuNanos: 1}, raw{at: t0, cpuNanos: 2}, false, 0},
		{"counter went back (new cgroup)", raw{at: t0, cpuNanos: 9e9}, raw{at: t0.Add(time.Second), cpuNanos: 1e9}, false, 0},
	} {
		s, ok := usage(c.prev, c.cur)
		if ok != c.ok || s.CPUNanoCores != c.nanocores {
			t.Errorf("%s: got %d nanocores ok=%v, want %d ok=%v", c.name, s.CPUNanoCores, ok, c.nanocores, c.ok)
		}
		if ok && (s.Window != c.cur.at.Sub(c.prev.at) || !s.Timestamp.Equal(c.cur.at) || s.MemoryBytes != c.cur.memory) {
			t.Errorf("%s: got window %v at %v memory %d, want the current reading's", c.name, s.Window, s.Timestamp, s.MemoryBytes)
		}
	}
}

func TestWorkingSet(t *testing.T) {
	for _, c := range []struct {
		m    api.MemoryStats
		want uint64
	}{
		{api.MemoryStats{Usage: 100, Stats: map[string]uint64{"inactive_file": 30}}, 70},
		{api.MemoryStats{Usage: 100, Stats: map[string]uint64{"total_inactive_file": 40}}, 60},
		{api.MemoryStats{Usage: 10, Stats: map[string]uint64{"inactive_file": 30}}, 0},
		{api.MemoryStats{Usage: 10}, 10},
	} {
		if got := WorkingSet(c.m); got != c.want {
			t.Errorf("WorkingSet(%+v) = %d, want %d", c.m, got, c.want)
		}
	}
}

func TestCollector(t *testing.T) {
	proc := t.TempDir()
	src := &fakeSource{stats: map[string]*api.Stats{}, ctrs: []api.ContainerSummary{
		ctr("sb", "ns", "web", "u1", "POD", "sandbox"),
		ctr("c1", "ns", "web", "u1", "app", "container"),
		ctr("c2", "ns", "web", "u1", "side", "container"),
	}}
	t0 := time.Unix(2000, 0)
	src.set("sb", t0, 0, 1, 0)
	src.set("c1", t0, 1e9, 1000, 100)
	src.set("c2", t0, 0, 500, 0)
	writeProc(t, proc, 100, 1000, 50, 1000, 400, 100)
	c := New(Options{NodeName: "n1", Source: src, ProcRoot: proc})
	c.Sample(context.Background())
	if s := c.Summary(); len(s.Pods) != 0 || s.Node != nil {
		t.Fatalf("after one sample: got %+v, want no pods and no node (no rate yet)", s)
	}
	src.set("c1", t0.Add(5*time.Second), 6e9, 2000, 500) // 1 core, working set 1500
	src.set("c2", t0.Add(5*time.Second), 0.5e9, 800, 0)  // 0.1 core
	// 200 busy ticks (2 s of CPU) more; idle and iowait do not count.
	writeProc(t, proc, 300, 5000, 900, 1000, 300, 100)
	c.Sample(context.Background())
	s := c.Summary()
	if src.asked[0] != labelNode+"=n1" {
		t.Errorf("listed %q, want the node's containers (%s=n1)", src.asked[0], labelNode)
	}
	if len(s.Pods) != 1 || len(s.Pods[0].Containers) != 2 {
		t.Fatalf("got pods %+v, want one pod with two containers (the sandbox skipped)", s.Pods)
	}
	p := s.Pods[0]
	if p.Namespace != "ns" || p.Name != "web" || p.UID != "u1" {
		t.Errorf("got pod %s/%s uid %s, want ns/web u1", p.Namespace, p.Name, p.UID)
	}
	got := map[string]metricsapi.ContainerSample{}
	for _, ct := range p.Containers {
		got[ct.Name] = ct
	}
	if a := got["app"]; a.CPUNanoCores != 1e9 || a.MemoryBytes != 1500 || a.Window != 5*time.Second {
		t.Errorf("app: got %+v, want 1e9 nanocores, 1500 bytes, 5s window", a)
	}
	if sd := got["side"]; sd.CPUNanoCores != 1e8 || sd.MemoryBytes != 800 {
		t.Errorf("side: got %+v, want 1e8 nanocores, 800 bytes", sd)
	}
	if s.Node == nil {
		t.Fatal("no node usage after two samples")
	}
	// 200 ticks = 2e9 ns of CPU over the real time between the two samples
	// (a few microseconds here): just check it is positive and memory is
	// (1000-300-100) kB.
	if s.Node.CPUNanoCores == 0 || s.Node.MemoryBytes != 600*1024 {
		t.Errorf("node: got %+v, want CPU > 0 and memory %d", s.Node, 600*1024)
	}

	// A container that stopped is forgotten; the JSON answer has the shape
	// the API server reads.
	src.mu.Lock()
	src.ctrs = src.ctrs[:2]
	src.mu.Unlock()
	src.set("c1", t0.Add(10*time.Second), 6e9, 2000, 500)
	c.Sample(context.Background())
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/stats/metrics", nil))
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	pods := out["pods"].([]any)
	cs := pods[0].(map[string]any)["containers"].([]any)
	if len(pods) != 1 || len(cs) != 1 || cs[0].(map[string]any)["name"] != "app" || cs[0].(map[string]any)["cpu_nanocores"].(float64) != 0 {
		t.Errorf("after c2 stopped and c1 idled: got %s, want one container app at 0 nanocores", rec.Body.String())
	}
	if out["nodeName"] != "n1" || out["node"] == nil {
		t.Errorf("got %s, want nodeName n1 and node usage", rec.Body.String())
	}
}
