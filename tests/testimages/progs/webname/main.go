// Command webname is a tiny HTTP server that answers with its host name, and
// a client that asks one URL many times, for the service tests. Being a
// static Go program it resolves names with Go's own resolver, which reads
// /etc/resolv.conf (nameservers, search, ndots) as a pod's applications do.
//
//	webname serve [PORT]    answer every request with the host name (port 8080)
//	webname get URL [N]     GET URL N times (default 1), a new connection each;
//	                       print each answer's first line, or "ERR" and why
//	webname lookup NAME     print NAME's addresses, one per line
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "serve":
		port := "8080"
		if len(os.Args) > 2 {
			port = os.Args[2]
		}
		name, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, name) })
		fmt.Println("webname: serving", name, "on port", port)
		if err := http.ListenAndServe(":"+port, nil); err != nil {
			fmt.Fprintln(os.Stderr, "webname:", err)
			os.Exit(1)
		}
	case "get":
		if len(os.Args) < 3 {
			usage()
		}
		n := 1
		if len(os.Args) > 3 {
			var err error
			if n, err = strconv.Atoi(os.Args[3]); err != nil || n < 1 {
				usage()
			}
		}
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for i := 0; i < n; i++ {
			fmt.Println(get(c, os.Args[2]))
		}
	case "lookup":
		if len(os.Args) != 3 {
			usage()
		}
		addrs, err := net.LookupHost(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "webname:", err)
			os.Exit(1)
		}
		for _, a := range addrs {
			fmt.Println(a)
		}
	default:
		usage()
	}
}

func get(c *http.Client, url string) string {
	res, err := c.Get(url)
	if err != nil {
		return "ERR " + strings.ReplaceAll(err.Error(), " ", "_")
	}
	defer res.Body.Close()
	line, _ := bufio.NewReader(res.Body).ReadString('\n')
	if res.StatusCode != http.StatusOK {
		return "ERR status_" + strconv.Itoa(res.StatusCode)
	}
	return strings.TrimSpace(line)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: webname serve [PORT] | webname get URL [N] | webname lookup NAME")
	os.Exit(2)
}
