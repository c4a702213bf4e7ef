package prober

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// InitialResult is the state a probe has before its first verdict, as
// in the kubelet: a container is not ready until its readiness probe
// succeeds, is alive until its liveness probe fails, and has not started
// (Unknown) until its startup probe succeeds.
func InitialResult(kind Kind) Result {
	switch kind {
	case Readiness:
		return Failure
	case Liveness:
		return Success
	}
	return Unknown
}

// Worker probes one container instance periodically. Create one per
// probe when the container starts and cancel Run's context when it
// stops; a restarted container gets new workers.
type Worker struct {
	kind   Kind
	probe  *corev1.Probe
	c      *corev1.Container
	podIP  string
	exec   ExecFunc
	report func(Result, string)

	// StartedAt is when the container started; initialDelaySeconds
	// counts from it. Zero means when Run is called.
	StartedAt time.Time
	// Gate, if set, holds the worker until it is closed: liveness and
	// readiness probes wait for the startup probe's first Success.
	Gate <-chan struct{}
	// OnAttempt, if set, is called after every attempt that did not
	// succeed, so the agent can record an Unhealthy event for each, as
	// the kubelet does.
	OnAttempt func(Result, string)

	second time.Duration // length of a "second"; tests shorten it
}

// NewWorker returns a worker for c's probe p of the given kind. report
// is called from Run's goroutine each time the thresholded result
// changes (never for the initial value, see InitialResult).
func NewWorker(kind Kind, p *corev1.Probe, c *corev1.Container, podIP string, exec ExecFunc, report func(Result, string)) *Worker {
	return &Worker{kind: kind, probe: p, c: c, podIP: podIP, exec: exec, report: report, second: time.Second}
}

// Run probes until ctx is done. It returns early after reporting Success
// for a startup probe (startup probes stop once they succeed) and after
// reporting Failure for a liveness or startup probe (the container will
// be restarted; the kubelet also stops probing then).
func (w *Worker) Run(ctx context.Context) {
	p := w.probe
	period := seconds(p.PeriodSeconds, 10, w.second)
	timeout := seconds(p.TimeoutSeconds, 1, w.second)
	successes := int(max(p.SuccessThreshold, 1))
	failures := int(p.FailureThreshold)
	if failures <= 0 {
		failures = 3
	}
	if w.kind != Readiness {
		successes = 1 // the API requires it; do not hang on a bad value
	}

	started := w.StartedAt
	if started.IsZero() {
		started = time.Now()
	}
	if w.Gate != nil {
		select {
		case <-ctx.Done():
			return
		case <-w.Gate:
		}
	}
	if delay := time.Until(started.Add(time.Duration(p.InitialDelaySeconds) * w.second)); delay > 0 {
		if !sleep(ctx, delay) {
			return
		}
	}

	state := InitialResult(w.kind)
	last, run := Unknown, 0
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	for {
		res, msg := probe(ctx, p, w.c, w.podIP, w.exec, timeout)
		if ctx.Err() != nil {
			return
		}
		if res != Success && w.OnAttempt != nil {
			w.OnAttempt(res, msg)
		}
		// Unknown means the probe could not run: it neither counts nor
		// resets a run, as with the kubelet's probe errors.
		if res != Unknown {
			if res == last {
				run++
			} else {
				last, run = res, 1
			}
			threshold := failures
			if res == Success {
				threshold = successes
			}
			if run >= threshold && res != state {
				state = res
				w.report(res, msg)
			}
			if w.kind == Startup && state == Success {
				return
			}
			if w.kind != Readiness && state == Failure {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
