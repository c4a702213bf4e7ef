package cli

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth/berth/internal/engine/archive"
	"github.com/berth/berth/internal/engine/client"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/units"
)

func newCpCmd(g *globals) *cobra.Command {
	var archiveMode, followLink, quiet bool
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n  berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Long: `Copy files/folders between a container and the local filesystem.

Use '-' as the source to read a tar archive from stdin and extract it to a
directory destination in a container. Use '-' as the destination to stream
a tar archive of a container source to stdout.

A source directory is copied into an existing destination directory as a
directory of the same name; with SRC_PATH ending in '/.' its contents are
copied instead. A destination that does not exist is created with the
source's contents (its parent must exist); a file source overwrites a
destination file. Files copied to the host belong to the user running
berth; files copied into a container keep their owners unless -a gives
them to the container's user. On the host nothing is ever written outside
the destination.`,
		Example: `  berth cp web:/etc/nginx/nginx.conf ./nginx.conf
  berth cp ./site/. web:/usr/share/nginx/html
  berth cp web:/var/log - | tar -t`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := parseCpArg(args[0])
			if err != nil {
				return &flagError{cmd: "cp", err: err}
			}
			dst, err := parseCpArg(args[1])
			if err != nil {
				return &flagError{cmd: "cp", err: err}
			}
			switch {
			case src.container != "" && dst.container != "":
				return &flagError{cmd: "cp", err: errors.New("copying between containers is not supported")}
			case src.container == "" && dst.container == "":
				return &flagError{cmd: "cp", err: errors.New("must specify at least one container source (CONTAINER:PATH)")}
			case src.path == "-" && dst.path == "-":
				return &flagError{cmd: "cp", err: errors.New("source and destination cannot both be '-'")}
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			// Like docker, say what was copied when a person watches.
			var n counter
			if tty, _ := isTerminal(g.err); quiet || !tty || dst.path == "-" {
				n.off = true
			}
			if src.container != "" {
				err = copyFromContainer(cmd.Context(), g, cl, src, dst.path, followLink, &n)
			} else {
				err = copyToContainer(cmd.Context(), g, cl, src.path, dst, followLink, archiveMode, &n)
			}
			if err == nil && !n.off {
				fmt.Fprintf(g.err, "Successfully copied %s to %s\n", units.HumanSize(n.n), args[1])
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&archiveMode, "archive", "a", false, "Archive mode (copy all uid/gid information)")
	cmd.Flags().BoolVarP(&followLink, "follow-link", "L", false, "Always follow symbol link in SRC_PATH")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress progress output during copy. Progress output is automatically suppressed if no terminal is attached")
	return cmd
}

// cpArg is one side of a copy: a container path, or a local one when
// container is "".
type cpArg struct {
	container, path string
}

// parseCpArg reads CONTAINER:PATH or a local path, as Docker does: an
// absolute path, or one whose part before the first ':' starts with '.',
// is local ("./a:b", "/tmp/a:b").
func parseCpArg(s string) (cpArg, error) {
	if s == "" {
		return cpArg{}, errors.New("invalid path \"\": source and destination cannot be empty")
	}
	if filepath.IsAbs(s) {
		return cpArg{path: s}, nil
	}
	ctr, p, ok := strings.Cut(s, ":")
	if !ok || strings.HasPrefix(ctr, ".") {
		return cpArg{path: s}, nil
	}
	if ctr == "" {
		return cpArg{}, fmt.Errorf("invalid CONTAINER:PATH %q: the container name is empty", s)
	}
	if p == "" {
		return cpArg{}, fmt.Errorf("invalid CONTAINER:PATH %q: the path in the container is empty", s)
	}
	return cpArg{container: ctr, path: p}, nil
}

// assertsDir reports whether a copy path says it names a directory.
func assertsDir(p string) bool {
	return strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || p == "."
}

// pathStat is the X-Docker-Container-Path-Stat header.
func pathStat(h http.Header) (archive.PathStat, error) {
	var st archive.PathStat
	b, err := base64.StdEncoding.DecodeString(h.Get("X-Docker-Container-Path-Stat"))
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		return st, fmt.Errorf("the daemon's X-Docker-Container-Path-Stat header is malformed: %v", err)
	}
	return st, nil
}

// checkContainer makes an unknown container the daemon's "No such
// container" error before any path is looked at.
func checkContainer(ctx context.Context, cl *client.Client, ctr string) error {
	return cl.JSON(ctx, http.MethodGet, "/containers/"+url.PathEscape(ctr)+"/json", nil, nil, nil)
}

