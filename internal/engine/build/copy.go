package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/runtime"
	"github.com/berth/berth/internal/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/opencontainers/go-digest"
)

// source is where COPY and ADD read from: the build context, an image's
// root file system (--from), or one file (a heredoc, a download). Paths
// are clean and relative to the source's root ("." is the root).
type source interface {
	lstat(p string) (fileInfo, error)
	readDir(p string) ([]string, error)
	open(p string) (io.ReadCloser, error)
}

var (
	_ source = (*Context)(nil)
	_ source = (*oneFile)(nil)
)

// oneFile is a source holding a single file at its root.
type oneFile struct {
	name string
	info fileInfo
	data []byte
	host string // content in a host file instead of data
}

func (o *oneFile) lstat(p string) (fileInfo, error) {
	switch p {
	case ".":
		return fileInfo{typ: tar.TypeDir, mode: 0o755}, nil
	case o.name:
		return o.info, nil
	}
	return fileInfo{}, fmt.Errorf("stat %s: %w", p, os.ErrNotExist)
}

func (o *oneFile) readDir(p string) ([]string, error) {
	if p == "." {
		return []string{o.name}, nil
	}
	return nil, os.ErrNotExist
}

func (o *oneFile) open(p string) (io.ReadCloser, error) {
	if p != o.name {
		return nil, os.ErrNotExist
	}
	if o.host != "" {
		return os.Open(o.host)
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

// resolvePath follows the symlinks of p inside src (an absolute target
// restarts at src's root; ".." stops at it), the last component too when
// followFinal, and returns the resulting path.
func resolvePath(src source, p string, followFinal bool) (string, error) {
	todo := strings.Split(p, "/")
	cur := "."
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := src.lstat(next)
		if err != nil {
			return "", fmt.Errorf("stat %s: %w", p, os.ErrNotExist)
		}
		if fi.typ == tar.TypeSymlink && (len(todo) > 0 || followFinal) {
			if links++; links > 40 {
				return "", fmt.Errorf("stat %s: %w", p, errLinkLoop)
			}
			if strings.HasPrefix(fi.link, "/") {
				cur = "."
			}
			todo = append(strings.Split(fi.link, "/"), todo...)
			continue
		}
		if len(todo) > 0 && fi.typ != tar.TypeDir {
			return "", fmt.Errorf("stat %s: not a directory: %w", p, os.ErrNotExist)
		}
		cur = next
	}
	return cur, nil
}

func hasMeta(p string) bool { return strings.ContainsAny(p, "*?[") }

// glob matches pattern (a clean relative path whose components may hold
// wildcards, as filepath.Match has them) against src.
func glob(src source, pattern string) ([]string, error) {
	cur := []string{"."}
	comps := strings.Split(pattern, "/")
	for i, c := range comps {
		last := i == len(comps)-1
		var next []string
		for _, dir := range cur {
			d := dir
			if dir != "." {
				r, err := resolvePath(src, dir, true)
				if err != nil {
					continue
				}
				d = r
			}
			if !hasMeta(c) {
				cand := path.Join(dir, c)
				if _, err := src.lstat(path.Join(d, c)); err == nil {
					next = append(next, cand)
				}
				continue
			}
			names, err := src.readDir(d)
			if err != nil {
				continue
			}
			for _, n := range names {
				ok, err := path.Match(c, n)
				if err != nil {
					return nil, invalidf("bad pattern %q: %v", pattern, err)
				}
				if ok {
					next = append(next, path.Join(dir, n))
				}
			}
		}
		if !last {
			// Only directories (or links to them) lead further.
			var dirs []string
			for _, n := range next {
				if r, err := resolvePath(src, n, true); err == nil {
					if fi, err := src.lstat(r); err == nil && fi.isDir() {
						dirs = append(dirs, n)
					}
				}
			}
			next = dirs
		}
		cur = next
	}
	return cur, nil
}

// item is one thing a COPY or ADD copies.
type item struct {
	src    source
	path   string // resolved path in src
	info   fileInfo
	base   string // its name inside a destination directory
	unpack bool   // ADD: an archive to extract
	where  string // "build context", "stage builder", …
}

// selectSources expands one COPY source path in src. Paths in the build
// context may not climb out of it.
func selectSources(src source, pattern, where string, inContext bool) ([]item, error) {
	if inContext {
		if c := path.Clean(pattern); !path.IsAbs(c) && (c == ".." || strings.HasPrefix(c, "../")) {
			return nil, invalidf("forbidden path outside the build context: %s", pattern)
		}
	}
	p := cleanName(pattern)
	notFound := func() error {
		if inContext {
			return fmt.Errorf("file not found in build context or excluded by .dockerignore: stat %s: file does not exist: %w", pattern, errdefs.ErrNotFound)
		}
		return fmt.Errorf("file not found in %s: stat %s: file does not exist: %w", where, pattern, errdefs.ErrNotFound)
	}
	var names []string
	if hasMeta(p) {
		m, err := glob(src, p)
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			return nil, notFound()
		}
		names = m
	} else {
		names = []string{p}
	}
	var out []item
	for _, n := range names {
		r, err := resolvePath(src, n, true)
		if err != nil {
			// A dangling symlink is copied as the link itself.
			r2, err2 := resolvePath(src, n, false)
			if err2 != nil {
				if errors.Is(err, errLinkLoop) {
					return nil, invalidf("%s: %v", pattern, err)
				}
				return nil, notFound()
			}
			r = r2
		}
		fi, err := src.lstat(r)
		if err != nil {
			return nil, notFound()
		}
		base := path.Base(n)
		if n == "." {
			base = "."
		}
		out = append(out, item{src: src, path: r, info: fi, base: base, where: where})
	}
	return out, nil
}

