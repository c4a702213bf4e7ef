package orch

import (
	"context"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// readyWatcher follows, through watches, the ready pods of a selector and
// a Deployment's status.readyReplicas, and keeps the minimum of each seen
// after it started.
type readyWatcher struct {
	mu        sync.Mutex
	ready     map[string]bool
	live      map[string]bool // not terminating
	maxLive   int
	minPods   int
	minStatus int
	events    int
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func startReadyWatcher(t *testing.T, ns, selector, deployment string) *readyWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &readyWatcher{ready: map[string]bool{}, live: map[string]bool{}, minPods: 1 << 30, minStatus: 1 << 30, cancel: cancel}
	pl, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	for i := range pl.Items {
		w.ready[pl.Items[i].Name] = podReady(&pl.Items[i])
		w.live[pl.Items[i].Name] = pl.Items[i].DeletionTimestamp == nil
	}
	w.notePods()
	dl, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + deployment})
	if err != nil || len(dl.Items) != 1 {
		t.Fatalf("deployment %s: %v", deployment, err)
	}
	w.noteStatus(int(dl.Items[0].Status.ReadyReplicas))
	w.wg.Add(2)
	go w.follow(ctx, pl.ResourceVersion, func(rv string) (watch.Interface, error) {
		return client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: rv, AllowWatchBookmarks: true})
	}, func(ev watch.Event) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return
		}
		w.mu.Lock()
		if ev.Type == watch.Deleted {
			delete(w.ready, p.Name)
			delete(w.live, p.Name)
		} else {
			w.ready[p.Name] = podReady(p)
			w.live[p.Name] = p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
		}
		w.mu.Unlock()
		w.notePods()
	})
	go w.follow(ctx, dl.ResourceVersion, func(rv string) (watch.Interface, error) {
		return client.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + deployment, ResourceVersion: rv, AllowWatchBookmarks: true})
	}, func(ev watch.Event) {
		if d, ok := ev.Object.(*appsv1.Deployment); ok && ev.Type != watch.Deleted {
			w.noteStatus(int(d.Status.ReadyReplicas))
		}
	})
	return w
}

// follow runs a watch from rv and re-opens it where it stopped until ctx
// ends.
func (w *readyWatcher) follow(ctx context.Context, rv string, open func(string) (watch.Interface, error), on func(watch.Event)) {
	defer w.wg.Done()
	for ctx.Err() == nil {
		wi, err := open(rv)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for ev := range wi.ResultChan() {
			if m, err := metaAccessor(ev.Object); err == nil && m != "" {
				rv = m
			}
			if ev.Type == watch.Bookmark || ev.Type == watch.Error {
				continue
			}
			w.mu.Lock()
			w.events++
			w.mu.Unlock()
			on(ev)
		}
		wi.Stop()
	}
}

func metaAccessor(o any) (string, error) {
	if m, ok := o.(metav1.Object); ok {
		return m.GetResourceVersion(), nil
	}
	return "", nil
}

func (w *readyWatcher) notePods() {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, r := range w.ready {
		if r {
			n++
		}
	}
	if n < w.minPods {
		w.minPods = n
	}
	live := 0
	for _, l := range w.live {
		if l {
			live++
		}
	}
	if live > w.maxLive {
		w.maxLive = live
	}
}

func (w *readyWatcher) noteStatus(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n < w.minStatus {
		w.minStatus = n
	}
}

func (w *readyWatcher) stop() {
	w.cancel()
	w.wg.Wait()
}

// result: the minimum ready pods, the minimum status.readyReplicas, the
// number of events seen.
func (w *readyWatcher) result() (int, int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.minPods, w.minStatus, w.events
}

// maxPods is the most pods that were not terminating at one time.
func (w *readyWatcher) maxPods() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxLive
}
