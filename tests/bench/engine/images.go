package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The images step of issue 4: `build` of one multi-stage Dockerfile by
// berth, docker's legacy builder and podman, cold (--no-cache) and cached,
// then push and pull of a big image to and from berth's registry, by berth
// and by skopeo.

// buildDockerfile is the multi-stage Dockerfile every builder builds: a
// builder stage with a RUN, a final stage that copies from it and from the
// context and runs once more.
const buildDockerfile = `FROM busybox AS base
RUN mkdir -p /out && echo built > /out/stamp
FROM busybox
COPY --from=base /out/stamp /stamp
COPY app/ /app/
RUN ls /app > /app.list
CMD ["cat", "/stamp"]
`

// imagesResult holds the figures of the images step.
type imagesResult struct {
	Cold, Cached map[string][]float64 // ms per build, by builder
	BuildErr     map[string]error

	Push, Pull map[string][]float64 // MiB/s per round, by client
	XferErr    map[string]error
	ImageMiB   float64 // size of the pushed image (uncompressed layers)
	Registry   string  // how the registry was run
}

func newImagesResult() *imagesResult {
	return &imagesResult{Cold: map[string][]float64{}, Cached: map[string][]float64{}, BuildErr: map[string]error{},
		Push: map[string][]float64{}, Pull: map[string][]float64{}, XferErr: map[string]error{}}
}

// builder is one contender of the build rounds.
type builder struct {
	name string
	env  []string
	argv func(tag string, noCache bool) []string
}

func images(ctx context.Context, cfg config, r *results, cl *cleanups) {
	ir := newImagesResult()
	r.Images = ir
	ctxDir := filepath.Join(cfg.work, "buildctx")
	if err := writeBuildContext(ctxDir); err != nil {
		ir.BuildErr["context"] = err
		return
	}
	var bs []builder
	for _, e := range r.usable() {
		if e.Kind != cliEngine {
			continue
		}
		e := e
		switch e.Name {
		case "berth":
			bs = append(bs, builder{name: "berth", argv: func(tag string, noCache bool) []string {
				a := e.cli("build", "-q", "-t", tag)
				if noCache {
					a = append(a, "--no-cache")
				}
				return append(a, ctxDir)
			}})
		case "docker":
			// The legacy builder: Debian's docker.io has no buildx plugin,
			// so it is the builder the docker CLI uses here.
			bs = append(bs, builder{name: "docker (legacy builder)", env: append([]string{"DOCKER_BUILDKIT=0"}, e.env...), argv: func(tag string, noCache bool) []string {
				a := e.cli("build", "-q", "--network", "none", "-t", tag)
				if noCache {
					a = append(a, "--no-cache")
				}
				return append(a, ctxDir)
			}})
		case "podman":
			bs = append(bs, builder{name: "podman", env: e.env, argv: func(tag string, noCache bool) []string {
				a := e.cli("build", "-q", "--network", "none", "-t", tag)
				if noCache {
					a = append(a, "--no-cache")
				}
				return append(a, ctxDir)
			}})
		}
	}
	// One untimed build each fills the cache and pays first-use costs.
	for _, b := range bs {
		if _, err := timed(ctx, b.env, nil, b.argv("bench-build:warm", false)...); err != nil {
			ir.BuildErr[b.name] = err
		}
	}
	for round := 0; round < cfg.buildRounds && ctx.Err() == nil; round++ {
		for i := range bs {
			b := bs[(round+i)%len(bs)]
			if ir.BuildErr[b.name] != nil {
				continue
			}
			tag := "bench-build:r" + strconv.Itoa(round)
			if d, err := timed(ctx, b.env, nil, b.argv(tag, true)...); err != nil {
				ir.BuildErr[b.name] = err
				continue
			} else {
				ir.Cold[b.name] = append(ir.Cold[b.name], ms(d))
			}
			if d, err := timed(ctx, b.env, nil, b.argv(tag, false)...); err != nil {
				ir.BuildErr[b.name] = err
			} else {
				ir.Cached[b.name] = append(ir.Cached[b.name], ms(d))
			}
		}
	}
	transfer(ctx, cfg, r, ir, cl)
}

