package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The networking step (issue 3): start-to-exit latency on the engines'
// default networks, and TCP throughput between two berth containers against
// two processes over a bare veth pair.

const (
	// dockerBIP is docker0's address in the peers' namespace.
	dockerBIP = "10.252.0.1/24"
	// vethA and vethB are the addresses of the bare veth pair.
	vethA, vethB = "10.253.0.1", "10.253.0.2"
	// tcpPort is where every tcpbench server listens.
	tcpPort = "9000"
	// tcpNetSubnet is the subnet of the berth user network for the TCP test.
	tcpNetSubnet = "10.251.1.0/24"
)

// Rows of the latency table, in report order.
const (
	rowBerthBridge = "berth, bridge"
	rowBerthNone   = "berth, none"
	rowDocker      = "docker, bridge"
	rowPodman      = "podman, default"
)

var netRows = []string{rowBerthBridge, rowBerthNone, rowDocker, rowPodman}

// netResult holds the figures of the networking step.
type netResult struct {
	Latency  map[string][]float64 // ms per run, by row
	Fail     map[string]int       // failed runs by row
	RowErr   map[string]error     // why a row has no or failed figures
	Commands map[string]string    // the command timed, by row
	TCP      map[string][]float64 // MiB/s per round: "berth", "veth"
	TCPErr   map[string]error
}

func newNetResult() *netResult {
	return &netResult{Latency: map[string][]float64{}, Fail: map[string]int{}, RowErr: map[string]error{},
		Commands: map[string]string{}, TCP: map[string][]float64{}, TCPErr: map[string]error{}}
}

// netnsPath is where `ip netns add NAME` binds the namespace.
func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

// addNetns creates a named network namespace with lo up and registers its
// removal.
func addNetns(ctx context.Context, name string, cl *cleanups) error {
	if _, err := output(ctx, nil, "ip", "netns", "add", name); err != nil {
		return err
	}
	cl.add("network namespace "+name, func() error {
		_, err := output(context.Background(), nil, "ip", "netns", "del", name)
		return err
	})
	_, err := output(ctx, nil, "ip", "-n", name, "link", "set", "lo", "up")
	return err
}

// netLatency is a timed `run --rm busybox true` variant.
type netLatency struct {
	row string
	e   *engine
	run []string // args after the CLI prefix
}

// networking runs the networking step: it needs the berth engine; docker
// and podman rows are added when those engines are in the run. The first
// dockerd (no bridge) is stopped and a second one is started with docker's
// default bridge inside a network namespace of its own, with podman's
// default network in the same namespace, so that docker0, podman0 and their
// iptables rules never touch the host and go away with the namespace.
func networking(ctx context.Context, cfg config, r *results, cl *cleanups) {
	nr := newNetResult()
	r.Net = nr
	b := r.engine("berth")
	if b == nil || !b.ok() {
		nr.RowErr[rowBerthBridge] = errors.New("berth is not in this run")
		return
	}
	peersNS := fmt.Sprintf("bbench-peers-%d", os.Getpid())
	var rows []netLatency
	rows = append(rows,
		netLatency{rowBerthBridge, b, []string{"run", "--rm", "busybox", "true"}},
		netLatency{rowBerthNone, b, []string{"run", "--rm", "--network", "none", "busybox", "true"}})
	nr.Commands[rowBerthBridge] = "`berth run --rm busybox true` (bridge " + benchBridge + ", " + benchBridgeSubnet + ")"
	nr.Commands[rowBerthNone] = "`berth run --rm --network none busybox true`"
	nr.Commands[rowDocker] = "`docker run --rm busybox true` (docker0, " + dockerBIP + ")"
	nr.Commands[rowPodman] = "`podman run --rm busybox true` (podman network, netavark)"

	d, p := r.engine("docker"), r.engine("podman")
	nsErr := error(nil)
	if (d != nil && d.ok()) || (p != nil && p.ok()) {
		nsErr = addNetns(ctx, peersNS, cl)
	}
	if d == nil {
		nr.RowErr[rowDocker] = errors.New("docker is not in this run")
	} else if !d.ok() {
		nr.RowErr[rowDocker] = d.Err
	} else if nsErr != nil {
		nr.RowErr[rowDocker] = nsErr
	} else {
		if r.dockerd != nil {
			logf("  stopping the first dockerd (no bridge)")
			if err := r.dockerd.stop(30 * time.Second); err != nil {
				cl.note("%v", err)
			}
		}
		logf("  starting dockerd with its default bridge in network namespace %s", peersNS)
		archive := filepath.Join(cfg.images, "busybox-docker.tar")
		db, _ := setupDocker(ctx, cfg.work, archive, "docker-bridge", peersNS, cl)
		if db.ok() {
			rows = append(rows, netLatency{rowDocker, db, []string{"run", "--rm", "busybox", "true"}})
		} else {
			nr.RowErr[rowDocker] = db.Err
		}
	}
	if p == nil {
		nr.RowErr[rowPodman] = errors.New("podman is not in this run")
	} else if !p.ok() {
		nr.RowErr[rowPodman] = p.Err
	} else if nsErr != nil {
		nr.RowErr[rowPodman] = nsErr
	} else {
		pn := *p
		pn.prefix = append([]string{"nsenter", "--net=" + netnsPath(peersNS)}, p.prefix...)
		rows = append(rows, netLatency{rowPodman, &pn, []string{"run", "--rm", "busybox", "true"}})
	}

	// Warm-up: two untimed runs per row; a row that fails here is out.
	var ok []netLatency
	for _, row := range rows {
		var err error
		for range 2 {
			if _, err = timed(ctx, row.e.env, nil, row.e.cli(row.run...)...); err != nil {
				break
			}
		}
		if err != nil {
			nr.RowErr[row.row] = err
			logf("  %s is out: %v", row.row, err)
			continue
		}
		ok = append(ok, row)
	}
	for round := 0; round < cfg.rounds && ctx.Err() == nil; round++ {
		for i := range ok {
			row := ok[(round+i)%len(ok)]
			dur, err := timed(ctx, row.e.env, nil, row.e.cli(row.run...)...)
			if err != nil {
				nr.Fail[row.row]++
				if nr.RowErr[row.row] == nil {
					nr.RowErr[row.row] = err
				}
				continue
			}
			nr.Latency[row.row] = append(nr.Latency[row.row], ms(dur))
		}
	}
	if ctx.Err() == nil {
		tcpThroughput(ctx, cfg, r, b, cl)
	}
}

