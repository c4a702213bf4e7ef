package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// recorder stands in for the kernel: it keeps every applied ruleset.
type recorder struct {
	mu      sync.Mutex
	sets    []Ruleset
	fails   int // the next fails applies fail
	flushed []ConntrackFlush
}

func (r *recorder) apply(_ string, rs Ruleset) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fails > 0 {
		r.fails--
		return errors.New("netlink: boom")
	}
	r.sets = append(r.sets, rs)
	return nil
}

func (r *recorder) flush(fs []ConntrackFlush) (uint, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushed = append(r.flushed, fs...)
	return uint(len(fs)), nil
}

func (r *recorder) last() (Ruleset, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return Ruleset{}, 0
	}
	return r.sets[len(r.sets)-1], len(r.sets)
}

func (r *recorder) waitFor(t *testing.T, want string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs, n := r.last()
		if rs.String() == want {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied rules:\n%swant:\n%s", rs.String(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startProxy(t *testing.T, cs *fake.Clientset, r *recorder) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Client: cs, NodeName: "n1", MinSyncPeriod: 100 * time.Millisecond, apply: r.apply,
			exists: func(string) (bool, error) { return true, nil }, flush: r.flush})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestRunFollowsTheAPI(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(service("default", "web", "10.43.0.10", sport("http", "TCP", 80)))
	r := &recorder{}
	startProxy(t, cs, r)
	r.waitFor(t, "default/web:http 10.43.0.10:80/tcp -> reject\n")

	es := slice("default", "web", "web-a", []discoveryv1.EndpointPort{eport("http", corev1.ProtocolTCP, 8080)}, endpoint{ip: "10.88.1.2"})
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "default/web:http 10.43.0.10:80/tcp -> 10.88.1.2:8080\n")

	// A burst of changes is coalesced into few applies.
	_, before := r.last()
	for i := 0; i < 50; i++ {
		s := service("default", fmt.Sprintf("s%02d", i), fmt.Sprintf("10.43.1.%d", i+1), sport("", "TCP", 80))
		if _, err := cs.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var want strings.Builder
	want.WriteString("default/web:http 10.43.0.10:80/tcp -> 10.88.1.2:8080\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&want, "default/s%02d:80 10.43.1.%d:80/tcp -> reject\n", i, i+1)
	}
	after := r.waitFor(t, want.String())
	if n := after - before; n > 10 {
		t.Errorf("50 quick changes took %d applies, want them coalesced (≤10)", n)
	}

	// Deleting the Service removes its rules; an unchanged ruleset is not
	// applied again.
	if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	n := r.waitFor(t, strings.TrimPrefix(want.String(), "default/web:http 10.43.0.10:80/tcp -> 10.88.1.2:8080\n"))
	if err := cs.DiscoveryV1().EndpointSlices("default").Delete(ctx, "web-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, m := r.last(); m != n {
		t.Errorf("a change that leaves the rules as they were was applied (%d applies, want %d)", m, n)
	}
}

func TestRunRetriesAFailedApply(t *testing.T) {
	cs := fake.NewClientset(service("default", "web", "10.43.0.10", sport("http", "TCP", 80)))
	r := &recorder{fails: 2}
	startProxy(t, cs, r)
	r.waitFor(t, "default/web:http 10.43.0.10:80/tcp -> reject\n")
}
