// Package main is the berth engine benchmark behind `make bench`: it runs
// berth side by side with bare crun and runc, podman and docker on the same
// busybox image, interleaved round-robin, and prints a markdown report with
// median/min/max, ratios to berth and the targets of issue 2 as PASS/MISS;
// then the networking figures of issue 3 (start latency on the default
// networks, TCP throughput between two berth containers against a bare
// veth pair).
//
// It owns everything it starts (a berth daemon, dockerd with its containerd,
// podman storage, bare-runtime containers), all under one work directory,
// and stops and removes it all on exit, also on SIGINT/SIGTERM.
//
//	engine -bin BIN -images TESTIMG [-rounds 30] [-detached 50] [-monitors 10]
//	       [-log-lines 100000] [-log-rounds 5] [-tcp-rounds 9] [-tcp-mib 1024]
//	       [-build-rounds 5] [-xfer-rounds 3] [-big-mib 200]
//	       [-engines berth,crun,runc,podman,docker] [-steps STEP,...]
//	       [-work DIR] [-out FILE]
//
// The steps are warm-up, idle, run-rm, detached, monitor, logs,
// networking, docker-cli (the docker CLI against berth and dockerd) and
// images (builds against docker and podman, registry push and pull against
// skopeo); all run by default.
//
// It must run as root. scripts/bench.sh installs the peers and calls it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config is the parsed command line.
type config struct {
	binDir, images, work, out  string
	rounds, detached, monitors int
	logLines, logRounds        int
	tcpRounds, tcpMiB          int
	buildRounds, xferRounds    int
	bigMiB                     int
	engines                    []string
	steps                      []string
}

var allEngines = []string{"berth", "crun", "runc", "podman", "docker"}

