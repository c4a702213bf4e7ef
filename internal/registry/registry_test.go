package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		path      string
		kind      routeKind
		name, ref string
	}{
		{"/v2/", routeBase, "", ""},
		{"/v2", routeBase, "", ""},
		{"/v2/_catalog", routeCatalog, "", ""},
		{"/v2/a/tags/list", routeTags, "a", ""},
		{"/v2/a/b/c/manifests/latest", routeManifest, "a/b/c", "latest"},
		{"/v2/a/blobs/sha256:00", routeBlob, "a", "sha256:00"},
		{"/v2/a/blobs/uploads/", routeUpload, "a", ""},
		{"/v2/a/blobs/uploads", routeUpload, "a", ""},
		{"/v2/a/blobs/uploads/123", routeUpload, "a", "123"},
		{"/v2/x/blobs/uploads/blobs/sha256:00", routeBlob, "x/blobs/uploads", "sha256:00"},
		{"/v2/manifests/manifests/v1", routeManifest, "manifests", "v1"},
		{"/v2/a/referrers/sha256:00", routeReferrers, "a", "sha256:00"},
		{"/v2/a", routeNone, "", ""},
		{"/v3/a/manifests/x", routeNone, "", ""},
	} {
		kind, name, ref := parseRoute(tc.path)
		if kind != tc.kind || name != tc.name || ref != tc.ref {
			t.Errorf("parseRoute(%q) = %d %q %q, want %d %q %q", tc.path, kind, name, ref, tc.kind, tc.name, tc.ref)
		}
	}
}

func TestBaseAndUnknownEndpoint(t *testing.T) {
	e := newEnv(t, Options{})
	r := e.do("GET", "/v2/", nil)
	e.expect(r, 200, "")
	if got := r.header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
		t.Errorf("Docker-Distribution-API-Version = %q, want registry/2.0", got)
	}
	e.expect(e.do("GET", "/v2/a", nil), 404, "NOT_FOUND")
	e.expect(e.do("POST", "/v2/a/manifests/x", nil), 405, "UNSUPPORTED")
}

func TestNameAndTagValidation(t *testing.T) {
	e := newEnv(t, Options{})
	before := e.files()
	im := newImage(t, 0, nil)
	for _, name := range []string{"UPPER", "a//b", "-a", "a_", strings.Repeat("a", 256), "a/../b"} {
		r := e.do("PUT", "/v2/"+name+"/manifests/v1", bytes.NewReader(im.manifest))
		if r.status != 400 || r.errCode() != "NAME_INVALID" {
			t.Errorf("name %.20q: got %d %s, want 400 NAME_INVALID", name, r.status, r.body)
		}
	}
	for _, tag := range []string{".hidden", "-x", strings.Repeat("t", 129), "a+b"} {
		r := e.do("PUT", "/v2/ok/manifests/"+tag, bytes.NewReader(im.manifest), "Content-Type", v1.MediaTypeImageManifest)
		if r.status != 400 || r.errCode() != "TAG_INVALID" {
			t.Errorf("tag %.20q: got %d %s, want 400 TAG_INVALID", tag, r.status, r.body)
		}
	}
	r := e.do("PUT", "/v2/ok/manifests/"+im.digest.String()+"?tag=bad+tag", bytes.NewReader(im.manifest))
	e.expect(r, 400, "TAG_INVALID")
	e.expectSameFiles(before, "invalid names and tags")
}

