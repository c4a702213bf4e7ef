package lab

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// run runs a command and returns its combined output; the error names the
// command and carries the output.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// ip runs ip(8).
func ip(args ...string) error {
	_, err := run("ip", args...)
	return err
}

// createBridge makes the lab bridge with the host's address on it.
func (l *Lab) createBridge() error {
	br := l.bridgeName()
	steps := [][]string{
		{"link", "add", br, "type", "bridge"},
		{"addr", "add", l.BridgeIP() + "/24", "dev", br},
		{"link", "set", br, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// createNodeNet makes a node's network namespace and its veth link to the
// bridge, and routes the node's pod subnet through it from the host.
func (l *Lab) createNodeNet(n *Node) error {
	ns, veth := l.netnsName(n.Spec.Name), l.vethName(n.Index)
	// A leftover of a crashed run with the same name goes first.
	_ = ip("netns", "del", ns)
	_ = ip("link", "del", veth)
	gw := l.BridgeIP()
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", veth, "master", l.bridgeName(), "up"},
		{"-n", ns, "addr", "add", n.IP + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", gw},
		{"route", "replace", n.PodSubnet, "via", n.IP},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// Partition cuts a node's link to the bridge (its processes keep running
// but can reach neither the server nor the other nodes).
func (l *Lab) Partition(name string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	if err := ip("link", "set", l.vethName(n.Index), "down"); err != nil {
		return err
	}
	l.log.Info("node partitioned", "node", name)
	return l.update(name, func(n *Node) { n.Partitioned = true })
}

// Heal restores a partitioned node's link.
func (l *Lab) Heal(name string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	if err := ip("link", "set", l.vethName(n.Index), "up"); err != nil {
		return err
	}
	l.log.Info("node healed", "node", name)
	return l.update(name, func(n *Node) { n.Partitioned = false })
}
