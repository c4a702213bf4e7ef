package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// dockerCLIResult holds the figures of one daemon driven by the docker CLI.
type dockerCLIResult struct {
	RunRm []float64 // ms per `docker run --rm busybox true`
	Ps    []float64 // ms per `docker ps` with dockerCLIContainers running
}

// dockerCLIContainers is how many containers run while `docker ps` is timed.
const dockerCLIContainers = 50

// dockerCLI times the same docker CLI binary (dockerd's) against the berth
// daemon's socket and against dockerd's (issue 5): `docker run --rm
// busybox true` and `docker ps` with 50 running containers, round-robin.
func dockerCLI(ctx context.Context, cfg config, r *results) {
	b, d := r.engine("berth"), r.engine("docker")
	if b == nil || d == nil || !b.ok() || !d.ok() || len(b.prefix) < 3 || len(d.prefix) < 3 {
		r.Errors["docker CLI"] = fmt.Errorf("needs both the berth and the docker engine (-engines berth,docker)")
		return
	}
	conf := filepath.Join(cfg.work, "docker-cli-config")
	if err := os.MkdirAll(conf, 0o700); err != nil {
		r.Errors["docker CLI"] = err
		return
	}
	env := []string{"DOCKER_CONFIG=" + conf}
	cli := d.prefix[0]
	targets := []struct {
		name string
		argv []string
	}{
		{"berth", []string{cli, "-H", b.prefix[2]}},
		{"docker", []string{cli, "-H", d.prefix[2]}},
	}
	r.DockerCLI = map[string]*dockerCLIResult{}
	for _, t := range targets {
		r.DockerCLI[t.name] = &dockerCLIResult{}
		// Untimed warm-up, and a check that the CLI talks to the daemon.
		for range 2 {
			if _, err := output(ctx, env, append(t.argv, "run", "--rm", "--network", "none", "busybox", "true")...); err != nil {
				r.Errors["docker CLI/"+t.name] = err
				return
			}
		}
	}
	for round := 0; round < cfg.rounds && ctx.Err() == nil; round++ {
		for i := range targets {
			t := targets[(round+i)%len(targets)]
			dur, err := timed(ctx, env, nil, append(t.argv, "run", "--rm", "--network", "none", "busybox", "true")...)
			if err != nil {
				r.Errors["docker CLI run --rm/"+t.name] = err
				continue
			}
			r.DockerCLI[t.name].RunRm = append(r.DockerCLI[t.name].RunRm, ms(dur))
		}
	}

	// 50 running containers on each daemon, started with its own CLI.
	started := map[*engine][]string{}
	defer func() {
		for e, ids := range started {
			if err := e.remove(context.Background(), ids); err != nil {
				r.Errors["docker CLI rm/"+e.Name] = err
			}
		}
	}()
	for _, e := range []*engine{b, d} {
		for i := 0; i < dockerCLIContainers && ctx.Err() == nil; i++ {
			id, _, err := e.startDetached(ctx)
			if err != nil {
				r.Errors["docker CLI ps/"+e.Name] = err
				return
			}
			started[e] = append(started[e], id)
		}
	}
	for _, t := range targets {
		out, err := output(ctx, env, append(t.argv, "ps", "-q")...)
		if err != nil {
			r.Errors["docker CLI ps/"+t.name] = err
			return
		}
		if n := len(strings.Fields(out)); n != dockerCLIContainers {
			r.Errors["docker CLI ps/"+t.name] = fmt.Errorf("docker ps listed %d containers, want %d", n, dockerCLIContainers)
			return
		}
	}
	for round := 0; round < cfg.rounds && ctx.Err() == nil; round++ {
		for i := range targets {
			t := targets[(round+i)%len(targets)]
			dur, err := timed(ctx, env, nil, append(t.argv, "ps")...)
			if err != nil {
				r.Errors["docker CLI ps/"+t.name] = err
				continue
			}
			r.DockerCLI[t.name].Ps = append(r.DockerCLI[t.name].Ps, ms(dur))
		}
	}
}

// dockerCLITargets checks the goals of issue 5.
func (r *results) dockerCLITargets() []target {
	med := func(name string, pick func(*dockerCLIResult) []float64) (float64, bool) {
		dr := r.DockerCLI[name]
		if dr == nil {
			return 0, false
		}
		s, ok := summarize(pick(dr))
		return s.Median, ok
	}
	runRm := func(d *dockerCLIResult) []float64 { return d.RunRm }
	ps := func(d *dockerCLIResult) []float64 { return d.Ps }
	var ts []target
	b, bok := med("berth", runRm)
	d, dok := med("docker", runRm)
	t := target{What: "`docker run --rm` against berth ≥ 5× faster than against dockerd", Known: bok && dok}
	if t.Known {
		t.Pass = d >= 5*b
		t.Figure = fmt.Sprintf("%s vs %s = %s faster", fmtMS(b), fmtMS(d), ratio(d, b))
	}
	ts = append(ts, t)
	b, bok = med("berth", ps)
	d, dok = med("docker", ps)
	t = target{What: fmt.Sprintf("`docker ps` (%d containers) against berth at least as fast as against dockerd", dockerCLIContainers), Known: bok && dok}
	if t.Known {
		t.Pass = b <= d
		t.Figure = fmt.Sprintf("%s vs %s = %s", fmtMS(b), fmtMS(d), ratio(b, d))
	}
	return append(ts, t)
}

// dockerCLIMarkdown renders the section.
func (r *results) dockerCLIMarkdown(p func(string, ...any)) {
	if r.DockerCLI == nil {
		return
	}
	p("\n## Through the docker CLI (issue 5)\n\n")
	p("The same docker CLI binary (dockerd's) against the berth daemon's socket and against dockerd's, %d rounds each, round-robin, after 2 untimed runs: `docker run --rm --network none busybox true`, and `docker ps` with %d running containers on each daemon.\n\n", r.Config.rounds, dockerCLIContainers)
	p("| target | figure | result |\n|---|---|---|\n")
	for _, t := range r.dockerCLITargets() {
		p("| %s | %s | %s |\n", t.What, orDash(t.Figure), t.verdict())
	}
	p("\n| command | daemon | median | min | max | × berth |\n|---|---|---|---|---|---|\n")
	for _, c := range []struct {
		name string
		pick func(*dockerCLIResult) []float64
	}{{"`docker run --rm busybox true`", func(d *dockerCLIResult) []float64 { return d.RunRm }},
		{fmt.Sprintf("`docker ps` (%d running)", dockerCLIContainers), func(d *dockerCLIResult) []float64 { return d.Ps }}} {
		base, hasBase := summarize(func() []float64 {
			if dr := r.DockerCLI["berth"]; dr != nil {
				return c.pick(dr)
			}
			return nil
		}())
		for _, name := range []string{"berth", "docker"} {
			dr := r.DockerCLI[name]
			if dr == nil {
				continue
			}
			s, ok := summarize(c.pick(dr))
			if !ok {
				p("| %s | %s | – | – | – | – |\n", c.name, name)
				continue
			}
			rel := "–"
			if hasBase {
				rel = ratio(s.Median, base.Median)
			}
			p("| %s | %s | %s | %s | %s | %s |\n", c.name, name, fmtMS(s.Median), fmtMS(s.Min), fmtMS(s.Max), rel)
		}
	}
}
