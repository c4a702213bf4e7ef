// Command tcpbench measures TCP throughput for the networking benchmark.
// Usage: tcpbench server PORT | tcpbench client HOST:PORT MIB.
// The server discards what it receives and answers each connection with
// the byte count when the client half-closes; the client sends MIB MiB and
// prints "MiB/s <rate>".
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: tcpbench server PORT | tcpbench client HOST:PORT MIB")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		ln, err := net.Listen("tcp", ":"+os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "tcpbench:", err)
			os.Exit(1)
		}
		fmt.Println("listening on", ln.Addr())
		for {
			c, err := ln.Accept()
			if err != nil {
				continue
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d\n", n)
			}()
		}
	case "client":
		if len(os.Args) < 4 {
			fmt.Fprintln(os.Stderr, "usage: tcpbench client HOST:PORT MIB")
			os.Exit(2)
		}
		mib, err := strconv.Atoi(os.Args[3])
		if err != nil || mib <= 0 {
			fmt.Fprintf(os.Stderr, "tcpbench: %q: expected a number of MiB\n", os.Args[3])
			os.Exit(2)
		}
		var c net.Conn
		for i := 0; i < 50; i++ { // the server may still be starting
			if c, err = net.Dial("tcp", os.Args[2]); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "tcpbench:", err)
			os.Exit(1)
		}
		buf := make([]byte, 128<<10)
		start := time.Now()
		for sent := 0; sent < mib<<20; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				fmt.Fprintln(os.Stderr, "tcpbench:", err)
				os.Exit(1)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		reply, _ := io.ReadAll(c)
		el := time.Since(start)
		got, _ := strconv.Atoi(string(reply[:len(reply)-min(1, len(reply))]))
		if got != mib<<20 {
			fmt.Fprintf(os.Stderr, "tcpbench: server received %d bytes, want %d\n", got, mib<<20)
			os.Exit(1)
		}
		fmt.Printf("MiB/s %.1f\n", float64(mib)/el.Seconds())
	default:
		fmt.Fprintln(os.Stderr, "usage: tcpbench server PORT | tcpbench client HOST:PORT MIB")
		os.Exit(2)
	}
}
