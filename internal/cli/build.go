package cli

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/units"
)

type buildFlags struct {
	tags, buildArgs, labels []string
	file, target, progress  string
	network, platform       string
	iidfile                 string
	noCache, quiet, pull    bool
}

func newBuildCmd(g *globals) *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH | -",
		Short: "Build an image from a Dockerfile",
		Long: `Build an image from a Dockerfile. PATH is the build context: the directory
whose files COPY and ADD can use (minus what .dockerignore excludes). With
"-" the Dockerfile (or a tar of the context) comes from stdin. -f - reads
the Dockerfile from stdin and the context from PATH.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, g, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.tags, "tag", "t", nil, "Name and optionally a tag (name:tag); repeatable")
	fl.StringVarP(&f.file, "file", "f", "", "Name of the Dockerfile (default: PATH/Dockerfile; - for stdin)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "Set a build-time variable (KEY=VALUE, or KEY to take it from the environment)")
	fl.StringVar(&f.target, "target", "", "Build this stage (and the stages it needs) only")
	fl.BoolVar(&f.noCache, "no-cache", false, "Do not use the cache when building the image")
	fl.StringVar(&f.progress, "progress", "auto", "Output style: auto, plain or tty")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "Print the image ID only")
	fl.StringArrayVar(&f.labels, "label", nil, "Set metadata on the image (key=value); repeatable")
	fl.BoolVar(&f.pull, "pull", false, "Always attempt to pull newer versions of the base images")
	fl.StringVar(&f.network, "network", "default", "Network of RUN instructions: default (bridge), host or none")
	fl.StringVar(&f.platform, "platform", "", "Target platform (only this host's is supported)")
	fl.StringVar(&f.iidfile, "iidfile", "", "Write the image ID to the file")
	return cmd
}

func runBuild(cmd *cobra.Command, g *globals, f buildFlags, ctxPath string) error {
	usage := func(format string, args ...any) error {
		return &flagError{cmd: "build", err: fmt.Errorf(format, args...)}
	}
	switch f.progress {
	case "auto", "plain", "tty":
	default:
		return usage("invalid --progress %q: want auto, plain or tty", f.progress)
	}
	q := url.Values{}
	for _, t := range f.tags {
		q.Add("t", t)
	}
	if len(f.buildArgs) > 0 {
		m := map[string]*string{}
		for _, a := range f.buildArgs {
			k, v, ok := strings.Cut(a, "=")
			if k == "" {
				return usage("invalid --build-arg %q: want KEY=VALUE or KEY", a)
			}
			if !ok {
				// KEY alone takes the value from the environment, if set.
				if ev, set := os.LookupEnv(k); set {
					m[k] = &ev
				} else {
					m[k] = nil
				}
				continue
			}
			m[k] = &v
		}
		b, _ := json.Marshal(m)
		q.Set("buildargs", string(b))
	}
	if len(f.labels) > 0 {
		m := map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			if k == "" {
				return usage("invalid --label %q: want key=value", l)
			}
			m[k] = v
		}
		b, _ := json.Marshal(m)
		q.Set("labels", string(b))
	}
	if f.target != "" {
		q.Set("target", f.target)
	}
	if f.noCache {
		q.Set("nocache", "1")
	}
	if f.quiet {
		q.Set("q", "1")
	}
	if f.pull {
		q.Set("pull", "1")
	}
	if f.network != "" && f.network != "default" {
		q.Set("networkmode", f.network)
	}
	if f.platform != "" {
		q.Set("platform", f.platform)
	}
	q.Set("rm", "1")

	body, dockerfile, err := buildContext(g, ctxPath, f.file)
	if err != nil {
		return err
	}
	defer body.Close()
	if dockerfile != "" {
		q.Set("dockerfile", dockerfile)
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	resp, err := cl.Do(cmd.Context(), http.MethodPost, "/build", q, body, "application/x-tar")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tty := f.progress == "tty"
	if f.progress == "auto" {
		if of, ok := g.out.(*os.File); ok && term.IsTerminal(int(of.Fd())) {
			tty = true
		}
	}
	var out io.Writer = g.out
	var pretty *ttyProgress
	if tty && !f.quiet {
		pretty = &ttyProgress{w: g.out, start: time.Now()}
		out = pretty
	}
	id, err := readBuildStream(resp.Body, out, f.quiet)
	if pretty != nil {
		pretty.finish(err != nil)
	}
	if err != nil {
		return err
	}
	if f.quiet {
		fmt.Fprintln(g.out, id)
	}
	if f.iidfile != "" && id != "" {
		if err := os.WriteFile(f.iidfile, []byte(id), 0o644); err != nil {
			return fmt.Errorf("--iidfile: %w", err)
		}
	}
	return nil
}

// readBuildStream copies the build's text to out and returns the image ID
// the daemon reported; a streamed error becomes the exit status Docker
// gives it (the failed RUN's, else 1).
func readBuildStream(r io.Reader, out io.Writer, quiet bool) (string, error) {
	dec := json.NewDecoder(r)
	id := ""
	for {
		var m struct {
			api.JSONMessage
			Aux json.RawMessage `json:"aux,omitempty"`
		}
		if err := dec.Decode(&m); err != nil {
			if err == io.EOF {
				return id, nil
			}
			return id, fmt.Errorf("reading the daemon's build stream: %v", err)
		}
		if m.Error != "" {
			code := 1
			if m.ErrorDetail != nil && m.ErrorDetail.Code > 0 {
				code = m.ErrorDetail.Code
			}
			return id, &StatusError{Status: code, Err: errors.New(m.Error)}
		}
		if len(m.Aux) > 0 {
			var aux struct{ ID string }
			if json.Unmarshal(m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
			continue
		}
		if m.Stream != "" {
			if quiet {
				// A quiet build's one line is the image ID.
				if s := strings.TrimSpace(m.Stream); id == "" && strings.HasPrefix(s, "sha256:") {
					id = s
				}
				continue
			}
			io.WriteString(out, m.Stream)
		}
	}
}

// buildContext returns the request body (a tar of the context) and the
// Dockerfile's name inside it ("" for the default).
func buildContext(g *globals, ctxPath, file string) (io.ReadCloser, string, error) {
	if ctxPath == "-" {
		if file == "-" {
			return nil, "", &flagError{cmd: "build", err: errors.New("-f - and a context from stdin (-) cannot be combined")}
		}
		in, err := io.ReadAll(g.in)
		if err != nil {
			return nil, "", err
		}
		if len(in) == 0 {
			return nil, "", &flagError{cmd: "build", err: errors.New("stdin is empty: pipe a Dockerfile (or a tar of the context) into `berth build -`")}
		}
		if isTarOrGzip(in) {
			return io.NopCloser(bytes.NewReader(in)), file, nil
		}
		// A Dockerfile alone: the context holds only it.
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(in)), ModTime: time.Now(), Typeflag: tar.TypeReg})
		tw.Write(in)
		tw.Close()
		return io.NopCloser(&buf), "Dockerfile", nil
	}
	if strings.Contains(ctxPath, "://") || strings.HasPrefix(ctxPath, "git@") {
		return nil, "", &flagError{cmd: "build", err: fmt.Errorf("build context %q: remote contexts (git, URLs) are not supported; clone or download it and give the directory", ctxPath)}
	}
	st, err := os.Stat(ctxPath)
	if err != nil {
		return nil, "", fmt.Errorf("unable to prepare context: path %q not found", ctxPath)
	}
	if !st.IsDir() {
		return nil, "", fmt.Errorf("unable to prepare context: context must be a directory: %s", ctxPath)
	}
	absCtx, err := filepath.Abs(ctxPath)
	if err != nil {
		return nil, "", err
	}
	var extra []byte // a Dockerfile from outside the context
	dfName := ""
	dfRel := "Dockerfile"
	switch {
	case file == "-":
		b, err := io.ReadAll(g.in)
		if err != nil {
			return nil, "", err
		}
		extra = b
	case file != "":
		abs := file
		if !filepath.IsAbs(abs) {
			abs, _ = filepath.Abs(file)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, "", fmt.Errorf("unable to prepare context: the Dockerfile (%s) cannot be read: %v (check the path given with -f)", file, errors.Unwrap(err))
		}
		rel, err := filepath.Rel(absCtx, abs)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			if extra, err = os.ReadFile(abs); err != nil {
				return nil, "", err
			}
		} else {
			dfRel = filepath.ToSlash(rel)
			dfName = dfRel
		}
	default:
		if _, err := os.Stat(filepath.Join(absCtx, "Dockerfile")); err != nil {
			if _, err2 := os.Stat(filepath.Join(absCtx, "dockerfile")); err2 == nil {
				dfRel, dfName = "dockerfile", "dockerfile"
			} else {
				return nil, "", fmt.Errorf("unable to prepare context: cannot find a Dockerfile in %s (give its path with -f)", ctxPath)
			}
		}
	}
	if extra != nil {
		var rb [8]byte
		rand.Read(rb[:])
		dfRel = ".dockerfile." + hex.EncodeToString(rb[:])
		dfName = dfRel
	}
	var pm *patternmatcher.PatternMatcher
	if b, err := os.ReadFile(filepath.Join(absCtx, ".dockerignore")); err == nil {
		patterns, err := ignorefile.ReadAll(bytes.NewReader(b))
		if err != nil {
			return nil, "", fmt.Errorf(".dockerignore: %v", err)
		}
		if pm, err = patternmatcher.New(patterns); err != nil {
			return nil, "", fmt.Errorf(".dockerignore: %v", err)
		}
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeContext(pw, absCtx, pm, dfRel, extra))
	}()
	return pr, dfName, nil
}

func isTarOrGzip(b []byte) bool {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		return true
	}
	if len(b) < 512 {
		return false
	}
	// Every tar format has "ustar" at 257 or a header checksum that
	// matches; a Dockerfile has neither.
	if bytes.HasPrefix(b[257:], []byte("ustar")) {
		return true
	}
	var sum int64
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	want, err := strconv.ParseInt(strings.Trim(string(b[148:156]), " \x00"), 8, 64)
	return err == nil && sum == want && sum != 8*' '
}

// writeContext tars dir, leaving out what .dockerignore excludes but
// always sending the Dockerfile and .dockerignore (the daemon needs them).
// Owners are sent as root, as the docker CLI does.
func writeContext(w io.Writer, dir string, pm *patternmatcher.PatternMatcher, dockerfile string, extra []byte) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	tw := tar.NewWriter(bw)
	buf := make([]byte, 128<<10)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if pm != nil && rel != dockerfile && rel != ".dockerignore" {
			skip, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return err
			}
			if skip {
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.IsDir(), fi.Mode().IsRegular():
		default:
			return nil // sockets, devices, fifos: nothing COPY can use
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.Format = tar.FormatPAX
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			n, err := io.CopyBuffer(tw, io.LimitReader(f, hdr.Size), buf)
			f.Close()
			if err != nil {
				return err
			}
			if n != hdr.Size {
				return fmt.Errorf("%s changed size while being sent", p)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sending the build context: %w", err)
	}
	if extra != nil {
		tw.WriteHeader(&tar.Header{Name: dockerfile, Mode: 0o644, Size: int64(len(extra)), ModTime: time.Now(), Typeflag: tar.TypeReg})
		tw.Write(extra)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// ttyProgress shows one line per step with its time, the way BuildKit's
// tty output does, and keeps RUN output out of the way unless the build
// fails.
type ttyProgress struct {
	w       io.Writer
	start   time.Time
	partial string
	step    string
	stepAt  time.Time
	cached  bool
	output  []string
}

func (t *ttyProgress) Write(p []byte) (int, error) {
	t.partial += string(p)
	for {
		i := strings.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.line(t.partial[:i])
		t.partial = t.partial[i+1:]
	}
	return len(p), nil
}

func (t *ttyProgress) endStep() {
	if t.step == "" {
		return
	}
	state := fmt.Sprintf("%.1fs", time.Since(t.stepAt).Seconds())
	if t.cached {
		state = "CACHED"
	}
	fmt.Fprintf(t.w, "\r\033[K => %s  %s\n", t.step, state)
	t.step, t.cached, t.output = "", false, nil
}

func (t *ttyProgress) line(l string) {
	switch {
	case strings.HasPrefix(l, "Step "):
		t.endStep()
		t.step, t.stepAt = truncate(strings.TrimPrefix(l, "Step "), 60), time.Now()
		fmt.Fprintf(t.w, "\r\033[K => %s", t.step)
	case l == " ---> Using cache":
		t.cached = true
	case strings.HasPrefix(l, " ---> "), strings.HasPrefix(l, "# Executing"):
	case strings.HasPrefix(l, "Successfully "), strings.HasPrefix(l, "[Warning]"), strings.HasPrefix(l, "[WARNING]"):
		t.endStep()
		fmt.Fprintln(t.w, l)
	default:
		t.output = append(t.output, l)
		if len(t.output) > 40 {
			t.output = t.output[1:]
		}
		fmt.Fprintf(t.w, "\r\033[K => %s  %s", t.step, truncate(l, 30))
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (t *ttyProgress) finish(failed bool) {
	if t.partial != "" {
		t.line(t.partial)
		t.partial = ""
	}
	if failed && t.step != "" {
		fmt.Fprintf(t.w, "\r\033[K => %s  ERROR\n", t.step)
		for _, l := range t.output {
			fmt.Fprintf(t.w, "    %s\n", l)
		}
		t.step = ""
		return
	}
	t.endStep()
	fmt.Fprintf(t.w, "Build finished in %.1fs\n", time.Since(t.start).Seconds())
}

func newBuilderCmd(g *globals) *cobra.Command {
	builder := &cobra.Command{Use: "builder", Short: "Manage the build cache"}
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove the build cache and the layers only it used",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var rep struct {
				Count          int
				SpaceReclaimed int64
			}
			if err := cl.JSON(cmd.Context(), http.MethodPost, "/build/prune", nil, nil, &rep); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "Deleted build cache steps: %d\nTotal reclaimed space: %s\n", rep.Count, units.HumanSize(rep.SpaceReclaimed))
			return nil
		},
	}
	prune.Flags().BoolP("force", "f", false, "Do not prompt for confirmation (there is no prompt)")
	builder.AddCommand(prune)
	return builder
}
