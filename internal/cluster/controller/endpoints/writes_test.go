package endpoints

import (
	"testing"
	"time"
)

func TestWritesPending(t *testing.T) {
	now := time.Unix(1000, 0)
	w := newWrites()
	w.now = func() time.Time { return now }
	cache := map[string]string{} // kind/name -> rv
	cached := func(kind, name string) (string, bool) { rv, ok := cache[kind+"/"+name]; return rv, ok }

	w.record("ns/web", "slice", "web-1", "20", false)
	if !w.pending("ns/web", cached) {
		t.Error("create not in the cache: got not pending, want pending")
	}
	cache["slice/web-1"] = "19"
	if !w.pending("ns/web", cached) {
		t.Error("cache holds an older version: got not pending, want pending")
	}
	cache["slice/web-1"] = "20"
	if w.pending("ns/web", cached) {
		t.Error("cache holds the written version: got pending, want not")
	}

	w.record("ns/web", "slice", "web-1", "", true)
	if !w.pending("ns/web", cached) {
		t.Error("deleted slice still cached: got not pending, want pending")
	}
	delete(cache, "slice/web-1")
	if w.pending("ns/web", cached) {
		t.Error("deleted slice gone from the cache: got pending, want not")
	}

	// A create seen by an event and then deleted by someone else is not
	// waited for.
	w.record("ns/web", "endpoints", "web", "30", false)
	w.observe("ns/web", "endpoints", "web", "31", true)
	if w.pending("ns/web", cached) {
		t.Error("write observed (then deleted): got pending, want not")
	}
	// An event with an older version does not count; time does.
	w.record("ns/web", "endpoints", "web", "40", false)
	w.observe("ns/web", "endpoints", "web", "39", false)
	if !w.pending("ns/web", cached) {
		t.Error("older event: got not pending, want pending")
	}
	now = now.Add(writeTTL + time.Second)
	if w.pending("ns/web", cached) {
		t.Error("write older than the TTL: got pending, want not")
	}
}
