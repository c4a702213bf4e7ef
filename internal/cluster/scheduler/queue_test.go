package scheduler

import (
	"testing"
	"time"
)

func TestQueueOrder(t *testing.T) {
	q := newQueue(time.Millisecond, 4*time.Millisecond)
	q.Add("a", 0)
	q.Add("b", 10)
	q.Add("c", 0)
	q.Add("d", 10)
	q.Add("a", 0)  // already queued: keeps its place
	q.Add("c", 20) // raised
	var got []string
	for q.Len() > 0 {
		k, _ := q.Get()
		got = append(got, k)
		q.Done(k)
	}
	want := []string{"c", "b", "d", "a"}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestQueueAddWhileProcessing(t *testing.T) {
	q := newQueue(time.Millisecond, time.Millisecond)
	q.Add("a", 0)
	k, _ := q.Get()
	q.Add("a", 0)
	if q.Len() != 0 {
		t.Fatalf("key being processed was queued twice")
	}
	q.Done(k)
	if k, ok := q.Get(); !ok || k != "a" {
		t.Fatalf("got %q %v, want a again after Done", k, ok)
	}
}

func TestQueueBackoffDoubles(t *testing.T) {
	q := newQueue(20*time.Millisecond, 80*time.Millisecond)
	q.Add("a", 0)
	k, _ := q.Get()
	q.Done(k)
	var waits []time.Duration
	for i := 0; i < 4; i++ {
		start := time.Now()
		q.AddBackoff("a", 0)
		k, _ := q.Get()
		waits = append(waits, time.Since(start))
		q.Done(k)
	}
	for i, min := range []time.Duration{20, 40, 80, 80} {
		if waits[i] < min*time.Millisecond {
			t.Errorf("attempt %d waited %v, want ≥ %v", i, waits[i], min*time.Millisecond)
		}
	}
	q.Forget("a")
	start := time.Now()
	q.AddBackoff("a", 0)
	q.Get()
	if w := time.Since(start); w >= 80*time.Millisecond {
		t.Errorf("after Forget waited %v, want the initial backoff", w)
	}
	q.ShutDown()
	if _, ok := q.Get(); ok {
		t.Error("Get after ShutDown returned ok")
	}
}

// A pod whose last attempt is older than its backoff comes back at once.
func TestQueueBackoffCountsFromLastAttempt(t *testing.T) {
	q := newQueue(50*time.Millisecond, time.Second)
	q.Add("a", 0)
	k, _ := q.Get()
	q.Done(k)
	time.Sleep(60 * time.Millisecond)
	start := time.Now()
	q.AddBackoff("a", 0)
	if q.Len() != 1 {
		t.Fatalf("queued %d, want a at once", q.Len())
	}
	q.Get()
	if w := time.Since(start); w > 40*time.Millisecond {
		t.Errorf("waited %v", w)
	}
}
