// Command testimages builds the images berth's test suite runs, without
// using berth's own image code, so that loading is tested against an
// independent writer. Run it from the repository root:
//
//	go run ./tests/testimages -out DIR
//
// It writes, deterministically:
//   - busybox-docker.tar: busybox:latest, docker-save format (legacy
//     <id>/layer.tar layout), Cmd ["sh"], Env PATH=…;
//   - busybox-oci.tar: the same image as an OCI image layout with gzip
//     layers, ref name busybox:oci;
//   - layered.tar: layered:latest, docker-save format (Docker 25 blobs/
//     layout), two layers; the second whites out /etc/removeme and
//     /data/a and makes /data opaque (only /data/c remains);
//   - cfg.tar: cfg:latest, whose config sets Entrypoint ["/bin/sh","-c"],
//     Cmd ["echo cfg $FOO uid=$(id -u) pwd=$(pwd)"], Env FOO=bar,
//     WorkingDir /home/user, User 1000 (user "user" in /etc/passwd),
//     Labels berth.test=cfg and StopSignal SIGUSR1; running it prints
//     "cfg bar uid=1000 pwd=/home/user";
//   - progs.tar: progs:latest, busybox plus static Go programs in
//     /usr/local/bin: alloc, spawn, spin, echoserver, tcpbench, webname (see progs/*).
//   - all.tar: every image above in one docker-save archive.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is every entry's mtime, so the output is deterministic.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

var applets = []string{
	"sh", "ash", "true", "false", "echo", "cat", "ls", "ps", "hostname", "id", "sleep", "env", "pwd",
	"mount", "umount", "wc", "yes", "head", "tail", "seq", "dd", "top", "grep", "kill", "touch", "rm",
	"mkdir", "rmdir", "cut", "sed", "awk", "printf", "nproc", "stat", "readlink", "test", "[", "ln",
	"cp", "mv", "chmod", "chown", "date", "uname", "whoami", "find", "xargs", "tee", "sort", "uniq",
	"tr", "basename", "dirname", "du", "df", "free", "ping", "nc", "wget", "vi", "less", "more",
	"ip", "ifconfig", "netstat", "hexdump", "od", "md5sum", "sha256sum", "tar", "gzip", "gunzip",
	"usleep", "timeout", "nohup", "nice", "renice", "pidof", "pgrep", "pkill", "killall", "sync",
	"mknod", "mkfifo", "realpath", "expr", "which", "getopt", "time", "watch", "su", "login",
	"cmp", "diff", "patch", "unshare", "nsenter", "chroot", "setsid", "flock", "fold", "split",
}

type entry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	body       []byte
}

func dir(name string, mode int64) entry { return entry{name: name, typ: tar.TypeDir, mode: mode} }
func reg(name string, mode int64, body []byte) entry {
	return entry{name: name, typ: tar.TypeReg, mode: mode, body: body}
}
func sym(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}

func mktar(ents []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: epoch, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	return buf.Bytes()
}

func busyboxLayer(busybox []byte, extra ...entry) []byte {
	ents := []entry{
		dir("bin/", 0o755), dir("dev/", 0o755), dir("etc/", 0o755), dir("home/", 0o755),
		{name: "home/user/", typ: tar.TypeDir, mode: 0o755, uid: 1000, gid: 1000},
		dir("proc/", 0o555), dir("root/", 0o700), dir("sys/", 0o555), dir("tmp/", 0o1777),
		dir("usr/", 0o755), dir("usr/bin/", 0o755), dir("usr/local/", 0o755), dir("usr/local/bin/", 0o755),
		dir("usr/sbin/", 0o755), dir("sbin/", 0o755), dir("var/", 0o755),
		reg("bin/busybox", 0o755, busybox),
		reg("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")),
		reg("etc/group", 0o644, []byte("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")),
		reg("etc/hostname", 0o644, []byte("busybox\n")),
	}
	names := append([]string(nil), applets...)
	sort.Strings(names)
	for _, a := range names {
		ents = append(ents, sym("bin/"+a, "busybox"))
	}
	return mktar(append(ents, extra...))
}

