// Command berth-shim is the per-container monitor: it holds a container's
// stdio, writes its log, reaps it and records its exit. See package
// internal/engine/shim/monitor. It links only the standard library, x/sys and
// berth's logs, cgroups and shim/wire packages, so it starts fast and stays
// small.
//
// Invoked as "pause" (argv[0]'s base name) it is instead the process of a
// pod sandbox (package internal/engine/shim/pause): the engine's built-in
// image berth.local/pause:latest holds this binary as /pause.
package main

import (
	"os"
	"path/filepath"

	"github.com/berth/berth/internal/engine/shim/monitor"
	"github.com/berth/berth/internal/engine/shim/pause"
)

func main() {
	if len(os.Args) > 0 && filepath.Base(os.Args[0]) == "pause" {
		os.Exit(pause.Run())
	}
	os.Exit(monitor.Main(os.Args[1:]))
}