// writeBuildContext writes the Dockerfile and a small app directory.
func writeBuildContext(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "app"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(buildDockerfile), 0o644); err != nil {
		return err
	}
	for i := range 20 {
		body := strings.Repeat(fmt.Sprintf("line %d of file %d\n", i, i), 200)
		if err := os.WriteFile(filepath.Join(dir, "app", fmt.Sprintf("f%02d.txt", i)), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// transfer pushes and pulls one big image to and from a berth registry,
// with berth and with skopeo, round-robin, a fresh registry root per round
// so that no push finds its blobs already there.
func transfer(ctx context.Context, cfg config, r *results, ir *imagesResult, cl *cleanups) {
	b := r.engine("berth")
	if b == nil || !b.ok() {
		ir.XferErr["berth"] = fmt.Errorf("berth is not part of this run")
		return
	}
	dir := filepath.Join(cfg.work, "xfer")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		ir.XferErr["setup"] = err
		return
	}
	archive := filepath.Join(dir, "big.tar")
	size, err := writeBigImage(archive, cfg.bigMiB)
	if err != nil {
		ir.XferErr["setup"] = err
		return
	}
	ir.ImageMiB = float64(size) / (1 << 20)
	if _, err := output(ctx, nil, b.cli("load", "-i", archive)...); err != nil {
		ir.XferErr["setup"] = err
		return
	}
	bin := filepath.Join(cfg.binDir, "berth")
	skopeo, skErr := exec.LookPath("skopeo")
	if skErr != nil {
		ir.XferErr["skopeo"] = fmt.Errorf("skopeo not installed: %w", skErr)
		ir.XferErr[skopeoStorage] = ir.XferErr["skopeo"]
	}

	// Each side starts from its own compressed copy, so neither pays for
	// compression in the timed rounds: berth from a first, untimed push
	// (it keeps the compressed layers), skopeo from an OCI layout.
	reg, stop, err := startRegistry(ctx, bin, filepath.Join(dir, "reg-warm"))
	if err != nil {
		ir.XferErr["setup"] = err
		return
	}
	ir.Registry = "`berth registry --addr 127.0.0.1:PORT --root DIR`, a new DIR per round"
	warm := reg + "/bench/big:warm"
	if _, err := output(ctx, nil, b.cli("tag", "bench-big:latest", warm)...); err == nil {
		if _, err := output(ctx, nil, b.cli("push", "-q", warm)...); err != nil {
			ir.XferErr["berth"] = err
		}
	} else {
		ir.XferErr["berth"] = err
	}
	layout := filepath.Join(dir, "skopeo-src")
	if skErr == nil {
		if _, err := output(ctx, nil, skopeo, "copy", "-q", "docker-archive:"+archive, "oci:"+layout+":big"); err != nil {
			ir.XferErr["skopeo"] = err
		}
	}
	stop()

	clients := []string{"berth", "skopeo", skopeoStorage}
	for round := 0; round < cfg.xferRounds && ctx.Err() == nil; round++ {
		for i := range clients {
			c := clients[(round+i)%len(clients)]
			if ir.XferErr[c] != nil {
				continue
			}
			root := filepath.Join(dir, fmt.Sprintf("reg-%s-%d", c, round))
			reg, stop, err := startRegistry(ctx, bin, root)
			if err != nil {
				ir.XferErr[c] = err
				continue
			}
			ref := fmt.Sprintf("%s/bench/big:r%d-%d", reg, round, i)
			var push, pull time.Duration
			switch c {
			case "berth":
				if _, err = output(ctx, nil, b.cli("tag", "bench-big:latest", ref)...); err != nil {
					break
				}
				if push, err = timed(ctx, nil, nil, b.cli("push", "-q", ref)...); err != nil {
					break
				}
				if _, err = output(ctx, nil, b.cli("rmi", ref, warm)...); err != nil {
					break
				}
				// The pull lands the layers in berth's store, unpacked:
				// drop the image so that nothing is already there.
				if _, err = output(ctx, nil, b.cli("rmi", "bench-big:latest")...); err != nil {
					break
				}
				pull, err = timed(ctx, nil, nil, b.cli("pull", "-q", ref)...)
				if err == nil {
					_, err = output(ctx, nil, b.cli("tag", ref, "bench-big:latest")...)
				}
				if err == nil {
					_, err = output(ctx, nil, b.cli("tag", ref, warm)...)
				}
				if err == nil {
					_, err = output(ctx, nil, b.cli("rmi", ref)...)
				}
			case "skopeo":
				if push, err = timed(ctx, nil, nil, skopeo, "copy", "-q", "--dest-tls-verify=false", "oci:"+layout+":big", "docker://"+ref); err != nil {
					break
				}
				dst := filepath.Join(dir, fmt.Sprintf("skopeo-dst-%d", round))
				pull, err = timed(ctx, nil, nil, skopeo, "copy", "-q", "--src-tls-verify=false", "docker://"+ref, "oci:"+dst+":big")
				os.RemoveAll(dst)
			case skopeoStorage:
				// Only the pull: the image goes into a containers-storage
				// (overlay) root of its own, unpacked and runnable by
				// podman, which is what berth's pull gives too. The push is
				// skopeo's above (containers-storage keeps no compressed
				// layers, so pushing from it would gzip them again).
				if _, err = output(ctx, nil, skopeo, "copy", "-q", "--dest-tls-verify=false", "oci:"+layout+":big", "docker://"+ref); err != nil {
					break
				}
				st := filepath.Join(dir, fmt.Sprintf("cs-%d", round))
				pull, err = timed(ctx, nil, nil, skopeo, "copy", "-q", "--src-tls-verify=false", "docker://"+ref,
					fmt.Sprintf("containers-storage:[overlay@%s/root+%s/run]localhost/big:%d", st, st, round))
				sweepStorage(st)
			}
			stop()
			os.RemoveAll(root)
			if err != nil {
				ir.XferErr[c] = err
				continue
			}
			if push > 0 {
				ir.Push[c] = append(ir.Push[c], ir.ImageMiB/push.Seconds())
			}
			ir.Pull[c] = append(ir.Pull[c], ir.ImageMiB/pull.Seconds())
		}
	}
}

// skopeoStorage names the skopeo pull into containers-storage.
const skopeoStorage = "skopeo → containers-storage"

// sweepStorage removes a containers-storage root skopeo made, detaching
// any mount left under it first.
func sweepStorage(root string) {
	for _, m := range mountsUnder(root) {
		exec.Command("umount", "-l", m).Run()
	}
	os.RemoveAll(root)
}

// startRegistry runs `berth registry` on a free loopback port with root and
// returns its host:port and a function that stops it.
func startRegistry(ctx context.Context, bin, root string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	l.Close()
	d, err := startDaemon("berth registry", nil, root+".log", bin, "registry", "--addr", addr, "--root", root)
	if err != nil {
		return "", nil, err
	}
	stop := func() { d.stop(10 * time.Second) }
	if err := waitFor(10*time.Second, d, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		stop()
		return "", nil, fmt.Errorf("berth registry: %w (log: %s)", err, tail(root+".log"))
	}
	return addr, stop, nil
}

// writeBigImage writes a docker-save archive of bench-big:latest with four
// layers totalling about mib MiB: half pseudo-random bytes, half text, so
// that gzip has realistic work (about 2:1). It returns the layers' size.
func writeBigImage(path string, mib int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	rng := rand.New(rand.NewPCG(1, 2))
	const layers = 4
	per := int64(mib) << 20 / layers
	var diffIDs, names []string
	var total int64
	for l := range layers {
		tmp, err := os.CreateTemp(filepath.Dir(path), "layer")
		if err != nil {
			return 0, err
		}
		h := sha256.New()
		lw := tar.NewWriter(io.MultiWriter(tmp, h))
		const fileSize = 4 << 20
		for i := int64(0); i < per/fileSize; i++ {
			buf := make([]byte, fileSize)
			for j := 0; j < fileSize/2; j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					buf[j+k] = byte(v >> (8 * k))
				}
			}
			line := []byte(fmt.Sprintf("layer %d file %d: the quick brown fox jumps over the lazy dog\n", l, i))
			for j := fileSize / 2; j < fileSize; j += len(line) {
				copy(buf[j:], line)
			}
			if err := lw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/l%d/f%03d", l, i), Mode: 0o644, Size: fileSize, Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}); err != nil {
				return 0, err
			}
			if _, err := lw.Write(buf); err != nil {
				return 0, err
			}
		}
		if err := lw.Close(); err != nil {
			return 0, err
		}
		n, _ := tmp.Seek(0, io.SeekCurrent)
		total += n
		sum := hex.EncodeToString(h.Sum(nil))
		name := sum + "/layer.tar"
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: n, Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}); err != nil {
			return 0, err
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		if _, err := io.Copy(tw, tmp); err != nil {
			return 0, err
		}
		tmp.Close()
		os.Remove(tmp.Name())
		diffIDs = append(diffIDs, "sha256:"+sum)
		names = append(names, name)
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": "2026-11-01T00:00:00Z",
		"config": map[string]any{"Cmd": []string{"sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	cs := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cs[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{"bench-big:latest"}, "Layers": names}})
	for _, e := range []struct {
		name string
		b    []byte
	}{{cfgName, cfg}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.b)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}); err != nil {
			return 0, err
		}
		if _, err := tw.Write(e.b); err != nil {
			return 0, err
		}
	}
	return total, tw.Close()
}