type image struct {
	tags   []string // familiar names, e.g. busybox:latest
	config []byte
	layers [][]byte // uncompressed tars, bottom first
}

func sha(b []byte) digest.Digest { return digest.FromBytes(b) }

func newImage(tags []string, cfg ocispec.ImageConfig, layers ...[]byte) image {
	img := ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	for i, l := range layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, sha(l))
		img.History = append(img.History, ocispec.History{Created: &epoch, CreatedBy: fmt.Sprintf("testimages layer %d", i)})
	}
	b, err := json.Marshal(img)
	if err != nil {
		panic(err)
	}
	return image{tags: tags, config: b, layers: layers}
}

type tarWriter struct {
	tw   *tar.Writer
	seen map[string]bool
}

func (w *tarWriter) file(name string, b []byte) {
	if w.seen[name] {
		return
	}
	w.seen[name] = true
	if err := w.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		panic(err)
	}
	w.tw.Write(b)
}

func (w *tarWriter) dir(name string) {
	if w.seen[name] {
		return
	}
	w.seen[name] = true
	w.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir})
}

type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func splitTag(t string) (repo, tag string) {
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == ':' {
			return t[:i], t[i+1:]
		}
		if t[i] == '/' {
			break
		}
	}
	return t, "latest"
}

// writeDocker writes a docker-save archive. legacy selects the old layout
// (<v1id>/layer.tar, <config hex>.json) over Docker 25's blobs/sha256.
func writeDocker(path string, legacy bool, imgs ...image) error {
	var buf bytes.Buffer
	w := &tarWriter{tw: tar.NewWriter(&buf), seen: map[string]bool{}}
	var manifest []manifestEntry
	repos := map[string]map[string]string{}
	if !legacy {
		w.dir("blobs/")
		w.dir("blobs/sha256/")
	}
	for _, img := range imgs {
		m := manifestEntry{RepoTags: img.tags}
		parent := ""
		var top string
		for _, l := range img.layers {
			var name string
			if legacy {
				h := sha256.Sum256([]byte(parent + " " + sha(l).String()))
				id := hex.EncodeToString(h[:])
				w.dir(id + "/")
				w.file(id+"/VERSION", []byte("1.0"))
				w.file(id+"/json", []byte(fmt.Sprintf(`{"id":%q}`, id)))
				name = id + "/layer.tar"
				parent, top = id, id
			} else {
				name = "blobs/sha256/" + sha(l).Encoded()
				top = sha(l).Encoded()
			}
			w.file(name, l)
			m.Layers = append(m.Layers, name)
		}
		if legacy {
			m.Config = sha(img.config).Encoded() + ".json"
		} else {
			m.Config = "blobs/sha256/" + sha(img.config).Encoded()
		}
		w.file(m.Config, img.config)
		for _, t := range img.tags {
			r, tag := splitTag(t)
			if repos[r] == nil {
				repos[r] = map[string]string{}
			}
			repos[r][tag] = top
		}
		manifest = append(manifest, m)
	}
	mb, _ := json.Marshal(manifest)
	w.file("manifest.json", mb)
	rb, _ := json.Marshal(repos)
	w.file("repositories", rb)
	w.tw.Close()
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// writeOCI writes an OCI image layout archive with gzip layers.
func writeOCI(path, refName string, img image) error {
	var buf bytes.Buffer
	w := &tarWriter{tw: tar.NewWriter(&buf), seen: map[string]bool{}}
	w.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	w.dir("blobs/")
	w.dir("blobs/sha256/")
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: sha(img.config), Size: int64(len(img.config))},
	}
	w.file("blobs/sha256/"+sha(img.config).Encoded(), img.config)
	for _, l := range img.layers {
		z := gz(l)
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: sha(z), Size: int64(len(z))})
		w.file("blobs/sha256/"+sha(z).Encoded(), z)
	}
	mb, _ := json.Marshal(m)
	w.file("blobs/sha256/"+sha(mb).Encoded(), mb)
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageManifest, Digest: sha(mb), Size: int64(len(mb)),
			Annotations: map[string]string{ocispec.AnnotationRefName: refName},
		}},
	}
	ib, _ := json.Marshal(idx)
	w.file("index.json", ib)
	w.tw.Close()
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// buildProgs compiles progs/* statically and returns name → binary.
func buildProgs(progsDir string) (map[string][]byte, error) {
	tmp, err := os.MkdirTemp("", "testimages-progs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", tmp+"/", "./...")
	cmd.Dir = progsDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s: %v\n%s", progsDir, err, out)
	}
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(tmp, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = b
	}
	return out, nil
}

