// Package build owns berth's Dockerfile builder: it parses Dockerfiles with
// BuildKit's parser and instruction packages, runs each instruction with
// Docker's semantics (RUN in a real container through an Executor the
// daemon provides; COPY and ADD into a snapshot of the image being built),
// turns each step's overlay upper directory into a layer, keeps a
// content-addressed cache of steps across daemon restarts, and commits the
// result to the image store. Only the stages the target needs are built.
//
// Vocabulary: a build context (Context) is the tar the client sent; a
// stage is one FROM and what follows; a step is one instruction; a step's
// result is an image config (kept in the cache, see cache.go) whose layers
// live in the image store.
package build

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Executor runs the process of a RUN step in a container with berth's
// isolation (namespaces, capabilities, seccomp, cgroups, network). The
// builder owns the root file system (a mounted snapshot); the executor
// owns the container around it and must leave nothing behind: no
// container, no namespace, no mount point stubs it created in Rootfs.
type Executor interface {
	Run(ctx context.Context, p *Process) (exitCode int, err error)
}

// Process is one RUN step's process.
type Process struct {
	ID       string // unique among live steps; usable as a container ID
	Rootfs   string // the mounted root file system the step changes
	Args     []string
	Env      []string
	Cwd      string
	User     string // a Dockerfile USER value, resolved inside Rootfs
	Hostname string
	// Network is "bridge" (the default network), "host" or "none".
	Network string
	// Mounts are extra read-only bind mounts (heredoc scripts).
	Mounts []Mount
	// Output receives stdout and stderr, in order.
	Output io.Writer
}

// Mount is a read-only bind mount of a host file into a RUN container.
type Mount struct {
	Source, Destination string
}

// Puller fetches an image a FROM or COPY --from names that is not in the
// local store. The registry client implements it; without one, a missing
// image is an error that says how to get it.
type Puller interface {
	Pull(ctx context.Context, ref string, progress io.Writer) (*image.Image, error)
}

// Options are a build's parameters (the /build query).
type Options struct {
	// Dockerfile is the Dockerfile's path in the context (default
	// "Dockerfile").
	Dockerfile string
	Tags       []string
	// BuildArgs are --build-arg values; a nil value takes the variable
	// from nowhere (the client sends nil for --build-arg NAME with NAME
	// unset in its environment).
	BuildArgs map[string]*string
	Target    string
	NoCache   bool
	Labels    map[string]string
	// Pull asks the Puller for every base image even if it is local.
	Pull bool
	// Network is the RUN containers' network: "" or "default" (bridge),
	// "bridge", "host" or "none".
	Network string
	// Platform, when set, must be this host's (linux/GOARCH).
	Platform string
	// Quiet leaves step output out of the stream; a failing RUN's output
	// is then carried in the error.
	Quiet bool
}

// Result is a finished build.
type Result struct {
	ID   string   // sha256:…
	Tags []string // familiar names given
}

// Builder builds images into an image store. It is safe for concurrent
// builds.
type Builder struct {
	mu     sync.RWMutex // builds share it; Prune takes it alone
	images *image.Store
	exec   Executor
	puller Puller
	cache  *cache
	tmp    string
	log    *slog.Logger
}

// New opens the builder whose state (the step cache) lives in dir. It
// removes what an interrupted build left: temporary files and build
// snapshots (unmounting them).
func New(dir string, images *image.Store, exec Executor, log *slog.Logger) (*Builder, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b := &Builder{images: images, exec: exec, cache: &cache{dir: filepath.Join(dir, "cache")},
		tmp: filepath.Join(images.TmpDir(), "build"), log: log}
	for _, d := range []string{b.cache.dir, b.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("builder: %w", err)
		}
	}
	if ids, err := images.Snapshots().List(); err == nil {
		for _, id := range ids {
			if strings.HasPrefix(id, snapPrefix) {
				if err := images.Snapshots().Remove(id); err != nil {
					log.Warn("removing a snapshot an interrupted build left", "id", id, "err", err)
				}
			}
		}
	}
	return b, nil
}

