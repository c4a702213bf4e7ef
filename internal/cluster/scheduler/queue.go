package scheduler

import (
	"container/heap"
	"sync"
	"time"
)

// queue holds the pods waiting to be placed, most important first (higher
// spec.priority, then first come), like kube-scheduler's active queue.
// A key is in it at most once; a key added while it is being placed is
// placed again after Done. Failed pods come back after a per-pod backoff
// that doubles from initial to max until Forget, counted from the pod's
// last attempt: a pod that failed long ago comes back at once.
type queue struct {
	initial, max time.Duration

	mu         sync.Mutex
	cond       *sync.Cond
	items      itemHeap
	queued     map[string]*qItem
	processing map[string]bool
	again      map[string]int32 // added while processing: priority
	attempts   map[string]int
	tried      map[string]time.Time // start of each key's last attempt
	seq        uint64
	shut       bool
}

type qItem struct {
	key   string
	prio  int32
	seq   uint64
	index int
}

func newQueue(initial, max time.Duration) *queue {
	q := &queue{
		initial: initial, max: max,
		queued:     map[string]*qItem{},
		processing: map[string]bool{},
		again:      map[string]int32{},
		attempts:   map[string]int{},
		tried:      map[string]time.Time{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now with priority prio (a key already queued keeps its
// place but takes the higher priority).
func (q *queue) Add(key string, prio int32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shut {
		return
	}
	if q.processing[key] {
		if p, ok := q.again[key]; !ok || prio > p {
			q.again[key] = prio
		}
		return
	}
	if it := q.queued[key]; it != nil {
		if prio > it.prio {
			it.prio = prio
			heap.Fix(&q.items, it.index)
		}
		return
	}
	q.seq++
	it := &qItem{key: key, prio: prio, seq: q.seq}
	q.queued[key] = it
	heap.Push(&q.items, it)
	q.cond.Signal()
}

// AddBackoff queues key once its backoff, which doubles each time, has
// passed since its last attempt.
func (q *queue) AddBackoff(key string, prio int32) {
	q.mu.Lock()
	n := q.attempts[key]
	q.attempts[key] = n + 1
	tried := q.tried[key]
	q.mu.Unlock()
	d := q.initial
	for i := 0; i < n && d < q.max; i++ {
		d *= 2
	}
	d = min(d, q.max) - time.Since(tried)
	if d <= 0 {
		q.Add(key, prio)
		return
	}
	time.AfterFunc(d, func() { q.Add(key, prio) })
}

// Forget resets key's backoff.
func (q *queue) Forget(key string) {
	q.mu.Lock()
	delete(q.attempts, key)
	delete(q.tried, key)
	q.mu.Unlock()
}

// Get waits for the most important key; ok is false once shut down.
func (q *queue) Get() (key string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.shut {
		q.cond.Wait()
	}
	if q.shut {
		return "", false
	}
	it := heap.Pop(&q.items).(*qItem)
	delete(q.queued, it.key)
	q.processing[it.key] = true
	q.tried[it.key] = time.Now()
	return it.key, true
}

// Done ends the placement of key.
func (q *queue) Done(key string) {
	q.mu.Lock()
	delete(q.processing, key)
	prio, again := q.again[key]
	delete(q.again, key)
	q.mu.Unlock()
	if again {
		q.Add(key, prio)
	}
}

// Len is the number of keys waiting.
func (q *queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// ShutDown wakes every Get with ok false.
func (q *queue) ShutDown() {
	q.mu.Lock()
	q.shut = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

type itemHeap []*qItem

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].prio != h[j].prio {
		return h[i].prio > h[j].prio
	}
	return h[i].seq < h[j].seq
}
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*qItem)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
