// Command spin burns CPU on one thread for SECONDS of wall-clock time and
// prints the CPU time it got (for CPU quota tests):
// "wall_ms=W cpu_ms=C ratio=R". Usage: spin SECONDS
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

func main() {
	secs := 1.0
	if len(os.Args) > 1 {
		v, err := strconv.ParseFloat(os.Args[1], 64)
		if err != nil || v < 0 {
			fmt.Fprintf(os.Stderr, "spin: %q: expected a number of seconds\n", os.Args[1])
			os.Exit(2)
		}
		secs = v
	}
	runtime.GOMAXPROCS(1)
	start := time.Now()
	deadline := start.Add(time.Duration(secs * float64(time.Second)))
	x := uint64(1)
	for time.Now().Before(deadline) {
		for i := 0; i < 100000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	wall := time.Since(start)
	fmt.Printf("wall_ms=%d cpu_ms=%d ratio=%.2f (%d)\n", wall.Milliseconds(), cpu.Milliseconds(), float64(cpu)/float64(wall), x%2)
}