// imagesTargets are issue 4's performance targets.
func (r *results) imagesTargets() []target {
	ir := r.Images
	if ir == nil {
		return nil
	}
	var ts []target
	for _, kind := range []struct {
		name string
		m    map[string][]float64
	}{{"cold", ir.Cold}, {"cached", ir.Cached}} {
		b, bok := summarize(kind.m["berth"])
		best, bestName := 0.0, ""
		for name, xs := range kind.m {
			if name == "berth" {
				continue
			}
			if s, ok := summarize(xs); ok && (bestName == "" || s.Median < best) {
				best, bestName = s.Median, name
			}
		}
		t := target{What: fmt.Sprintf("`build` %s ≤ 0.5× the fastest peer", kind.name), Known: bok && bestName != ""}
		if t.Known {
			t.Pass = b.Median <= 0.5*best
			t.Figure = fmt.Sprintf("%s vs %s (%s) = %s", fmtMS(b.Median), fmtMS(best), bestName, ratio(b.Median, best))
		}
		ts = append(ts, t)
	}
	for _, dir := range []struct {
		what, peer string
		m          map[string][]float64
	}{
		{"registry push throughput ≥ skopeo's (`oci:` layout → registry)", "skopeo", ir.Push},
		{"registry pull throughput ≥ skopeo's, both unpacking (skopeo → `containers-storage:`)", skopeoStorage, ir.Pull},
		{"registry pull throughput ≥ skopeo's blob-only copy (skopeo → `oci:` layout, no unpacking)", "skopeo", ir.Pull},
	} {
		b, bok := summarize(dir.m["berth"])
		s, sok := summarize(dir.m[dir.peer])
		t := target{What: dir.what, Known: bok && sok}
		if t.Known {
			t.Pass = b.Median >= s.Median
			t.Figure = fmt.Sprintf("%.0f vs %.0f MiB/s = %s", b.Median, s.Median, ratio(b.Median, s.Median))
		}
		ts = append(ts, t)
	}
	return ts
}

