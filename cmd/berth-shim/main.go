// Command berth-shim is the per-container monitor: it holds a container's
// stdio, writes its log, reaps it and records its exit. See package
// internal/engine/shim/monitor, which explains why it links only package
// syscall and berth's crilog (no os: the arguments come from
// /proc/self/cmdline).
package main

import (
	"syscall"

	"github.com/berth/berth/internal/engine/shim/monitor"
)

func main() {
	args := monitor.Args()
	if len(args) > 0 {
		args = args[1:]
	}
	syscall.Exit(monitor.Main(args))
}
