package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCopySemantics checks, layer by layer, what Docker's COPY rules put
// into the image.
func TestCopySemantics(t *testing.T) {
	needRoot(t)
	e := newTestEnv(t)
	e.baseImage(t)
	ctxFiles := []tfile{
		dir("src/", 0o755), reg("src/a.txt", "A"), reg("src/b.txt", "B"), dir("src/sub/", 0o750), reg("src/sub/c", "C"),
		sym("src/link", "a.txt"), reg("one", "1"), reg("tool", "#!/bin/sh"),
	}
	for _, tc := range []struct {
		name, df string
		want     []string // entries the top layer must have
		not      []string // name prefixes it must not have
	}{
		{"dir contents", "COPY src /dst", []string{"dst/ 755 0:0", "dst/a.txt 644 0:0 =A", "dst/sub/ 750 0:0", "dst/sub/c 644 0:0 =C", "dst/link 777 0:0 ->a.txt"}, []string{"dst/src"}},
		{"file to name", "COPY one /renamed", []string{"renamed 644 0:0 =1"}, nil},
		{"file into dir", "COPY one /newdir/", []string{"newdir/ 755 0:0", "newdir/one 644 0:0 =1"}, nil},
		{"file into existing dir", "COPY one /data", []string{"data/one 644 0:0 =1"}, nil},
		{"relative to workdir", "WORKDIR /w\nCOPY one .", []string{"w/one 644 0:0 =1"}, nil},
		{"glob", "COPY src/*.txt /g/", []string{"g/a.txt 644 0:0 =A", "g/b.txt 644 0:0 =B"}, []string{"g/sub", "g/link"}},
		{"several sources", "COPY one src/a.txt /m/", []string{"m/one 644 0:0 =1", "m/a.txt 644 0:0 =A"}, nil},
		{"chown and chmod", "COPY --chown=user:staff --chmod=600 src /o/", []string{"o/ 600 1000:50", "o/a.txt 600 1000:50 =A", "o/sub/c 600 1000:50 =C"}, nil},
		{"chown uid only", "COPY --chown=1000 one /u", []string{"u 644 1000:1000 =1"}, nil},
		// /bin is a symlink to usr/bin: the file lands in usr/bin and
		// the layer keeps /bin a symlink (no bin/ directory).
		{"through a symlinked dir", "COPY tool /bin/", []string{"usr/bin/tool 644 0:0 =#!/bin/sh"}, []string{"bin/"}},
		// Parents keep their metadata: /tmp stays sticky.
		{"existing parent keeps its mode", "COPY one /tmp/x", []string{"tmp/ 1777 0:0", "tmp/x 644 0:0 =1"}, nil},
		{"symlink source is followed", "COPY src/link /followed", []string{"followed 644 0:0 =A"}, nil},
		{"heredoc quoted is not expanded", "COPY <<'EOF' /etc/motd\nhello $HOME\nEOF", []string{"etc/motd 644 0:0 =hello $HOME\n"}, nil},
		{"heredoc expanded", "ENV WHO=you\nCOPY <<\"EOF\" /greet\nhi\nEOF\nCOPY <<EOF /greet2\nhi $WHO\nEOF", []string{"greet2 644 0:0 =hi you\n"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, out := e.mustBuild(t, "FROM base\n"+tc.df+"\n", Options{}, ctxFiles...)
			got := e.layer(t, res.ID, -1)
			for _, w := range tc.want {
				if !contains(got, w) {
					t.Errorf("layer lacks %q; has:\n%s\noutput:\n%s", w, strings.Join(got, "\n"), out)
				}
			}
			for _, n := range tc.not {
				for _, g := range got {
					if strings.HasPrefix(g, n) {
						t.Errorf("layer has %q (nothing starting with %q expected)", g, n)
					}
				}
			}
		})
	}
}

