package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/errdefs"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/opencontainers/go-digest"
)

// Context is a build context received as a tar stream. Entries are indexed
// in memory and file contents are spooled to an unlinked temporary file, so
// COPY reads any file at random and only the files a build uses are ever
// hashed (each once per build). Nothing of it is left on disk after Close.
type Context struct {
	f       *os.File
	entries map[string]*ctxEntry // by clean relative path; "." is the root
	kids    map[string][]string  // sorted child names, built on demand

	mu     sync.Mutex
	hashes map[*ctxEntry]digest.Digest
}

type ctxEntry struct {
	fileInfo
	off int64 // content offset in the spool (regular files)
}

// fileInfo describes one file of a build source (the context or an image's
// root file system).
type fileInfo struct {
	typ   byte // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	mode  int64
	uid   int
	gid   int
	size  int64
	mtime time.Time
	link  string
}

func (fi fileInfo) isDir() bool { return fi.typ == tar.TypeDir }

// maxDockerfile bounds the Dockerfile and .dockerignore the daemon reads
// into memory.
const maxDockerfile = 16 << 20

// maxContextEntries bounds the index a hostile context can make the daemon
// keep in memory.
const maxContextEntries = 4 << 20

// ReadContext reads a build context: a tar archive (plain or gzip). A body
// that is not an archive is taken as the Dockerfile itself, named
// dockerfile, as `docker build - < Dockerfile` sends it. tmpDir holds the
// spool file, which is unlinked at once.
func ReadContext(r io.Reader, tmpDir, dockerfile string) (*Context, error) {
	f, err := os.CreateTemp(tmpDir, "context-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	c := &Context{f: f, entries: map[string]*ctxEntry{}, hashes: map[*ctxEntry]digest.Digest{}}
	c.entries["."] = &ctxEntry{fileInfo: fileInfo{typ: tar.TypeDir, mode: 0o755}}
	if err := c.read(r, dockerfile); err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// Close discards the spooled context.
func (c *Context) Close() error { return c.f.Close() }

// isTarHeader reports whether b starts with a tar header block: one
// whose checksum field matches its bytes (what every tar format shares).
func isTarHeader(b []byte) bool {
	if len(b) < 512 || allZero(b[:512]) {
		return false
	}
	field := strings.TrimRight(strings.TrimSpace(string(b[148:156])), "\x00 ")
	want, err := strconv.ParseUint(field, 8, 64)
	if err != nil {
		return false
	}
	var sum uint64
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += uint64(c)
	}
	return sum == want
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func badContext(format string, args ...any) error {
	return fmt.Errorf("build context: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

func (c *Context) read(r io.Reader, dockerfile string) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(2)
	var src io.Reader = br
	if len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return badContext("gzip: %v", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
		src = br
	}
	head, err := br.Peek(512)
	if err != nil && err != io.EOF {
		return badContext("%v", err)
	}
	if len(head) == 0 {
		return badContext("the request body is empty: expected a tar archive of the context (or a Dockerfile)")
	}
	if !isTarHeader(head) {
		// Not an archive: the body is the Dockerfile.
		if dockerfile == "" {
			dockerfile = "Dockerfile"
		}
		b, err := io.ReadAll(io.LimitReader(src, maxDockerfile+1))
		if err != nil {
			return badContext("%v", err)
		}
		if len(b) > maxDockerfile {
			return badContext("the body is neither a tar archive nor a Dockerfile (larger than %d bytes)", maxDockerfile)
		}
		return c.add(&tar.Header{Name: dockerfile, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: time.Now()}, bytes.NewReader(b))
	}
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return badContext("tar: %v", err)
		}
		if len(c.entries) > maxContextEntries {
			return badContext("more than %d entries", maxContextEntries)
		}
		if err := c.add(hdr, tr); err != nil {
			return err
		}
	}
}

// cleanName turns a tar or Dockerfile path into a clean path relative to
// the root ("." for the root itself). ".." cannot climb above the root.
func cleanName(name string) string {
	p := path.Clean("/" + name)
	if p == "/" {
		return "."
	}
	return p[1:]
}

func (c *Context) add(hdr *tar.Header, r io.Reader) error {
	name := cleanName(hdr.Name)
	fi := fileInfo{mode: hdr.Mode & 0o7777, uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime}
	e := &ctxEntry{}
	switch hdr.Typeflag {
	case tar.TypeDir:
		fi.typ = tar.TypeDir
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		fi.typ, fi.size = tar.TypeReg, hdr.Size
		off, err := c.f.Seek(0, io.SeekEnd)
		if err != nil {
			return err
		}
		n, err := io.Copy(c.f, r)
		if err != nil {
			return badContext("entry %q: %v", hdr.Name, err)
		}
		if n != hdr.Size {
			return badContext("entry %q: truncated", hdr.Name)
		}
		e.off = off
	case tar.TypeSymlink:
		fi.typ, fi.link = tar.TypeSymlink, hdr.Linkname
	case tar.TypeLink:
		t := c.entries[cleanName(hdr.Linkname)]
		if t == nil || t.typ != tar.TypeReg {
			return badContext("entry %q: hard link to %q, which is not a file earlier in the archive", hdr.Name, hdr.Linkname)
		}
		fi.typ, fi.size, e.off = tar.TypeReg, t.size, t.off
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return nil // devices, fifos: nothing COPY can use
	}
	if name == "." {
		if fi.typ == tar.TypeDir {
			c.entries["."].fileInfo = fi
		}
		return nil
	}
	e.fileInfo = fi
	// Parents the archive did not list become plain directories.
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		pe := c.entries[p]
		if pe == nil {
			c.entries[p] = &ctxEntry{fileInfo: fileInfo{typ: tar.TypeDir, mode: 0o755, mtime: hdr.ModTime}}
			continue
		}
		if pe.typ != tar.TypeDir {
			// A later entry under a non-directory: the directory wins.
			pe.fileInfo = fileInfo{typ: tar.TypeDir, mode: 0o755, mtime: hdr.ModTime}
		}
		break
	}
	if old := c.entries[name]; old != nil && old.typ == tar.TypeDir && fi.typ != tar.TypeDir {
		// Replacing a directory drops what was under it.
		for k := range c.entries {
			if strings.HasPrefix(k, name+"/") {
				delete(c.entries, k)
			}
		}
	}
	c.entries[name] = e
	c.kids = nil
	return nil
}

