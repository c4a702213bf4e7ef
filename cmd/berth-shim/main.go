// Command berth-shim is the per-container monitor: it holds a container's
// stdio, writes its log, reaps it and records its exit. See package
// internal/engine/shim/monitor. It links only the standard library, x/sys and
// berth's logs, cgroups and shim/wire packages, so it starts fast and stays
// small.
package main

import (
	"os"

	"github.com/berth/berth/internal/engine/shim/monitor"
)

func main() { os.Exit(monitor.Main(os.Args[1:])) }
