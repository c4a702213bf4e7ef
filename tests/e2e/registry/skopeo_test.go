package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
)

// ociArchive writes an OCI image layout tar (skopeo's oci-archive) with
// one image of a 1 MiB random layer, named by ref; it returns the
// manifest's bytes.
func ociArchive(t *testing.T, path, ref string) (manifest []byte, layer digest.Digest) {
	t.Helper()
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	content := make([]byte, 1<<20)
	rand.Read(content)
	tw.WriteHeader(&tar.Header{Name: "data.bin", Mode: 0o644, Size: int64(len(content))})
	tw.Write(content)
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layerTar.Bytes())
	zw.Close()
	cfg, _ := json.Marshal(v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layerTar.Bytes())}}})
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers: []v1.Descriptor{{MediaType: v1.MediaTypeImageLayerGzip, Digest: digest.FromBytes(gz.Bytes()), Size: int64(gz.Len())}}}
	manifest, _ = json.Marshal(m)
	idx, _ := json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest)),
			Annotations: map[string]string{v1.AnnotationRefName: ref}}}})
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := tar.NewWriter(f)
	put := func(name string, b []byte) {
		w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		w.Write(b)
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	put("index.json", idx)
	for _, b := range [][]byte{cfg, gz.Bytes(), manifest} {
		put("blobs/sha256/"+digest.FromBytes(b).Encoded(), b)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return manifest, m.Layers[0].Digest
}

// archiveFiles reads the files of a tar.
func archiveFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[strings.TrimPrefix(h.Name, "./")] = b
	}
}

// TestSkopeoRoundTrip copies an OCI archive into `berth registry` (with
// basic auth) and back out with skopeo, and checks nothing changed.
func TestSkopeoRoundTrip(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed (apt-get install skopeo; `make test-deps` installs it)")
	}
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("ci:"+strings.Replace(string(hash), "$2a$", "$2y$", 1)+"\n"), 0o600)
	addr, _ := startBerth(t, "registry", "--addr", "127.0.0.1:0", "--root", filepath.Join(dir, "root"), "--htpasswd", filepath.Join(dir, "htpasswd"))

	run := func(args ...string) (string, error) {
		cmd := exec.Command(skopeo, append([]string{"--insecure-policy"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir, "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	in := filepath.Join(dir, "in.tar")
	manifest, layer := ociArchive(t, in, "v1")

	must("copy", "--dest-tls-verify=false", "--dest-creds", "ci:pw", "oci-archive:"+in+":v1", "docker://"+addr+"/team/x:y")
	if got := must("inspect", "--raw", "--tls-verify=false", "--creds", "ci:pw", "docker://"+addr+"/team/x:y"); got != string(manifest) {
		t.Errorf("manifest in the registry differs from the archive's:\n got %s\nwant %s", got, manifest)
	}
	// registry to registry: another repository
	must("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", "ci:pw", "--dest-creds", "ci:pw",
		"docker://"+addr+"/team/x:y", "docker://"+addr+"/other/z:w")
	out := filepath.Join(dir, "out.tar")
	must("copy", "--src-tls-verify=false", "--src-creds", "ci:pw", "docker://"+addr+"/other/z:w", "oci-archive:"+out+":v1")
	files := archiveFiles(t, out)
	var idx v1.Index
	json.Unmarshal(files["index.json"], &idx)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != digest.FromBytes(manifest) {
		t.Errorf("archive pulled back has manifests %+v, want %s", idx.Manifests, digest.FromBytes(manifest))
	}
	if b := files["blobs/sha256/"+layer.Encoded()]; digest.FromBytes(b) != layer {
		t.Errorf("layer %s missing or changed in the archive pulled back", layer)
	}

	if tags := must("list-tags", "--tls-verify=false", "--creds", "ci:pw", "docker://"+addr+"/team/x"); !strings.Contains(tags, `"y"`) {
		t.Errorf("list-tags: %s", tags)
	}
	if out, err := run("inspect", "--raw", "--tls-verify=false", "docker://"+addr+"/team/x:y"); err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
		t.Errorf("inspect without credentials: %v\n%s", err, out)
	}
	must("delete", "--tls-verify=false", "--creds", "ci:pw", "docker://"+addr+"/team/x:y")
	if out, err := run("inspect", "--raw", "--tls-verify=false", "--creds", "ci:pw", "docker://"+addr+"/team/x:y"); err == nil {
		t.Errorf("inspect after delete succeeded:\n%s", out)
	}
}
