// Package pause is the process of a pod's sandbox container: it holds the
// pod's namespaces open, reaps the zombies of a shared PID namespace (where
// it is PID 1) and ends on SIGTERM or SIGINT. berth-shim runs it when
// invoked as "pause" (the engine's built-in image berth.local/pause is one
// layer holding the shim binary as /pause), so no registry is needed.
//
// Like the monitor it links only package syscall (see package monitor), so
// it cannot catch signals (that is os/signal): SIGTERM and SIGINT end it
// through the Go runtime's default, which as PID 1 of a PID namespace is
// exit status 2 (the kernel does not let PID 1 be killed by a signal it has
// no handler for), and otherwise death by the signal. Either way it ends at
// once, which is what stopping a sandbox needs. SIGCHLD is ignored by the
// runtime and does not end it.
package pause

import "syscall"

// Run reaps children until a signal ends the process.
func Run() int {
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.ECHILD {
			// No children yet: orphans of the namespace arrive later.
			ts := syscall.Timespec{Sec: 1}
			syscall.Nanosleep(&ts, nil)
		}
	}
}
