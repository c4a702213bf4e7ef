// Package pause is the process of a pod's sandbox container: it holds the
// pod's namespaces open, reaps the zombies of a shared PID namespace (where
// it is PID 1), and exits 0 on SIGTERM or SIGINT. It is the berth-pause
// binary (the engine's built-in image berth.local/pause is one layer holding
// it as /pause), so no registry is needed. It is not part of berth-shim:
// catching signals takes os/signal, which would add about 300 KiB to every
// container's monitor.
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
