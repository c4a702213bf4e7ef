// Command spawn forks N children that sleep, reports how many it could
// start ("spawned X/N"), holds them for SECONDS, then kills them (for the
// pids limit). It exits 0 if all N started, 1 otherwise. Children are
// /bin/sleep (single-threaded busybox), so each costs exactly one pid.
// Usage: spawn N [SECONDS]
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: spawn N [SECONDS]")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n < 0 {
		fmt.Fprintf(os.Stderr, "spawn: %q: expected a number of children\n", os.Args[1])
		os.Exit(2)
	}
	hold := 0
	if len(os.Args) > 2 {
		hold, _ = strconv.Atoi(os.Args[2])
	}
	var pids []int
	var lastErr error
	for i := 0; i < n; i++ {
		pid, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "3600"}, &syscall.ProcAttr{Env: os.Environ()})
		if err != nil {
			lastErr = err
			continue
		}
		pids = append(pids, pid)
	}
	fmt.Printf("spawned %d/%d\n", len(pids), n)
	if lastErr != nil {
		fmt.Printf("last error: %v\n", lastErr)
	}
	time.Sleep(time.Duration(hold) * time.Second)
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(p, &ws, 0, nil)
	}
	if len(pids) != n {
		os.Exit(1)
	}
}
