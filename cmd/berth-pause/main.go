// Command berth-pause is the process of a pod's sandbox container (package
// internal/engine/shim/pause): the engine's built-in image
// berth.local/pause:latest holds it as /pause.
package main

import (
	"os"

	"github.com/berth/berth/internal/engine/shim/pause"
)

func main() { os.Exit(pause.Run()) }
