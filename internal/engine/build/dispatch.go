package build

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/berth/berth/internal/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// expand applies variable expansion to the instructions that take it,
// with Docker's rules: ARG values, overridden by ENV.
func (j *job) expand(st *state, c instructions.Command) error {
	if _, isArg := c.(*instructions.ArgCommand); isArg {
		return nil // expanded one variable at a time by dispatchArg
	}
	env := st.env()
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if err := ex.Expand(func(w string) (string, error) { return expandWord(j.lex, w, env) }); err != nil {
			return invalidf("%v", err)
		}
	}
	if ex, ok := c.(instructions.SupportsSingleWordExpansionRaw); ok {
		lex := shell.NewLex(j.df.escape)
		lex.SkipProcessQuotes = true
		if err := ex.ExpandRaw(func(w string) (string, error) { return expandWord(lex, w, env) }); err != nil {
			return invalidf("%v", err)
		}
	}
	return nil
}

// dispatch runs one instruction on st.
func (j *job) dispatch(st *state, c instructions.Command) error {
	if err := j.expand(st, c); err != nil {
		return err
	}
	switch c := c.(type) {
	case *instructions.ArgCommand:
		return j.dispatchArg(st, c)
	case *instructions.EnvCommand:
		var parts []string
		for _, kv := range c.Env {
			if kv.Key == "" {
				return invalidf("ENV names must not be empty")
			}
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return j.metaStep(st, "ENV "+strings.Join(parts, " "), func() error {
			for _, kv := range c.Env {
				setEnv(&st.img.Config.Env, kv.Key, kv.Value)
			}
			return nil
		})
	case *instructions.LabelCommand:
		var parts []string
		for _, kv := range c.Labels {
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return j.metaStep(st, "LABEL "+strings.Join(parts, " "), func() error {
			if st.img.Config.Labels == nil {
				st.img.Config.Labels = map[string]string{}
			}
			for _, kv := range c.Labels {
				st.img.Config.Labels[kv.Key] = kv.Value
			}
			return nil
		})
	case *instructions.MaintainerCommand:
		return j.metaStep(st, "MAINTAINER "+c.Maintainer, func() error {
			st.img.Author = c.Maintainer
			return nil
		})
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			words, err := j.lex.ProcessWords(p, st.env())
			if err != nil {
				return invalidf("EXPOSE %s: %v", p, err)
			}
			for _, w := range words {
				ps, err := parsePorts(w)
				if err != nil {
					return err
				}
				ports = append(ports, ps...)
			}
		}
		return j.metaStep(st, "EXPOSE "+strings.Join(ports, " "), func() error {
			if st.img.Config.ExposedPorts == nil {
				st.img.Config.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range ports {
				st.img.Config.ExposedPorts[p] = struct{}{}
			}
			return nil
		})
	case *instructions.VolumeCommand:
		for _, v := range c.Volumes {
			if strings.TrimSpace(v) == "" {
				return invalidf("VOLUME specified can not be an empty string")
			}
		}
		b, _ := json.Marshal(c.Volumes)
		return j.metaStep(st, "VOLUME "+string(b), func() error {
			if st.img.Config.Volumes == nil {
				st.img.Config.Volumes = map[string]struct{}{}
			}
			for _, v := range c.Volumes {
				st.img.Config.Volumes[v] = struct{}{}
			}
			return nil
		})
	case *instructions.UserCommand:
		return j.metaStep(st, "USER "+c.User, func() error {
			st.img.Config.User = c.User
			return nil
		})
	case *instructions.StopSignalCommand:
		if err := checkSignal(c.Signal); err != nil {
			return err
		}
		return j.metaStep(st, "STOPSIGNAL "+c.Signal, func() error {
			st.img.Config.StopSignal = c.Signal
			return nil
		})
	case *instructions.ShellCommand:
		b, _ := json.Marshal(c.Shell)
		return j.metaStep(st, "SHELL "+string(b), func() error {
			st.img.Config.Shell = append([]string(nil), c.Shell...)
			return nil
		})
	case *instructions.HealthCheckCommand:
		b, _ := json.Marshal(c.Health)
		return j.metaStep(st, "HEALTHCHECK "+string(b), func() error {
			h := *c.Health
			st.img.Config.Healthcheck = &h
			return nil
		})
	case *instructions.OnbuildCommand:
		expr := strings.TrimSpace(c.Expression)
		return j.metaStep(st, "ONBUILD "+expr, func() error {
			st.img.Config.OnBuild = append(st.img.Config.OnBuild, expr)
			return nil
		})
	case *instructions.CmdCommand:
		cmd := j.commandLine(st, c.ShellDependantCmdLine)
		b, _ := json.Marshal(cmd)
		err := j.metaStep(st, "CMD "+string(b), func() error {
			st.img.Config.Cmd = cmd
			return nil
		})
		st.cmdSet = true
		return err
	case *instructions.EntrypointCommand:
		ep := j.commandLine(st, c.ShellDependantCmdLine)
		b, _ := json.Marshal(ep)
		return j.metaStep(st, "ENTRYPOINT "+string(b), func() error {
			st.img.Config.Entrypoint = ep
			if !st.cmdSet {
				// Docker: an ENTRYPOINT resets the base image's CMD.
				st.img.Config.Cmd = nil
			}
			return nil
		})
	case *instructions.WorkdirCommand:
		return j.dispatchWorkdir(st, c)
	case *instructions.RunCommand:
		return j.dispatchRun(st, c)
	case *instructions.CopyCommand:
		return j.dispatchCopy(st, c)
	case *instructions.AddCommand:
		return j.dispatchAdd(st, c)
	}
	return invalidf("%s is not supported", strings.ToUpper(c.Name()))
}

// meta runs a metadata-only step: no layer, an empty_layer history entry.
func (j *job) metaStep(st *state, createdBy string, apply func() error) error {
	key := cacheKey(st.key, []string{"meta", createdBy})
	if j.cached(st, key) {
		return nil
	}
	if err := apply(); err != nil {
		return err
	}
	st.history(createdBy, true)
	j.record(st, key)
	return nil
}

// commandLine is CMD's or ENTRYPOINT's argv: the shell form runs in the
// stage's SHELL.
func (j *job) commandLine(st *state, c instructions.ShellDependantCmdLine) []string {
	if c.PrependShell {
		if len(c.CmdLine) == 0 {
			return nil
		}
		return append(st.shell(), strings.Join(c.CmdLine, " "))
	}
	if len(c.CmdLine) == 0 {
		return nil
	}
	return append([]string(nil), c.CmdLine...)
}

func setEnv(env *[]string, k, v string) {
	for i, kv := range *env {
		if ek, _, _ := strings.Cut(kv, "="); ek == k {
			(*env)[i] = k + "=" + v
			return
		}
	}
	*env = append(*env, k+"="+v)
}

// dispatchArg declares build arguments. A value comes from --build-arg,
// else the default, else a meta ARG of that name, else BuildKit's
// automatic platform arguments.
func (j *job) dispatchArg(st *state, c *instructions.ArgCommand) error {
	for _, kv := range c.Args {
		key, err := expandWord(j.lex, kv.Key, st.env())
		if err != nil {
			return invalidf("ARG %s: %v", kv.Key, err)
		}
		if key == "" {
			return invalidf("ARG names must not be empty")
		}
		j.usedArgs[key] = true
		var val *string
		if v, ok := j.buildArg(key); ok {
			val = &v
		} else if kv.Value != nil {
			v, err := expandWord(j.lex, *kv.Value, st.env())
			if err != nil {
				return invalidf("ARG %s: %v", key, err)
			}
			val = &v
		} else if v, ok := j.metaArgs.Get(key); ok && (j.metaDecl[key] || isPlatformArg(key)) {
			val = &v
		}
		st.args = append(st.args, argVal{key: key, val: val})
	}
	return nil
}

func isPlatformArg(k string) bool {
	_, ok := platformArgs()[k]
	return ok
}

// parsePorts normalises an EXPOSE word: 80, 80/tcp, 8000-8002/udp.
func parsePorts(w string) ([]string, error) {
	proto := "tcp"
	spec := w
	if i := strings.LastIndexByte(w, '/'); i >= 0 {
		spec, proto = w[:i], strings.ToLower(w[i+1:])
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return nil, invalidf("EXPOSE %s: invalid protocol %q (want tcp, udp or sctp)", w, proto)
	}
	if strings.Contains(spec, ":") {
		return nil, invalidf("EXPOSE %s: a host address or port cannot be given to EXPOSE (publish it with run -p)", w)
	}
	lo, hi, isRange := strings.Cut(spec, "-")
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(hi, 10, 16)
	}
	if err1 != nil || err2 != nil || a == 0 || b < a {
		return nil, invalidf("EXPOSE %s: invalid port (want PORT[-PORT][/tcp|udp|sctp] with ports from 1 to 65535)", w)
	}
	var out []string
	for p := a; p <= b; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}

var signalNames = map[string]bool{
	"HUP": true, "INT": true, "QUIT": true, "ILL": true, "TRAP": true, "ABRT": true, "IOT": true, "BUS": true,
	"FPE": true, "KILL": true, "USR1": true, "SEGV": true, "USR2": true, "PIPE": true, "ALRM": true,
	"TERM": true, "STKFLT": true, "CHLD": true, "CONT": true, "STOP": true, "TSTP": true, "TTIN": true,
	"TTOU": true, "URG": true, "XCPU": true, "XFSZ": true, "VTALRM": true, "PROF": true, "WINCH": true,
	"IO": true, "POLL": true, "PWR": true, "SYS": true,
}

func checkSignal(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return invalidf("STOPSIGNAL %s: signal numbers go from 1 to 64", s)
		}
		return nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if signalNames[name] {
		return nil
	}
	if rest, ok := strings.CutPrefix(name, "RTMIN+"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && n <= 30 {
			return nil
		}
	}
	if rest, ok := strings.CutPrefix(name, "RTMAX-"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && n <= 30 {
			return nil
		}
	}
	return invalidf("STOPSIGNAL %s: unknown signal (want a name such as SIGTERM or a number)", s)
}

// absWorkdir makes p absolute against the current working directory.
func absWorkdir(cur, p string) string {
	if !path.IsAbs(p) {
		if cur == "" {
			cur = "/"
		}
		p = path.Join(cur, p)
	}
	return path.Clean(p)
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