var allSteps = []string{"warm-up", "idle", "run-rm", "detached", "monitor", "logs", "docker-cli", "images", "networking"}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("engine", flag.ContinueOnError)
	fs.StringVar(&c.binDir, "bin", "bin", "directory holding berth and berth-shim")
	fs.StringVar(&c.images, "images", "bin/testimages", "directory holding busybox-docker.tar")
	fs.StringVar(&c.work, "work", "", "work directory (created and removed; default a new one under /var/tmp)")
	fs.StringVar(&c.out, "out", "", "also write the markdown report to this file")
	fs.IntVar(&c.rounds, "rounds", 30, "rounds of `run --rm busybox true` per engine")
	fs.IntVar(&c.detached, "detached", 50, "detached containers started per engine for the start rate")
	fs.IntVar(&c.monitors, "monitors", 10, "running containers per engine for the monitor RSS")
	fs.IntVar(&c.logLines, "log-lines", 100000, "lines printed by the container whose logs are read")
	fs.IntVar(&c.logRounds, "log-rounds", 5, "timed `logs` reads per engine")
	fs.IntVar(&c.tcpRounds, "tcp-rounds", 9, "TCP throughput rounds per path (berth network, bare veth)")
	fs.IntVar(&c.tcpMiB, "tcp-mib", 1024, "MiB sent per TCP throughput round")
	fs.IntVar(&c.buildRounds, "build-rounds", 5, "rounds of cold and cached `build` per builder")
	fs.IntVar(&c.xferRounds, "xfer-rounds", 3, "rounds of registry push and pull per client")
	fs.IntVar(&c.bigMiB, "big-mib", 200, "size in MiB of the image pushed and pulled")
	engines := fs.String("engines", strings.Join(allEngines, ","), "comma-separated engines to run")
	steps := fs.String("steps", strings.Join(allSteps, ","), "comma-separated steps to run (in the program's own order)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: all settings are flags", fs.Arg(0))
	}
	for _, n := range []struct {
		name string
		v    int
		min  int
	}{{"rounds", c.rounds, 1}, {"detached", c.detached, 1}, {"monitors", c.monitors, 1}, {"log-lines", c.logLines, 1}, {"log-rounds", c.logRounds, 1}, {"tcp-rounds", c.tcpRounds, 1}, {"tcp-mib", c.tcpMiB, 1}, {"build-rounds", c.buildRounds, 1}, {"xfer-rounds", c.xferRounds, 1}, {"big-mib", c.bigMiB, 4}} {
		if n.v < n.min {
			return c, fmt.Errorf("-%s %d: want a count of at least %d", n.name, n.v, n.min)
		}
	}
	for _, name := range strings.Split(*engines, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(allEngines, name) {
			return c, fmt.Errorf("-engines: unknown engine %q, want some of %s", name, strings.Join(allEngines, ","))
		}
		if !slices.Contains(c.engines, name) {
			c.engines = append(c.engines, name)
		}
	}
	for _, name := range strings.Split(*steps, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(allSteps, name) {
			return c, fmt.Errorf("-steps: unknown step %q, want some of %s", name, strings.Join(allSteps, ","))
		}
		if !slices.Contains(c.steps, name) {
			c.steps = append(c.steps, name)
		}
	}
	return c, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: must run as root (it starts dockerd, a berth daemon and containers)")
		return 2
	}
	archive := filepath.Join(cfg.images, "busybox-docker.tar")
	if _, err := os.Stat(archive); err != nil {
		fmt.Fprintf(os.Stderr, "bench: test image %s: %v (want the docker-save archive from make testimages)\n", archive, err)
		return 2
	}
	if cfg.binDir, err = filepath.Abs(cfg.binDir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if cfg.work == "" {
		if cfg.work, err = os.MkdirTemp("/var/tmp", "berth-bench."); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	} else if err := os.MkdirAll(cfg.work, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	cl := &cleanups{}
	before := snapshotHost()
	beforeNet := snapshotNet()
	res := &results{Config: cfg, Host: hostInfo(), Errors: map[string]error{}}

	func() {
		// Cleanup runs whatever happens in the measurement, panics included.
		defer func() {
			if p := recover(); p != nil {
				res.Errors["bench"] = fmt.Errorf("panic: %v", p)
			}
			cl.run()
			sweep(cfg.work, cl)
			if err := os.RemoveAll(cfg.work); err != nil {
				cl.note("remove %s: %v", cfg.work, err)
			}
			for _, n := range removeBenchCgroups() {
				cl.note("%s", n)
			}
			for _, err := range before.restore() {
				cl.note("remove what the peers left on the host: %v", err)
			}
			for _, l := range beforeNet.leftovers() {
				cl.note("after clean-up: %s", l)
			}
		}()
		measure(ctx, cfg, archive, cl, res)
	}()
	res.Notes = append(res.Notes, cl.notes...)
	res.Host.LoadEnd = loadavg()

	report := res.markdown()
	fmt.Print(report)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if ctx.Err() != nil {
		return 130
	}
	if b := res.engine("berth"); b != nil && !b.ok() {
		return 1
	}
	return 0
}

// measure sets up the engines and runs every measurement, recording figures
// and errors in res.
func measure(ctx context.Context, cfg config, archive string, cl *cleanups, res *results) {
	want := func(n string) bool { return slices.Contains(cfg.engines, n) }
	rootfs := filepath.Join(cfg.work, "rootfs")
	logf("work directory %s", cfg.work)

	if want("crun") || want("runc") {
		logf("unpacking %s for the bare runtimes", archive)
		err := extractSaveArchive(archive, rootfs)
		if err == nil {
			err = loadSpecTemplate(ctx, cfg.work)
		}
		for _, n := range []string{"crun", "runc"} {
			if !want(n) {
				continue
			}
			if err != nil {
				res.Engines = append(res.Engines, &engine{Name: n, Kind: ociEngine, Err: err})
				continue
			}
			res.Engines = append(res.Engines, setupOCI(ctx, cfg.work, n, rootfs, cl))
		}
	}
	if want("berth") {
		logf("starting the berth daemon")
		e, d := setupBerth(ctx, cfg.work, cfg.binDir, archive, cl)
		res.Engines = append([]*engine{e}, res.Engines...)
		res.berthd = d
		if want("crun") && e.ok() {
			if c := res.engine("crun"); c != nil && c.ok() {
				res.Engines = append(res.Engines, setupBerthSpec(ctx, cfg.work, rootfs, e, c, cl))
			}
		}
	}
	if want("podman") {
		logf("preparing podman")
		res.Engines = append(res.Engines, setupPodman(ctx, cfg.work, archive, cl))
	}
	if want("docker") {
		logf("starting dockerd")
		e, d := setupDocker(ctx, cfg.work, archive, "docker", "", cl)
		res.Engines = append(res.Engines, e)
		res.dockerd = d
	}
	for _, e := range res.Engines {
		if !e.ok() {
			logf("%s is out of this run: %v", e.Name, e.Err)
		}
	}

	steps := []struct {
		key, name string
		fn        func(context.Context, config, *results)
	}{
		{"warm-up", "warm-up", warmUp},
		{"idle", "daemon idle RSS after load", func(ctx context.Context, cfg config, r *results) { idleRSS(ctx, r, "after load") }},
		{"run-rm", "run --rm", runRmRounds},
		{"detached", "detached starts", detachedStarts},
		{"monitor", "monitor RSS", monitorRSS},
		{"logs", "logs", logsRounds},
		{"idle", "daemon idle RSS after the workload", func(ctx context.Context, cfg config, r *results) { idleRSS(ctx, r, "after workload") }},
		// Before networking: it stops the first dockerd, which these use.
		{"docker-cli", "the docker CLI against berth and dockerd", dockerCLI},
		{"images", "images", func(ctx context.Context, cfg config, r *results) { images(ctx, cfg, r, cl) }},
		{"networking", "networking", func(ctx context.Context, cfg config, r *results) { networking(ctx, cfg, r, cl) }},
	}
	for _, s := range steps {
		if !slices.Contains(cfg.steps, s.key) {
			continue
		}
		if ctx.Err() != nil {
			res.Errors["bench"] = fmt.Errorf("interrupted before %s", s.name)
			return
		}
		logf("%s", s.name)
		s.fn(ctx, cfg, res)
	}
}

// warmUp runs each engine's `run --rm` twice, untimed, so that first-run
// costs (page cache, lazily created state) are out of the figures.
func warmUp(ctx context.Context, cfg config, r *results) {
	for _, e := range r.usableForRunRm() {
		for range 2 {
			if _, err := e.runRm(ctx); err != nil {
				r.Errors["warm-up/"+e.Name] = err
				break
			}
		}
	}
}

// runRmRounds times `run --rm busybox true` for every engine, round-robin:
// each round runs every engine once, starting one engine later than the
// round before, so that drift and position hit all engines alike.
func runRmRounds(ctx context.Context, cfg config, r *results) {
	es := r.usableForRunRm()
	r.RunRm = map[string][]float64{}
	r.RunRmFail = map[string]int{}
	for round := 0; round < cfg.rounds && ctx.Err() == nil; round++ {
		for i := range es {
			e := es[(round+i)%len(es)]
			d, err := e.runRm(ctx)
			if err != nil {
				r.RunRmFail[e.Name]++
				if _, seen := r.Errors["run --rm/"+e.Name]; !seen {
					r.Errors["run --rm/"+e.Name] = err
				}
				continue
			}
			r.RunRm[e.Name] = append(r.RunRm[e.Name], ms(d))
		}
	}
}

// detachedStarts starts cfg.detached `sleep 600` containers per engine one
// after the other, times each start command, then removes them all.
func detachedStarts(ctx context.Context, cfg config, r *results) {
	r.Detached = map[string]*detachedResult{}
	for _, e := range r.usable() {
		if ctx.Err() != nil {
			return
		}
		dr := &detachedResult{}
		r.Detached[e.Name] = dr
		mounts := len(mountsUnder(e.dir))
		var ids []string
		for i := 0; i < cfg.detached && ctx.Err() == nil; i++ {
			id, d, err := e.startDetached(ctx)
			if err != nil {
				r.Errors["detached/"+e.Name] = err
				break
			}
			ids = append(ids, id)
			dr.Starts = append(dr.Starts, ms(d))
			dr.Total += d
		}
		start := time.Now()
		if err := e.remove(ctx, ids); err != nil {
			r.Errors["detached rm/"+e.Name] = err
		}
		dr.Remove = time.Since(start)
		time.Sleep(time.Second) // engines may tidy up just after rm returns
		for _, l := range e.leaks(ids, mounts) {
			r.Notes = append(r.Notes, e.Name+": "+l)
		}
		logf("  %s: %d started in %s, removed in %s", e.Name, len(ids), dr.Total.Round(time.Millisecond), dr.Remove.Round(time.Millisecond))
	}
}

// monitorRSS starts cfg.monitors `sleep 600` containers per CLI engine and
// reads the RSS of each container's monitor (the parent of its process).
func monitorRSS(ctx context.Context, cfg config, r *results) {
	r.Monitors = map[string]*monitorResult{}
	started := map[*engine][]string{}
	defer func() {
		for e, ids := range started {
			if err := e.remove(context.Background(), ids); err != nil {
				r.Errors["monitor rm/"+e.Name] = err
			}
		}
	}()
	for _, e := range r.usable() {
		if e.Kind != cliEngine {
			continue
		}
		for i := 0; i < cfg.monitors && ctx.Err() == nil; i++ {
			id, _, err := e.startDetached(ctx)
			if err != nil {
				r.Errors["monitor/"+e.Name] = err
				break
			}
			started[e] = append(started[e], id)
		}
	}
	time.Sleep(time.Second) // let the monitors settle after start-up
	for _, e := range r.usable() {
		ids := started[e]
		if len(ids) == 0 {
			continue
		}
		mr := &monitorResult{}
		r.Monitors[e.Name] = mr
		pids := map[int]bool{}
		for _, id := range ids {
			pid, comm, err := e.monitorOf(ctx, id)
			if err != nil {
				r.Errors["monitor/"+e.Name] = err
				continue
			}
			if !strings.HasPrefix(comm, e.monitor) {
				mr.Unexpected = append(mr.Unexpected, comm)
			}
			mr.Comm = comm
			if pids[pid] {
				continue // one monitor for several containers: count it once
			}
			pids[pid] = true
			rss, err := rssKiB(pid)
			if err != nil {
				r.Errors["monitor/"+e.Name] = err
				continue
			}
			mr.RSS = append(mr.RSS, float64(rss))
			if pss, err := pssKiB(pid); err == nil {
				mr.PSS = append(mr.PSS, float64(pss))
			}
		}
		mr.Containers = len(ids)
	}
}

// logsRounds makes a container per engine print cfg.logLines lines, checks
// that `logs` returns them all, then times `logs C > /dev/null`
// round-robin.
func logsRounds(ctx context.Context, cfg config, r *results) {
	r.Logs = map[string][]float64{}
	var es []*engine
	ids := map[*engine]string{}
	for _, e := range r.usable() {
		if e.Name != "berth" && e.Name != "docker" {
			continue
		}
		id, err := e.printLines(ctx, cfg.logLines)
		if id != "" {
			defer e.remove(context.Background(), []string{id})
		}
		if err != nil {
			r.Errors["logs/"+e.Name] = err
			continue
		}
		es = append(es, e)
		ids[e] = id
	}
	for round := 0; round < cfg.logRounds && ctx.Err() == nil; round++ {
		for i := range es {
			e := es[(round+i)%len(es)]
			d, err := timed(ctx, e.env, nil, e.cli("logs", ids[e])...)
			if err != nil {
				r.Errors["logs/"+e.Name] = err
				continue
			}
			r.Logs[e.Name] = append(r.Logs[e.Name], ms(d))
		}
	}
}

// idleRSS samples the resident memory of the idle daemons: the berth daemon
// alone, dockerd plus its containerd. Five samples over two seconds, after
// two seconds of quiet; the median is kept.
func idleRSS(ctx context.Context, r *results, when string) {
	type daemon struct {
		name string
		pids func() []int
	}
	var ds []daemon
	if b := r.engine("berth"); b != nil && b.ok() && r.berthd != nil && !r.berthd.exited() {
		ds = append(ds, daemon{"berth daemon", func() []int { return []int{r.berthd.pid()} }})
	}
	if d := r.engine("docker"); d != nil && d.ok() && r.dockerd != nil && !r.dockerd.exited() {
		ds = append(ds, daemon{"dockerd + containerd", func() []int {
			return append([]int{r.dockerd.pid()}, childrenNamed(r.dockerd.pid(), "containerd")...)
		}})
	}
	if len(ds) == 0 {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(2 * time.Second):
	}
	samples := map[string][]float64{}
	procs := map[string]int{}
	for range 5 {
		for _, d := range ds {
			var sum int64
			pids := d.pids()
			for _, pid := range pids {
				kib, err := rssKiB(pid)
				if err != nil {
					r.Errors["idle RSS/"+d.name] = err
					continue
				}
				sum += kib
			}
			samples[d.name] = append(samples[d.name], float64(sum))
			procs[d.name] = len(pids)
		}
		time.Sleep(400 * time.Millisecond)
	}
	for _, d := range ds {
		s, _ := summarize(samples[d.name])
		r.Idle = append(r.Idle, idleResult{Daemon: d.name, When: when, KiB: s.Median, Procs: procs[d.name]})
	}
}