func TestMonolithicUploadAndPull(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(5000)
	d := e.pushBlob("team/app", data)
	mustExist(t, e.reg.st.blobPath(d), true)

	r := e.do("GET", "/v2/team/app/blobs/"+d.String(), nil)
	e.expect(r, 200, "")
	if !bytes.Equal(r.body, data) || r.header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("GET returned %d bytes, digest header %q", len(r.body), r.header.Get("Docker-Content-Digest"))
	}
	r = e.do("HEAD", "/v2/team/app/blobs/"+d.String(), nil)
	if r.status != 200 || r.header.Get("Content-Length") != "5000" || len(r.body) != 0 {
		t.Errorf("HEAD: %d, Content-Length %q, body %d bytes", r.status, r.header.Get("Content-Length"), len(r.body))
	}
	r = e.do("GET", "/v2/team/app/blobs/"+d.String(), nil, "Range", "bytes=10-19")
	if r.status != 206 || !bytes.Equal(r.body, data[10:20]) || r.header.Get("Content-Range") != "bytes 10-19/5000" {
		t.Errorf("Range GET: %d, Content-Range %q, body %d bytes", r.status, r.header.Get("Content-Range"), len(r.body))
	}
	e.expect(e.do("GET", "/v2/team/app/blobs/"+d.String(), nil, "Range", "bytes=6000-7000"), 416, "")
	// another repository does not see the blob until it mounts it
	e.expect(e.do("HEAD", "/v2/other/blobs/"+d.String(), nil), 404, "")
	e.expect(e.do("GET", "/v2/other/blobs/"+d.String(), nil), 404, "BLOB_UNKNOWN")
	// POST then PUT with the whole blob
	data2 := randBytes(300)
	d2 := digest.FromBytes(data2)
	r = e.do("POST", "/v2/team/app/blobs/uploads/", nil)
	e.expect(r, 202, "")
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "/v2/team/app/blobs/uploads/") || r.header.Get("Docker-Upload-UUID") == "" {
		t.Fatalf("POST: Location %q, Docker-Upload-UUID %q", loc, r.header.Get("Docker-Upload-UUID"))
	}
	r = e.do("PUT", loc+"?digest="+d2.String(), bytes.NewReader(data2))
	e.expect(r, 201, "")
	if r.header.Get("Location") != "/v2/team/app/blobs/"+d2.String() {
		t.Errorf("PUT Location = %q", r.header.Get("Location"))
	}
	if got := e.do("GET", r.header.Get("Location"), nil); !bytes.Equal(got.body, data2) {
		t.Errorf("blob at Location differs")
	}
	// delete unlinks it from the repository
	e.expect(e.do("DELETE", "/v2/team/app/blobs/"+d2.String(), nil), 202, "")
	e.expect(e.do("HEAD", "/v2/team/app/blobs/"+d2.String(), nil), 404, "")
	e.expect(e.do("DELETE", "/v2/team/app/blobs/"+d2.String(), nil), 404, "BLOB_UNKNOWN")
}

func TestChunkedUpload(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(3000)
	d := digest.FromBytes(data)
	r := e.do("POST", "/v2/c/blobs/uploads/", nil)
	loc := r.header.Get("Location")
	r = e.do("PATCH", loc, bytes.NewReader(data[:1000]), "Content-Range", "0-999", "Content-Type", "application/octet-stream")
	e.expect(r, 202, "")
	if r.header.Get("Range") != "0-999" {
		t.Errorf("Range after first chunk = %q, want 0-999", r.header.Get("Range"))
	}
	// out of order: 416 with the current range, and the session goes on
	r = e.do("PATCH", loc, bytes.NewReader(data[2000:]), "Content-Range", "2000-2999")
	e.expect(r, 416, "")
	if r.header.Get("Range") != "0-999" || r.header.Get("Location") == "" {
		t.Errorf("416: Range %q Location %q", r.header.Get("Range"), r.header.Get("Location"))
	}
	r = e.do("GET", loc, nil)
	e.expect(r, 204, "")
	if r.header.Get("Range") != "0-999" {
		t.Errorf("upload status Range = %q, want 0-999", r.header.Get("Range"))
	}
	// a chunk without Content-Range is appended (streamed upload)
	e.expect(e.do("PATCH", loc, bytes.NewReader(data[1000:2000])), 202, "")
	// the final PUT carries the last chunk
	r = e.do("PUT", loc+"?digest="+d.String(), bytes.NewReader(data[2000:]), "Content-Range", "2000-2999")
	e.expect(r, 201, "")
	if got := e.do("GET", "/v2/c/blobs/"+d.String(), nil); !bytes.Equal(got.body, data) {
		t.Fatalf("chunked blob differs from what was sent")
	}
	e.expect(e.do("GET", loc, nil), 404, "BLOB_UPLOAD_UNKNOWN")
	if ents, _ := os.ReadDir(e.reg.st.uploadsDir()); len(ents) != 0 {
		t.Errorf("finished upload left %d session directories", len(ents))
	}
}

