// Command echoserver echoes back whatever each TCP client sends (for
// networking tests). Usage: echoserver [PORT]; PORT defaults to 7.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	port := "7"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "echoserver: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}