// statContainerPath stats a path in a container (HEAD …/archive); ok is
// false when it does not exist.
func statContainerPath(ctx context.Context, cl *client.Client, ctr, p string) (st archive.PathStat, ok bool, err error) {
	resp, err := cl.Do(ctx, http.MethodHead, "/containers/"+url.PathEscape(ctr)+"/archive", url.Values{"path": {p}}, nil, "")
	if errdefs.Is(err, errdefs.ErrNotFound) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	resp.Body.Close()
	st, err = pathStat(resp.Header)
	return st, err == nil, err
}

// copyPlan is where a copy's archive is extracted and how its top entry
// is renamed: Docker's PrepareArchiveCopy.
type copyPlan struct {
	dir              string // the directory to extract into
	oldName, newName string // rename the top entry (equal: keep)
}

// planCopy applies Docker's rules for a source named srcName in its
// archive (logical name name, which -L may differ from srcName) being
// copied to dst. dstExists/dstIsDir describe dst (after following a
// final symlink).
func planCopy(srcName, name string, srcIsDir bool, dst string, dstExists, dstIsDir bool, join func(dir, base string) (string, string)) (copyPlan, error) {
	dir, base := join(dst, "")
	switch {
	case dstExists && dstIsDir:
		return copyPlan{dir: dst, oldName: srcName, newName: name}, nil
	case dstExists:
		if srcIsDir {
			return copyPlan{}, fmt.Errorf("cannot copy a directory to a file: %s", dst)
		}
		return copyPlan{dir: dir, oldName: srcName, newName: base}, nil
	default:
		if assertsDir(dst) && !srcIsDir {
			return copyPlan{}, fmt.Errorf("destination directory %s does not exist", dst)
		}
		return copyPlan{dir: dir, oldName: srcName, newName: base}, nil
	}
}

func splitLocal(p, _ string) (string, string) {
	c := filepath.Clean(p)
	return filepath.Dir(c), filepath.Base(c)
}

func splitContainer(p, _ string) (string, string) {
	c := path.Clean("/" + p)
	return path.Dir(c), path.Base(c)
}

// counter counts the bytes of a copy's archive.
type counter struct {
	n   int64
	off bool
}

func (c *counter) reader(r io.Reader) io.Reader {
	if c.off {
		return r
	}
	return io.TeeReader(r, c)
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func copyFromContainer(ctx context.Context, g *globals, cl *client.Client, src cpArg, dst string, follow bool, n *counter) error {
	if err := checkContainer(ctx, cl, src.container); err != nil {
		return err
	}
	srcPath, name := src.path, archive.BaseName(src.path)
	get := func(p string) (*http.Response, archive.PathStat, error) {
		resp, err := cl.Do(ctx, http.MethodGet, "/containers/"+url.PathEscape(src.container)+"/archive", url.Values{"path": {p}}, nil, "")
		if err != nil {
			return nil, archive.PathStat{}, err
		}
		st, err := pathStat(resp.Header)
		if err != nil {
			resp.Body.Close()
		}
		return resp, st, err
	}
	resp, st, err := get(srcPath)
	if err != nil {
		return err
	}
	if follow && st.Mode&os.ModeSymlink != 0 {
		resp.Body.Close()
		target := st.LinkTarget
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(path.Clean("/"+srcPath)), target)
		}
		srcPath = target
		if resp, st, err = get(srcPath); err != nil {
			return err
		}
	}
	defer resp.Body.Close()
	if assertsDir(src.path) && !st.Mode.IsDir() {
		return fmt.Errorf("%s:%s is not a directory", src.container, src.path)
	}
	if dst == "-" {
		_, err := copyOut(g.out, resp.Body)
		return err
	}
	dstExists, dstIsDir := false, false
	if fi, err := os.Stat(dst); err == nil {
		dstExists, dstIsDir = true, fi.IsDir()
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	plan, err := planCopy(archive.BaseName(srcPath), name, st.Mode.IsDir(), dst, dstExists, dstIsDir, splitLocal)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(plan.dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("destination directory %s does not exist", plan.dir)
	}
	root, err := archive.OpenRoot(plan.dir)
	if err != nil {
		return err
	}
	defer root.Close()
	rd := rebaseTar(n.reader(resp.Body), plan.oldName, plan.newName)
	defer rd.Close()
	// Files on the host belong to whoever runs berth (docker cp never
	// keeps a container's owners on the host).
	o := archive.ExtractOptions{NoOverwriteDirNonDir: true, Owner: &[2]int{os.Getuid(), os.Getgid()}}
	if err := root.Extract("/", rd, o); err != nil {
		return fmt.Errorf("copying %s:%s to %s: %v", src.container, src.path, dst, err)
	}
	return nil
}

