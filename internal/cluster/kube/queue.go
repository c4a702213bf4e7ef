package kube

import (
	"context"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// SyncFunc reconciles one object, by its "namespace/name" key. A positive
// duration asks for another look after it (a deadline, a back-off); an
// error retries the key with the queue's rate limit.
type SyncFunc func(ctx context.Context, key string) (time.Duration, error)

// RunQueue is the worker loop every controller shares: it waits for the
// informers to sync, then runs workers goroutines that take keys from q
// and sync them, until ctx ends (then it shuts q down and waits for the
// workers). Failed syncs are logged as kind (conflicts and
// already-exists only at debug level: they are the optimistic-concurrency
// retries of a normal day) and retried.
func RunQueue(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], synced []cache.InformerSynced, workers int, log *slog.Logger, kind string, syncFn SyncFunc) error {
	defer q.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	log.Info("started", "workers", workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for processNext(ctx, q, log, kind, syncFn) {
			}
		}()
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
	return nil
}

func processNext(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], log *slog.Logger, kind string, syncFn SyncFunc) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	after, err := syncFn(ctx, key)
	if err != nil {
		switch {
		case ctx.Err() != nil:
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
			log.Debug("sync: retrying", kind, key, "err", err)
		default:
			log.Warn("sync failed; retrying", kind, key, "err", err)
		}
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	if after > 0 {
		q.AddAfter(key, after)
	}
	return true
}