// parseRate reads the "MiB/s <rate>" line tcpbench's client prints.
func parseRate(out string) (float64, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "MiB/s" {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("tcpbench output %q: want \"MiB/s <positive rate>\"", line)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("tcpbench output %q: no \"MiB/s <rate>\" line", strings.TrimSpace(out))
}

// tcpThroughput measures tcpbench between two containers on one berth user
// network and between two processes over a veth pair between two network
// namespaces, interleaved, cfg.tcpRounds rounds each.
func tcpThroughput(ctx context.Context, cfg config, r *results, b *engine, cl *cleanups) {
	nr := r.Net
	mib := strconv.Itoa(cfg.tcpMiB)
	logf("  tcp throughput: %d rounds of %s MiB each", cfg.tcpRounds, mib)

	// Berth: a user network, a server container and a client per round.
	berthClient, berthErr := func() ([]string, error) {
		progs := filepath.Join(cfg.images, "progs.tar")
		if _, err := output(ctx, nil, b.cli("load", "-i", progs)...); err != nil {
			return nil, err
		}
		netName := "bbench-net"
		if _, err := output(ctx, nil, b.cli("network", "create", "--subnet", tcpNetSubnet, netName)...); err != nil {
			return nil, err
		}
		cl.add("berth network "+netName, func() error {
			_, err := output(context.Background(), nil, b.cli("network", "rm", netName)...)
			return err
		})
		if _, err := output(ctx, nil, b.cli("run", "-d", "--name", "srv", "--network", netName,
			"progs", "tcpbench", "server", tcpPort)...); err != nil {
			return nil, err
		}
		cl.add("berth container srv", func() error {
			_, err := output(context.Background(), nil, b.cli("rm", "-f", "srv")...)
			return err
		})
		return b.cli("run", "--rm", "--network", netName, "progs", "tcpbench", "client", "srv:"+tcpPort, mib), nil
	}()
	if berthErr != nil {
		nr.TCPErr["berth"] = berthErr
	}

	// Veth: the same binary, built here, in two namespaces.
	vethClient, vethErr := func() ([]string, error) {
		bin := filepath.Join(cfg.work, "tcpbench")
		c := command(ctx, []string{"CGO_ENABLED=0"}, "go", "build", "-o", bin, "./tests/testimages/progs/tcpbench")
		if out, err := c.CombinedOutput(); err != nil {
			return nil, cmdError(c.Args, err, string(out))
		}
		pid := os.Getpid()
		nsA, nsB := fmt.Sprintf("bbench-a-%d", pid), fmt.Sprintf("bbench-b-%d", pid)
		for _, ns := range []string{nsA, nsB} {
			if err := addNetns(ctx, ns, cl); err != nil {
				return nil, err
			}
		}
		steps := [][]string{
			{"ip", "link", "add", "bbva", "netns", nsA, "type", "veth", "peer", "name", "bbvb", "netns", nsB},
			{"ip", "-n", nsA, "addr", "add", vethA + "/24", "dev", "bbva"},
			{"ip", "-n", nsB, "addr", "add", vethB + "/24", "dev", "bbvb"},
			{"ip", "-n", nsA, "link", "set", "bbva", "up"},
			{"ip", "-n", nsB, "link", "set", "bbvb", "up"},
		}
		for _, s := range steps {
			if _, err := output(ctx, nil, s...); err != nil {
				return nil, err
			}
		}
		srv, err := startDaemon("tcpbench server", nil, filepath.Join(cfg.work, "tcpbench-server.log"),
			"nsenter", "--net="+netnsPath(nsA), bin, "server", tcpPort)
		if err != nil {
			return nil, err
		}
		cl.add("tcpbench server", func() error { return srv.stop(5 * time.Second) })
		return []string{"nsenter", "--net=" + netnsPath(nsB), bin, "client", vethA + ":" + tcpPort, mib}, nil
	}()
	if vethErr != nil {
		nr.TCPErr["veth"] = vethErr
	}

	type side struct {
		name string
		argv []string
	}
	var sides []side
	if berthErr == nil {
		sides = append(sides, side{"berth", berthClient})
	}
	if vethErr == nil {
		sides = append(sides, side{"veth", vethClient})
	}
	for round := 0; round < cfg.tcpRounds && ctx.Err() == nil; round++ {
		for i := range sides {
			s := sides[(round+i)%len(sides)]
			out, err := output(ctx, nil, s.argv...)
			if err == nil {
				var v float64
				if v, err = parseRate(out); err == nil {
					nr.TCP[s.name] = append(nr.TCP[s.name], v)
				}
			}
			if err != nil && nr.TCPErr[s.name] == nil {
				nr.TCPErr[s.name] = err
			}
		}
	}
}

// netState is what the host's network looks like before the run: nftables
// tables, links and named network namespaces.
type netState struct{ tables, links, netns []string }

func snapshotNet() netState {
	return netState{tables: nftTables(), links: linkNames(), netns: netnsNames()}
}

func nftTables() []string {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	out, _ := output(context.Background(), nil, "nft", "list", "tables")
	return strings.Split(strings.TrimSpace(out), "\n")
}

func linkNames() []string {
	ents, _ := os.ReadDir("/sys/class/net")
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func netnsNames() []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// leftovers lists what is on the host now and was not before: the bench's
// bridge, other new links, berth_ nftables tables, named namespaces. Other
// daemons on the host may make some of these at the same time, so the
// report says "new since the start", not who made them.
func (s netState) leftovers() []string {
	var out []string
	diff := func(what string, before, now []string) {
		for _, x := range now {
			if x != "" && !slices.Contains(before, x) {
				out = append(out, fmt.Sprintf("%s %q is new since the start of the run", what, x))
			}
		}
	}
	diff("nftables table", s.tables, nftTables())
	diff("network link", s.links, linkNames())
	diff("network namespace", s.netns, netnsNames())
	return out
}

// netTargets checks the goals of issue 3.
func (r *results) netTargets() []target {
	nr := r.Net
	if nr == nil {
		nr = newNetResult()
	}
	br, brok := summarize(nr.Latency[rowBerthBridge])
	no, nook := summarize(nr.Latency[rowBerthNone])
	dk, dkok := summarize(nr.Latency[rowDocker])
	var ts []target
	t := target{What: "bridge adds ≤ 10 ms to `berth run --rm` (bridge − none median)", Known: brok && nook}
	if t.Known {
		t.Pass = br.Median-no.Median <= 10
		t.Figure = fmt.Sprintf("%s − %s = %+.1f ms", fmtMS(br.Median), fmtMS(no.Median), br.Median-no.Median)
	}
	ts = append(ts, t)
	t = target{What: "berth on a bridge ≥ 10× faster than docker on a bridge", Known: brok && dkok}
	if t.Known {
		t.Pass = dk.Median >= 10*br.Median
		t.Figure = fmt.Sprintf("%s vs %s = %s faster", fmtMS(br.Median), fmtMS(dk.Median), ratio(dk.Median, br.Median))
	}
	ts = append(ts, t)
	bt, btok := summarize(nr.TCP["berth"])
	vt, vtok := summarize(nr.TCP["veth"])
	t = target{What: "TCP between two berth containers within 10% of a bare veth pair", Known: btok && vtok}
	if t.Known {
		t.Pass = bt.Median >= 0.9*vt.Median && bt.Median <= 1.1*vt.Median
		t.Figure = fmt.Sprintf("%.0f vs %.0f MiB/s = %s", bt.Median, vt.Median, ratio(bt.Median, vt.Median))
	}
	ts = append(ts, t)
	return ts
}

// netMarkdown renders the networking section.
func (r *results) netMarkdown(p func(string, ...any)) {
	nr := r.Net
	if nr == nil {
		return
	}
	p("\n## Networking (issue 3)\n\n")
	p("| target | figure | result |\n|---|---|---|\n")
	for _, t := range r.netTargets() {
		p("| %s | %s | %s |\n", t.What, orDash(t.Figure), t.verdict())
	}
	p("\n### `run --rm busybox true` on the default networks\n\n")
	p("%d rounds, round-robin, after 2 untimed warm-up runs per row. berth uses its own default bridge (`--bridge %s --bridge-subnet %s`). dockerd (a second one, with docker's default bridge, `--bip %s`, iptables on) and podman (default `podman` network, netavark) run inside a network namespace of the bench's own, so their bridges and firewall rules never touch the host.\n\n",
		r.Config.rounds, benchBridge, benchBridgeSubnet, dockerBIP)
	p("| row | command | median | min | max | × berth bridge | failed |\n|---|---|---|---|---|---|---|\n")
	base, hasBase := summarize(nr.Latency[rowBerthBridge])
	for _, row := range netRows {
		s, ok := summarize(nr.Latency[row])
		fail := strconv.Itoa(nr.Fail[row])
		if err := nr.RowErr[row]; err != nil {
			if ok {
				fail += " (see below)"
			} else {
				fail = "**failed**: " + oneLine(err.Error())
			}
		}
		if !ok {
			p("| %s | %s | – | – | – | – | %s |\n", row, nr.Commands[row], fail)
			continue
		}
		rel := "–"
		if hasBase {
			rel = ratio(s.Median, base.Median)
		}
		p("| %s | %s | %s | %s | %s | %s | %s |\n", row, nr.Commands[row], fmtMS(s.Median), fmtMS(s.Min), fmtMS(s.Max), rel, fail)
	}
	p("\n### TCP throughput, `tcpbench client HOST:%s %d`\n\n", tcpPort, r.Config.tcpMiB)
	p("%d rounds each, interleaved. berth: server `run -d --name srv --network N progs tcpbench server %s`, client `run --rm --network N progs tcpbench client srv:%s %d` on one user network (`network create --subnet %s N`). veth: the same tcpbench source built with CGO_ENABLED=0, server and client in two network namespaces joined by a veth pair (%s, %s). The figure is the client's own `MiB/s`, so container start-up is not in it.\n\n",
		r.Config.tcpRounds, tcpPort, tcpPort, r.Config.tcpMiB, tcpNetSubnet, vethA, vethB)
	p("| path | rounds | median | min | max | × veth | error |\n|---|---|---|---|---|---|---|\n")
	vt, vtok := summarize(nr.TCP["veth"])
	for _, name := range []string{"berth", "veth"} {
		s, ok := summarize(nr.TCP[name])
		errCell := "–"
		if err := nr.TCPErr[name]; err != nil {
			errCell = oneLine(err.Error())
		}
		if !ok {
			p("| %s | 0 | – | – | – | – | %s |\n", name, errCell)
			continue
		}
		rel := "–"
		if vtok {
			rel = ratio(s.Median, vt.Median)
		}
		p("| %s | %d | %.0f MiB/s | %.0f MiB/s | %.0f MiB/s | %s | %s |\n", name, s.N, s.Median, s.Min, s.Max, rel, errCell)
	}
	var keys []string
	for _, row := range netRows {
		if _, ok := summarize(nr.Latency[row]); ok && nr.RowErr[row] != nil {
			keys = append(keys, row)
		}
	}
	if len(keys) > 0 {
		p("\n")
		for _, k := range keys {
			p("- %s: %s\n", k, oneLine(nr.RowErr[k].Error()))
		}
	}
}
