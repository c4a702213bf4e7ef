package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// results holds every figure and error of one run.
type results struct {
	Config  config
	Host    host
	Engines []*engine

	RunRm     map[string][]float64 // ms per run
	RunRmFail map[string]int
	Detached  map[string]*detachedResult
	Monitors  map[string]*monitorResult
	Logs      map[string][]float64 // ms per read
	Idle      []idleResult
	Net       *netResult
	Images    *imagesResult
	DockerCLI map[string]*dockerCLIResult

	Errors map[string]error // "phase/engine" → first error
	Notes  []string

	berthd, dockerd *daemonProc
}

type detachedResult struct {
	Starts []float64 // ms per start command
	Total  time.Duration
	Remove time.Duration
}

// rate is starts per second over the summed start times.
func (d *detachedResult) rate() float64 {
	if d == nil || d.Total <= 0 {
		return 0
	}
	return float64(len(d.Starts)) / d.Total.Seconds()
}

type monitorResult struct {
	Comm       string
	Containers int
	RSS, PSS   []float64 // KiB per distinct monitor process
	Unexpected []string
}

type idleResult struct {
	Daemon, When string
	KiB          float64
	Procs        int
}

type host struct {
	Date               time.Time
	CPUs               int
	Kernel, Cgroup     string
	MemTotal           string
	LoadStart, LoadEnd string
}

func hostInfo() host {
	h := host{Date: time.Now().UTC(), CPUs: runtime.NumCPU(), LoadStart: loadavg(), Cgroup: cgroupMode()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kib, err := parseKiB(string(b), "MemTotal"); err == nil {
			h.MemTotal = fmt.Sprintf("%.0f GiB", float64(kib)/(1<<20))
		}
	}
	return h
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cgroupMode tells cgroup v2 (unified), v1 with a v2 mount (hybrid) or v1.
func cgroupMode() string {
	const cgroup2Magic = 0x63677270
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "unknown"
	}
	if st.Type == cgroup2Magic {
		return "v2 (unified)"
	}
	if err := syscall.Statfs("/sys/fs/cgroup/unified", &st); err == nil && st.Type == cgroup2Magic {
		return "v1 hybrid (v2 at /sys/fs/cgroup/unified)"
	}
	return "v1 (legacy)"
}

