package endpoints

import (
	"strconv"
	"sync"
	"time"
)

// writeTTL bounds how long a sync waits for the cache to show a write: a
// write someone else undid at once (a slice deleted right after its
// create) is never seen, and must not block the Service for good.
const writeTTL = 10 * time.Second

// written is one write of the controller: an object of kind ("endpoints"
// or "slice") named name, written at resourceVersion rv, or deleted.
type written struct {
	kind, name, rv string
	deleted        bool
	at             time.Time
}

// writes remembers, per Service, the writes the informer caches have not
// shown yet. The caches lag the API; a sync that read a cache without its
// own last create would create a second slice, and one that read an old
// copy could take stale content for current and skip a needed update.
// Kubernetes' EndpointSlice controller keeps a tracker for the same reason.
type writes struct {
	mu  sync.Mutex
	m   map[string][]written // by Service key
	now func() time.Time
}

func newWrites() *writes { return &writes{m: map[string][]written{}, now: time.Now} }

func (w *writes) record(svcKey, kind, name, rv string, deleted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.m[svcKey] = append(w.m[svcKey], written{kind: kind, name: name, rv: rv, deleted: deleted, at: w.now()})
}

func (w *writes) forget(svcKey string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, svcKey)
}

// observe drops the writes of an object an informer event shows: one at
// least as new as what was written, or its deletion. (The cache alone
// cannot tell a create not seen yet from a create seen and then deleted
// by someone else; the event can.)
func (w *writes) observe(svcKey, kind, name, rv string, deleted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	es, ok := w.m[svcKey]
	if !ok {
		return
	}
	var left []written
	for _, e := range es {
		if e.kind == kind && e.name == name && (deleted || (!e.deleted && rvAtLeast(rv, e.rv))) {
			continue
		}
		left = append(left, e)
	}
	if len(left) == 0 {
		delete(w.m, svcKey)
		return
	}
	w.m[svcKey] = left
}

// pending reports whether the caches still miss a write for svcKey.
// cached returns the cached object's resourceVersion and whether the
// cache holds it. Writes the caches show (or that expired) are dropped.
func (w *writes) pending(svcKey string, cached func(kind, name string) (string, bool)) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	var left []written
	for _, e := range w.m[svcKey] {
		if w.now().Sub(e.at) > writeTTL {
			continue
		}
		rv, ok := cached(e.kind, e.name)
		seen := !ok
		if !e.deleted {
			seen = ok && rvAtLeast(rv, e.rv)
		}
		if !seen {
			left = append(left, e)
		}
	}
	if len(left) == 0 {
		delete(w.m, svcKey)
		return false
	}
	w.m[svcKey] = left
	return true
}

// rvAtLeast compares resourceVersions, which berth's API server takes from
// etcd revisions (integers). A version that is not an integer cannot be
// ordered: it counts as seen rather than block syncs.
func rvAtLeast(have, want string) bool {
	h, err1 := strconv.ParseUint(have, 10, 64)
	w, err2 := strconv.ParseUint(want, 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return h >= w
}
