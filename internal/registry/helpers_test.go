package registry

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// env is a registry under test behind an httptest server.
type env struct {
	t    testing.TB
	reg  *Registry
	srv  *httptest.Server
	root string
	user string
	pass string
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	reg, err := open(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(func() { srv.Close(); reg.Close() })
	return &env{t: t, reg: reg, srv: srv, root: opts.Root}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) String() string { return http.StatusText(r.status) + " " + string(r.body) }

// errCode returns the code of the first error of an error body.
func (r resp) errCode() string {
	var b errorBody
	if json.Unmarshal(r.body, &b) != nil || len(b.Errors) == 0 {
		return ""
	}
	return b.Errors[0].Code
}

func (r resp) errMessage() string {
	var b errorBody
	if json.Unmarshal(r.body, &b) != nil || len(b.Errors) == 0 {
		return ""
	}
	return b.Errors[0].Message
}

// do sends a request; headers come as "Key", "value" pairs.
func (e *env) do(method, path string, body io.Reader, headers ...string) resp {
	e.t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = e.srv.URL + path
	}
	req, err := http.NewRequest(method, path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Content-Length" {
			var n int64
			json.Unmarshal([]byte(headers[i+1]), &n)
			req.ContentLength = n
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	if e.user != "" {
		req.SetBasicAuth(e.user, e.pass)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) expect(r resp, status int, code string) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("got status %d (%s), want %d", r.status, r.body, status)
	}
	if code != "" && r.errCode() != code {
		e.t.Fatalf("got error code %q (%s), want %q", r.errCode(), r.body, code)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// pushBlob uploads data to repository name in one POST.
func (e *env) pushBlob(name string, data []byte) digest.Digest {
	e.t.Helper()
	d := digest.FromBytes(data)
	r := e.do("POST", "/v2/"+name+"/blobs/uploads/?digest="+d.String(), bytes.NewReader(data))
	e.expect(r, http.StatusCreated, "")
	return d
}

// image is a small image: a config blob, layers, and its manifest.
type image struct {
	config   []byte
	layers   [][]byte
	manifest []byte
	digest   digest.Digest
}

func (im image) desc() v1.Descriptor {
	return v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: im.digest, Size: int64(len(im.manifest))}
}

func newImage(t *testing.T, nLayers int, edit func(*v1.Manifest)) image {
	t.Helper()
	im := image{config: []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)}
	m := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(im.config), Size: int64(len(im.config))},
		Layers:    []v1.Descriptor{},
	}
	for i := 0; i < nLayers; i++ {
		l := randBytes(100 + i)
		im.layers = append(im.layers, l)
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: digest.FromBytes(l), Size: int64(len(l))})
	}
	if edit != nil {
		edit(&m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	im.manifest = b
	im.digest = digest.FromBytes(b)
	return im
}

// pushImage pushes the blobs of im and its manifest under ref.
func (e *env) pushImage(name, ref string, im image) resp {
	e.t.Helper()
	e.pushBlob(name, im.config)
	for _, l := range im.layers {
		e.pushBlob(name, l)
	}
	return e.do("PUT", "/v2/"+name+"/manifests/"+ref, bytes.NewReader(im.manifest), "Content-Type", v1.MediaTypeImageManifest)
}

// files lists every file under the registry root but the lock, so a test
// can check that a failed request stored nothing.
func (e *env) files() []string {
	e.t.Helper()
	var out []string
	filepath.WalkDir(e.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != ".lock" {
			rel, _ := filepath.Rel(e.root, p)
			if fi, err := d.Info(); err == nil {
				rel += fmt.Sprintf(" (%d bytes)", fi.Size())
			}
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func (e *env) expectSameFiles(before []string, what string) {
	e.t.Helper()
	after := e.files()
	if strings.Join(before, "\n") != strings.Join(after, "\n") {
		e.t.Errorf("%s changed the store:\nbefore: %v\nafter:  %v", what, before, after)
	}
}

func mustExist(t *testing.T, path string, want bool) {
	t.Helper()
	_, err := os.Stat(path)
	if got := err == nil; got != want {
		t.Errorf("%s exists = %v, want %v", path, got, want)
	}
}

func digestOf(b []byte) digest.Digest { return digest.FromBytes(b) }