func (r *results) engine(name string) *engine {
	for _, e := range r.Engines {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// usable lists the engines that were set up, in report order.
func (r *results) usable() []*engine {
	var out []*engine
	for _, e := range r.Engines {
		if e.ok() && !e.runRmOnly {
			out = append(out, e)
		}
	}
	return out
}

// usableForRunRm is usable plus the rows that only `run --rm` times.
func (r *results) usableForRunRm() []*engine {
	var out []*engine
	for _, e := range r.Engines {
		if e.ok() {
			out = append(out, e)
		}
	}
	return out
}

// commandOf is the command timed for `run --rm`, as shown in the report.
func commandOf(e *engine) string {
	switch {
	case e.runRmOnly:
		return "`crun run --bundle B ID`, B's config.json the one berth wrote for `run --network none busybox true`"
	case e.Kind == ociEngine:
		return "`" + e.Name + " run --bundle B ID`"
	default:
		return "`" + strings.Join(append(append([]string{e.Name, "run", "--rm"}, e.runArgs...), "busybox", "true"), " ") + "`"
	}
}

// target is one goal of issue 2 checked against a figure.
type target struct {
	What   string
	Figure string
	Pass   bool
	Known  bool // false when a figure it needs is missing
}

func (t target) verdict() string {
	switch {
	case !t.Known:
		return "n/a"
	case t.Pass:
		return "PASS"
	default:
		return "MISS"
	}
}

// targets checks the goals of issue 2.
func (r *results) targets() []target {
	med := func(xs []float64) (float64, bool) {
		s, ok := summarize(xs)
		return s.Median, ok
	}
	var ts []target

	b, bok := med(r.RunRm["berth"])
	c, cok := med(r.RunRm["crun"])
	t := target{What: "`berth run --rm` ≤ 1.2× bare crun", Known: bok && cok}
	if t.Known {
		t.Pass = b <= 1.2*c
		t.Figure = fmt.Sprintf("%s vs %s = %s", fmtMS(b), fmtMS(c), ratio(b, c))
	}
	ts = append(ts, t)

	d, dok := med(r.RunRm["docker"])
	t = target{What: "`berth run --rm` ≥ 20× faster than docker", Known: bok && dok}
	if t.Known {
		t.Pass = d >= 20*b
		t.Figure = fmt.Sprintf("%s vs %s = %s faster", fmtMS(b), fmtMS(d), ratio(d, b))
	}
	ts = append(ts, t)

	dr := r.Detached["berth"]
	t = target{What: fmt.Sprintf("≥ 20 detached starts/s (%d)", r.Config.detached), Known: dr != nil && len(dr.Starts) == r.Config.detached}
	if t.Known {
		t.Pass = dr.rate() >= 20
		t.Figure = fmt.Sprintf("%.1f/s", dr.rate())
	}
	ts = append(ts, t)

	t = target{What: "berth daemon idle RSS ≤ 30 MiB"}
	var worst float64
	for _, i := range r.Idle {
		if i.Daemon == "berth daemon" {
			t.Known = true
			worst = max(worst, i.KiB)
		}
	}
	if t.Known {
		t.Pass = worst <= 30*1024
		t.Figure = fmtMiB(worst) + " (highest sample set)"
	}
	ts = append(ts, t)

	m, mok := 0.0, false
	if mr := r.Monitors["berth"]; mr != nil {
		m, mok = med(mr.RSS)
	}
	t = target{What: "monitor (berth-shim) RSS ≤ 2 MiB per container", Known: mok}
	if t.Known {
		t.Pass = m <= 2*1024
		t.Figure = fmtMiB(m) + " median"
	}
	ts = append(ts, t)

	bl, blok := med(r.Logs["berth"])
	dl, dlok := med(r.Logs["docker"])
	t = target{What: fmt.Sprintf("`berth logs` of %d lines ≤ 0.5× docker", r.Config.logLines), Known: blok && dlok}
	if t.Known {
		t.Pass = bl <= 0.5*dl
		t.Figure = fmt.Sprintf("%s vs %s = %s", fmtMS(bl), fmtMS(dl), ratio(bl, dl))
	}
	ts = append(ts, t)
	return ts
}

// markdown renders the report.
func (r *results) markdown() string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	h := r.Host
	p("# berth engine benchmark\n\n")
	p("Run %s UTC on %d CPUs, %s RAM, kernel %s, cgroup %s; load average (1/5/15 min) %s at start, %s at end.\n\n",
		h.Date.Format("2006-01-02 15:04"), h.CPUs, h.MemTotal, h.Kernel, h.Cgroup, h.LoadStart, h.LoadEnd)
	if busy(h.LoadStart) || busy(h.LoadEnd) {
		p("> **Busy machine:** the 1-minute load average was %s at start and %s at end on %d CPUs; other work competed with the engines, so the figures are slower and noisier than on a quiet machine.\n\n",
			firstField(h.LoadStart), firstField(h.LoadEnd), h.CPUs)
	}
	p("| engine | version | status |\n|---|---|---|\n")
	for _, e := range r.Engines {
		status := "ok"
		if !e.ok() {
			status = "**not run**: " + oneLine(e.Err.Error())
		}
		p("| %s | %s | %s |\n", e.Name, orDash(e.Version), status)
	}

	if r.ran("run-rm", "detached", "idle", "monitor", "logs") {
		ts := r.targets()
		p("\n## Targets (issue 2)\n\n| target | figure | result |\n|---|---|---|\n")
		for _, t := range ts {
			p("| %s | %s | %s |\n", t.What, orDash(t.Figure), t.verdict())
		}
		b, bok := summarize(r.RunRm["berth"])
		c, cok := summarize(r.RunRm["crun"])
		bs, bsok := summarize(r.RunRm["crun-berth-spec"])
		if bok && cok && bsok {
			p("\nWhere `run --rm`'s time goes (medians): crun on berth's own spec takes %s, %s more than on `crun spec`'s (the runtime's share of berth's hardening); berth adds %s to that (CLI, API, overlay mount, monitor, exit and removal).\n",
				fmtMS(bs.Median), fmtMS(bs.Median-c.Median), fmtMS(b.Median-bs.Median))
		}
	}

	if r.ran("run-rm") {
		base, hasBase := summarize(r.RunRm["berth"])
		p("\n## `run --rm busybox true`, end to end\n\n")
		p("%d rounds, round-robin (each round runs every engine once, starting one engine later each round), after 2 untimed warm-up runs each. Wall time of the CLI process from fork to exit; bare runtimes run a bundle from `crun spec` (terminal off, read-only rootfs, their own pid/net/ipc/uts/mount namespaces) on the same busybox rootfs. The row crun-berth-spec is crun on the config.json berth writes (Docker's default capabilities, seccomp profile with its compiled filter cached, masked and read-only paths, cgroup and cgroup namespace): the runtime's own cost of berth's hardening, so berth's row minus it is what berth itself adds (CLI, API, overlay mount, monitor).\n\n", r.Config.rounds)
		p("| engine | command | median | min | max | × berth | failed |\n|---|---|---|---|---|---|---|\n")
		for _, e := range r.Engines {
			s, ok := summarize(r.RunRm[e.Name])
			if !ok {
				p("| %s | %s | – | – | – | – | %s |\n", e.Name, commandOf(e), failCell(r, "run --rm/", e))
				continue
			}
			rel := "–"
			if hasBase {
				rel = ratio(s.Median, base.Median)
			}
			p("| %s | %s | %s | %s | %s | %s | %s |\n", e.Name, commandOf(e), fmtMS(s.Median), fmtMS(s.Min), fmtMS(s.Max), rel, failCell(r, "run --rm/", e))
		}
	}

	if r.ran("detached") {
		p("\n## %d detached starts (`run -d busybox sleep 600`)\n\n", r.Config.detached)
		p("Started one after the other; the rate is the count over the summed wall time of the start commands (a bare runtime's bundle is written before its clock starts). All are removed afterwards (`rm -f`, or `delete -f` for bare runtimes).\n\n")
		p("| engine | started | starts/s | median start | min | max | × berth rate | removal |\n|---|---|---|---|---|---|---|---|\n")
		bRate := r.Detached["berth"].rate()
		for _, e := range r.Engines {
			if e.runRmOnly {
				continue
			}
			dr := r.Detached[e.Name]
			s, ok := summarize(func() []float64 {
				if dr == nil {
					return nil
				}
				return dr.Starts
			}())
			if !ok {
				p("| %s | 0 | – | – | – | – | – | %s |\n", e.Name, failCell(r, "detached/", e))
				continue
			}
			rel := "–"
			if bRate > 0 {
				rel = ratio(dr.rate(), bRate)
			}
			p("| %s | %d | %.1f/s | %s | %s | %s | %s | %s |\n", e.Name, len(dr.Starts), dr.rate(), fmtMS(s.Median), fmtMS(s.Min), fmtMS(s.Max), rel, dr.Remove.Round(time.Millisecond))
		}
	}

	if r.ran("idle") {
		p("\n## Daemon idle RSS\n\nVmRSS from /proc, median of 5 samples over 2 s after 2 s of quiet; dockerd's figure adds its containerd. \"After load\" is right after setup, \"after workload\" is at the end with every container removed.\n\n")
		p("| daemon | when | RSS | processes |\n|---|---|---|---|\n")
		for _, i := range r.Idle {
			p("| %s | %s | %s | %d |\n", i.Daemon, i.When, fmtMiB(i.KiB), i.Procs)
		}
		if len(r.Idle) == 0 {
			p("| – | – | – | – |\n")
		}
	}

	if r.ran("monitor") {
		p("\n## Per-container monitor RSS (%d running containers each)\n\n", r.Config.monitors)
		p("The monitor is the parent process of each container's first process (from `inspect -f {{.State.Pid}}`); VmRSS and Pss (shared pages split among the processes that map them) per distinct monitor.\n\n")
		p("| engine | monitor | monitors | median RSS | min | max | median Pss |\n|---|---|---|---|---|---|---|\n")
		for _, e := range r.Engines {
			mr := r.Monitors[e.Name]
			if mr == nil {
				continue
			}
			s, ok := summarize(mr.RSS)
			ps, pok := summarize(mr.PSS)
			pss := "–"
			if pok {
				pss = fmtMiB(ps.Median)
			}
			comm := mr.Comm
			if len(mr.Unexpected) > 0 {
				comm += fmt.Sprintf(" (expected %s)", e.monitor)
			}
			if !ok {
				p("| %s | %s | 0 | – | – | – | – |\n", e.Name, orDash(comm))
				continue
			}
			p("| %s | %s | %d for %d containers | %s | %s | %s | %s |\n", e.Name, comm, s.N, mr.Containers, fmtMiB(s.Median), fmtMiB(s.Min), fmtMiB(s.Max), pss)
		}
	}

	if r.ran("logs") {
		p("\n## `logs` of %d lines\n\n", r.Config.logLines)
		p("A container ran `seq %d` and exited; `logs` was checked to return every line once, then `logs C > /dev/null` was timed %d times per engine, round-robin.\n\n", r.Config.logLines, r.Config.logRounds)
		p("| engine | median | min | max | × berth |\n|---|---|---|---|---|\n")
		lb, lbok := summarize(r.Logs["berth"])
		for _, name := range []string{"berth", "docker"} {
			s, ok := summarize(r.Logs[name])
			if !ok {
				if r.engine(name) != nil {
					p("| %s | – | – | – | – |\n", name)
				}
				continue
			}
			rel := "–"
			if lbok {
				rel = ratio(s.Median, lb.Median)
			}
			p("| %s | %s | %s | %s | %s |\n", name, fmtMS(s.Median), fmtMS(s.Min), fmtMS(s.Max), rel)
		}
	}

	r.netMarkdown(p)
	r.imagesMarkdown(p)
	r.dockerCLIMarkdown(p)

	if len(r.Errors) > 0 || len(r.Notes) > 0 {
		p("\n## Errors and notes\n\n")
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p("- %s: %s\n", k, oneLine(r.Errors[k].Error()))
		}
		for _, n := range r.Notes {
			p("- %s\n", oneLine(n))
		}
	}
	return w.String()
}

// ran reports whether any of the steps ran (-steps; none given is all).
func (r *results) ran(steps ...string) bool {
	if len(r.Config.steps) == 0 {
		return true
	}
	for _, st := range steps {
		if slices.Contains(r.Config.steps, st) {
			return true
		}
	}
	return false
}

func failCell(r *results, phase string, e *engine) string {
	if !e.ok() {
		return "not run"
	}
	if n := r.RunRmFail[e.Name]; phase == "run --rm/" && n > 0 {
		return fmt.Sprintf("%d (see below)", n)
	}
	if _, bad := r.Errors[phase+e.Name]; bad {
		return "error (see below)"
	}
	return "0"
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// oneLine flattens a message for a table cell or list item.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", "\\|")
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// busy reports whether a "/proc/loadavg"-style string shows a 1-minute load
// of 1 or more.
func busy(load string) bool {
	v, err := strconv.ParseFloat(firstField(load), 64)
	return err == nil && v >= 1
}