// ReadFile returns the content of the regular file name (a context path,
// at most 16 MiB: a Dockerfile or .dockerignore), following symlinks
// inside the context.
func (c *Context) ReadFile(name string) ([]byte, error) {
	p, err := resolvePath(c, cleanName(name), true)
	if err != nil {
		return nil, err
	}
	fi, err := c.lstat(p)
	if err != nil {
		return nil, err
	}
	if fi.typ != tar.TypeReg {
		return nil, fmt.Errorf("%s: not a regular file: %w", name, errdefs.ErrInvalidArgument)
	}
	if fi.size > maxDockerfile {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", name, maxDockerfile, errdefs.ErrInvalidArgument)
	}
	rc, err := c.open(p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Has reports whether name is in the context.
func (c *Context) Has(name string) bool {
	_, ok := c.entries[cleanName(name)]
	return ok
}

// Remove drops name (and what is under it) from the context, as Docker
// does with a Dockerfile or .dockerignore that .dockerignore excludes.
func (c *Context) Remove(name string) {
	name = cleanName(name)
	if name == "." {
		return
	}
	delete(c.entries, name)
	for k := range c.entries {
		if strings.HasPrefix(k, name+"/") {
			delete(c.entries, k)
		}
	}
	c.kids = nil
}

// ApplyDockerignore reads .dockerignore (if any) and removes what it
// excludes that is still in the context. The CLI already leaves excluded
// files out; this catches clients that do not, and hides an excluded
// Dockerfile and .dockerignore (which the CLI always sends) from COPY.
func (c *Context) ApplyDockerignore() error {
	b, err := c.ReadFile(".dockerignore")
	if err != nil {
		return nil
	}
	patterns, err := ignorefile.ReadAll(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf(".dockerignore: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(patterns) == 0 {
		return nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf(".dockerignore: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	var drop []string
	for name := range c.entries {
		if name == "." {
			continue
		}
		if ok, _ := pm.MatchesOrParentMatches(name); ok {
			drop = append(drop, name)
		}
	}
	sort.Strings(drop)
	for _, name := range drop {
		if e := c.entries[name]; e != nil && e.typ == tar.TypeDir {
			// Keep a directory that still holds an un-excluded entry.
			keepDir := false
			for k := range c.entries {
				if strings.HasPrefix(k, name+"/") {
					if ok, _ := pm.MatchesOrParentMatches(k); !ok {
						keepDir = true
						break
					}
				}
			}
			if keepDir {
				continue
			}
		}
		delete(c.entries, name)
	}
	c.kids = nil
	return nil
}

// lstat implements source.
func (c *Context) lstat(p string) (fileInfo, error) {
	e := c.entries[p]
	if e == nil {
		return fileInfo{}, fmt.Errorf("stat %s: %w", p, os.ErrNotExist)
	}
	return e.fileInfo, nil
}

func (c *Context) buildKids() {
	c.kids = map[string][]string{}
	for name := range c.entries {
		if name == "." {
			continue
		}
		dir := path.Dir(name)
		c.kids[dir] = append(c.kids[dir], path.Base(name))
	}
	for _, k := range c.kids {
		sort.Strings(k)
	}
}

// readDir implements source.
func (c *Context) readDir(p string) ([]string, error) {
	e := c.entries[p]
	if e == nil || e.typ != tar.TypeDir {
		return nil, fmt.Errorf("read dir %s: %w", p, os.ErrNotExist)
	}
	if c.kids == nil {
		c.buildKids()
	}
	return c.kids[p], nil
}

// open implements source.
func (c *Context) open(p string) (io.ReadCloser, error) {
	e := c.entries[p]
	if e == nil || e.typ != tar.TypeReg {
		return nil, fmt.Errorf("open %s: %w", p, os.ErrNotExist)
	}
	return io.NopCloser(io.NewSectionReader(c.f, e.off, e.size)), nil
}

// hash returns the sha256 of the regular file p, computed once per build.
func (c *Context) hash(p string) (digest.Digest, error) {
	e := c.entries[p]
	if e == nil || e.typ != tar.TypeReg {
		return "", fmt.Errorf("hash %s: %w", p, os.ErrNotExist)
	}
	c.mu.Lock()
	d, ok := c.hashes[e]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	dg := digest.SHA256.Digester()
	if _, err := io.Copy(dg.Hash(), io.NewSectionReader(c.f, e.off, e.size)); err != nil {
		return "", err
	}
	d = dg.Digest()
	c.mu.Lock()
	c.hashes[e] = d
	c.mu.Unlock()
	return d, nil
}

var errLinkLoop = errors.New("too many levels of symbolic links")
