// Command berth-server is berth's control plane: a Kubernetes-compatible
// API server on embedded etcd, and the node agent. The berth CLI forwards
// `berth server`, `berth agent`, `berth kubeconfig` and `berth token` here.
//
// It is its own binary so that linking etcd, grpc and the Kubernetes types
// does not slow every CLI command and container start (see
// docs/control-plane.md).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// newFlagSet returns a flag set for a subcommand whose usage starts with
// synopsis and a one-line description, then lists the flags in the
// --name form berth's documentation uses.
func newFlagSet(name, synopsis, what string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: berth %s\n\n%s\n\nflags:\n", synopsis, what)
		fs.VisitAll(func(f *flag.Flag) {
			typ, usage := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if typ != "" {
				line += " " + typ
			}
			fmt.Fprintf(out, "%-34s %s", line, usage)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(out, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(out)
		})
	}
	return fs
}

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
	if errors.Is(err, flag.ErrHelp) {
		return // the flag set printed its usage
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-server %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
