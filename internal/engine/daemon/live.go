package daemon

import (
	"runtime"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/container"
)

// live is the in-memory, never persisted side of a container: who waits
// for it, who attached before it started, and its pending restart.
type live struct {
	mu       sync.Mutex
	exited   chan struct{} // closed at the next exit
	removed  chan struct{} // closed at removal
	changed  chan struct{} // closed at any state change
	pending  []func(*task)
	timer    *time.Timer
	removing bool
	// fsUsers counts copies and exports holding the snapshot mounted;
	// guarded by the container's Mu.
	fsUsers int
	// netDone is closed when the network teardown of the last exit is
	// finished (nil when none was started).
	netDone chan struct{}
	// restart backoff
	backoff   time.Duration
	lastStart time.Time
	// preDone is closed when the shim spawned at create for the first start
	// is up (pre) or failed; nil when there is none.
	preDone chan struct{}
	pre     *task
}

func (d *Daemon) live(id string) *live {
	d.tasksMu.Lock()
	defer d.tasksMu.Unlock()
	if d.lives == nil {
		d.lives = map[string]*live{}
	}
	l, ok := d.lives[id]
	if !ok {
		l = &live{exited: make(chan struct{}), removed: make(chan struct{}), changed: make(chan struct{})}
		d.lives[id] = l
	}
	return l
}

func (d *Daemon) forget(id string) {
	d.tasksMu.Lock()
	delete(d.lives, id)
	d.tasksMu.Unlock()
}

func (l *live) exitChan() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.exited
}

func (l *live) removedChan() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.removed
}

func (l *live) notify() {
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// notifyExit wakes the waiters of this exit.
func (l *live) notifyExit() {
	l.mu.Lock()
	close(l.exited)
	l.exited = make(chan struct{})
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *live) notifyRemoved() {
	l.notifyExit()
	l.mu.Lock()
	select {
	case <-l.removed:
	default:
		close(l.removed)
	}
	l.mu.Unlock()
}

// addPendingAttach registers f to run with the task of the next start,
// before the process runs.
func (l *live) addPendingAttach(f func(*task)) {
	l.mu.Lock()
	l.pending = append(l.pending, f)
	l.mu.Unlock()
}

func (l *live) takePendingAttaches() []func(*task) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.pending
	l.pending = nil
	return p
}

func (l *live) scheduleRestart(delay time.Duration, f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
	}
	l.timer = time.AfterFunc(delay, f)
}

// cancelRestart stops a pending restart and reports whether there was one.
func (l *live) cancelRestart() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer == nil {
		return false
	}
	stopped := l.timer.Stop()
	l.timer = nil
	return stopped
}

func (d *Daemon) setTask(id string, t *task) {
	d.tasksMu.Lock()
	d.tasks[id] = t
	d.tasksMu.Unlock()
}

func (d *Daemon) clearTask(id string) {
	d.tasksMu.Lock()
	delete(d.tasks, id)
	d.tasksMu.Unlock()
}

func (d *Daemon) task(id string) *task {
	d.tasksMu.Lock()
	defer d.tasksMu.Unlock()
	return d.tasks[id]
}

// Restart backoff, as Docker's: 100 ms doubling to one minute, reset when
// the container ran for at least ten seconds.
const (
	backoffMin   = 100 * time.Millisecond
	backoffMax   = time.Minute
	backoffReset = 10 * time.Second
)

// restartDelay decides whether the policy restarts c after this exit, and
// after how long. The caller holds c.Mu.
func (d *Daemon) restartDelay(c *container.Container, l *live) (time.Duration, bool) {
	p := c.HostConfig.RestartPolicy
	switch p.Name {
	case "always":
	case "unless-stopped":
	case "on-failure":
		if c.State.ExitCode == 0 {
			return 0, false
		}
		if p.MaximumRetryCount > 0 && c.RestartCount >= p.MaximumRetryCount {
			return 0, false
		}
	default:
		return 0, false
	}
	if c.ManuallyStopped {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.State.FinishedAt.Sub(c.State.StartedAt) >= backoffReset || l.backoff == 0 {
		l.backoff = backoffMin
	} else {
		l.backoff *= 2
		if l.backoff > backoffMax {
			l.backoff = backoffMax
		}
	}
	return l.backoff, true
}

func numCPU() int { return runtime.NumCPU() }

// takePreShim returns the shim spawned at create for the first start,
// waiting for it to be up, or nil (none, or it failed: the start then
// spawns one itself and reports any error).
func (l *live) takePreShim() *task {
	l.mu.Lock()
	done := l.preDone
	l.mu.Unlock()
	if done == nil {
		return nil
	}
	<-done
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.pre
	l.pre, l.preDone = nil, nil
	return t
}
