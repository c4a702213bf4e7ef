// Package names is where the shim's files live in a bundle. It imports
// nothing, so berth-shim (which links only package syscall) and package wire
// (the daemon's side) share one definition.
package names

// Sock is the shim socket file in the bundle.
func Sock(execID string) string {
	if execID == "" {
		return "shim.sock"
	}
	return "exec-" + execID + ".sock"
}

// Exit is the exit record file in the bundle.
func Exit(execID string) string {
	if execID == "" {
		return "exit.json"
	}
	return "exec-" + execID + ".exit.json"
}

// Pid is the pid file in the bundle.
func Pid(execID string) string {
	if execID == "" {
		return "init.pid"
	}
	return "exec-" + execID + ".pid"
}
