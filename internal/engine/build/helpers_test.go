package build

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/image"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (overlay mounts, chown)")
	}
}

// fakeExec stands in for the daemon's container runner: it interprets the
// last argument as a few commands, one per line, acting on the rootfs:
//
//	write PATH TEXT   rm PATH   echo TEXT   env   exit N
type fakeExec struct {
	mu   sync.Mutex
	runs []*Process
}

func (f *fakeExec) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.runs)
}

func (f *fakeExec) Run(ctx context.Context, p *Process) (int, error) {
	f.mu.Lock()
	f.runs = append(f.runs, p)
	f.mu.Unlock()
	script := p.Args[len(p.Args)-1]
	env := map[string]string{}
	for _, kv := range p.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for _, line := range strings.Split(script, "\n") {
		fields := strings.Fields(os.Expand(line, func(k string) string { return env[k] }))
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "write":
			path := filepath.Join(p.Rootfs, fields[1])
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, []byte(strings.Join(fields[2:], " ")), 0o644); err != nil {
				return 0, err
			}
		case "rm":
			if err := os.RemoveAll(filepath.Join(p.Rootfs, fields[1])); err != nil {
				return 0, err
			}
		case "echo":
			fmt.Fprintln(p.Output, strings.Join(fields[1:], " "))
		case "env":
			env := append([]string(nil), p.Env...)
			sort.Strings(env)
			fmt.Fprintln(p.Output, strings.Join(env, " "))
		case "exit":
			var n int
			fmt.Sscan(fields[1], &n)
			return n, nil
		case "sleep":
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(10 * time.Second):
			}
		}
	}
	return 0, nil
}

type tfile struct {
	name, body, link string
	typ              byte
	mode             int64
}

func reg(name, body string) tfile {
	return tfile{name: name, body: body, typ: tar.TypeReg, mode: 0o644}
}
func dir(name string, mode int64) tfile {
	return tfile{name: name, typ: tar.TypeDir, mode: mode}
}
func sym(name, target string) tfile {
	return tfile{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func tarOf(t testing.TB, files ...tfile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Linkname: f.link, Typeflag: f.typ, Mode: f.mode, ModTime: epoch, Format: tar.FormatPAX}
		if f.typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	tw.Close()
	return buf.Bytes()
}

type testEnv struct {
	b      *Builder
	images *image.Store
	exec   *fakeExec
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	root := t.TempDir()
	images, err := image.New(filepath.Join(root, "image"))
	if err != nil {
		t.Fatal(err)
	}
	ex := &fakeExec{}
	b, err := New(filepath.Join(root, "build"), images, ex, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{b: b, images: images, exec: ex}
}

// baseImage imports a small root file system as "base": a merged-/usr
// layout (bin -> usr/bin), a sticky /tmp, users root and user (1000).
func (e *testEnv) baseImage(t testing.TB) {
	t.Helper()
	rootfs := tarOf(t,
		dir("etc/", 0o755), reg("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
		reg("etc/group", "root:x:0:\nuser:x:1000:\nstaff:x:50:user\n"),
		dir("usr/", 0o755), dir("usr/bin/", 0o755), sym("bin", "usr/bin"),
		dir("tmp/", 0o1777), dir("data/", 0o755), reg("data/old.txt", "old"),
		dir("home/", 0o755), dir("home/user/", 0o700))
	if _, err := e.images.Import(bytes.NewReader(rootfs), "base:latest", ocispec.ImageConfig{Env: []string{"PATH=/usr/bin"}, Cmd: []string{"sh"}}); err != nil {
		t.Fatal(err)
	}
}

// build builds a context made of files plus the Dockerfile df.
func (e *testEnv) build(t testing.TB, df string, opts Options, files ...tfile) (*Result, string, error) {
	t.Helper()
	files = append(files, reg("Dockerfile", df))
	bc, err := ReadContext(bytes.NewReader(tarOf(t, files...)), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	var out bytes.Buffer
	res, err := e.b.Build(context.Background(), bc, opts, &out)
	return res, out.String(), err
}

func (e *testEnv) mustBuild(t testing.TB, df string, opts Options, files ...tfile) (*Result, string) {
	t.Helper()
	res, out, err := e.build(t, df, opts, files...)
	if err != nil {
		t.Fatalf("build: %v\noutput:\n%s", err, out)
	}
	return res, out
}

func (e *testEnv) config(t testing.TB, id string) ocispec.Image {
	t.Helper()
	img, err := e.images.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return img.Config
}

// layer lists the entries of an image's layer (counted from the top when
// negative) as "name mode uid:gid [->link|=body]".
func (e *testEnv) layer(t testing.TB, id string, i int) []string {
	t.Helper()
	img, err := e.images.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if i < 0 {
		i += len(img.Layers)
	}
	b, err := e.images.Content().ReadAll(img.Layers[i])
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		s := fmt.Sprintf("%s %o %d:%d", h.Name, h.Mode, h.Uid, h.Gid)
		switch {
		case h.Typeflag == tar.TypeSymlink:
			s += " ->" + h.Linkname
		case h.Typeflag == tar.TypeReg:
			s += " =" + string(body)
		}
		out = append(out, s)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
