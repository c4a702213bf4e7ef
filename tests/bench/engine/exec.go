package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// cmdTimeout bounds every single command the benchmark runs, so that a hung
// engine fails its figure instead of hanging the run.
const cmdTimeout = 2 * time.Minute

// cmdContext is the context of one command: the timeout only. An interrupt
// (ctx cancelled) stops the benchmark between commands, never by killing one
// midway, which would leave a half-made container behind.
func cmdContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cmdTimeout)
}

// command builds an *exec.Cmd with env added to the benchmark's environment.
// Stdin is /dev/null.
func command(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = append(os.Environ(), env...)
	c.WaitDelay = 5 * time.Second
	return c
}

// output runs argv and returns its stdout; a failure carries the command and
// the tail of its stderr.
func output(ctx context.Context, env []string, argv ...string) (string, error) {
	ctx, cancel := cmdContext(ctx)
	defer cancel()
	var stdout, stderr bytes.Buffer
	c := command(ctx, env, argv...)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), cmdError(argv, err, stderr.String())
	}
	return stdout.String(), nil
}

// timed runs argv with stdout to w (nil is /dev/null) and returns the wall
// time from fork to exit.
func timed(ctx context.Context, env []string, w io.Writer, argv ...string) (time.Duration, error) {
	ctx, cancel := cmdContext(ctx)
	defer cancel()
	var stderr bytes.Buffer
	c := command(ctx, env, argv...)
	c.Stdout, c.Stderr = w, &stderr
	start := time.Now()
	err := c.Run()
	d := time.Since(start)
	if err != nil {
		return d, cmdError(argv, err, stderr.String())
	}
	return d, nil
}

// timedDetached is timed for a command that leaves a process behind holding
// its stdio (a bare runtime's `run -d`): stdout is /dev/null and stderr a
// file at errPath, so that nothing waits for the container to close a pipe.
func timedDetached(ctx context.Context, errPath string, argv ...string) (time.Duration, error) {
	ctx, cancel := cmdContext(ctx)
	defer cancel()
	errf, err := os.Create(errPath)
	if err != nil {
		return 0, err
	}
	defer errf.Close()
	c := command(ctx, nil, argv...)
	c.Stderr = errf
	start := time.Now()
	err = c.Run()
	d := time.Since(start)
	if err != nil {
		b, _ := os.ReadFile(errPath)
		return d, cmdError(argv, err, string(b))
	}
	return d, nil
}

func cmdError(argv []string, err error, stderr string) error {
	msg := strings.TrimSpace(stderr)
	if i := strings.LastIndexByte(msg, '\n'); len(msg) > 600 && i >= 0 {
		msg = msg[i+1:]
	}
	if len(msg) > 600 {
		msg = msg[len(msg)-600:]
	}
	if msg != "" {
		return fmt.Errorf("`%s`: %w: %s", strings.Join(argv, " "), err, msg)
	}
	return fmt.Errorf("`%s`: %w", strings.Join(argv, " "), err)
}

// daemonProc is a long-running process the benchmark started (dockerd, the
// berth daemon) and must stop.
type daemonProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startDaemon starts argv in its own process group with output to logPath.
func startDaemon(name string, env []string, logPath string, argv ...string) (*daemonProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = append(os.Environ(), env...)
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemonProc{name: name, cmd: c, done: make(chan struct{})}
	go func() {
		d.err = c.Wait()
		logf.Close()
		close(d.done)
	}()
	return d, nil
}

func (d *daemonProc) pid() int { return d.cmd.Process.Pid }

func (d *daemonProc) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs.
func (d *daemonProc) stop(grace time.Duration) error {
	if d.exited() {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(grace):
	}
	d.cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("%s (pid %d) did not stop within %s of SIGTERM; killed", d.name, d.pid(), grace)
}

// waitFor polls check every 50 ms until it succeeds or timeout passes; the
// last error is returned. It gives up early when the daemon has exited.
func waitFor(timeout time.Duration, d *daemonProc, check func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return nil
		}
		if d != nil && d.exited() {
			return fmt.Errorf("%s exited (%v) before it was ready: %w", d.name, d.err, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err == nil {
		err = errors.New("timed out")
	}
	return fmt.Errorf("not ready after %s: %w", timeout, err)
}