// fileDesc describes one source file for the cache key.
type fileDesc struct {
	Path   string
	Type   byte
	Mode   int64
	Size   int64  `json:",omitempty"`
	Link   string `json:",omitempty"`
	Digest string `json:",omitempty"`
}

// describe appends it (recursively for a directory) to out, hashing file
// contents from the build context.
func describe(c *Context, it item, out *[]fileDesc) error {
	var walk func(p, rel string, fi fileInfo) error
	walk = func(p, rel string, fi fileInfo) error {
		d := fileDesc{Path: rel, Type: fi.typ, Mode: fi.mode, Link: fi.link}
		if fi.typ == tar.TypeReg {
			h, err := c.hash(p)
			if err != nil {
				return err
			}
			d.Size, d.Digest = fi.size, h.String()
		}
		*out = append(*out, d)
		if fi.typ != tar.TypeDir {
			return nil
		}
		names, err := c.readDir(p)
		if err != nil {
			return err
		}
		for _, n := range names {
			cp := path.Join(p, n)
			cfi, err := c.lstat(cp)
			if err != nil {
				return err
			}
			if err := walk(cp, path.Join(rel, n), cfi); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(it.path, it.base, it.info)
}

// copyDescriptor is what a COPY or ADD step's cache key covers.
type copyDescriptor struct {
	Name      string
	Dest      string
	DestIsDir bool
	Chown     string `json:",omitempty"`
	Chmod     string `json:",omitempty"`
	From      string `json:",omitempty"`
	Patterns  []string
	Files     []fileDesc
	Unpack    string `json:",omitempty"`
}

// copyReq is a COPY or ADD after expansion.
type copyReq struct {
	name     string // COPY or ADD
	srcs     []string
	contents []instructions.SourceContent
	dest     string
	chown    string
	chmod    string
	from     string
	add      bool
	unpack   *bool
	checksum string
}

func (j *job) dispatchCopy(st *state, c *instructions.CopyCommand) error {
	if c.Parents {
		return invalidf("COPY --parents is not supported by berth build")
	}
	if len(c.ExcludePatterns) > 0 {
		return invalidf("COPY --exclude is not supported by berth build")
	}
	from := c.From
	if from != "" {
		f, err := expandWord(j.lex, from, st.env())
		if err != nil {
			return invalidf("COPY --from=%s: %v", from, err)
		}
		from = f
	}
	return j.copy(st, copyReq{name: "COPY", srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath,
		chown: c.Chown, chmod: c.Chmod, from: from})
}

func (j *job) dispatchAdd(st *state, c *instructions.AddCommand) error {
	if len(c.ExcludePatterns) > 0 {
		return invalidf("ADD --exclude is not supported by berth build")
	}
	if c.KeepGitDir != nil {
		return invalidf("ADD --keep-git-dir: git sources are not supported by berth build")
	}
	return j.copy(st, copyReq{name: "ADD", srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath,
		chown: c.Chown, chmod: c.Chmod, add: true, unpack: c.Unpack, checksum: c.Checksum})
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

func isGit(s string) bool {
	return strings.HasPrefix(s, "git@") || strings.HasPrefix(s, "git://") ||
		(isURL(s) && strings.HasSuffix(strings.SplitN(s, "#", 2)[0], ".git"))
}

func parseChmod(s string) (*int64, error) {
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return nil, invalidf("--chmod=%s: want an octal mode such as 755 or 0644", s)
	}
	m := int64(n)
	return &m, nil
}

// parseChown resolves --chown inside the destination's root file system:
// names through its /etc/passwd and /etc/group; with no group, the GID is
// the UID, as in Docker.
func parseChown(rootfs, s string) (*owner, error) {
	if s == "" {
		return nil, nil
	}
	userPart, groupPart, hasGroup := strings.Cut(s, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return nil, invalidf("--chown=%s: want USER[:GROUP] (names or numeric IDs)", s)
	}
	id := func(part string, group bool) (int, error) {
		if n, err := strconv.ParseUint(part, 10, 32); err == nil {
			return int(n), nil
		}
		if group {
			_, gid, _, err := runtime.ResolveUser(rootfs, "0:"+part)
			return int(gid), err
		}
		uid, _, _, err := runtime.ResolveUser(rootfs, part)
		return int(uid), err
	}
	uid, err := id(userPart, false)
	if err != nil {
		return nil, fmt.Errorf("--chown=%s: %w", s, err)
	}
	gid := uid
	if hasGroup {
		if gid, err = id(groupPart, true); err != nil {
			return nil, fmt.Errorf("--chown=%s: %w", s, err)
		}
	}
	return &owner{uid: uid, gid: gid}, nil
}

// copy runs a COPY or ADD step.
func (j *job) copy(st *state, r copyReq) (retErr error) {
	defer func() {
		if retErr != nil && j.ctx.Err() == nil {
			if _, ok := retErr.(*Error); !ok {
				retErr = fmt.Errorf("%s failed: %w", r.name, retErr)
			}
		}
	}()
	chmod, err := parseChmod(r.chmod)
	if err != nil {
		return err
	}
	if r.dest == "" {
		return invalidf("%s needs a destination", r.name)
	}
	destIsDir := strings.HasSuffix(r.dest, "/") || r.dest == "." || strings.HasSuffix(r.dest, "/.")
	dest := absWorkdir(st.img.Config.WorkingDir, r.dest)
	desc := copyDescriptor{Name: r.name, Dest: dest, DestIsDir: destIsDir, Chown: r.chown, Chmod: r.chmod, Patterns: r.srcs}
	if r.unpack != nil {
		desc.Unpack = strconv.FormatBool(*r.unpack)
	}

	var items []item
	var fromLayers []digest.Digest
	fromName := ""
	if r.from != "" {
		if dep, ok := j.df.stageByRef(r.from, st.stage.index); ok {
			src, err := j.buildStage(dep)
			if err != nil {
				return err
			}
			desc.From = src.id().String()
			fromLayers = src.img.RootFS.DiffIDs
			fromName = "stage " + r.from
		} else {
			img, err := j.baseImage(r.from)
			if err != nil {
				return err
			}
			desc.From = img.ID
			fromLayers = img.Layers
			fromName = "image " + r.from
		}
	} else {
		for _, s := range r.srcs {
			switch {
			case r.add && isGit(s):
				return invalidf("git sources (%s) are not supported by berth build: clone into the context and COPY", s)
			case r.add && isURL(s):
				it, d, err := j.download(s, r.checksum)
				if err != nil {
					return err
				}
				items = append(items, it)
				desc.Files = append(desc.Files, d)
			default:
				if isURL(s) {
					return invalidf("source can't be a URL for COPY (use ADD): %s", s)
				}
				sel, err := selectSources(j.bc, s, "build context", true)
				if err != nil {
					return err
				}
				for _, it := range sel {
					if err := describe(j.bc, it, &desc.Files); err != nil {
						return err
					}
				}
				items = append(items, sel...)
			}
		}
	}
	for _, sc := range r.contents {
		name := path.Base(cleanName(sc.Path))
		data := []byte(sc.Data)
		sum := sha256.Sum256(data)
		desc.Files = append(desc.Files, fileDesc{Path: "<<" + name, Type: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), Digest: "sha256:" + hex.EncodeToString(sum[:])})
		items = append(items, item{src: &oneFile{name: name, data: data,
			info: fileInfo{typ: tar.TypeReg, mode: 0o644, size: int64(len(data)), mtime: time.Now()}},
			path: name, info: fileInfo{typ: tar.TypeReg, mode: 0o644, size: int64(len(data)), mtime: time.Now()}, base: name, where: "heredoc"})
	}
	if r.from == "" && len(items) > 1 && !destIsDir {
		return invalidf("When using %s with more than one source file, the destination must be a directory and end with a /", r.name)
	}
	key := cacheKey(st.key, desc)
	createdBy := r.name + " "
	if r.from != "" {
		createdBy += "--from=" + r.from + " "
	}
	if r.chown != "" {
		createdBy += "--chown=" + r.chown + " "
	}
	if r.chmod != "" {
		createdBy += "--chmod=" + r.chmod + " "
	}
	var shown []string
	shown = append(shown, r.srcs...)
	for _, sc := range r.contents {
		shown = append(shown, "<<"+sc.Path)
	}
	createdBy += strings.Join(append(shown, r.dest), " ")
	if j.cached(st, key) {
		return nil
	}

	if r.from != "" {
		lowers, err := j.b.images.LayerDirsOf(fromLayers)
		if err != nil {
			return err
		}
		snaps := j.b.images.Snapshots()
		sid := snapPrefix + "src-" + randomID()
		dir, err := snaps.Prepare(sid, lowers)
		if err != nil {
			snaps.Remove(sid)
			return err
		}
		defer snaps.Remove(sid)
		rs, err := newRootSource(dir, fromName)
		if err != nil {
			return err
		}
		defer rs.close()
		for _, s := range r.srcs {
			sel, err := selectSources(rs, s, fromName, false)
			if err != nil {
				return err
			}
			items = append(items, sel...)
		}
		if len(items) > 1 && !destIsDir {
			return invalidf("When using %s with more than one source file, the destination must be a directory and end with a /", r.name)
		}
	}
	if r.add && (r.unpack == nil || *r.unpack) {
		for i := range items {
			if items[i].info.typ == tar.TypeReg && items[i].where != "url" && items[i].where != "heredoc" {
				ok, err := isArchive(items[i])
				if err != nil {
					return err
				}
				items[i].unpack = ok
			}
		}
	}
	added, err := j.snapshotStep(st, func(rootfs string) error {
		own, err := parseChown(rootfs, r.chown)
		if err != nil {
			return err
		}
		root, err := openRoot(rootfs)
		if err != nil {
			return err
		}
		w := &destWriter{root: root}
		defer w.close()
		destRel := relOf(dest)
		intoDir := destIsDir || len(items) > 1
		for _, it := range items {
			if err := j.copyItem(w, it, destRel, intoDir, own, chmod, r.from != ""); err != nil {
				return err
			}
		}
		w.finish()
		return nil
	})
	if err != nil {
		return err
	}
	st.history(createdBy, !added)
	j.record(st, key)
	return nil
}

// copyItem copies one source into the destination with Docker's rules: a
// directory's contents go into dest; a file goes to dest, or into it when
// dest is a directory (named so, or existing); an archive ADD extracts
// into dest.
func (j *job) copyItem(w *destWriter, it item, dest string, intoDir bool, own *owner, chmod *int64, keepOwner bool) error {
	ownerOf := func(fi fileInfo) (int, int) {
		switch {
		case own != nil:
			return own.uid, own.gid
		case keepOwner:
			return fi.uid, fi.gid
		}
		return 0, 0
	}
	modeOf := func(fi fileInfo) int64 {
		if chmod != nil {
			return *chmod
		}
		return fi.mode
	}
	switch {
	case it.unpack:
		if _, err := w.mkdirAll(dest, own); err != nil {
			return err
		}
		return j.extract(w, it, dest, own)
	case it.info.isDir():
		if !w.isDir(dest) {
			if _, err := w.mkdirAll(path.Dir(dest), own); err != nil {
				return err
			}
			uid, gid := ownerOf(it.info)
			if err := w.mkdir(dest, modeOf(it.info), &owner{uid, gid}, it.info.mtime, false); err != nil {
				return err
			}
		}
		return j.copyTree(w, it.src, it.path, dest, ownerOf, modeOf)
	}
	target := dest
	if intoDir || w.isDir(dest) {
		target = path.Join(dest, it.base)
	}
	if _, err := w.mkdirAll(path.Dir(target), own); err != nil {
		return err
	}
	return j.copyOne(w, it.src, it.path, target, it.info, ownerOf, modeOf)
}

func (j *job) copyOne(w *destWriter, src source, p, target string, fi fileInfo, ownerOf func(fileInfo) (int, int), modeOf func(fileInfo) int64) error {
	uid, gid := ownerOf(fi)
	switch fi.typ {
	case tar.TypeReg:
		rc, err := src.open(p)
		if err != nil {
			return err
		}
		defer rc.Close()
		return w.writeFile(target, rc, modeOf(fi), uid, gid, fi.mtime)
	case tar.TypeSymlink:
		return w.symlink(target, fi.link, uid, gid, fi.mtime)
	case tar.TypeDir:
		if err := w.mkdir(target, modeOf(fi), &owner{uid, gid}, fi.mtime, false); err != nil {
			return err
		}
		return j.copyTree(w, src, p, target, ownerOf, modeOf)
	}
	return nil // devices, fifos, sockets: not copied
}

func (j *job) copyTree(w *destWriter, src source, dir, dest string, ownerOf func(fileInfo) (int, int), modeOf func(fileInfo) int64) error {
	if err := j.ctx.Err(); err != nil {
		return err
	}
	names, err := src.readDir(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := path.Join(dir, n)
		fi, err := src.lstat(p)
		if err != nil {
			return err
		}
		if err := j.copyOne(w, src, p, path.Join(dest, n), fi, ownerOf, modeOf); err != nil {
			return err
		}
	}
	return nil
}

// decompress returns the uncompressed stream of r: gzip, bzip2 and xz
// (through the xz program, as Docker does) are recognised by their magic.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		return zr, nil
	case bytes.HasPrefix(head, []byte("BZh")):
		return io.NopCloser(bzip2.NewReader(br)), nil
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		cmd := exec.Command("xz", "-d", "-c", "-q")
		cmd.Stdin = br
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("xz archive: the xz program is needed to read it: %w", err)
		}
		return &cmdReader{ReadCloser: out, cmd: cmd}, nil
	}
	return io.NopCloser(br), nil
}

