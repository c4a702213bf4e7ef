package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/berth/berth/internal/cluster/apiserver"
	"github.com/berth/berth/internal/cluster/apiserver/apiservertest"
	"github.com/berth/berth/internal/cluster/pki"
)

// TestAgentAgainstAPIServer runs the agent (with the fake engine) against
// the real API server with a node credential: registration, the lease,
// status through the node authorizer, events, and deletion with grace 0.
func TestAgentAgainstAPIServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := apiservertest.Start(t, ctx, map[string]apiserver.User{
		"node": {Name: "system:node:n1", Role: pki.RoleNode, Node: "n1"},
	})
	admin := kubernetes.NewForConfigOrDie(jsonConfig(cfg, apiservertest.AdminToken))

	eng := newFakeEngine()
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(actx, Options{NodeName: "n1", Config: jsonConfig(cfg, "node"),
			DataDir: t.TempDir(), NodeIP: "192.0.2.10", engine: eng, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	defer func() {
		stop()
		<-done
	}()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the node to be Ready", func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	waitFor("the lease", func() bool {
		l, err := admin.CoordinationV1().Leases("kube-node-lease").Get(ctx, "n1", metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime != nil
	})

	pod := testPod("real", nil)
	pod.UID = ""
	if _, err := admin.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod bound elsewhere is not this agent's.
	other := testPod("elsewhere", func(p *corev1.Pod) { p.Spec.NodeName = "n2" })
	other.UID = ""
	if _, err := admin.CoreV1().Pods("default").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the pod to be Running and Ready", func() bool {
		p, err := admin.CoreV1().Pods("default").Get(ctx, "real", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning && cond(p, corev1.PodReady) == corev1.ConditionTrue
	})
	waitFor("a Started event from the node", func() bool {
		evs, err := admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Reason == "Started" && e.InvolvedObject.Name == "real" && e.Source.Host == "n1" {
				return true
			}
		}
		return false
	})
	if len(eng.byName("k8s_main_elsewhere_")) != 0 {
		t.Error("the agent ran a pod bound to another node")
	}

	// Graceful deletion: the agent stops the containers and deletes the
	// pod with grace 0 well before the 30 s grace period ends.
	if err := admin.CoreV1().Pods("default").Delete(ctx, "real", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the pod object to go", func() bool {
		_, err := admin.CoreV1().Pods("default").Get(ctx, "real", metav1.GetOptions{})
		return err != nil
	})
	if n := len(eng.byName("k8s_main_real_")) + len(eng.byName("k8s_POD_real_")); n != 0 {
		t.Errorf("%d containers left after deletion", n)
	}
}

// jsonConfig is base with token, speaking JSON.
func jsonConfig(base *rest.Config, token string) *rest.Config {
	c := rest.CopyConfig(base)
	c.BearerToken = token
	c.ContentType = "application/json"
	return c
}
