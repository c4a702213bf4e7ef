package engine

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImagesRoundTrip(t *testing.T) {
	out := must(t, "images")
	for _, want := range []string{"busybox", "latest", "oci", "progs"} {
		if !strings.Contains(out, want) {
			t.Errorf("images lacks %q:\n%s", want, out)
		}
	}
	// The OCI-layout archive runs as well as the docker one.
	if got := must(t, "run", "--rm", "busybox:oci", "echo", "oci-ok"); got != "oci-ok\n" {
		t.Errorf("run busybox:oci: %q", got)
	}
	// layered: whiteouts and opaque directories of the upper layer apply.
	out = must(t, "run", "--rm", "layered", "sh", "-c", "ls /data; test -e /etc/removeme && echo removeme-still-there; cat /keep /added")
	if out != "c\nkeep\nadded\n" {
		t.Errorf("layered image: whiteout or opaque dir not applied: got %q, want \"c\\nkeep\\nadded\\n\"", out)
	}
	must(t, "tag", "busybox", "example.com/team/bb:v1")
	if got := must(t, "images", "--format", "{{.Repository}}:{{.Tag}}", "example.com/team/bb"); strings.TrimSpace(got) != "example.com/team/bb:v1" {
		t.Errorf("images REF after tag: %q", got)
	}
	id := strings.TrimSpace(must(t, "image", "inspect", "-f", "{{.Id}}", "busybox"))
	if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("image inspect Id: %q", id)
	}
	short := strings.TrimPrefix(id, "sha256:")[:12]
	if got := strings.TrimSpace(must(t, "image", "inspect", "-f", "{{.Id}}", short)); got != id {
		t.Errorf("inspect by short ID: %q, want %q", got, id)
	}
	// save → rmi → load gives back the same image.
	dir := t.TempDir()
	archive := filepath.Join(dir, "bb.tar")
	must(t, "save", "-o", archive, "example.com/team/bb:v1")
	names := tarNames(t, archive)
	for _, want := range []string{"manifest.json", "index.json", "oci-layout"} {
		if !names[want] {
			t.Errorf("saved archive lacks %s (docker load and podman load need it); has %v", want, names)
		}
	}
	must(t, "rmi", "example.com/team/bb:v1")
	if r := berth("image", "inspect", "example.com/team/bb:v1"); r.code == 0 {
		t.Fatalf("tag still there after rmi")
	}
	if got := must(t, "load", "-i", archive); !strings.Contains(got, "example.com/team/bb:v1") {
		t.Errorf("load output: %q", got)
	}
	if got := strings.TrimSpace(must(t, "image", "inspect", "-f", "{{.Id}}", "example.com/team/bb:v1")); got != id {
		t.Errorf("reloaded image ID %s, want %s", got, id)
	}
	must(t, "rmi", "example.com/team/bb:v1")

	// import a rootfs tarball with changes.
	rootfs := filepath.Join(dir, "rootfs.tar")
	writeTar(t, rootfs, map[string]string{"hello.txt": "imported\n"}, "/bin/busybox")
	must(t, "import", rootfs, "nocmd:v1")
	if r := berth("run", "--rm", "nocmd:v1"); r.code != 125 || !strings.Contains(r.stderr, "no command specified") {
		t.Errorf("run of an image without a command: %s; want exit 125 and \"no command specified\"", r)
	}
	must(t, "rmi", "nocmd:v1")
	must(t, "import", "-c", `CMD ["/bin/busybox","cat","/hello.txt"]`, rootfs, "imported:v1")
	if got := must(t, "run", "--rm", "imported:v1"); got != "imported\n" {
		t.Errorf("run imported image: %q", got)
	}
	// rmi of an image in use is refused; -f forces.
	cid := strings.TrimSpace(must(t, "create", "imported:v1"))
	if r := berth("rmi", "imported:v1"); r.code == 0 || !strings.Contains(r.stderr, cid[:12]) {
		t.Errorf("rmi of an image in use: %s", r)
	}
	must(t, "rm", cid)
	must(t, "rmi", "imported:v1")
}

func tarNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names[strings.TrimPrefix(h.Name, "./")] = true
	}
	return names
}

// writeTar writes a rootfs tar with the given files and busybox at /bin/busybox.
func writeTar(t *testing.T, path string, files map[string]string, busybox string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	if busybox != "" {
		b, err := os.ReadFile(busybox)
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(&tar.Header{Name: "bin/", Mode: 0o755, Typeflag: tar.TypeDir})
		tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBadArchivesStoreNothing(t *testing.T) {
	before := must(t, "images", "-q", "--no-trunc")
	dir := t.TempDir()
	good, err := os.ReadFile(filepath.Join(imagesDir, "busybox-docker.tar"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"truncated.tar": good[:len(good)/2],
		"garbage.tar":   bytes.Repeat([]byte("not a tar "), 100),
		"empty.tar":     {},
	}
	// A docker-save archive whose layer escapes its root.
	var hostile bytes.Buffer
	{
		var layer bytes.Buffer
		lw := tar.NewWriter(&layer)
		lw.WriteHeader(&tar.Header{Name: "../../../../tmp/berth-escape", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
		lw.Write([]byte("x\n"))
		lw.Close()
		tw := tar.NewWriter(&hostile)
		add := func(name string, b []byte) {
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
			tw.Write(b)
		}
		add("layer.tar", layer.Bytes())
		cfg := `{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:` + sha256hex(layer.Bytes()) + `"]}}`
		add("config.json", []byte(cfg))
		add("manifest.json", []byte(`[{"Config":"config.json","RepoTags":["hostile:latest"],"Layers":["layer.tar"]}]`))
		tw.Close()
	}
	cases["hostile.tar"] = hostile.Bytes()
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			os.WriteFile(p, b, 0o644)
			r := berth("load", "-i", p)
			if r.code == 0 || r.stderr == "" {
				t.Errorf("load %s: %s; want a failure with a message", name, r)
			}
			if strings.Count(r.stderr, "\n") > 3 {
				t.Errorf("load %s: error is not one clear line:\n%s", name, r.stderr)
			}
		})
	}
	if _, err := os.Stat("/tmp/berth-escape"); err == nil {
		os.Remove("/tmp/berth-escape")
		t.Fatal("a hostile layer wrote /tmp/berth-escape outside its root")
	}
	if after := must(t, "images", "-q", "--no-trunc"); after != before {
		t.Errorf("failed loads changed the image list:\nbefore %s\nafter %s", before, after)
	}
	if r := berth("load", "-i", filepath.Join(dir, "missing.tar")); r.code == 0 || !strings.Contains(r.stderr, "missing.tar") {
		t.Errorf("load of a missing file: %s", r)
	}
}
