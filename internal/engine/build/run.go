package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/opencontainers/go-digest"
)

// parentChain is the chain ID of st's top layer ("" for none).
func (s *state) parentChain() digest.Digest {
	ids := s.img.RootFS.DiffIDs
	if len(ids) == 0 {
		return ""
	}
	chain := image.ChainIDs(ids)
	return chain[len(chain)-1]
}

// snapshotStep mounts a snapshot of st's layers, runs fn on its root file
// system, and turns what fn changed into a layer on top of st. Nothing
// changed means no layer (added is false), as BuildKit drops empty layers.
// The snapshot is gone when it returns, whatever happened.
func (j *job) snapshotStep(st *state, fn func(rootfs string) error) (added bool, err error) {
	images := j.b.images
	lowers, err := images.LayerDirsOf(st.img.RootFS.DiffIDs)
	if err != nil {
		return false, err
	}
	snaps := images.Snapshots()
	id := snapPrefix + randomID()
	rootfs, err := snaps.Prepare(id, lowers)
	if err != nil {
		snaps.Remove(id)
		return false, fmt.Errorf("mounting a snapshot: %w", err)
	}
	defer func() {
		if rerr := snaps.Remove(id); rerr != nil && err == nil {
			err = fmt.Errorf("removing the step's snapshot: %w", rerr)
		}
	}()
	if err := fn(rootfs); err != nil {
		return false, err
	}
	if err := snaps.Unmount(id); err != nil {
		return false, err
	}
	upper, err := snaps.UpperDir(id)
	if err != nil {
		return false, err
	}
	empty, err := pruneUpper(upper, lowers)
	if err != nil {
		return false, err
	}
	if empty {
		return false, nil
	}
	layer, err := images.AddLayerDir(st.parentChain(), upper)
	if err != nil {
		return false, fmt.Errorf("storing the step's layer: %w", err)
	}
	st.img.RootFS.DiffIDs = append(st.img.RootFS.DiffIDs, layer.DiffID)
	st.cfg = nil
	return true, nil
}

// dispatchWorkdir sets the working directory and creates it if missing
// (a layer only then).
func (j *job) dispatchWorkdir(st *state, c *instructions.WorkdirCommand) error {
	wd := absWorkdir(st.img.Config.WorkingDir, c.Path)
	key := cacheKey(st.key, []string{"WORKDIR", wd})
	if j.cached(st, key) {
		return nil
	}
	st.img.Config.WorkingDir = wd
	added, err := j.snapshotStep(st, func(rootfs string) error {
		return mkdirAllIn(rootfs, wd)
	})
	if err != nil {
		return err
	}
	st.history("WORKDIR "+wd, !added)
	j.record(st, key)
	return nil
}

// tailWriter passes output through and keeps its last bytes.
type tailWriter struct {
	w    interface{ Write([]byte) (int, error) }
	tail []byte
	max  int
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.tail = append(t.tail, p...)
	if len(t.tail) > t.max {
		t.tail = append([]byte(nil), t.tail[len(t.tail)-t.max:]...)
	}
	return t.w.Write(p)
}

