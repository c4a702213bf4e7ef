package controlplane

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berth/berth/internal/cluster/kube"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestClientGoInformersAndLeader runs a real server and checks that
// client-go — what the scheduler, controllers and agent are built on —
// lists, watches and elects a leader against it.
func TestClientGoInformersAndLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	ready := make(chan struct{})
	o := Options{Name: "test-server", DataDir: dir, BindAddress: "127.0.0.1", Port: freePort(t), EtcdClientPort: freePort(t), EtcdPeerPort: freePort(t),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: ready}
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, o) }()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("server: %v", err)
	}
	cfg, err := kube.ConfigFromKubeconfig(filepath.Join(dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClients(cfg, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 10)
	inf := c.Informers.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) { seen <- obj.(*corev1.Pod).Name }})
	c.Informers.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("pod informer did not sync")
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p1", Namespace: "default"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-seen:
		if n != "p1" {
			t.Fatalf("informer saw %q, want p1", n)
		}
	case <-ctx.Done():
		t.Fatal("informer never saw the created pod")
	}

	// The server runs its own scheduler and controllers under leader
	// election, as its etcd member name.
	deadline := time.Now().Add(20 * time.Second)
	for {
		lease, err := c.Client.CoordinationV1().Leases("kube-system").Get(ctx, "berth-controller-manager", metav1.GetOptions{})
		if err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity == o.Name {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader lease: %+v, %v; want holder %s", lease, err, o.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
