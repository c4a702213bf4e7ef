package runtime

import (
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecOpts describe a process to run in an existing container (docker exec).
type ExecOpts struct {
	Args []string
	// Env entries override the container's (same key) or are added.
	Env                         []string
	Cwd                         string // "" keeps the container's
	UID, GID                    uint32
	AdditionalGids              []uint32
	SetUser                     bool // use UID/GID/AdditionalGids instead of the container's user
	Terminal                    bool
	ConsoleHeight, ConsoleWidth uint
	Privileged                  bool // docker exec --privileged: all of the container's bounding caps
}

// ExecProcess returns the process.json for an exec in a container whose
// init process is base: same capabilities, no-new-privileges, seccomp (which
// applies to the whole container), OOM score and rlimits.
func ExecProcess(base *specs.Process, o ExecOpts) (*specs.Process, error) {
	if len(o.Args) == 0 || o.Args[0] == "" {
		return nil, invalid("exec command", "no command given")
	}
	if o.Cwd != "" && !filepath.IsAbs(o.Cwd) {
		return nil, invalid("exec working directory", "%q must be an absolute path", o.Cwd)
	}
	p := *base
	p.Args = append([]string(nil), o.Args...)
	p.Env = mergeEnv(base.Env, o.Env)
	if o.Cwd != "" {
		p.Cwd = o.Cwd
	}
	if o.SetUser {
		p.User = specs.User{UID: o.UID, GID: o.GID, AdditionalGids: append([]uint32(nil), o.AdditionalGids...)}
	}
	p.Terminal = o.Terminal
	p.ConsoleSize = nil
	if o.Terminal && o.ConsoleHeight > 0 && o.ConsoleWidth > 0 {
		p.ConsoleSize = &specs.Box{Height: o.ConsoleHeight, Width: o.ConsoleWidth}
	}
	if o.Terminal && !hasEnv(p.Env, "TERM") {
		p.Env = append(p.Env, "TERM=xterm")
	}
	if base.Capabilities != nil {
		c := *base.Capabilities
		if o.Privileged {
			c.Effective = append([]string(nil), c.Bounding...)
			c.Permitted = append([]string(nil), c.Bounding...)
		}
		p.Capabilities = &c
	}
	return &p, nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// mergeEnv returns base with each KEY=value of over replacing base's KEY or
// appended.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, e := range over {
		k, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, b := range out {
			if bk, _, _ := strings.Cut(b, "="); bk == k {
				out[i], replaced = e, true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}
