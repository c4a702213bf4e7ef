// Package pause is the process of a pod's sandbox container: it holds the
// pod's namespaces open, reaps the zombies of a shared PID namespace (where
// it is PID 1), and exits 0 on SIGTERM or SIGINT. berth-shim runs it when
// invoked as "pause" (the engine's built-in image berth.local/pause is one
// layer holding the shim binary as /pause), so no registry is needed.
package pause

import (
	"os"
	"os/signal"
	"syscall"
)

// Run waits for SIGTERM or SIGINT, reaping children meanwhile, and returns
// the exit code (0).
func Run() int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	reap()
	for s := range sigs {
		if s == syscall.SIGCHLD {
			reap()
			continue
		}
		return 0
	}
	return 0
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
