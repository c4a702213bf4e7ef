package replicaset

import (
	"sync"
	"time"
)

// expectationTTL bounds how long a ReplicaSet waits for the watch to show
// its own creates and deletes. A create whose event never arrives (the
// watch broke, the pod was deleted at once) must not freeze the set.
const expectationTTL = 5 * time.Minute

// expectations record the pod creations and deletions a ReplicaSet has
// asked for but not yet seen in the informer cache. While any are
// outstanding the controller does not count pods again: the cache lags the
// API, and counting a stale cache is how a controller over- or
// under-creates.
type expectations struct {
	mu  sync.Mutex
	m   map[string]*expectation
	now func() time.Time
}

type expectation struct {
	adds int
	dels map[string]bool // pod keys ns/name
	at   time.Time
}

func newExpectations(now func() time.Time) *expectations {
	return &expectations{m: map[string]*expectation{}, now: now}
}

// satisfied reports whether the controller may act on key's cached pods.
func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	if x.adds <= 0 && len(x.dels) == 0 {
		return true
	}
	return e.now().Sub(x.at) > expectationTTL
}

func (e *expectations) expectCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{adds: n, dels: map[string]bool{}, at: e.now()}
}

func (e *expectations) expectDeletions(key string, pods []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &expectation{dels: map[string]bool{}, at: e.now()}
	for _, p := range pods {
		x.dels[p] = true
	}
	e.m[key] = x
}

func (e *expectations) creationObserved(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok && x.adds > 0 {
		x.adds--
	}
}

func (e *expectations) deletionObserved(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		delete(x.dels, pod)
	}
}

func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