func main() {
	out := flag.String("out", "", "directory to write the archives to (required)")
	busyboxPath := flag.String("busybox", "/bin/busybox", "a static busybox binary (Debian: apt-get install busybox-static)")
	progsDir := flag.String("progs", "tests/testimages/progs", "directory of the Go test programs")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "testimages: -out DIR is required")
		os.Exit(2)
	}
	if err := run(*out, *busyboxPath, *progsDir); err != nil {
		fmt.Fprintln(os.Stderr, "testimages:", err)
		os.Exit(1)
	}
}

func run(out, busyboxPath, progsDir string) error {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("%v (install it with: apt-get install -y busybox-static)", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	path := "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	base := busyboxLayer(bb)
	busybox := newImage([]string{"busybox:latest"}, ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{path}}, base)
	busyboxOCI := busybox
	busyboxOCI.tags = nil

	layered := newImage([]string{"layered:latest"}, ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{path}},
		busyboxLayer(bb, reg("etc/removeme", 0o644, []byte("old\n")), dir("data/", 0o755),
			reg("data/a", 0o644, []byte("a\n")), reg("data/b", 0o644, []byte("b\n")), reg("keep", 0o644, []byte("keep\n"))),
		mktar([]entry{dir("etc/", 0o755), reg("etc/.wh.removeme", 0o644, nil), dir("data/", 0o755),
			reg("data/.wh..wh..opq", 0o644, nil), reg("data/c", 0o644, []byte("c\n")), reg("added", 0o644, []byte("added\n"))}))

	cfg := newImage([]string{"cfg:latest"}, ocispec.ImageConfig{
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{"echo cfg $FOO uid=$(id -u) pwd=$(pwd)"},
		Env:        []string{path, "FOO=bar"},
		WorkingDir: "/home/user",
		User:       "1000",
		Labels:     map[string]string{"berth.test": "cfg"},
		StopSignal: "SIGUSR1",
	}, base)

	progs, err := buildProgs(progsDir)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(progs))
	for n := range progs {
		names = append(names, n)
	}
	sort.Strings(names)
	var pents []entry
	pents = append(pents, dir("usr/", 0o755), dir("usr/local/", 0o755), dir("usr/local/bin/", 0o755))
	for _, n := range names {
		pents = append(pents, reg("usr/local/bin/"+n, 0o755, progs[n]))
	}
	progsImg := newImage([]string{"progs:latest"}, ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{path}}, base, mktar(pents))

	steps := []struct {
		name string
		f    func(string) error
	}{
		{"busybox-docker.tar", func(p string) error { return writeDocker(p, true, busybox) }},
		{"busybox-oci.tar", func(p string) error { return writeOCI(p, "busybox:oci", busyboxOCI) }},
		{"layered.tar", func(p string) error { return writeDocker(p, false, layered) }},
		{"cfg.tar", func(p string) error { return writeDocker(p, false, cfg) }},
		{"progs.tar", func(p string) error { return writeDocker(p, false, progsImg) }},
		{"all.tar", func(p string) error { return writeDocker(p, false, busybox, layered, cfg, progsImg) }},
	}
	for _, s := range steps {
		if err := s.f(filepath.Join(out, s.name)); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}