func (t *tailWriter) lastLines(n int) string {
	s := strings.TrimRight(string(t.tail), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runDescriptor is what a RUN step's cache key covers besides the state.
type runDescriptor struct {
	Args     []string
	ArgEnv   []string
	Network  string
	Heredocs []string
}

// dispatchRun runs a command in a container on a snapshot of the image.
func (j *job) dispatchRun(st *state, c *instructions.RunCommand) error {
	for _, f := range c.FlagsUsed {
		if f != "network" {
			return invalidf("RUN --%s is not supported by berth build (it needs BuildKit); use a plain RUN", f)
		}
	}
	network := j.opts.Network
	switch n := instructions.GetNetwork(c); n {
	case "host", "none":
		network = n
	}
	args := append([]string(nil), c.CmdLine...)
	var mounts []Mount
	var heredocs []string
	if len(c.Files) > 0 {
		if len(args) != 1 || !c.PrependShell {
			return invalidf("RUN: a heredoc needs the shell form")
		}
		if h := parser.MustParseHeredoc(args[0]); h != nil {
			f := c.Files[0]
			data := f.Data
			if f.Chomp {
				data = parser.ChompHeredocContent(data)
			}
			heredocs = append(heredocs, f.Name+"\x00"+data)
			if strings.HasPrefix(data, "#!") {
				// A script with its own interpreter runs as a file.
				host := filepath.Join(j.tmp, randomID())
				if err := os.WriteFile(host, []byte(data), 0o755); err != nil {
					return err
				}
				dst := "/dev/pipes/" + filepath.Base(f.Name)
				mounts = append(mounts, Mount{Source: host, Destination: dst})
				args = []string{dst}
			} else {
				args = []string{data}
			}
		} else {
			full := args[0]
			for _, f := range c.Files {
				full += "\n" + f.Data + f.Name
				heredocs = append(heredocs, f.Name+"\x00"+f.Data)
			}
			args = []string{full}
		}
	}
	if c.PrependShell {
		args = append(st.shell(), strings.Join(args, " "))
	}
	if len(args) == 0 || (len(args) == 1 && args[0] == "") {
		return invalidf("RUN needs a command")
	}
	// Build arguments reach the command's environment (ENV wins), and
	// the history and cache key as Docker's "|N K=V" prefix.
	argEnv := map[string]string{}
	for k, v := range st.argValues() {
		if !st.hasEnv(k) {
			argEnv[k] = v
		}
	}
	env := append([]string(nil), st.img.Config.Env...)
	for _, kv := range sortedEnv(argEnv) {
		env = append(env, kv)
	}
	for k := range proxyArgs {
		if v, ok := j.buildArg(k); ok && !st.hasEnv(k) {
			if _, declared := argEnv[k]; !declared {
				env = append(env, k+"="+v)
			}
		}
	}
	sort.Strings(heredocs)
	createdBy := "RUN "
	if shown := sortedEnvNoProxy(argEnv); len(shown) > 0 {
		createdBy += fmt.Sprintf("|%d %s ", len(shown), strings.Join(shown, " "))
	}
	createdBy += strings.Join(args, " ")
	key := cacheKey(st.key, runDescriptor{Args: args, ArgEnv: sortedEnvNoProxy(argEnv), Network: network, Heredocs: heredocs})
	if j.cached(st, key) {
		return nil
	}
	id := snapPrefix + randomID()
	var out *tailWriter
	added, err := j.snapshotStep(st, func(rootfs string) error {
		cwd := st.img.Config.WorkingDir
		if cwd == "" {
			cwd = "/"
		}
		if err := mkdirAllIn(rootfs, cwd); err != nil {
			return fmt.Errorf("working directory %s: %w", cwd, err)
		}
		j.printf(" ---> Running in %s\n", id[len(snapPrefix):len(snapPrefix)+12])
		out = &tailWriter{w: j.out, max: 8 << 10}
		code, err := j.b.exec.Run(j.ctx, &Process{ID: id, Rootfs: rootfs, Args: args, Env: env, Cwd: cwd,
			User: st.img.Config.User, Hostname: id[len(snapPrefix) : len(snapPrefix)+12], Network: network,
			Mounts: mounts, Output: out})
		if err != nil {
			if j.ctx.Err() != nil {
				return j.ctx.Err()
			}
			code := 0
			switch {
			case errors.Is(err, errdefs.ErrCommandNotFound):
				code = 127
			case errors.Is(err, errdefs.ErrCommandNotExecutable):
				code = 126
			}
			if code != 0 {
				return &Error{Code: code, Err: fmt.Errorf("RUN exit status %d: %w", code, err)}
			}
			return err
		}
		if code != 0 {
			return &Error{Code: code, Output: out.lastLines(20),
				Err: fmt.Errorf("RUN exit status %d: the command '%s' returned a non-zero code: %d", code, strings.Join(args, " "), code)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	j.printf(" ---> Removed intermediate container %s\n", id[len(snapPrefix):len(snapPrefix)+12])
	st.history(createdBy, !added)
	j.record(st, key)
	return nil
}

func sortedEnvNoProxy(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, kv := range sortedEnv(m) {
		k, _, _ := strings.Cut(kv, "=")
		if !proxyArgs[k] {
			out = append(out, kv)
		}
	}
	return out
}
