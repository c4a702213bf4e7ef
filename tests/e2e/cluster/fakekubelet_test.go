package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/berth/berth/internal/cluster/kube"
)

// clientFor returns an admin clientset for s.
func clientFor(t *testing.T, s *server) kubernetes.Interface {
	t.Helper()
	cfg, err := kube.ConfigFromKubeconfig(s.kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// fakeKubelet stands in for the node agent in control-plane tests: it
// marks each pod of a namespace Running and Ready (Ready with a
// lastTransitionTime, as the agent must) a delay after it first sees it,
// bound to a node or not, and finishes graceful deletions of bound pods
// as an agent would (delete with grace 0). Pods labelled never-ready=true
// stay Pending (a rollout that cannot progress).
type fakeKubelet struct {
	cs    kubernetes.Interface
	ns    string
	delay atomic.Int64 // nanoseconds
	seen  map[types.UID]time.Time
	stop  chan struct{}
	done  chan struct{}
	t     *testing.T
}

func startFakeKubelet(t *testing.T, cs kubernetes.Interface, ns string, delay time.Duration) *fakeKubelet {
	k := &fakeKubelet{cs: cs, ns: ns, seen: map[types.UID]time.Time{}, stop: make(chan struct{}), done: make(chan struct{}), t: t}
	k.delay.Store(int64(delay))
	go k.loop()
	t.Cleanup(k.close)
	return k
}

func (k *fakeKubelet) setDelay(d time.Duration) { k.delay.Store(int64(d)) }

func (k *fakeKubelet) close() {
	select {
	case <-k.stop:
	default:
		close(k.stop)
	}
	<-k.done
}

func (k *fakeKubelet) loop() {
	defer close(k.done)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pods, err := k.cs.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			cancel()
			continue
		}
		now := time.Now()
		for i := range pods.Items {
			p := &pods.Items[i]
			switch {
			case p.DeletionTimestamp != nil:
				if p.Spec.NodeName != "" {
					_ = k.cs.CoreV1().Pods(k.ns).Delete(ctx, p.Name, *metav1.NewDeleteOptions(0))
				}
			case podReady(p), p.Labels["never-ready"] == "true":
			default:
				first, ok := k.seen[p.UID]
				if !ok {
					k.seen[p.UID] = now
					first = now
				}
				if now.Sub(first) >= time.Duration(k.delay.Load()) {
					if err := markReady(ctx, k.cs, p, now); err != nil {
						k.t.Logf("fake kubelet: %s: %v", p.Name, err)
					}
				}
			}
		}
		cancel()
	}
}

// markReady writes the status an agent reports for a started, ready pod.
func markReady(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod, now time.Time) error {
	ts := metav1.NewTime(now)
	var statuses []corev1.ContainerStatus
	for _, c := range p.Spec.Containers {
		statuses = append(statuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, Ready: true, Started: ptrTo(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ts}}})
	}
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: ts}
	}
	st := corev1.PodStatus{
		Phase:             corev1.PodRunning,
		StartTime:         &ts,
		Conditions:        []corev1.PodCondition{cond(corev1.PodInitialized), cond(corev1.PodReadyToStartContainers), cond(corev1.ContainersReady), cond(corev1.PodReady), cond(corev1.PodScheduled)},
		ContainerStatuses: statuses,
	}
	body, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	return err
}

func ptrTo[T any](v T) *T { return &v }

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyWatcher follows a namespace's pods through one watch and records,
// at every event, how many are ready (Ready and not being deleted) and how
// many exist: the minimum ready count seen once armed, and the maximum pod
// count.
type readyWatcher struct {
	mu       sync.Mutex
	ready    map[types.UID]bool
	armed    bool
	minReady int
	maxPods  int
	events   int
	cancel   context.CancelFunc
	done     chan struct{}
}

func watchReady(t *testing.T, cs kubernetes.Interface, ns, selector string) *readyWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &readyWatcher{ready: map[types.UID]bool{}, minReady: 1 << 30, cancel: cancel, done: make(chan struct{})}
	l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	for i := range l.Items {
		w.apply(watch.Added, &l.Items[i])
	}
	wi, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		defer wi.Stop()
		for ev := range wi.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok {
				w.apply(ev.Type, p)
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *readyWatcher) apply(typ watch.EventType, p *corev1.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if typ == watch.Deleted {
		delete(w.ready, p.UID)
	} else {
		w.ready[p.UID] = podReady(p) && p.DeletionTimestamp == nil
	}
	w.events++
	n := 0
	for _, r := range w.ready {
		if r {
			n++
		}
	}
	if w.armed {
		w.minReady = min(w.minReady, n)
	}
	w.maxPods = max(w.maxPods, len(w.ready))
}

// arm starts recording the minimum (after the initial state is ready).
func (w *readyWatcher) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = true
	n := 0
	for _, r := range w.ready {
		if r {
			n++
		}
	}
	w.minReady = n
	w.maxPods = len(w.ready)
}

func (w *readyWatcher) result() (minReady, maxPods, events int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.minReady, w.maxPods, w.events
}

func (w *readyWatcher) stop() {
	w.cancel()
	<-w.done
}