func TestBadChunks(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(2048)
	r := e.do("POST", "/v2/c/blobs/uploads/", nil)
	loc := r.header.Get("Location")
	e.expect(e.do("PATCH", loc, bytes.NewReader(data[:1024]), "Content-Range", "0-1023"), 202, "")
	dataFile := e.reg.st.uploadData(strings.TrimPrefix(loc, "/v2/c/blobs/uploads/"))
	size := func() int64 {
		fi, err := os.Stat(dataFile)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	for _, tc := range []struct {
		name    string
		body    []byte
		headers []string
		status  int
		code    string
	}{
		{"garbage Content-Range", data[1024:1030], []string{"Content-Range", "lots"}, 400, "BLOB_UPLOAD_INVALID"},
		{"backwards Content-Range", data[1024:1030], []string{"Content-Range", "1029-1024"}, 400, "BLOB_UPLOAD_INVALID"},
		{"Content-Length disagrees with Content-Range", data[1024:1034], []string{"Content-Range", "1024-1027"}, 400, "SIZE_INVALID"},
		// no Content-Length (chunked encoding): the registry counts the bytes
		{"oversized chunk", data[1024:], []string{"Content-Range", "1024-1033", "Content-Length", "-1"}, 400, "SIZE_INVALID"},
		{"short chunk", data[1024:1030], []string{"Content-Range", "1024-1033", "Content-Length", "-1"}, 400, "SIZE_INVALID"},
		{"chunk past the end", data[1100:1200], []string{"Content-Range", "1100-1199"}, 416, "BLOB_UPLOAD_INVALID"},
	} {
		var body *chunkedReader
		if tc.headers[len(tc.headers)-1] == "-1" {
			body = &chunkedReader{bytes.NewReader(tc.body)}
		}
		var r resp
		if body != nil {
			r = e.do("PATCH", loc, body, tc.headers...)
		} else {
			r = e.do("PATCH", loc, bytes.NewReader(tc.body), tc.headers...)
		}
		if r.status != tc.status || r.errCode() != tc.code {
			t.Errorf("%s: got %d %s, want %d %s", tc.name, r.status, r.body, tc.status, tc.code)
		}
		if got := size(); got != 1024 {
			t.Errorf("%s: upload has %d bytes after the failed chunk, want 1024 (rolled back)", tc.name, got)
		}
	}
	// the session is intact: finish it and the digest matches
	e.expect(e.do("PATCH", loc, bytes.NewReader(data[1024:]), "Content-Range", "1024-2047"), 202, "")
	e.expect(e.do("PUT", loc+"?digest="+digest.FromBytes(data).String(), nil), 201, "")
}

// chunkedReader hides the length of its reader so the client sends the
// body with chunked encoding and no Content-Length.
type chunkedReader struct{ r *bytes.Reader }

func (c *chunkedReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestWrongDigestStoresNothing(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(1000)
	wrong := digest.FromBytes([]byte("something else"))
	before := e.files()

	r := e.do("POST", "/v2/w/blobs/uploads/?digest="+wrong.String(), bytes.NewReader(data))
	e.expect(r, 400, "DIGEST_INVALID")
	if !strings.Contains(r.errMessage(), digest.FromBytes(data).String()) {
		t.Errorf("message %q does not name the content's digest", r.errMessage())
	}
	e.expectSameFiles(before, "monolithic POST with a wrong digest")

	r = e.do("POST", "/v2/w/blobs/uploads/", nil)
	loc := r.header.Get("Location")
	e.expect(e.do("PATCH", loc, bytes.NewReader(data)), 202, "")
	e.expect(e.do("PUT", loc+"?digest="+wrong.String(), nil), 400, "DIGEST_INVALID")
	e.expect(e.do("GET", loc, nil), 404, "BLOB_UPLOAD_UNKNOWN")
	mustExist(t, e.reg.st.blobPath(wrong), false)
	mustExist(t, e.reg.st.blobPath(digest.FromBytes(data)), false)
	if ents, _ := os.ReadDir(e.reg.st.uploadsDir()); len(ents) != 0 {
		t.Errorf("failed upload left %d session directories", len(ents))
	}
	// malformed digests and a PUT without one
	for _, dg := range []string{"sha256:xyz", "md5:d41d8cd98f00b204e9800998ecf8427e", "nonsense"} {
		e.expect(e.do("POST", "/v2/w/blobs/uploads/?digest="+dg, bytes.NewReader(data)), 400, "DIGEST_INVALID")
		e.expect(e.do("GET", "/v2/w/blobs/"+dg, nil), 400, "DIGEST_INVALID")
	}
	r = e.do("POST", "/v2/w/blobs/uploads/", nil)
	e.expect(e.do("PUT", r.header.Get("Location"), bytes.NewReader(data)), 400, "DIGEST_INVALID")
	e.expect(e.do("PATCH", "/v2/w/blobs/uploads/not-an-upload", bytes.NewReader(data)), 404, "BLOB_UPLOAD_UNKNOWN")
	// an upload of one repository cannot be used through another
	e.expect(e.do("PATCH", strings.Replace(r.header.Get("Location"), "/v2/w/", "/v2/x/", 1), bytes.NewReader(data)), 404, "BLOB_UPLOAD_UNKNOWN")
	e.expect(e.do("DELETE", r.header.Get("Location"), nil), 204, "")
	e.expectSameFiles(before, "failed uploads")
}

func TestSHA512Blob(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(4000)
	d := digest.SHA512.FromBytes(data)
	r := e.do("POST", "/v2/s/blobs/uploads/", nil)
	loc := r.header.Get("Location")
	e.expect(e.do("PATCH", loc, bytes.NewReader(data[:2000]), "Content-Range", "0-1999"), 202, "")
	e.expect(e.do("PUT", loc+"?digest="+d.String(), bytes.NewReader(data[2000:]), "Content-Range", "2000-3999"), 201, "")
	if r := e.do("GET", "/v2/s/blobs/"+d.String(), nil); !bytes.Equal(r.body, data) {
		t.Fatalf("sha512 blob: %s", r)
	}
}

func TestUploadSurvivesRestart(t *testing.T) {
	root := t.TempDir()
	e := newEnv(t, Options{Root: root})
	data := randBytes(3000)
	r := e.do("POST", "/v2/r/blobs/uploads/", nil)
	loc := r.header.Get("Location")
	e.expect(e.do("PATCH", loc, bytes.NewReader(data[:1500])), 202, "")
	e.srv.Close()
	e.reg.Close()

	e2 := newEnv(t, Options{Root: root})
	r = e2.do("GET", loc, nil)
	e2.expect(r, 204, "")
	if r.header.Get("Range") != "0-1499" {
		t.Errorf("Range after restart = %q, want 0-1499", r.header.Get("Range"))
	}
	e2.expect(e2.do("PATCH", loc, bytes.NewReader(data[1500:]), "Content-Range", "1500-2999"), 202, "")
	e2.expect(e2.do("PUT", loc+"?digest="+digest.FromBytes(data).String(), nil), 201, "")
	// a wrong digest is still caught when the data is hashed from disk
	r = e2.do("POST", "/v2/r/blobs/uploads/", nil)
	loc = r.header.Get("Location")
	e2.expect(e2.do("PATCH", loc, bytes.NewReader(data)), 202, "")
	e2.reg.upMu.Lock()
	e2.reg.uploads = map[string]*upload{}
	e2.reg.upMu.Unlock()
	e2.expect(e2.do("PUT", loc+"?digest="+digest.FromBytes(data[1:]).String(), nil), 400, "DIGEST_INVALID")
}

func TestMount(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(700)
	d := e.pushBlob("src", data)
	r := e.do("POST", "/v2/dst/blobs/uploads/?mount="+d.String()+"&from=src", nil)
	e.expect(r, 201, "")
	if r.header.Get("Location") != "/v2/dst/blobs/"+d.String() || r.header.Get("Docker-Content-Digest") != d.String() {
		t.Errorf("mount: Location %q digest %q", r.header.Get("Location"), r.header.Get("Docker-Content-Digest"))
	}
	e.expect(e.do("HEAD", "/v2/dst/blobs/"+d.String(), nil), 200, "")
	// anonymous mount (no from)
	e.expect(e.do("POST", "/v2/dst2/blobs/uploads/?mount="+d.String(), nil), 201, "")
	// a blob the source does not have: a new upload session instead
	missing := digest.FromBytes([]byte("missing"))
	r = e.do("POST", "/v2/dst/blobs/uploads/?mount="+missing.String()+"&from=src", nil)
	e.expect(r, 202, "")
	if !strings.HasPrefix(r.header.Get("Location"), "/v2/dst/blobs/uploads/") {
		t.Errorf("mount fallback Location = %q", r.header.Get("Location"))
	}
	// a blob the source had but deleted is not mountable from it
	e.expect(e.do("DELETE", "/v2/src/blobs/"+d.String(), nil), 202, "")
	e.expect(e.do("POST", "/v2/dst3/blobs/uploads/?mount="+d.String()+"&from=src", nil), 202, "")
	e.expect(e.do("POST", "/v2/dst3/blobs/uploads/?mount="+d.String()+"&from=Bad", nil), 400, "NAME_INVALID")
}

func TestManifestPushPullDelete(t *testing.T) {
	e := newEnv(t, Options{})
	im := newImage(t, 2, nil)
	r := e.pushImage("app", "v1", im)
	e.expect(r, 201, "")
	if r.header.Get("Docker-Content-Digest") != im.digest.String() || r.header.Get("Location") != "/v2/app/manifests/"+im.digest.String() {
		t.Errorf("PUT: digest %q Location %q", r.header.Get("Docker-Content-Digest"), r.header.Get("Location"))
	}
	for _, ref := range []string{"v1", im.digest.String()} {
		r := e.do("GET", "/v2/app/manifests/"+ref, nil, "Accept", v1.MediaTypeImageManifest)
		e.expect(r, 200, "")
		if !bytes.Equal(r.body, im.manifest) || r.header.Get("Content-Type") != v1.MediaTypeImageManifest || r.header.Get("Docker-Content-Digest") != im.digest.String() {
			t.Errorf("GET %s: type %q digest %q body equal %v", ref, r.header.Get("Content-Type"), r.header.Get("Docker-Content-Digest"), bytes.Equal(r.body, im.manifest))
		}
		r = e.do("HEAD", "/v2/app/manifests/"+ref, nil)
		if r.status != 200 || r.header.Get("Content-Length") != fmt.Sprint(len(im.manifest)) {
			t.Errorf("HEAD %s: %d, Content-Length %q", ref, r.status, r.header.Get("Content-Length"))
		}
	}
	// the same manifest by digest with ?tag= parameters
	r = e.do("PUT", "/v2/app/manifests/"+im.digest.String()+"?tag=v2&tag=v3", bytes.NewReader(im.manifest), "Content-Type", v1.MediaTypeImageManifest)
	e.expect(r, 201, "")
	if got := r.header.Values("OCI-Tag"); strings.Join(got, ",") != "v2,v3" {
		t.Errorf("OCI-Tag = %v, want v2 v3", got)
	}
	r = e.do("GET", "/v2/app/tags/list", nil)
	if string(r.body) != `{"name":"app","tags":["v1","v2","v3"]}` {
		t.Errorf("tags: %s", r.body)
	}
	// deleting a tag leaves the manifest
	e.expect(e.do("DELETE", "/v2/app/manifests/v1", nil), 202, "")
	e.expect(e.do("GET", "/v2/app/manifests/v1", nil), 404, "MANIFEST_UNKNOWN")
	e.expect(e.do("GET", "/v2/app/manifests/"+im.digest.String(), nil), 200, "")
	// deleting the manifest removes the tags that point to it
	e.expect(e.do("DELETE", "/v2/app/manifests/"+im.digest.String(), nil), 202, "")
	e.expect(e.do("HEAD", "/v2/app/manifests/"+im.digest.String(), nil), 404, "")
	e.expect(e.do("GET", "/v2/app/manifests/v2", nil), 404, "MANIFEST_UNKNOWN")
	if r := e.do("GET", "/v2/app/tags/list", nil); string(r.body) != `{"name":"app","tags":[]}` {
		t.Errorf("tags after delete: %s", r.body)
	}
	e.expect(e.do("DELETE", "/v2/app/manifests/"+im.digest.String(), nil), 404, "MANIFEST_UNKNOWN")
	e.expect(e.do("GET", "/v2/nope/tags/list", nil), 404, "NAME_UNKNOWN")
}

func TestBadManifests(t *testing.T) {
	e := newEnv(t, Options{MaxManifestSize: 64 << 10})
	good := newImage(t, 1, nil)
	e.pushBlob("m", good.config)
	e.pushBlob("m", good.layers[0])
	other := newImage(t, 1, nil) // its blobs are never pushed
	marshal := func(v any) []byte { b, _ := json.Marshal(v); return b }
	withManifest := func(edit func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(good.manifest, &m)
		edit(m)
		return marshal(m)
	}
	before := e.files()
	for _, tc := range []struct {
		name        string
		ref         string
		contentType string
		body        []byte
		status      int
		code        string
		msg         string // part of the message
	}{
		{"malformed JSON", "v1", v1.MediaTypeImageManifest, []byte(`{"schemaVersion": 2, "config": `), 400, "MANIFEST_INVALID", "not valid JSON"},
		{"not an object", "v1", v1.MediaTypeImageManifest, []byte(`[1,2]`), 400, "MANIFEST_INVALID", "not valid JSON"},
		{"trailing data", "v1", v1.MediaTypeImageManifest, append(append([]byte{}, good.manifest...), " {}"...), 400, "MANIFEST_INVALID", "after its JSON"},
		{"digest in URL differs", digest.FromBytes([]byte("x")).String(), v1.MediaTypeImageManifest, good.manifest, 400, "DIGEST_INVALID", good.digest.String()},
		{"malformed digest in URL", "sha256:baddigeststring", v1.MediaTypeImageManifest, good.manifest, 400, "DIGEST_INVALID", "invalid digest"},
		{"unknown layer", "v1", v1.MediaTypeImageManifest, other.manifest, 400, "MANIFEST_BLOB_UNKNOWN", "push it first"},
		{"unknown config", "v1", v1.MediaTypeImageManifest, withManifest(func(m map[string]any) {
			m["config"].(map[string]any)["digest"] = digest.FromBytes([]byte("nope")).String()
		}), 400, "MANIFEST_BLOB_UNKNOWN", "config"},
		{"wrong layer size", "v1", v1.MediaTypeImageManifest, withManifest(func(m map[string]any) {
			m["layers"].([]any)[0].(map[string]any)["size"] = 5
		}), 400, "MANIFEST_INVALID", "size"},
		{"bad layer digest", "v1", v1.MediaTypeImageManifest, withManifest(func(m map[string]any) {
			m["layers"].([]any)[0].(map[string]any)["digest"] = "sha256:123"
		}), 400, "MANIFEST_INVALID", "layers[0]"},
		{"schema version 1", "v1", v1.MediaTypeImageManifest, withManifest(func(m map[string]any) { m["schemaVersion"] = 1 }), 400, "MANIFEST_INVALID", "schemaVersion"},
		{"docker schema 1", "v1", "application/vnd.docker.distribution.manifest.v1+prettyjws", []byte(`{"schemaVersion":1,"fsLayers":[]}`), 400, "MANIFEST_INVALID", "schema 1"},
		{"unknown media type", "v1", "", withManifest(func(m map[string]any) { m["mediaType"] = "application/x-nope" }), 400, "MANIFEST_INVALID", "unsupported manifest media type"},
		{"Content-Type disagrees", "v1", v1.MediaTypeImageIndex, good.manifest, 400, "MANIFEST_INVALID", "does not match"},
		{"no config", "v1", v1.MediaTypeImageManifest, withManifest(func(m map[string]any) { delete(m, "config") }), 400, "MANIFEST_INVALID", "no config"},
		{"embedded data lies", "v1", v1.MediaTypeImageManifest, withManifest(func(m map[string]any) {
			m["config"].(map[string]any)["data"] = "e30="
		}), 400, "MANIFEST_INVALID", "embedded data"},
		{"index with unknown child", "v1", v1.MediaTypeImageIndex, marshal(v1.Index{Versioned: specsVersioned2, MediaType: v1.MediaTypeImageIndex,
			Manifests: []v1.Descriptor{other.desc()}}), 400, "MANIFEST_BLOB_UNKNOWN", "manifest"},
		{"too large", "v1", v1.MediaTypeImageManifest, withManifest(func(m map[string]any) {
			m["annotations"] = map[string]string{"big": strings.Repeat("x", 70<<10)}
		}), 413, "MANIFEST_INVALID", "accepts manifests up to"},
	} {
		r := e.do("PUT", "/v2/m/manifests/"+tc.ref, bytes.NewReader(tc.body), "Content-Type", tc.contentType)
		if r.status != tc.status || r.errCode() != tc.code || !strings.Contains(r.errMessage(), tc.msg) {
			t.Errorf("%s: got %d %s, want %d %s with %q", tc.name, r.status, r.body, tc.status, tc.code, tc.msg)
		}
	}
	e.expectSameFiles(before, "rejected manifests")
	// and the valid one goes in, also without a Content-Type
	e.expect(e.do("PUT", "/v2/m/manifests/v1", bytes.NewReader(good.manifest)), 201, "")
	if r := e.do("GET", "/v2/m/manifests/v1", nil); r.header.Get("Content-Type") != v1.MediaTypeImageManifest {
		t.Errorf("Content-Type = %q", r.header.Get("Content-Type"))
	}
}

func TestForeignLayersAndDockerTypes(t *testing.T) {
	e := newEnv(t, Options{})
	// a Docker schema 2 manifest with a foreign layer that is not pushed
	cfg := []byte(`{"os":"windows"}`)
	cd := e.pushBlob("d", cfg)
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":%q,"size":%d},
"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"%s","size":1000,"urls":["https://example.com/layer"]}]}`,
		mtDockerManifest, cd, len(cfg), digest.FromBytes([]byte("foreign")))
	r := e.do("PUT", "/v2/d/manifests/win", strings.NewReader(m), "Content-Type", mtDockerManifest)
	e.expect(r, 201, "")
	md := digest.Digest(r.header.Get("Docker-Content-Digest"))
	list := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"windows","architecture":"amd64"}}]}`,
		mtDockerList, mtDockerManifest, md, len(m))
	e.expect(e.do("PUT", "/v2/d/manifests/list", strings.NewReader(list), "Content-Type", mtDockerList), 201, "")
	if r := e.do("GET", "/v2/d/manifests/list", nil); r.header.Get("Content-Type") != mtDockerList || string(r.body) != list {
		t.Errorf("manifest list: type %q", r.header.Get("Content-Type"))
	}
}

func TestReferrers(t *testing.T) {
	e := newEnv(t, Options{})
	subject := newImage(t, 1, nil)
	e.expect(e.pushImage("r", "v1", subject), 201, "")
	sig := newImage(t, 1, func(m *v1.Manifest) {
		m.ArtifactType = "application/vnd.example.signature"
		s := subject.desc()
		m.Subject = &s
		m.Annotations = map[string]string{"who": "me"}
	})
	sbom := newImage(t, 1, func(m *v1.Manifest) {
		m.Config.MediaType = "application/vnd.example.sbom" // no artifactType: the config's type counts
		s := subject.desc()
		m.Subject = &s
	})
	sbom.config = []byte(`{"sbom":true}`)
	var sm v1.Manifest
	json.Unmarshal(sbom.manifest, &sm)
	sm.Config.Digest, sm.Config.Size = digest.FromBytes(sbom.config), int64(len(sbom.config))
	sbom.manifest, _ = json.Marshal(sm)
	sbom.digest = digest.FromBytes(sbom.manifest)
	for _, im := range []image{sig, sbom} {
		r := e.pushImage("r", im.digest.String(), im)
		e.expect(r, 201, "")
		if r.header.Get("OCI-Subject") != subject.digest.String() {
			t.Errorf("OCI-Subject = %q, want %s", r.header.Get("OCI-Subject"), subject.digest)
		}
	}
	list := func(query string) (v1.Index, resp) {
		r := e.do("GET", "/v2/r/referrers/"+subject.digest.String()+query, nil)
		e.expect(r, 200, "")
		var idx v1.Index
		if err := json.Unmarshal(r.body, &idx); err != nil {
			t.Fatal(err)
		}
		if r.header.Get("Content-Type") != v1.MediaTypeImageIndex || idx.MediaType != v1.MediaTypeImageIndex || idx.SchemaVersion != 2 {
			t.Errorf("referrers response: Content-Type %q, mediaType %q", r.header.Get("Content-Type"), idx.MediaType)
		}
		return idx, r
	}
	idx, r := list("")
	if len(idx.Manifests) != 2 || r.header.Get("OCI-Filters-Applied") != "" {
		t.Fatalf("referrers: %s", r.body)
	}
	types := map[digest.Digest]string{}
	for _, d := range idx.Manifests {
		types[d.Digest] = d.ArtifactType
	}
	if types[sig.digest] != "application/vnd.example.signature" || types[sbom.digest] != "application/vnd.example.sbom" {
		t.Errorf("artifact types: %v", types)
	}
	idx, r = list("?artifactType=application/vnd.example.sbom")
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sbom.digest || r.header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("filtered referrers: %s (OCI-Filters-Applied %q)", r.body, r.header.Get("OCI-Filters-Applied"))
	}
	// no referrers, even in an unknown repository: an empty index
	r = e.do("GET", "/v2/unknown/referrers/"+sig.digest.String(), nil)
	if r.status != 200 || string(r.body) != `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}` {
		t.Errorf("empty referrers: %s", r.body)
	}
	e.expect(e.do("GET", "/v2/r/referrers/sha256:nope", nil), 400, "DIGEST_INVALID")
	// deleting a referrer drops it from the list
	e.expect(e.do("DELETE", "/v2/r/manifests/"+sig.digest.String(), nil), 202, "")
	if idx, _ := list(""); len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sbom.digest {
		t.Errorf("referrers after delete: %v", idx.Manifests)
	}
}

func TestTagPagination(t *testing.T) {
	e := newEnv(t, Options{})
	im := newImage(t, 0, nil)
	e.pushImage("p", "a", im)
	for _, tag := range []string{"d", "b", "c", "e"} {
		e.expect(e.do("PUT", "/v2/p/manifests/"+tag, bytes.NewReader(im.manifest), "Content-Type", v1.MediaTypeImageManifest), 201, "")
	}
	for _, tc := range []struct{ query, body, link string }{
		{"", `["a","b","c","d","e"]`, ""},
		{"?n=2", `["a","b"]`, `</v2/p/tags/list?last=b&n=2>; rel="next"`},
		{"?n=2&last=b", `["c","d"]`, `</v2/p/tags/list?last=d&n=2>; rel="next"`},
		{"?n=2&last=d", `["e"]`, ""},
		{"?last=bb", `["c","d","e"]`, ""},
		{"?n=0", `[]`, ""},
	} {
		r := e.do("GET", "/v2/p/tags/list"+tc.query, nil)
		if want := `{"name":"p","tags":` + tc.body + `}`; string(r.body) != want || r.header.Get("Link") != tc.link {
			t.Errorf("tags%s: got %s Link %q, want %s Link %q", tc.query, r.body, r.header.Get("Link"), want, tc.link)
		}
	}
	e.expect(e.do("GET", "/v2/p/tags/list?n=-1", nil), 400, "PAGINATION_NUMBER_INVALID")
	e.pushBlob("a/b", []byte("x"))
	r := e.do("GET", "/v2/_catalog?n=10", nil)
	if string(r.body) != `{"repositories":["a/b","p"]}` {
		t.Errorf("catalog: %s", r.body)
	}
}

func TestConcurrentPushes(t *testing.T) {
	e := newEnv(t, Options{})
	shared := randBytes(64 << 10)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("c%d", i%4)
			own := randBytes(10000 + i)
			for _, data := range [][]byte{shared, own} {
				d := digest.FromBytes(data)
				r := e.do("POST", "/v2/"+name+"/blobs/uploads/", nil)
				loc := r.header.Get("Location")
				for off := 0; off < len(data); off += 4096 {
					end := min(off+4096, len(data))
					r = e.do("PATCH", loc, bytes.NewReader(data[off:end]), "Content-Range", fmt.Sprintf("%d-%d", off, end-1))
					if r.status != 202 {
						errs <- fmt.Sprintf("%s PATCH: %s", name, r)
						return
					}
				}
				if r = e.do("PUT", loc+"?digest="+d.String(), nil); r.status != 201 {
					errs <- fmt.Sprintf("%s PUT: %s", name, r)
					return
				}
				if r = e.do("GET", "/v2/"+name+"/blobs/"+d.String(), nil); !bytes.Equal(r.body, data) {
					errs <- fmt.Sprintf("%s GET: content differs", name)
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ents, _ := filepath.Glob(filepath.Join(e.root, "blobs", "sha256", "*", "*"))
	if len(ents) != 17 {
		t.Errorf("store has %d blobs, want 17 (one shared + 16 own)", len(ents))
	}
	if ents, _ := os.ReadDir(e.reg.st.uploadsDir()); len(ents) != 0 {
		t.Errorf("%d upload sessions left", len(ents))
	}
}

// TestClientGoesAway: a chunk or a monolithic upload whose body breaks off
// leaves nothing behind; the session goes on from where it was.
func TestClientGoesAway(t *testing.T) {
	logs := &syncBuffer{}
	e := newEnv(t, Options{Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	data := randBytes(4000)
	r := e.do("POST", "/v2/g/blobs/uploads/", nil)
	loc := r.header.Get("Location")
	e.expect(e.do("PATCH", loc, bytes.NewReader(data[:1000])), 202, "")
	before := e.files()
	host := strings.TrimPrefix(e.srv.URL, "http://")
	cut := func(method, path string) {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 3000\r\n\r\n", method, path, host)
		c.Write(data[1000:2500]) // half of what was announced
		c.Close()
	}
	cut("PATCH", loc)
	cut("POST", "/v2/g/blobs/uploads/?digest="+digest.FromBytes(data[1000:]).String())
	// wait until the server has answered both broken requests
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), "status=400") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the broken requests were not answered with 400:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.expectSameFiles(before, "requests whose body broke off")
	r = e.do("GET", loc, nil)
	if r.header.Get("Range") != "0-999" {
		t.Errorf("Range after a broken chunk = %q, want 0-999", r.header.Get("Range"))
	}
	e.expect(e.do("PATCH", loc, bytes.NewReader(data[1000:]), "Content-Range", "1000-3999"), 202, "")
	e.expect(e.do("PUT", loc+"?digest="+digest.FromBytes(data).String(), nil), 201, "")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
