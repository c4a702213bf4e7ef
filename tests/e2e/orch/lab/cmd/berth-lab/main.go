// Command berth-lab runs a multi-node berth cluster on one machine (see
// docs/multinode.md):
//
//	berth-lab up [--nodes 3]     wipe any previous lab, start the server and the nodes
//	berth-lab status             nodes, processes, kubeconfig
//	berth-lab kill NODE          power loss: agent, engine, shims, containers
//	berth-lab boot NODE          power a killed node on again
//	berth-lab partition NODE     cut the node's link; heal NODE restores it
//	berth-lab restart-agent NODE SIGKILL the agent and start a new one
//	berth-lab add NODE [--cpus N --memory M --max-pods P]
//	berth-lab down               remove everything; check nothing is left
//	berth-lab clean              remove the leftovers of a crashed lab
//
// Run it as root from the repository root after `make build testimages`.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth/berth/tests/e2e/orch/lab"
)

func main() {
	lab.MaybeRunInit()
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "berth-lab:", err)
		os.Exit(1)
	}
}

func usage() error {
	return fmt.Errorf("usage: berth-lab [--prefix P] [--dir D] up [--nodes N] [--no-agent] | status | kill NODE | boot NODE | partition NODE | heal NODE | restart-agent NODE | add NODE [--cpus N --memory M --max-pods P] | down | clean")
}

func run(args []string) error {
	g := flag.NewFlagSet("berth-lab", flag.ContinueOnError)
	prefix := g.String("prefix", "blab", "name prefix of everything the lab creates")
	dir := g.String("dir", "", "state directory (default /var/lib/PREFIX)")
	subnet := g.String("subnet", "10.77.0", "first three octets of the lab's /24")
	podNet := g.String("pod-net", "10.88", "first two octets of the nodes' pod subnets")
	bin := g.String("bin", "bin", "directory with berth, berth-shim and berth-server")
	images := g.String("images", "bin/testimages", "directory with the test image archives (make testimages)")
	if err := g.Parse(args); err != nil {
		return err
	}
	if g.NArg() == 0 {
		return usage()
	}
	binDir, _ := filepath.Abs(*bin)
	imgDir, _ := filepath.Abs(*images)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := lab.Config{Prefix: *prefix, Dir: *dir, Subnet: *subnet, PodNet: *podNet, BinDir: binDir, Log: log,
		Images: []string{filepath.Join(imgDir, "busybox-docker.tar"), filepath.Join(imgDir, "progs.tar")},
		Tags:   lab.DefaultTags}.Defaults()
	cmd, rest := g.Arg(0), g.Args()[1:]
	switch cmd {
	case "up":
		fs := flag.NewFlagSet("up", flag.ContinueOnError)
		n := fs.Int("nodes", 3, "number of nodes")
		noAgent := fs.Bool("no-agent", false, "engines only, no node agents")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		cfg.NoAgent = *noAgent
		var specs []lab.NodeSpec
		for i := 1; i <= *n; i++ {
			specs = append(specs, lab.NodeSpec{Name: fmt.Sprintf("node%d", i)})
		}
		l, err := lab.Up(cfg, specs...)
		if err != nil {
			return err
		}
		return status(l)
	case "clean":
		if err := lab.Clean(cfg); err != nil {
			return err
		}
		return lab.Check(cfg)
	}
	l, err := lab.Open(cfg.Dir, log)
	if err != nil {
		return err
	}
	node := func() (string, error) {
		if len(rest) < 1 {
			return "", fmt.Errorf("%s needs a NODE (one of %s)", cmd, strings.Join(l.NodeNames(), ", "))
		}
		return rest[0], nil
	}
	switch cmd {
	case "status":
		return status(l)
	case "down":
		return l.Down(false)
	case "kill", "boot", "partition", "heal", "restart-agent":
		name, err := node()
		if err != nil {
			return err
		}
		f := map[string]func(string) error{"kill": l.Kill, "boot": l.Boot, "partition": l.Partition, "heal": l.Heal, "restart-agent": l.RestartAgent}[cmd]
		return f(name)
	case "add":
		name, err := node()
		if err != nil {
			return err
		}
		fs := flag.NewFlagSet("add", flag.ContinueOnError)
		var s lab.NodeSpec
		fs.StringVar(&s.CPUs, "cpus", "", "CPUs the agent reports")
		fs.StringVar(&s.Memory, "memory", "", "memory the agent reports (e.g. 8Gi)")
		fs.IntVar(&s.MaxPods, "max-pods", 0, "pods the agent accepts")
		if err := fs.Parse(rest[1:]); err != nil {
			return err
		}
		s.Name = name
		return l.AddNode(s)
	}
	return usage()
}

func status(l *lab.Lab) error {
	fmt.Printf("server   %s (pid %d)\nkubeconfig %s\n", l.URL(), l.Server.PID, l.Kubeconfig())
	for _, name := range l.NodeNames() {
		n, _ := l.Node(name)
		state := "up"
		switch {
		case n.Killed:
			state = "killed"
		case n.Partitioned:
			state = "partitioned"
		}
		fmt.Printf("%-8s %-12s %-11s init %d engine %d agent %d  engine: berth -H unix://%s\n", name, n.IP, state, n.InitPID, n.EnginePID, n.AgentPID, l.EngineSocket(name))
	}
	fmt.Printf("\nexport KUBECONFIG=%s\n", l.Kubeconfig())
	return nil
}
