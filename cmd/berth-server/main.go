// Command berth-server is berth's control plane: a Kubernetes-compatible
// API server on embedded etcd, and the node agent. The berth CLI forwards
// `berth server`, `berth agent`, `berth kubeconfig` and `berth token` here.
//
// It is its own binary so that linking etcd, grpc and the Kubernetes types
// does not slow every CLI command and container start (see
// docs/control-plane.md).
package main

import (
	"fmt"
	"os"
)

const usage = `usage: berth-server <command> [flags]

commands:
  server       run the control plane (embedded etcd + Kubernetes API over HTTPS)
  agent        join a cluster as a node and run its pods on the local berth engine
  kubeconfig   print the admin kubeconfig of a data directory
  token        print the node join token; "token create --role admin|node|viewer" makes a new one
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer(os.Args[2:])
	case "agent":
		err = runAgent(os.Args[2:])
	case "kubeconfig":
		err = runKubeconfig(os.Args[2:])
	case "token":
		err = runToken(os.Args[2:])
	case "bench":
		err = runBench(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "berth-server: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-server %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
