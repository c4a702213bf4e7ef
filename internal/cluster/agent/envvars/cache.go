package envvars

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// CachingSource remembers what src returned (a not-found error too) for
// ttl, so that an agent refreshing many pods' volumes and environments
// on every sync reads each object at most once per ttl. Like the
// kubelet's TTL cache, a change to an object reaches pods within ttl.
func CachingSource(src Source, ttl time.Duration) Source {
	return &cachingSource{src: src, ttl: ttl, now: time.Now, entries: map[cacheKey]cacheEntry{}}
}

type cacheKey struct{ kind, ns, name string }

type cacheEntry struct {
	obj     any
	err     error
	expires time.Time
}

type cachingSource struct {
	src     Source
	ttl     time.Duration
	now     func() time.Time
	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

var _ Source = (*cachingSource)(nil)

func (c *cachingSource) get(k cacheKey, read func() (any, error)) (any, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.obj, e.err
	}
	obj, err := read()
	if err != nil && !isNotFound(err) {
		return nil, err // a transient failure is not remembered
	}
	c.mu.Lock()
	c.entries[k] = cacheEntry{obj: obj, err: err, expires: now.Add(c.ttl)}
	// Drop expired entries now and then so deleted pods' objects go.
	if len(c.entries)%64 == 0 {
		for key, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, key)
			}
		}
	}
	c.mu.Unlock()
	return obj, err
}

func (c *cachingSource) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	obj, err := c.get(cacheKey{"configmap", ns, name}, func() (any, error) { return c.src.ConfigMap(ctx, ns, name) })
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.ConfigMap), nil
}

func (c *cachingSource) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	obj, err := c.get(cacheKey{"secret", ns, name}, func() (any, error) { return c.src.Secret(ctx, ns, name) })
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.Secret), nil
}