// imagesMarkdown renders the images section.
func (r *results) imagesMarkdown(p func(string, ...any)) {
	ir := r.Images
	if ir == nil {
		return
	}
	p("\n## Images (issue 4)\n\n| target | figure | result |\n|---|---|---|\n")
	for _, t := range r.imagesTargets() {
		p("| %s | %s | %s |\n", t.What, orDash(t.Figure), t.verdict())
	}
	p("\n### `build` of a multi-stage Dockerfile\n\n")
	p("%d rounds, round-robin, after one untimed build each. Cold is `build --no-cache`, cached is the same build again right after. The docker CLI uses its legacy builder (`DOCKER_BUILDKIT=0`; Debian 12's docker.io has no buildx plugin); docker and podman get `--network none` (their daemons here have no bridge), berth its default. Wall time of the CLI from fork to exit.\n\n```Dockerfile\n%s```\n\n", r.Config.buildRounds, buildDockerfile)
	p("| builder | cold median | min | max | cached median | min | max | error |\n|---|---|---|---|---|---|---|---|\n")
	names := map[string]bool{}
	for n := range ir.Cold {
		names[n] = true
	}
	for n := range ir.BuildErr {
		if n != "context" {
			names[n] = true
		}
	}
	for _, n := range sortedKeys(names) {
		c, cok := summarize(ir.Cold[n])
		k, kok := summarize(ir.Cached[n])
		errs := "–"
		if err := ir.BuildErr[n]; err != nil {
			errs = oneLine(err.Error())
		}
		cell := func(s summary, ok bool) string {
			if !ok {
				return "– | – | –"
			}
			return fmtMS(s.Median) + " | " + fmtMS(s.Min) + " | " + fmtMS(s.Max)
		}
		p("| %s | %s | %s | %s |\n", n, cell(c, cok), cell(k, kok), errs)
	}
	if err := ir.BuildErr["context"]; err != nil {
		p("\nBuild context: %s\n", oneLine(err.Error()))
	}
	p("\n### Push and pull of a %.0f MiB image to and from berth's registry\n\n", ir.ImageMiB)
	p("%d rounds, round-robin; registry: %s. The image has four layers, half random bytes and half text. berth pushes from its store after one untimed push (so it has its compressed layers, as skopeo has them in its OCI layout source) and pulls into its store, unpacking the layers; skopeo copies `oci:` layout → `docker://` and back into a new layout (no unpacking), and, in its own row, from the registry into a new `containers-storage:` overlay root (unpacked, as podman pull does; pull only). MiB/s is the image's uncompressed size over the wall time.\n\n", r.Config.xferRounds, orDash(ir.Registry))
	p("| client | push median | min | max | pull median | min | max | error |\n|---|---|---|---|---|---|---|---|\n")
	for _, c := range []string{"berth", "skopeo", skopeoStorage} {
		ps, pok := summarize(ir.Push[c])
		ls, lok := summarize(ir.Pull[c])
		cell := func(s summary, ok bool) string {
			if !ok {
				return "– | – | –"
			}
			return fmt.Sprintf("%.0f MiB/s | %.0f | %.0f", s.Median, s.Min, s.Max)
		}
		errs := "–"
		if err := ir.XferErr[c]; err != nil {
			errs = oneLine(err.Error())
		}
		p("| %s | %s | %s | %s |\n", c, cell(ps, pok), cell(ls, lok), errs)
	}
	if err := ir.XferErr["setup"]; err != nil {
		p("\nSetup: %s\n", oneLine(err.Error()))
	}
}

func sortedKeys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
