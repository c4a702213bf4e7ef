package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/berth/berth/internal/cluster/apiserver"
	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/cluster/store"
)

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// realAPI starts embedded etcd and berth's API server in-process and
// returns a client-go config for it as the admin.
func realAPI(t *testing.T) *rest.Config {
	if testing.Short() {
		t.Skip("starts etcd and the API server")
	}
	return realAPIB(t)
}

func realAPIB(t testing.TB) *rest.Config {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir(), Name: "t",
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))})
	if err != nil {
		cancel()
		t.Fatalf("start etcd: %v", err)
	}
	api := apiserver.New(apiserver.Config{Client: st.Client, Auth: &apiserver.CredentialAuth{Static: map[string]apiserver.User{
		"admin-token": {Name: "admin", Role: pki.RoleAdmin},
	}}})
	if err := api.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	go api.Run(ctx)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		st.Close()
	})
	return &rest.Config{Host: srv.URL, BearerToken: "admin-token", QPS: -1}
}

// Against the real API server: a pod is bound; a pod too big for every node
// gets FailedScheduling and PodScheduled=False, then is bound when a big
// enough node is created.
func TestWithAPIServer(t *testing.T) {
	cfg := realAPI(t)
	c, err := kube.NewClients(cfg, 0, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	cs := c.Client
	ctx := context.Background()

	createNode := func(n *corev1.Node) {
		t.Helper()
		status := n.Status
		got, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create node %s: %v", n.Name, err)
		}
		if len(got.Status.Conditions) == 0 || got.Status.Allocatable.Cpu().IsZero() {
			// Status is the agent's to write: set it as an agent would.
			got.Status = status
			if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("node %s status: %v", n.Name, err)
			}
		}
	}
	createPod := func(p *corev1.Pod) {
		t.Helper()
		p.UID = ""
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod %s: %v", p.Name, err)
		}
	}
	createNode(mkNode("small-1", "1", "2Gi"))
	createNode(mkNode("small-2", "1", "2Gi"))
	startScheduler(t, c)

	createPod(mkPod("fits", "500m", "256Mi"))
	waitFor(t, "fits bound", nodeOf(t, cs, "fits"))
	waitFor(t, "Scheduled event", eventFor(cs, "fits", "Scheduled", "Successfully assigned default/fits to small-"))

	start := time.Now()
	createPod(mkPod("huge", "4", "8Gi"))
	want := "0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory."
	waitFor(t, "FailedScheduling", eventFor(cs, "huge", "FailedScheduling", want))
	waitFor(t, "PodScheduled=False", func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "huge", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		cond := podCondition(p, corev1.PodScheduled)
		return cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == "Unschedulable" && cond.Message == want, fmt.Sprintf("%+v", p.Status)
	})
	if p, _ := cs.CoreV1().Pods("default").Get(ctx, "huge", metav1.GetOptions{}); p.Spec.NodeName != "" || p.Status.Phase != corev1.PodPending {
		t.Fatalf("huge: node %q phase %s, want unbound and Pending", p.Spec.NodeName, p.Status.Phase)
	}

	joined := time.Now()
	createNode(mkNode("big", "8", "16Gi"))
	waitFor(t, "huge bound once big joins", nodeOf(t, cs, "huge"))
	p, _ := cs.CoreV1().Pods("default").Get(ctx, "huge", metav1.GetOptions{})
	if p.Spec.NodeName != "big" {
		t.Fatalf("huge went to %q, want big", p.Spec.NodeName)
	}
	t.Logf("huge: FailedScheduling within %v of creation; bound %v after the big node joined", joined.Sub(start).Round(time.Millisecond), time.Since(joined).Round(time.Millisecond))

	waitFor(t, "Scheduled event for huge", eventFor(cs, "huge", "Scheduled", "Successfully assigned default/huge to big"))
}

// Against the real API server: six replicas with a hostname spread
// constraint on three nodes land 2/2/2 (issue 7's first scenario, without
// the agents).
func TestSpreadWithAPIServer(t *testing.T) {
	cfg := realAPI(t)
	c, err := kube.NewClients(cfg, 0, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	cs := c.Client
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		n := mkNode(fmt.Sprintf("node-%d", i), "4", "8Gi")
		got, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Status.Conditions) == 0 {
			got.Status = n.Status
			if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	startScheduler(t, c)
	for i := 0; i < 6; i++ {
		p := mkPod(fmt.Sprintf("web-%d", i), "100m", "64Mi", podLabel("app", "web"), ownedBy("rs-web"), spread(LabelHostname, 1, corev1.DoNotSchedule, "web"))
		p.UID = ""
		p.OwnerReferences = nil // no such ReplicaSet in this API server
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "2/2/2", func() (bool, string) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err.Error()
		}
		per := map[string]int{}
		for _, p := range pods.Items {
			per[p.Spec.NodeName]++
		}
		return per["node-1"] == 2 && per["node-2"] == 2 && per["node-3"] == 2, fmt.Sprint(per)
	})
}

// BenchmarkLoopWithAPIServer measures the whole loop against the real API
// server: 1,000 pods (created beforehand, scheduler stopped) on 100 nodes,
// from the scheduler's start to the last binding seen by a watch.
func BenchmarkLoopWithAPIServer(b *testing.B) {
	const nodes, pods = 100, 1000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cfg := realAPIB(b)
		c, err := kube.NewClients(cfg, 0, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		cs := c.Client
		ctx, cancel := context.WithCancel(context.Background())
		for n := 0; n < nodes; n++ {
			node := mkNode(fmt.Sprintf("node-%03d", n), "8", "32Gi", zone(fmt.Sprintf("zone-%d", n%3)))
			got, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if len(got.Status.Conditions) == 0 {
				got.Status = node.Status
				if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		}
		for p := 0; p < pods; p++ {
			app := fmt.Sprintf("app-%d", p%10)
			pod := mkPod(fmt.Sprintf("p-%04d", p), "100m", "128Mi", podLabel("app", app), spread(LabelHostname, 1, corev1.ScheduleAnyway, app), spread(LabelZone, 1, corev1.DoNotSchedule, app))
			pod.UID = ""
			if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		comp := Component(Config{})
		done := make(chan struct{})
		go func() { defer close(done); _ = comp.Run(ctx, c) }()
		bound := map[string]bool{}
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Spec.NodeName != "" {
				bound[p.Name] = true
			}
			if len(bound) == pods {
				break
			}
		}
		took := time.Since(start)
		b.StopTimer()
		w.Stop()
		cancel()
		<-done
		c.Shutdown()
		b.ReportMetric(float64(pods)/took.Seconds(), "pods/s")
	}
}
