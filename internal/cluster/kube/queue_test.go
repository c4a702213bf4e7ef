package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// RunQueue retries a failing key, looks again after a requested delay, and
// returns once ctx ends.
func TestRunQueue(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, 10*time.Millisecond))
	var mu sync.Mutex
	calls := map[string]int{}
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	sync := func(ctx context.Context, key string) (time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[key]++
		switch {
		case key == "ns/fails" && calls[key] < 3:
			return 0, errors.New("transient")
		case key == "ns/later" && calls[key] == 1:
			return 20 * time.Millisecond, nil
		}
		if calls["ns/fails"] == 3 && calls["ns/later"] == 2 {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return 0, nil
	}
	q.Add("ns/fails")
	q.Add("ns/later")
	ended := make(chan error, 1)
	go func() {
		ended <- RunQueue(ctx, q, nil, 2, slog.New(slog.NewTextHandler(io.Discard, nil)), "thing", sync)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		mu.Lock()
		t.Fatalf("calls %v: want ns/fails 3 times (2 failures) and ns/later twice (a requested second look)", calls)
	}
	cancel()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("RunQueue: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunQueue did not return after ctx ended")
	}
	if !q.ShuttingDown() {
		t.Error("queue not shut down")
	}
}