func TestCopyErrors(t *testing.T) {
	needRoot(t)
	e := newTestEnv(t)
	e.baseImage(t)
	files := []tfile{reg("a", "a"), reg("b", "b"), reg("secret", "s"), reg(".dockerignore", "secret\n")}
	for _, tc := range []struct{ df, want string }{
		{"COPY ../outside /x", "Dockerfile:2: COPY failed: forbidden path outside the build context: ../outside"},
		{"COPY missing /x", "Dockerfile:2: COPY failed: file not found in build context or excluded by .dockerignore: stat missing: file does not exist"},
		{"COPY secret /x", "file not found in build context or excluded by .dockerignore: stat secret"},
		{"COPY nomatch* /x/", "file not found in build context"},
		{"COPY a b /x", "When using COPY with more than one source file, the destination must be a directory and end with a /"},
		{"COPY --chown=nobody a /x", "--chown=nobody"},
		{"COPY --chmod=99x a /x", "--chmod=99x: want an octal mode"},
		{"COPY --from=nosuchstage /a /x", "pull access denied for nosuchstage"},
		{"COPY a /data/old.txt/x", "cannot create directory /data/old.txt: a file is in the way"},
	} {
		_, out, err := e.build(t, "FROM base\n"+tc.df+"\n", Options{Tags: []string{"never"}}, files...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q\n%s", tc.df, err, tc.want, out)
		}
	}
	if _, err := e.images.Get("never"); err == nil {
		t.Error("a failed build left an image")
	}
	if ids, _ := e.images.Snapshots().List(); len(ids) != 0 {
		t.Errorf("failed builds left snapshots: %v", ids)
	}
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestAddExtractsArchives(t *testing.T) {
	needRoot(t)
	e := newTestEnv(t)
	e.baseImage(t)
	inner := tarOf(t, dir("pkg/", 0o755), reg("pkg/f", "in tar"), sym("pkg/l", "/etc/passwd"),
		reg("../../escape", "no"), reg("/abs", "rooted"))
	files := []tfile{reg("plain.tar", string(inner)), reg("comp.tar.gz", string(gz(t, inner))), reg("notatar.gz", string(gz(t, []byte("text")))), reg("file.txt", "x")}
	if bz, err := exec.Command("bzip2", "-c").Output(); err == nil {
		_ = bz
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(inner)
		if b, err := cmd.Output(); err == nil {
			files = append(files, reg("comp.tar.bz2", string(b)))
		}
	}
	if _, err := exec.LookPath("xz"); err == nil {
		cmd := exec.Command("xz", "-c")
		cmd.Stdin = bytes.NewReader(inner)
		if b, err := cmd.Output(); err == nil {
			files = append(files, reg("comp.tar.xz", string(b)))
		}
	}
	for _, f := range files {
		if !strings.Contains(f.name, ".tar") {
			continue
		}
		res, out := e.mustBuild(t, "FROM base\nADD "+f.name+" /x/\n", Options{}, files...)
		got := e.layer(t, res.ID, -1)
		for _, w := range []string{"x/pkg/f 644 0:0 =in tar", "x/pkg/l 777 0:0 ->/etc/passwd", "x/escape 644 0:0 =no", "x/abs 644 0:0 =rooted"} {
			if !contains(got, w) {
				t.Errorf("ADD %s: layer lacks %q; has:\n%s\n%s", f.name, w, strings.Join(got, "\n"), out)
			}
		}
		for _, g := range got {
			if !strings.HasPrefix(g, "x/") {
				t.Errorf("ADD %s wrote outside its destination: %s", f.name, g)
			}
		}
	}
	// A compressed file that is not a tar is copied as it is; COPY never
	// extracts.
	res, _ := e.mustBuild(t, "FROM base\nADD notatar.gz /n/\nCOPY plain.tar /c/\n", Options{}, files...)
	if got := e.layer(t, res.ID, -2); !contains(got, "n/notatar.gz 644 0:0 ="+string(gz(t, []byte("text")))) {
		t.Errorf("ADD of a gzip non-tar: %v", got)
	}
	if got := e.layer(t, res.ID, -1); len(got) != 2 || !strings.HasPrefix(got[1], "c/plain.tar ") {
		t.Errorf("COPY of a tar: %v", got)
	}
}

// TestRunLayersAndCache uses a fake executor to check what RUN turns
// into: layers with whiteouts, no layer for no change, build args in the
// environment, and cache hits and misses around a changed file.
func TestRunLayersAndCache(t *testing.T) {
	needRoot(t)
	e := newTestEnv(t)
	e.baseImage(t)
	df := `FROM base
ARG V=1
RUN write /made $V
RUN rm /data/old.txt
RUN echo nothing changes
COPY app.txt /app/
RUN write /after-copy x
`
	res, out := e.mustBuild(t, df, Options{}, reg("app.txt", "v1"))
	if got := e.layer(t, res.ID, 1); !contains(got, "made 644 0:0 =1") {
		t.Errorf("RUN write layer: %v", got)
	}
	if got := e.layer(t, res.ID, 2); !contains(got, "data/.wh.old.txt 600 0:0 =") {
		t.Errorf("RUN rm layer has no whiteout: %v", got)
	}
	img := e.config(t, res.ID)
	if len(img.RootFS.DiffIDs) != 5 {
		t.Errorf("%d layers, want 5 (base, write, rm, COPY, write; the no-op RUN adds none)", len(img.RootFS.DiffIDs))
	}
	var runHist []string
	for _, h := range img.History {
		if strings.HasPrefix(h.CreatedBy, "RUN ") {
			runHist = append(runHist, h.CreatedBy)
			if strings.Contains(h.CreatedBy, "nothing") != h.EmptyLayer {
				t.Errorf("history %q: empty_layer %v", h.CreatedBy, h.EmptyLayer)
			}
		}
	}
	if len(runHist) != 4 || runHist[0] != "RUN |1 V=1 /bin/sh -c write /made $V" {
		t.Errorf("RUN history: %q", runHist)
	}
	if !strings.Contains(out, "nothing changes\n") {
		t.Errorf("RUN output missing:\n%s", out)
	}
	runs := e.exec.count()
	if p := e.exec.runs[0]; !contains(p.Env, "V=1") || !contains(p.Env, "PATH=/usr/bin") || p.Network != "bridge" || p.Cwd != "/" {
		t.Errorf("RUN process: env %v network %q cwd %q", p.Env, p.Network, p.Cwd)
	}

	// Unchanged: everything from the cache, same image.
	again, out2 := e.mustBuild(t, df, Options{}, reg("app.txt", "v1"))
	if again.ID != res.ID || e.exec.count() != runs {
		t.Errorf("rebuild: id %s (want %s), %d new RUNs:\n%s", again.ID, res.ID, e.exec.count()-runs, out2)
	}
	// A changed file invalidates its COPY and what follows only.
	changed, out3 := e.mustBuild(t, df, Options{}, reg("app.txt", "v2"))
	if changed.ID == res.ID || e.exec.count() != runs+1 || strings.Count(out3, "Using cache") != 3 {
		t.Errorf("changed app.txt: %d RUNs (want 1), output:\n%s", e.exec.count()-runs, out3)
	}
	// A build arg reaches only the RUNs that see it.
	_, out4 := e.mustBuild(t, df, Options{BuildArgs: map[string]*string{"V": ptr("2")}}, reg("app.txt", "v1"))
	if strings.Contains(out4, "Using cache") {
		t.Errorf("V=2 still hit the cache:\n%s", out4)
	}
}

func TestRunFailureAndCancel(t *testing.T) {
	needRoot(t)
	e := newTestEnv(t)
	e.baseImage(t)
	_, out, err := e.build(t, "FROM base\nRUN write /x 1\nRUN <<EOF\necho about to fail\nexit 3\nEOF\n", Options{Tags: []string{"failed"}})
	var be *Error
	if err == nil || !strings.Contains(err.Error(), "Dockerfile:3: RUN exit status 3") || !asError(err, &be) || be.Code != 3 {
		t.Fatalf("failed RUN: %v (want Dockerfile:3: RUN exit status 3, code 3)\n%s", err, out)
	}
	if !strings.Contains(be.Output, "about to fail") {
		t.Errorf("error output tail %q", be.Output)
	}
	if _, err := e.images.Get("failed"); err == nil {
		t.Error("a failed build was tagged")
	}
	ctx, cancel := context.WithCancel(context.Background())
	bc, _ := ReadContext(bytes.NewReader(tarOf(t, reg("Dockerfile", "FROM base\nRUN sleep\n"))), t.TempDir(), "")
	defer bc.Close()
	done := make(chan error, 1)
	go func() {
		_, err := e.b.Build(ctx, bc, Options{}, &bytes.Buffer{})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a cancelled build succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled build did not stop")
	}
	if ids, _ := e.images.Snapshots().List(); len(ids) != 0 {
		t.Errorf("snapshots left: %v", ids)
	}
	if ents, _ := os.ReadDir(e.b.tmp); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

func TestMultiStageCopyFrom(t *testing.T) {
	needRoot(t)
	e := newTestEnv(t)
	e.baseImage(t)
	df := `FROM base AS build
RUN write /out/bin built
RUN write /out/owned x
FROM base
COPY --from=build /out/ /app/
COPY --from=0 /out/bin /bin2
COPY --from=base /etc/group /g
`
	res, _ := e.mustBuild(t, df, Options{})
	got := append(e.layer(t, res.ID, -3), append(e.layer(t, res.ID, -2), e.layer(t, res.ID, -1)...)...)
	for _, w := range []string{"app/bin 644 0:0 =built", "bin2 644 0:0 =built", "g 644 0:0 =root:x:0:\nuser:x:1000:\nstaff:x:50:user\n"} {
		if !contains(got, w) {
			t.Errorf("lacks %q: %v", w, got)
		}
	}
	if _, _, err := e.build(t, "FROM base AS a\nFROM base\nCOPY --from=a /nope /x\n", Options{}); err == nil || !strings.Contains(err.Error(), "file not found in stage a") {
		t.Errorf("COPY --from of a missing file: %v", err)
	}
}

// TestContextReading covers the forms a build context arrives in.
func TestContextReading(t *testing.T) {
	dir := t.TempDir()
	// A bare Dockerfile is a context holding only it.
	c, err := ReadContext(strings.NewReader("FROM scratch\n"), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := c.ReadFile("Dockerfile"); err != nil || string(b) != "FROM scratch\n" {
		t.Errorf("bare Dockerfile: %q, %v", b, err)
	}
	c.Close()
	// gzip; hard links; parents the tar does not list.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "deep/a/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("hi"))
	tw.WriteHeader(&tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "deep/a/f"})
	tw.WriteHeader(&tar.Header{Name: ".dockerignore", Typeflag: tar.TypeReg, Mode: 0o644, Size: 15})
	tw.Write([]byte("deep\n!deep/a/f\n"))
	tw.WriteHeader(&tar.Header{Name: "deep/a/g", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	c, err = ReadContext(bytes.NewReader(gz(t, buf.Bytes())), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if b, _ := c.ReadFile("hl"); string(b) != "hi" {
		t.Errorf("hard link content %q", b)
	}
	if fi, err := c.lstat("deep/a"); err != nil || !fi.isDir() {
		t.Errorf("implied parent: %v %v", fi, err)
	}
	if err := c.ApplyDockerignore(); err != nil {
		t.Fatal(err)
	}
	if !c.Has("deep/a/f") || c.Has("deep/a/g") {
		t.Errorf(".dockerignore with an exception: f kept %v (want true), g kept %v (want false)", c.Has("deep/a/f"), c.Has("deep/a/g"))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the spool file is visible: %v", ents)
	}
	if _, err := ReadContext(strings.NewReader(""), dir, ""); err == nil {
		t.Error("an empty body was accepted")
	}
}

// TestPruneFreesOnlyCacheLayers: the layers of a failed build stay as
// cache until Prune, which keeps every layer an image uses.
func TestPruneFreesOnlyCacheLayers(t *testing.T) {
	needRoot(t)
	e := newTestEnv(t)
	e.baseImage(t)
	kept, _ := e.mustBuild(t, "FROM base\nRUN write /kept 1\n", Options{Tags: []string{"kept"}})
	if _, _, err := e.build(t, "FROM base\nRUN write /orphan 1\nRUN exit 1\n", Options{}); err == nil {
		t.Fatal("the failing build succeeded")
	}
	layersBefore, _ := e.images.Snapshots().Layers()
	steps, freed, err := e.b.Prune()
	if err != nil || steps < 2 || freed <= 0 {
		t.Fatalf("Prune: %d steps, %d bytes, %v", steps, freed, err)
	}
	layersAfter, _ := e.images.Snapshots().Layers()
	if len(layersAfter) != len(layersBefore)-1 {
		t.Errorf("Prune removed %d layers, want exactly the failed build's one", len(layersBefore)-len(layersAfter))
	}
	img, _ := e.images.Get(kept.ID)
	if !e.images.HasLayers(img.Layers) {
		t.Error("Prune removed a layer an image uses")
	}
	if _, out := e.mustBuild(t, "FROM base\nRUN write /kept 1\n", Options{}); strings.Contains(out, "Using cache") {
		t.Errorf("the cache survived Prune:\n%s", out)
	}
}
