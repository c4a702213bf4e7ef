// Command berth-shim is the per-container monitor: it holds a container's
// stdio, writes its log, reaps it and records its exit. See package
// internal/engine/shim/monitor, which explains why it links only package
// syscall and berth's crilog (no os: the arguments come from
// /proc/self/cmdline).
//
// Invoked as "pause" (argv[0]'s base name) it is instead the process of a
// pod sandbox (package internal/engine/shim/pause): the engine's built-in
// image berth.local/pause:latest holds this binary as /pause.
package main

import (
	"syscall"

	"github.com/berth/berth/internal/engine/shim/monitor"
	"github.com/berth/berth/internal/engine/shim/pause"
)

func main() {
	args := monitor.Args()
	if len(args) == 0 {
		syscall.Exit(monitor.Main(nil))
	}
	if name := args[0]; name == "pause" || len(name) > 5 && name[len(name)-6:] == "/pause" {
		syscall.Exit(pause.Run())
	}
	syscall.Exit(monitor.Main(args[1:]))
}
