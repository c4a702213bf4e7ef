package prober

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// step is one canned attempt: exit code, or an exec error.
type step struct {
	code int
	err  error
}

var (
	ok   = step{code: 0}
	bad  = step{code: 1}
	oops = step{err: errors.New("exec failed")}
)

// script plays steps in order, then repeats the last, and records when
// each attempt happened.
type script struct {
	mu    sync.Mutex
	steps []step
	times []time.Time
}

func (s *script) exec(ctx context.Context, cmd []string) (int, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(len(s.times), len(s.steps)-1)
	s.times = append(s.times, time.Now())
	return s.steps[i].code, nil, s.steps[i].err
}

func (s *script) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.times)
}

type report struct {
	res     Result
	attempt int
}

// runWorker runs a worker with 10 ms "seconds" until it returns or the
// deadline passes, and returns the reports with the attempt count at
// each.
func runWorker(t *testing.T, kind Kind, p *corev1.Probe, s *script, d time.Duration, setup func(*Worker)) ([]report, bool) {
	t.Helper()
	var reports []report
	p.ProbeHandler = corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check"}}}
	w := NewWorker(kind, p, &corev1.Container{Name: "app"}, "", s.exec, func(r Result, _ string) {
		reports = append(reports, report{r, s.attempts()})
	})
	w.second = 10 * time.Millisecond
	if setup != nil {
		setup(w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	<-done
	return reports, ctx.Err() == nil
}

func TestWorker(t *testing.T) {
	tests := []struct {
		name       string
		kind       Kind
		probe      corev1.Probe
		steps      []step
		want       []report
		wantReturn bool // Run returns by itself before the deadline
	}{
		{
			name: "readiness: success threshold 2, then failure threshold 3",
			kind: Readiness, probe: corev1.Probe{PeriodSeconds: 1, SuccessThreshold: 2, FailureThreshold: 3},
			steps: []step{bad, ok, ok, ok, bad, bad, ok, bad, bad, bad},
			want:  []report{{Success, 3}, {Failure, 10}},
		},
		{
			name: "readiness: initial failures are not reported",
			kind: Readiness, probe: corev1.Probe{PeriodSeconds: 1},
			steps: []step{bad, bad, bad, bad, ok},
			want:  []report{{Success, 5}},
		},
		{
			name: "liveness: successes not reported, failures reported once and Run stops",
			kind: Liveness, probe: corev1.Probe{PeriodSeconds: 1, FailureThreshold: 2},
			steps: []step{ok, bad, ok, bad, bad},
			want:  []report{{Failure, 5}}, wantReturn: true,
		},
		{
			name: "liveness: exec errors count for nothing and reset nothing",
			kind: Liveness, probe: corev1.Probe{PeriodSeconds: 1, FailureThreshold: 3},
			steps: []step{bad, oops, bad, oops, bad},
			want:  []report{{Failure, 5}}, wantReturn: true,
		},
		{
			name: "startup: success ends the worker",
			kind: Startup, probe: corev1.Probe{PeriodSeconds: 1, FailureThreshold: 5},
			steps: []step{bad, bad, ok},
			want:  []report{{Success, 3}}, wantReturn: true,
		},
		{
			name: "startup: failure threshold reached",
			kind: Startup, probe: corev1.Probe{PeriodSeconds: 1, FailureThreshold: 2},
			steps: []step{bad},
			want:  []report{{Failure, 2}}, wantReturn: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{steps: tt.steps}
			got, returned := runWorker(t, tt.kind, &tt.probe, s, time.Duration(len(tt.steps)+3)*10*time.Millisecond+500*time.Millisecond, nil)
			if len(got) != len(tt.want) {
				t.Fatalf("reports %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("report %d: got %v, want %v", i, got[i], tt.want[i])
				}
			}
			if returned != tt.wantReturn {
				t.Errorf("Run returned by itself: %v, want %v", returned, tt.wantReturn)
			}
		})
	}
}

func TestWorkerTiming(t *testing.T) {
	s := &script{steps: []step{ok}}
	start := time.Now()
	var attempts []string
	_, _ = runWorker(t, Readiness, &corev1.Probe{InitialDelaySeconds: 20, PeriodSeconds: 5}, s, 500*time.Millisecond, func(w *Worker) {
		w.StartedAt = start
		w.OnAttempt = func(r Result, msg string) { attempts = append(attempts, msg) }
	})
	if len(s.times) < 3 {
		t.Fatalf("%d attempts, want at least 3", len(s.times))
	}
	if d := s.times[0].Sub(start); d < 200*time.Millisecond {
		t.Errorf("first attempt after %s, want ≥ initialDelaySeconds (200ms here)", d)
	}
	// The average, not each gap: a loaded machine delays single ticks.
	n := len(s.times) - 1
	if avg := s.times[n].Sub(s.times[0]) / time.Duration(n); avg < 40*time.Millisecond || avg > 100*time.Millisecond {
		t.Errorf("attempts came every %s on average, want about periodSeconds (50ms here)", avg)
	}
	if len(attempts) != 0 {
		t.Errorf("OnAttempt called for successes: %q", attempts)
	}
}

func TestWorkerGateAndOnAttempt(t *testing.T) {
	s := &script{steps: []step{bad}}
	gate := make(chan struct{})
	var failed int
	var mu sync.Mutex
	go func() {
		time.Sleep(100 * time.Millisecond)
		if n := s.attempts(); n != 0 {
			t.Errorf("%d attempts before the gate opened", n)
		}
		close(gate)
	}()
	got, _ := runWorker(t, Liveness, &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 3}, s, 400*time.Millisecond, func(w *Worker) {
		w.Gate = gate
		w.OnAttempt = func(r Result, msg string) { mu.Lock(); failed++; mu.Unlock() }
	})
	if len(got) != 1 || got[0] != (report{Failure, 3}) {
		t.Errorf("reports %v, want one Failure at attempt 3", got)
	}
	if failed != 3 {
		t.Errorf("OnAttempt called %d times, want 3", failed)
	}
}

func TestInitialResult(t *testing.T) {
	for kind, want := range map[Kind]Result{Readiness: Failure, Liveness: Success, Startup: Unknown} {
		if got := InitialResult(kind); got != want {
			t.Errorf("InitialResult(%v) = %v, want %v", kind, got, want)
		}
	}
}