// SetPuller wires the registry client in.
func (b *Builder) SetPuller(p Puller) { b.puller = p }

// Prune drops every cached step and the layers only the cache used (those
// of failed or superseded builds), waiting for running builds to finish.
// It returns how many steps there were and the bytes freed.
func (b *Builder) Prune() (steps int, freed int64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var layers []image.Layer
	seen := map[digest.Digest]bool{}
	for _, cfg := range b.cache.all() {
		var img ocispec.Image
		if json.Unmarshal(cfg, &img) != nil {
			continue
		}
		for i, c := range image.ChainIDs(img.RootFS.DiffIDs) {
			if !seen[c] {
				seen[c] = true
				layers = append(layers, image.Layer{DiffID: img.RootFS.DiffIDs[i], ChainID: c})
			}
		}
	}
	if steps, err = b.cache.prune(); err != nil {
		return steps, 0, err
	}
	freed, err = b.images.ReleaseLayers(layers)
	return steps, freed, err
}

const snapPrefix = "build-"

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// proxyArgs may be passed with --build-arg without an ARG; they reach RUN
// but never the image's history or the cache key, as in Docker.
var proxyArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// platformArgs are BuildKit's automatic platform variables.
func platformArgs() map[string]string {
	p := "linux/" + goruntime.GOARCH
	return map[string]string{
		"TARGETPLATFORM": p, "TARGETOS": "linux", "TARGETARCH": goruntime.GOARCH, "TARGETVARIANT": "",
		"BUILDPLATFORM": p, "BUILDOS": "linux", "BUILDARCH": goruntime.GOARCH, "BUILDVARIANT": "",
	}
}

