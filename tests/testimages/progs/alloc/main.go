// Command alloc allocates N MiB, touching every page so it is really
// resident, prints how much it holds, then sleeps (for memory limit and
// OOM tests). Usage: alloc MIB [SECONDS]; SECONDS defaults to 3600.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: alloc MIB [SECONDS]")
		os.Exit(2)
	}
	mib, err := strconv.Atoi(os.Args[1])
	if err != nil || mib < 0 {
		fmt.Fprintf(os.Stderr, "alloc: %q: expected a number of MiB\n", os.Args[1])
		os.Exit(2)
	}
	secs := 3600
	if len(os.Args) > 2 {
		secs, _ = strconv.Atoi(os.Args[2])
	}
	var chunks [][]byte
	for i := 0; i < mib; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		chunks = append(chunks, b)
		if (i+1)%64 == 0 {
			fmt.Printf("allocated %d MiB\n", i+1)
		}
	}
	fmt.Printf("allocated %d MiB, done\n", len(chunks))
	time.Sleep(time.Duration(secs) * time.Second)
	_ = chunks[len(chunks)-1:]
}
