package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// initEnv carries the node init's instructions (JSON initSpec) to the
// re-executed harness binary.
const initEnv = "BERTH_LAB_NODE_INIT"

type initSpec struct {
	ExecRoot  string // mount point of the node's tmpfs /run
	ReadyFile string // written once the tmpfs is mounted
}

// MaybeRunInit turns this process into a node's init when the harness
// re-executed it as one; it never returns then. Call it first thing in
// main (or TestMain) of every binary that runs a Lab: the harness starts
// each node's PID 1 by re-executing its own binary.
func MaybeRunInit() {
	v := os.Getenv(initEnv)
	if v == "" {
		return
	}
	var s initSpec
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		fmt.Fprintf(os.Stderr, "berth-lab init: bad %s: %v\n", initEnv, err)
		os.Exit(2)
	}
	if err := runInit(s); err != nil {
		fmt.Fprintf(os.Stderr, "berth-lab init: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runInit is PID 1 of a node's PID namespace. It gives the node a fresh
// tmpfs for its runtime state (as /run after a reboot), then only reaps:
// shims and containers orphaned by a dying engine are re-parented here,
// and an unreaped zombie looks alive to kill(pid, 0). When the harness
// SIGKILLs this process the kernel kills everything else in the
// namespace, and the private mount namespace (with every mount the
// engine made) goes with it: a power loss.
func runInit(s initSpec) error {
	if os.Getpid() != 1 {
		return fmt.Errorf("not PID 1 of a new PID namespace (pid %d)", os.Getpid())
	}
	if err := os.MkdirAll(s.ExecRoot, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", s.ExecRoot, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", s.ExecRoot, err)
	}
	if err := os.WriteFile(s.ReadyFile, []byte("ready\n"), 0o644); err != nil {
		return err
	}
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.ECHILD) {
			time.Sleep(200 * time.Millisecond)
		}
	}
}