// Build builds the Dockerfile of bc with opts, writing Docker's progress
// text to out, and returns the image it committed. A failed build commits
// nothing and leaves no container, mount or temporary file; the layers of
// the steps that succeeded stay in the cache.
func (b *Builder) Build(ctx context.Context, bc *Context, opts Options, out io.Writer) (*Result, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	dfPath := opts.Dockerfile
	if dfPath == "" {
		dfPath = "Dockerfile"
	}
	content, err := bc.ReadFile(dfPath)
	if err != nil && opts.Dockerfile == "" {
		if c2, err2 := bc.ReadFile("dockerfile"); err2 == nil {
			content, err, dfPath = c2, nil, "dockerfile"
		}
	}
	if err != nil {
		return nil, fmt.Errorf("Cannot locate specified Dockerfile: %s (no such file in the build context; pass its path in the context with -f): %w", dfPath, errdefs.ErrInvalidArgument)
	}
	display := dfPath
	if strings.HasPrefix(filepath.Base(dfPath), ".dockerfile.") {
		display = "Dockerfile" // the CLI's name for a Dockerfile from stdin
	}
	var tags []string
	for _, t := range opts.Tags {
		n, err := reference.Parse(t)
		if err != nil {
			return nil, fmt.Errorf("invalid tag %q: %w", t, err)
		}
		if n.Digest() != "" {
			return nil, fmt.Errorf("invalid tag %q: a tag cannot carry a digest: %w", t, errdefs.ErrInvalidArgument)
		}
		tags = append(tags, n.FamiliarString())
	}
	if err := checkPlatform(opts.Platform); err != nil {
		return nil, err
	}
	df, err := parseDockerfile(display, content)
	if err != nil {
		return nil, err
	}
	if err := bc.ApplyDockerignore(); err != nil {
		return nil, err
	}
	switch opts.Network {
	case "", "default", "bridge":
		opts.Network = "bridge"
	case "host", "none":
	default:
		return nil, fmt.Errorf("network mode %q is not supported for builds (want default, bridge, host or none): %w", opts.Network, errdefs.ErrInvalidArgument)
	}
	tmp, err := os.MkdirTemp(b.tmp, "job-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	j := &job{b: b, ctx: ctx, opts: opts, bc: bc, df: df, out: out, tmp: tmp,
		lex: shell.NewLex(df.escape), results: map[int]*state{}, building: map[int]bool{}, usedArgs: map[string]bool{}}
	for _, w := range df.warnings {
		j.printf("[WARNING]: %s\n", w)
	}
	if err := j.resolveMetaArgs(); err != nil {
		return nil, err
	}
	target := df.stages[len(df.stages)-1]
	if opts.Target != "" {
		s, ok := df.stageByRef(opts.Target, len(df.stages))
		if !ok || s.name == "" {
			return nil, fmt.Errorf("failed to reach build target %s in Dockerfile: no stage is named %q: %w", opts.Target, opts.Target, errdefs.ErrInvalidArgument)
		}
		target = s
	}
	if len(opts.Labels) > 0 {
		keys := make([]string, 0, len(opts.Labels))
		for k := range opts.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			target.cmds = append(target.cmds, instructions.NewLabelCommand(k, opts.Labels[k], true))
		}
	}
	needed := j.neededStages(target)
	for _, s := range needed {
		j.total += 1 + len(s.cmds)
	}
	// Dependencies first, in Dockerfile order, as Docker prints them.
	var st *state
	for _, s := range needed {
		if st, err = j.buildStage(s); err != nil {
			return nil, err
		}
	}
	if len(st.img.RootFS.DiffIDs) == 0 && !st.changed {
		return nil, fmt.Errorf("No image was generated. Is your Dockerfile empty? (a FROM scratch stage needs at least one instruction): %w", errdefs.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	committed, err := b.images.Commit(st.bytes(), opts.Tags)
	if err != nil {
		return nil, err
	}
	var unused []string
	for k := range opts.BuildArgs {
		if !j.usedArgs[k] && !proxyArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		j.printf("[Warning] One or more build-args %v were not consumed\n", unused)
	}
	if a, ok := out.(interface{ Aux(id string) }); ok {
		a.Aux(committed.ID)
	}
	j.printf("Successfully built %s\n", shortID(committed.ID))
	for _, t := range tags {
		j.printf("Successfully tagged %s\n", t)
	}
	return &Result{ID: committed.ID, Tags: tags}, nil
}

func checkPlatform(p string) error {
	if p == "" {
		return nil
	}
	want := "linux/" + goruntime.GOARCH
	for _, one := range strings.Split(p, ",") {
		one = strings.TrimSpace(strings.ToLower(one))
		if one == want || one == "linux" || strings.HasPrefix(one, want+"/") {
			continue
		}
		return fmt.Errorf("platform %q is not supported: berth builds for this host's platform %s only: %w", p, want, errdefs.ErrNotImplemented)
	}
	return nil
}

func shortID(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// job is one build in progress.
type job struct {
	b    *Builder
	ctx  context.Context
	opts Options
	bc   *Context
	df   *dockerfile
	out  io.Writer
	tmp  string
	lex  *shell.Lex

	step, total int
	metaArgs    *mapEnv // meta ARGs (before the first FROM) with values
	metaDecl    map[string]bool
	usedArgs    map[string]bool
	results     map[int]*state
	building    map[int]bool
}

func (j *job) printf(format string, args ...any) {
	fmt.Fprintf(j.out, format, args...)
}

// buildArg returns the --build-arg value for k, if one was given.
func (j *job) buildArg(k string) (string, bool) {
	v, ok := j.opts.BuildArgs[k]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func (j *job) resolveMetaArgs() error {
	j.metaArgs = newMapEnv()
	j.metaDecl = map[string]bool{}
	for k, v := range platformArgs() {
		j.metaArgs.set(k, v)
	}
	for i, a := range j.df.metaArgs {
		for _, kv := range a.Args {
			j.metaDecl[kv.Key] = true
			if v, ok := j.buildArg(kv.Key); ok {
				j.usedArgs[kv.Key] = true
				j.metaArgs.set(kv.Key, v)
				continue
			}
			j.usedArgs[kv.Key] = true
			if kv.Value != nil {
				v, err := expandWord(j.lex, *kv.Value, j.metaArgs)
				if err != nil {
					return &Error{File: j.df.name, Line: j.df.metaLine[i], Err: fmt.Errorf("ARG %s: %v: %w", kv.Key, err, errdefs.ErrInvalidArgument)}
				}
				j.metaArgs.set(kv.Key, v)
			} else if _, auto := platformArgs()[kv.Key]; !auto {
				delete(j.metaArgs.m, kv.Key)
			}
		}
	}
	return nil
}

// baseRef expands a stage's FROM name with the meta ARGs.
func (j *job) baseRef(s *stage) (string, error) {
	ref, err := expandWord(j.lex, s.base, j.metaArgs)
	if err != nil {
		return "", &Error{File: j.df.name, Line: s.line, Err: fmt.Errorf("FROM %s: %v: %w", s.base, err, errdefs.ErrInvalidArgument)}
	}
	if ref == "" {
		return "", &Error{File: j.df.name, Line: s.line, Err: fmt.Errorf("FROM %s: the base image name is empty after expanding build arguments: %w", s.base, errdefs.ErrInvalidArgument)}
	}
	return ref, nil
}

// neededStages returns the stages target needs (through FROM and COPY
// --from), target last, in Dockerfile order: only those are built.
func (j *job) neededStages(target *stage) []*stage {
	seen := map[int]bool{}
	var visit func(s *stage)
	visit = func(s *stage) {
		if seen[s.index] {
			return
		}
		seen[s.index] = true
		if ref, err := j.baseRef(s); err == nil {
			if dep, ok := j.df.stageByRef(ref, s.index); ok {
				visit(dep)
			}
		}
		for _, c := range s.cmds {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
				from, err := expandWord(j.lex, cp.From, j.metaArgs)
				if err != nil {
					continue
				}
				if dep, ok := j.df.stageByRef(from, s.index); ok {
					visit(dep)
				}
			}
		}
	}
	visit(target)
	var out []*stage
	for _, s := range j.df.stages {
		if seen[s.index] {
			out = append(out, s)
		}
	}
	return out
}

// state is a stage being built.
type state struct {
	stage   *stage
	img     dockerspec.DockerOCIImage
	cfg     []byte // img as JSON; nil when img changed since
	key     digest.Digest
	args    []argVal // ARGs declared in the stage, in order
	cmdSet  bool     // a CMD was given in this stage
	changed bool     // a step changed the base image
}

type argVal struct {
	key string
	val *string
}

// bytes returns the config JSON of the current state.
func (s *state) bytes() []byte {
	if s.cfg == nil {
		b, err := json.Marshal(s.img)
		if err != nil {
			panic(err)
		}
		s.cfg = b
	}
	return s.cfg
}

func (s *state) id() digest.Digest { return digest.FromBytes(s.bytes()) }

// load sets the state to a config (a base image's or a cached step's).
func (s *state) load(cfg []byte) error {
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(cfg, &img); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	s.img, s.cfg = img, cfg
	return nil
}

// argEnv returns the ARG values in effect (declared, with a value),
// without those ENV overrides.
func (s *state) argValues() map[string]string {
	m := map[string]string{}
	for _, a := range s.args {
		if a.val != nil {
			m[a.key] = *a.val
		} else {
			delete(m, a.key)
		}
	}
	return m
}

// env is what instructions expand against: ARGs, then ENV winning.
func (s *state) env() *mapEnv {
	e := newMapEnv()
	for _, a := range s.args {
		if a.val != nil {
			e.set(a.key, *a.val)
		}
	}
	for _, kv := range s.img.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		e.set(k, v)
	}
	return e
}

func (s *state) hasEnv(k string) bool {
	for _, kv := range s.img.Config.Env {
		if ek, _, _ := strings.Cut(kv, "="); ek == k {
			return true
		}
	}
	return false
}

func (s *state) shell() []string {
	if len(s.img.Config.Shell) > 0 {
		return append([]string(nil), s.img.Config.Shell...)
	}
	return []string{"/bin/sh", "-c"}
}

// buildStage builds s (once) and the stages it depends on.
func (j *job) buildStage(s *stage) (*state, error) {
	if st, ok := j.results[s.index]; ok {
		return st, nil
	}
	if j.building[s.index] {
		return nil, &Error{File: j.df.name, Line: s.line, Err: fmt.Errorf("stage %d depends on itself: %w", s.index, errdefs.ErrInvalidArgument)}
	}
	j.building[s.index] = true
	defer delete(j.building, s.index)
	st, err := j.from(s)
	if err != nil {
		return nil, err
	}
	for _, c := range s.cmds {
		if err := j.ctx.Err(); err != nil {
			return nil, err
		}
		j.step++
		j.printf("Step %d/%d : %s\n", j.step, j.total, cmdText(c))
		if err := j.dispatch(st, c); err != nil {
			return nil, j.stepError(c, err)
		}
		j.printf(" ---> %s\n", shortID(st.id().String()))
	}
	j.results[s.index] = st
	return st, nil
}

func (j *job) stepError(c instructions.Command, err error) error {
	if e, ok := err.(*Error); ok {
		if e.File == "" {
			e.File = j.df.name
		}
		if e.Line == 0 {
			e.Line = cmdLine(c)
		}
		return e
	}
	if j.ctx.Err() != nil {
		return err
	}
	name := strings.ToUpper(c.Name())
	if strings.HasPrefix(err.Error(), name) {
		return &Error{File: j.df.name, Line: cmdLine(c), Err: err}
	}
	return &Error{File: j.df.name, Line: cmdLine(c), Err: fmt.Errorf("%s: %w", name, err)}
}

// from starts a stage: FROM scratch, an earlier stage or an image, then
// the image's ONBUILD triggers.
func (j *job) from(s *stage) (*state, error) {
	j.step++
	j.printf("Step %d/%d : %s\n", j.step, j.total, s.source)
	lineErr := func(err error) error {
		if _, ok := err.(*Error); ok {
			return err
		}
		return &Error{File: j.df.name, Line: s.line, Err: err}
	}
	if s.platform != "" {
		p, err := expandWord(j.lex, s.platform, j.metaArgs)
		if err != nil {
			return nil, lineErr(fmt.Errorf("FROM --platform=%s: %v: %w", s.platform, err, errdefs.ErrInvalidArgument))
		}
		if err := checkPlatform(p); err != nil {
			return nil, lineErr(err)
		}
	}
	ref, err := j.baseRef(s)
	if err != nil {
		return nil, err
	}
	st := &state{stage: s}
	if dep, ok := j.df.stageByRef(ref, s.index); ok {
		base, err := j.buildStage(dep)
		if err != nil {
			return nil, err
		}
		// Parsing the base's config gives this stage its own copy.
		if err := st.load(base.bytes()); err != nil {
			return nil, err
		}
		st.key = cacheKey("", []string{"FROM", base.id().String()})
	} else if strings.EqualFold(ref, "scratch") {
		st.img = dockerspec.DockerOCIImage{Image: ocispec.Image{
			Platform: ocispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
		}}
		st.key = cacheKey("", []string{"FROM", "scratch"})
	} else {
		img, err := j.baseImage(ref)
		if err != nil {
			return nil, lineErr(err)
		}
		cfg, err := j.b.images.ConfigBlob(img)
		if err != nil {
			return nil, lineErr(err)
		}
		if err := st.load(cfg); err != nil {
			return nil, lineErr(fmt.Errorf("base image %s: %w", ref, err))
		}
		if a := st.img.Architecture; a != "" && a != goruntime.GOARCH {
			j.printf("[Warning] The requested image's platform (linux/%s) does not match the detected host platform (linux/%s)\n", a, goruntime.GOARCH)
		}
		st.key = cacheKey("", []string{"FROM", img.ID})
	}
	j.printf(" ---> %s\n", shortID(st.id().String()))
	if triggers := st.img.Config.OnBuild; len(triggers) > 0 {
		if err := j.onbuild(st, triggers); err != nil {
			return nil, lineErr(err)
		}
	}
	return st, nil
}

// baseImage finds a FROM or COPY --from image locally, or pulls it.
func (j *job) baseImage(ref string) (*image.Image, error) {
	_, perr := reference.Parse(ref)
	if j.opts.Pull && j.b.puller != nil && perr == nil {
		return j.b.puller.Pull(j.ctx, ref, j.out)
	}
	img, err := j.b.images.Get(ref) // a name, or an image ID
	if err == nil {
		return img, nil
	}
	if perr != nil {
		return nil, fmt.Errorf("base image %q: %w", ref, perr)
	}
	if !errdefs.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	if j.b.puller != nil {
		img, err := j.b.puller.Pull(j.ctx, ref, j.out)
		if err != nil {
			return nil, fmt.Errorf("base image %s is not here and pulling it failed (load it with `berth load`, or check the name and the registry): %w", ref, err)
		}
		return img, nil
	}
	return nil, fmt.Errorf("pull access denied for %s: the image is not found locally and this builder cannot pull; pull it with `berth pull %s` or load it with `berth load`: %w", ref, ref, errdefs.ErrNotFound)
}

// onbuild runs the base image's ONBUILD triggers, then clears them.
func (j *job) onbuild(st *state, triggers []string) error {
	word := "trigger"
	if len(triggers) > 1 {
		word = "triggers"
	}
	j.printf("# Executing %d build %s\n", len(triggers), word)
	for _, t := range triggers {
		df, err := parseDockerfile(j.df.name, []byte("FROM scratch\n"+t+"\n"))
		if err != nil {
			return fmt.Errorf("ONBUILD trigger %q: %w", t, err)
		}
		if len(df.stages) != 1 || len(df.stages[0].cmds) != 1 {
			return fmt.Errorf("ONBUILD trigger %q: want exactly one instruction: %w", t, errdefs.ErrInvalidArgument)
		}
		c := df.stages[0].cmds[0]
		j.printf(" ---> Running trigger: %s\n", cmdText(c))
		if err := j.dispatch(st, c); err != nil {
			return fmt.Errorf("ONBUILD %s: %w", t, err)
		}
	}
	st.img.Config.OnBuild = nil
	st.cfg = nil
	return nil
}

// history appends a history entry for a step.
func (s *state) history(createdBy string, emptyLayer bool) {
	now := time.Now().UTC()
	s.img.Created = &now
	s.img.History = append(s.img.History, ocispec.History{Created: &now, CreatedBy: createdBy, EmptyLayer: emptyLayer})
	s.cfg = nil
	s.changed = true
}

// cached looks key up (unless --no-cache) and, on a hit, moves the state
// to the recorded config.
func (j *job) cached(st *state, key digest.Digest) bool {
	if j.opts.NoCache || j.b == nil {
		return false
	}
	cfg := j.b.cache.get(key)
	if cfg == nil {
		return false
	}
	var probe dockerspec.DockerOCIImage
	if json.Unmarshal(cfg, &probe) != nil || !j.b.images.HasLayers(probe.RootFS.DiffIDs) {
		j.b.cache.drop(key)
		return false
	}
	st.img, st.cfg, st.key, st.changed = probe, cfg, key, true
	j.printf(" ---> Using cache\n")
	return true
}

// record stores the step's result under key.
func (j *job) record(st *state, key digest.Digest) {
	st.key = key
	if j.b == nil {
		return // no builder, no cache: commit --change (ApplyChanges)
	}
	if err := j.b.cache.put(key, st.bytes()); err != nil {
		j.b.log.Warn("writing the build cache", "err", err)
	}
}
