//go:build !linux

package monitor

import "syscall"

// Main reports that the monitor runs only on Linux (it needs a child
// subreaper, ptys and OCI runtimes) and returns 1.
func Main(args []string) int {
	syscall.Write(2, []byte("berth-shim: containers run only on Linux\n"))
	return 1
}

// Args is nil off Linux.
func Args() []string { return nil }