func copyToContainer(ctx context.Context, g *globals, cl *client.Client, src string, dst cpArg, follow, keepOwner bool, n *counter) error {
	if err := checkContainer(ctx, cl, dst.container); err != nil {
		return err
	}
	q := url.Values{"noOverwriteDirNonDir": {"true"}}
	if keepOwner {
		q.Set("copyUIDGID", "true")
	}
	put := func(dir string, body io.Reader) error {
		q.Set("path", dir)
		resp, err := cl.Do(ctx, http.MethodPut, "/containers/"+url.PathEscape(dst.container)+"/archive", q, body, "application/x-tar")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	dstPath := dst.path
	st, exists, err := statContainerPath(ctx, cl, dst.container, dstPath)
	if err != nil {
		return err
	}
	if exists && st.Mode&os.ModeSymlink != 0 {
		target := st.LinkTarget
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(path.Clean("/"+dstPath)), target)
		}
		dstPath = target
		if st, exists, err = statContainerPath(ctx, cl, dst.container, dstPath); err != nil {
			return err
		}
	}
	if exists && !st.Mode.IsDir() && !st.Mode.IsRegular() {
		return fmt.Errorf("destination \"%s:%s\" must be a directory or a regular file", dst.container, dst.path)
	}
	if src == "-" {
		if !exists || !st.Mode.IsDir() {
			return fmt.Errorf("destination \"%s:%s\" must be a directory", dst.container, dst.path)
		}
		return put(dstPath, n.reader(g.in))
	}

	name := archive.BaseName(src)
	local := src
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("could not stat %s: %v", src, errors.Unwrap(err))
	}
	if follow && fi.Mode()&os.ModeSymlink != 0 {
		if local, err = filepath.EvalSymlinks(src); err != nil {
			return fmt.Errorf("could not follow %s: %v", src, err)
		}
	}
	if assertsDir(src) || local != src {
		if fi, err = os.Stat(local); err != nil {
			return fmt.Errorf("could not stat %s: %v", src, errors.Unwrap(err))
		}
	}
	if assertsDir(src) && !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", src)
	}
	abs, err := filepath.Abs(local)
	if err != nil {
		return err
	}
	if strings.HasSuffix(src, "/.") || src == "." {
		abs += "/."
	} else if strings.HasSuffix(src, "/") && abs != "/" {
		abs += "/"
	}
	plan, err := planCopy(name, name, fi.IsDir(), dstPath, exists, exists && st.Mode.IsDir(), splitContainer)
	if err != nil {
		return err
	}
	if plan.dir != dstPath && !exists {
		// The parent must exist; say so by name rather than through the
		// extraction's error.
		if pst, ok, err := statContainerPath(ctx, cl, dst.container, plan.dir); err != nil {
			return err
		} else if !ok || !pst.Mode.IsDir() {
			return fmt.Errorf("Could not find the file %s in container %s", plan.dir, dst.container)
		}
	}
	root, err := archive.OpenRoot("/")
	if err != nil {
		return err
	}
	defer root.Close()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(root.WriteTar(pw, abs, name)) }()
	rd := rebaseTar(pr, plan.oldName, plan.newName)
	defer rd.Close()
	err = put(plan.dir, n.reader(rd))
	pr.CloseWithError(errors.New("copy ended"))
	return err
}

// rebaseTar renames the top entry old of a tar stream to new (and what
// is under it, and hard links to it), as Docker's RebaseArchiveEntries.
func rebaseTar(r io.Reader, old, new string) io.ReadCloser {
	if old == new {
		return io.NopCloser(r)
	}
	pr, pw := io.Pipe()
	go func() {
		tr := tar.NewReader(r)
		tw := tar.NewWriter(pw)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				pw.CloseWithError(tw.Close())
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			hdr.Name = rebaseName(hdr.Name, old, new)
			if hdr.Typeflag == tar.TypeLink {
				hdr.Linkname = rebaseName(hdr.Linkname, old, new)
			}
			if err := tw.WriteHeader(hdr); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}

// rebaseName renames the first element old of an archive name to new.
func rebaseName(name, old, new string) string {
	n := strings.TrimPrefix(name, "./")
	if old == "." {
		if n == "." || n == "" || n == "./" {
			return new + strings.Repeat("/", boolInt(strings.HasSuffix(name, "/")))
		}
		return new + "/" + n
	}
	if n == old || strings.HasPrefix(n, old+"/") {
		return new + n[len(old):]
	}
	return name
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
