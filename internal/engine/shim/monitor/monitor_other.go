//go:build !linux

package monitor

import "os"

// Main reports that the monitor runs only on Linux (it needs a child
// subreaper, ptys and OCI runtimes) and returns 1.
func Main(args []string) int {
	os.Stderr.WriteString("berth-shim: containers run only on Linux\n")
	return 1
}