type cmdReader struct {
	io.ReadCloser
	cmd *exec.Cmd
}

func (c *cmdReader) Close() error {
	c.ReadCloser.Close()
	c.cmd.Process.Kill()
	c.cmd.Wait()
	return nil
}

// isArchive reports whether an ADD source is a (possibly compressed) tar,
// which ADD extracts.
func isArchive(it item) (bool, error) {
	rc, err := it.src.open(it.path)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	dr, err := decompress(rc)
	if err != nil {
		return false, nil // compressed but unreadable: copied as is
	}
	defer dr.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(dr, head)
	return n == 512 && isTarHeader(head) && !allZero(head), nil
}

// extract unpacks an archive into dest, which confines it: names and
// symlinks resolve with dest as their root, as Docker's chrooted untar.
func (j *job) extract(w *destWriter, it item, dest string, own *owner) error {
	dfd, err := openIn(w.root, dest, unixDirFlags)
	if err != nil {
		return err
	}
	dw := &destWriter{root: dfd}
	defer dw.close()
	rc, err := it.src.open(it.path)
	if err != nil {
		return err
	}
	defer rc.Close()
	dr, err := decompress(rc)
	if err != nil {
		return err
	}
	defer dr.Close()
	tr := tar.NewReader(dr)
	for {
		if err := j.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return invalidf("archive %s: %v", it.base, err)
		}
		name := relOf(hdr.Name)
		if name == "." {
			continue
		}
		uid, gid := hdr.Uid, hdr.Gid
		if own != nil {
			uid, gid = own.uid, own.gid
		}
		if hdr.Typeflag != tar.TypeDir {
			if _, err := dw.mkdirAll(path.Dir(name), own); err != nil {
				return fmt.Errorf("archive %s: %s: %w", it.base, hdr.Name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if _, err := dw.mkdirAll(path.Dir(name), own); err != nil {
				return err
			}
			err = dw.mkdir(name, hdr.Mode, &owner{uid, gid}, hdr.ModTime, true)
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			err = dw.writeFile(name, tr, hdr.Mode, uid, gid, hdr.ModTime)
		case tar.TypeSymlink:
			err = dw.symlink(name, hdr.Linkname, uid, gid, hdr.ModTime)
		case tar.TypeLink:
			err = dw.hardlink(name, relOf(hdr.Linkname))
		default:
			continue // devices and fifos are not created
		}
		if err != nil {
			return fmt.Errorf("archive %s: %s: %w", it.base, hdr.Name, err)
		}
	}
	dw.finish()
	return nil
}

// download fetches an ADD URL into the job's temporary directory.
func (j *job) download(rawURL, checksum string) (item, fileDesc, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return item{}, fileDesc{}, invalidf("ADD %s: %v", rawURL, err)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		name = "__unnamed__"
	}
	req, err := http.NewRequestWithContext(j.ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return item{}, fileDesc{}, invalidf("ADD %s: %v", rawURL, err)
	}
	client := &http.Client{Timeout: 30 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return item{}, fileDesc{}, fmt.Errorf("ADD %s: %w: %w", rawURL, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return item{}, fileDesc{}, fmt.Errorf("ADD %s: the server answered %s: %w", rawURL, resp.Status, errdefs.ErrNotFound)
	}
	f, err := os.CreateTemp(j.tmp, "download-")
	if err != nil {
		return item{}, fileDesc{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), resp.Body)
	if err != nil {
		return item{}, fileDesc{}, fmt.Errorf("ADD %s: %w", rawURL, err)
	}
	sum := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	if checksum != "" && checksum != sum.String() {
		return item{}, fileDesc{}, invalidf("ADD %s: checksum mismatch: got %s, want %s", rawURL, sum, checksum)
	}
	mtime := time.Now()
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		mtime = lm
	}
	fi := fileInfo{typ: tar.TypeReg, mode: 0o600, size: n, mtime: mtime}
	it := item{src: &oneFile{name: name, info: fi, host: filepath.Clean(f.Name())}, path: name, info: fi, base: name, where: "url"}
	return it, fileDesc{Path: rawURL, Type: tar.TypeReg, Mode: 0o600, Size: n, Digest: sum.String()}, nil
}
