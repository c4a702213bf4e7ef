// Package orch holds the multi-node acceptance scenarios of the
// orchestration loop (issue 7): one lab (tests/e2e/orch/lab) of three
// nodes, each with its own engine and agent in its own network and PID
// namespaces, shared by the scenarios in order; kubectl 1.32 drives the
// cluster and client-go watches measure the times, which every scenario
// prints (t.Logf and one "SCENARIO" line each, summed up at the end).
//
// Needs root, kubectl, bin/berth, bin/berth-shim, bin/berth-server and
// the test images (make build testimages); BERTH_BIN_DIR and
// BERTH_TESTIMAGES point elsewhere.
package orch

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/tests/e2e/orch/lab"
)

var (
	theLab *lab.Lab
	client kubernetes.Interface
)

// labConfig is the test lab: its own prefix and subnets, so that a lab a
// person started with berth-lab (blab, 10.77.0, 10.88) is left alone.
func labConfig() (lab.Config, error) {
	bin := os.Getenv("BERTH_BIN_DIR")
	if bin == "" {
		bin = "../../../bin"
	}
	bin, _ = filepath.Abs(bin)
	img := os.Getenv("BERTH_TESTIMAGES")
	if img == "" {
		img = filepath.Join(bin, "testimages")
	}
	level := slog.LevelInfo
	// BERTH_LAB_PREFIX, _SUBNET and _PODNET let two runs share a host
	// (e.g. several worktrees) without tearing down each other's lab.
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	return lab.Config{
		Prefix: env("BERTH_LAB_PREFIX", "blt"), Subnet: env("BERTH_LAB_SUBNET", "10.78.0"), PodNet: env("BERTH_LAB_PODNET", "10.89"), BinDir: bin,
		Images: []string{filepath.Join(img, "busybox-docker.tar"), filepath.Join(img, "progs.tar")},
		Tags:   lab.DefaultTags,
		// Kubernetes checks HPAs every 15 s; the autoscaling scenario
		// would spend most of its time waiting for that.
		ServerArgs: []string{"--horizontal-pod-autoscaler-sync-period", "2s"},
		Log:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}, nil
}

func TestMain(m *testing.M) {
	lab.MaybeRunInit()
	if os.Geteuid() != 0 {
		fmt.Println("skipping multi-node e2e tests: they need root (network namespaces, mounts, cgroups)")
		os.Exit(0)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Println("skipping multi-node e2e tests: kubectl not installed")
		os.Exit(0)
	}
	cfg, _ := labConfig()
	if _, err := os.Stat(filepath.Join(cfg.BinDir, "berth")); err != nil {
		fmt.Fprintf(os.Stderr, "orch e2e: %s/berth is missing: run `make build testimages` (or `make test`)\n", cfg.BinDir)
		os.Exit(1)
	}
	if out, _ := exec.Command(filepath.Join(cfg.BinDir, "berth"), "agent", "--help").CombinedOutput(); !strings.Contains(string(out), "node-name") {
		fmt.Println("skipping multi-node e2e tests: this build has no `berth agent`")
		os.Exit(0)
	}
	start := time.Now()
	l, err := lab.Up(cfg, lab.NodeSpec{Name: "node1"}, lab.NodeSpec{Name: "node2"}, lab.NodeSpec{Name: "node3"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "orch e2e: starting the lab:", err)
		if l != nil {
			_ = l.Down(true)
		}
		os.Exit(1)
	}
	theLab = l
	rc, err := kube.ConfigFromKubeconfig(l.Kubeconfig())
	if err == nil {
		rc.QPS, rc.Burst = 200, 400
		client, err = kubernetes.NewForConfig(rc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "orch e2e: client:", err)
		_ = l.Down(true)
		os.Exit(1)
	}
	fmt.Printf("lab of 3 nodes up in %v (kubeconfig %s)\n", time.Since(start).Round(time.Millisecond), l.Kubeconfig())
	code := m.Run()
	printSummary()
	keep := code != 0 && os.Getenv("BERTH_LAB_KEEP") != ""
	if keep {
		fmt.Fprintf(os.Stderr, "orch e2e: BERTH_LAB_KEEP is set: lab left running (berth-lab --prefix blt down)\n")
	} else {
		if code != 0 {
			dumpLogs(l)
		}
		if err := l.Down(false); err != nil {
			fmt.Fprintln(os.Stderr, "orch e2e: tearing the lab down:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// dumpLogs prints the tail of every lab log (on failure).
func dumpLogs(l *lab.Lab) {
	logs, _ := filepath.Glob(filepath.Join(l.Dir(), "*.log"))
	more, _ := filepath.Glob(filepath.Join(l.Dir(), "nodes", "*", "*.log"))
	for _, p := range append(logs, more...) {
		b, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		fmt.Fprintf(os.Stderr, "==== %s (last %d lines)\n%s\n", p, len(lines), strings.Join(lines, "\n"))
	}
}

// results are the scenarios' summary lines.
var (
	resultsMu sync.Mutex
	results   []string
)

// report logs a scenario's measured times and keeps its summary line.
func report(t *testing.T, scenario string, kv ...any) {
	t.Helper()
	var b strings.Builder
	status := "PASS"
	if t.Failed() {
		status = "FAIL"
	}
	fmt.Fprintf(&b, "SCENARIO %s %s", scenario, status)
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if d, ok := v.(time.Duration); ok {
			v = d.Round(time.Millisecond)
		}
		fmt.Fprintf(&b, " %v=%v", kv[i], v)
	}
	t.Log(b.String())
	resultsMu.Lock()
	results = append(results, b.String())
	resultsMu.Unlock()
}

func printSummary() {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	sort.Strings(results)
	fmt.Println("---- multi-node scenarios ----")
	for _, r := range results {
		fmt.Println(r)
	}
}

// kubectl runs kubectl against the lab with a private cache dir.
func kubectl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cache := filepath.Join(theLab.Dir(), "kubectl-cache")
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", theLab.Kubeconfig(), "--cache-dir", cache}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+cache, "KUBECONFIG=")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// k runs kubectl and fails the test on error.
func k(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectl(t, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// apply pipes a manifest to kubectl apply.
func apply(t *testing.T, ns, manifest string) {
	t.Helper()
	if _, err := kubectl(t, manifest, "apply", "-n", ns, "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

// kjson runs kubectl get -o json into v.
func kjson(t *testing.T, v any, args ...string) {
	t.Helper()
	out := k(t, append(append([]string{"get"}, args...), "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("kubectl get %v: %v\n%s", args, err, out)
	}
}

// namespace creates a fresh namespace for one scenario and deletes it
// (without waiting) when the test ends, unless the test failed and
// BERTH_LAB_KEEP is set.
func namespace(t *testing.T, name string) string {
	t.Helper()
	k(t, "create", "namespace", name)
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("BERTH_LAB_KEEP") != "" {
			return
		}
		_, _ = kubectl(t, "", "delete", "namespace", name, "--wait=false")
	})
	return name
}
