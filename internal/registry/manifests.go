package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The manifest media types the registry stores.
const (
	mtOCIManifest    = v1.MediaTypeImageManifest
	mtOCIIndex       = v1.MediaTypeImageIndex
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerSchema1  = "application/vnd.docker.distribution.manifest.v1+json"
	mtDockerSchema1S = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

func isIndexType(mt string) bool    { return mt == mtOCIIndex || mt == mtDockerList }
func isManifestType(mt string) bool { return mt == mtOCIManifest || mt == mtDockerManifest }
func knownManifestType(mt string) bool {
	return isIndexType(mt) || isManifestType(mt)
}

// manifest is the union of the fields of image manifests and indexes
// (OCI and Docker schema 2) that the registry checks.
type manifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *v1.Descriptor    `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Manifests     []v1.Descriptor   `json:"manifests"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
	FSLayers      json.RawMessage   `json:"fsLayers"` // Docker schema 1
}

// parsedManifest is a validated manifest.
type parsedManifest struct {
	manifest
	mediaType string
}

// artifactType is what the referrers API reports for the manifest.
func (m *parsedManifest) artifactType() string {
	if m.ArtifactType == "" && isManifestType(m.mediaType) && m.Config != nil {
		return m.Config.MediaType
	}
	return m.ArtifactType
}

func mediaTypeBase(s string) string {
	if mt, _, err := mime.ParseMediaType(s); err == nil {
		return mt
	}
	base, _, _ := strings.Cut(s, ";")
	return strings.ToLower(strings.TrimSpace(base))
}

func invalid(format string, args ...any) error {
	return newErr(errManifestInvalid, format, args...)
}

// parseManifest checks that body is a manifest the registry stores and
// returns it with its media type: the manifest's mediaType field, else the
// request's Content-Type, else what its fields say it is.
func parseManifest(body []byte, contentType string) (*parsedManifest, error) {
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, invalid("manifest is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, invalid("manifest has data after its JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("manifest has data after its JSON object")
	}
	ct := mediaTypeBase(contentType)
	if m.FSLayers != nil || ct == mtDockerSchema1 || ct == mtDockerSchema1S || m.MediaType == mtDockerSchema1 {
		return nil, invalid("Docker schema 1 manifests are not supported; push with a current client (it writes schema 2 or OCI manifests)")
	}
	mt := m.MediaType
	switch {
	case mt != "":
		if knownManifestType(ct) && ct != mt {
			return nil, invalid("Content-Type %q does not match the manifest's mediaType %q", ct, mt)
		}
	case knownManifestType(ct):
		mt = ct
	case m.Manifests != nil:
		mt = mtOCIIndex
	case m.Config != nil:
		mt = mtOCIManifest
	default:
		return nil, invalid("cannot tell the manifest's type: it has no mediaType, the Content-Type %q is not a manifest type, and it has neither config nor manifests", contentType)
	}
	if !knownManifestType(mt) {
		return nil, invalid("unsupported manifest media type %q (want %s, %s, %s or %s)", mt, mtOCIManifest, mtOCIIndex, mtDockerManifest, mtDockerList)
	}
	if m.SchemaVersion == nil || *m.SchemaVersion != 2 {
		got := "missing"
		if m.SchemaVersion != nil {
			got = strconv.Itoa(*m.SchemaVersion)
		}
		return nil, invalid("manifest schemaVersion is %s, want 2", got)
	}
	if isManifestType(mt) {
		if m.Config == nil {
			return nil, invalid("image manifest has no config descriptor")
		}
		if err := checkDescriptor("config", m.Config); err != nil {
			return nil, err
		}
		for i := range m.Layers {
			if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), &m.Layers[i]); err != nil {
				return nil, err
			}
		}
		if m.Manifests != nil {
			return nil, invalid("image manifest must not have a manifests list (is it an index? then its mediaType should be %s)", mtOCIIndex)
		}
	} else {
		for i := range m.Manifests {
			if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), &m.Manifests[i]); err != nil {
				return nil, err
			}
		}
		if m.Config != nil || m.Layers != nil {
			return nil, invalid("index must not have config or layers (is it an image manifest? then its mediaType should be %s)", mtOCIManifest)
		}
	}
	if m.Subject != nil {
		if err := checkDescriptor("subject", m.Subject); err != nil {
			return nil, err
		}
	}
	return &parsedManifest{manifest: m, mediaType: mt}, nil
}

// checkDescriptor validates one descriptor of a manifest.
func checkDescriptor(field string, d *v1.Descriptor) error {
	if d.MediaType == "" {
		return invalid("%s: descriptor has no mediaType", field)
	}
	if _, err := parseDigest(string(d.Digest)); err != nil {
		return invalid("%s: %v", field, err.(*regError).message)
	}
	if d.Size < 0 {
		return invalid("%s: descriptor size %d is negative", field, d.Size)
	}
	if d.Data != nil {
		if int64(len(d.Data)) != d.Size {
			return invalid("%s: embedded data is %d bytes, descriptor size is %d", field, len(d.Data), d.Size)
		}
		if got := d.Digest.Algorithm().FromBytes(d.Data); got != d.Digest {
			return invalid("%s: embedded data has digest %s, descriptor says %s", field, got, d.Digest)
		}
	}
	return nil
}

// checkReferences verifies, as distribution does, that the blobs and
// manifests a manifest needs are in the repository with the sizes it
// claims. Layers with URLs (foreign or non-distributable) are exempt; the
// subject need not exist.
func (r *Registry) checkReferences(name string, m *parsedManifest) error {
	unknown := func(field string, d v1.Descriptor, what string) error {
		return newErr(errManifestBlobUnknown, "%s %s: %s %s is not in repository %s; push it first", field, d.Digest, what, d.Digest, name).
			withDetail(map[string]string{"digest": d.Digest.String()})
	}
	checkBlob := func(field string, d v1.Descriptor) error {
		size, ok := r.st.blobSize(name, d.Digest)
		if !ok {
			return unknown(field, d, "blob")
		}
		if size != d.Size {
			return invalid("%s %s: descriptor size is %d, the blob has %d bytes", field, d.Digest, d.Size, size)
		}
		return nil
	}
	if isManifestType(m.mediaType) {
		if err := checkBlob("config", *m.Config); err != nil {
			return err
		}
		for i, l := range m.Layers {
			if len(l.URLs) > 0 {
				continue
			}
			if err := checkBlob(fmt.Sprintf("layers[%d]", i), l); err != nil {
				return err
			}
		}
		return nil
	}
	for i, c := range m.Manifests {
		field := fmt.Sprintf("manifests[%d]", i)
		if _, ok := r.st.manifestMediaType(name, c.Digest); ok {
			fi, err := os.Stat(r.st.blobPath(c.Digest))
			if err != nil {
				return err
			}
			if fi.Size() != c.Size {
				return invalid("%s %s: descriptor size is %d, the manifest has %d bytes", field, c.Digest, c.Size, fi.Size())
			}
			continue
		}
		if knownManifestType(c.MediaType) {
			return unknown(field, c, "manifest")
		}
		if err := checkBlob(field, c); err != nil {
			return err
		}
	}
	return nil
}

// readBody reads a manifest body of at most limit bytes.
func readBody(req *http.Request, limit int64) ([]byte, error) {
	if req.ContentLength > limit {
		return nil, newErr(errTooLarge, "manifest is %d bytes; this registry accepts manifests up to %d bytes", req.ContentLength, limit)
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, newErr(errManifestInvalid, "reading the manifest: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, newErr(errTooLarge, "manifest is larger than %d bytes, the most this registry accepts", limit)
	}
	return b, nil
}

func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, name, ref string) error {
	var want digest.Digest
	var tags []string
	if isDigestRef(ref) {
		d, err := parseDigest(ref)
		if err != nil {
			return err
		}
		want = d
	} else {
		if err := checkTag(ref); err != nil {
			return err
		}
		tags = append(tags, ref)
	}
	for _, t := range req.URL.Query()["tag"] {
		if err := checkTag(t); err != nil {
			return err
		}
		tags = append(tags, t)
	}
	body, err := readBody(req, r.opts.MaxManifestSize)
	if err != nil {
		return err
	}
	d := digest.Canonical.FromBytes(body)
	if want != "" {
		d = want.Algorithm().FromBytes(body)
		if d != want {
			return newErr(errDigestInvalid, "manifest has digest %s, not %s as its URL says", d, want).withDetail(map[string]string{"digest": want.String()})
		}
	}
	m, err := parseManifest(body, req.Header.Get("Content-Type"))
	if err != nil {
		return err
	}

	mu := r.repoLock(name)
	mu.Lock()
	defer mu.Unlock()
	if err := r.checkReferences(name, m); err != nil {
		return err
	}
	if !exists(r.st.blobPath(d)) {
		if err := writeFileAtomic(r.st.blobPath(d), body); err != nil {
			return err
		}
	}
	if mt, ok := r.st.manifestMediaType(name, d); !ok || mt != m.mediaType {
		if err := writeFileAtomic(r.st.revisionLink(name, d), []byte(m.mediaType)); err != nil {
			return err
		}
	}
	if m.Subject != nil {
		desc := v1.Descriptor{MediaType: m.mediaType, ArtifactType: m.artifactType(), Digest: d, Size: int64(len(body)), Annotations: m.Annotations}
		b, err := json.Marshal(desc)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(r.st.referrersDir(name, m.Subject.Digest), referrerFile(d)), b); err != nil {
			return err
		}
	}
	for _, t := range tags {
		if old, err := r.st.readTag(name, t); err == nil && old == d {
			continue
		}
		if err := writeFileAtomic(r.st.tagPath(name, t), []byte(d.String())); err != nil {
			return err
		}
	}
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/manifests/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	if m.Subject != nil {
		h.Set("OCI-Subject", m.Subject.Digest.String())
	}
	if !isDigestRef(ref) {
		tags = tags[1:]
	}
	for _, t := range tags {
		h.Add("OCI-Tag", t)
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

// resolve turns a manifest reference into a digest the repository holds,
// with its media type.
func (r *Registry) resolve(name, ref string) (digest.Digest, string, error) {
	var d digest.Digest
	if isDigestRef(ref) {
		var err error
		if d, err = parseDigest(ref); err != nil {
			return "", "", err
		}
	} else {
		if err := checkTag(ref); err != nil {
			return "", "", err
		}
		td, err := r.st.readTag(name, ref)
		if errors.Is(err, os.ErrNotExist) {
			return "", "", newErr(errManifestUnknown, "manifest %s:%s is not known (no such tag in repository %s)", name, ref, name).withDetail(map[string]string{"tag": ref})
		}
		if err != nil {
			return "", "", err
		}
		d = td
	}
	mt, ok := r.st.manifestMediaType(name, d)
	if !ok {
		return "", "", newErr(errManifestUnknown, "manifest %s@%s is not known", name, d).withDetail(map[string]string{"digest": d.String()})
	}
	return d, mt, nil
}

func (r *Registry) getManifest(w http.ResponseWriter, req *http.Request, name, ref string) error {
	d, mt, err := r.resolve(name, ref)
	if err != nil {
		return err
	}
	f, err := os.Open(r.st.blobPath(d))
	if err != nil {
		if os.IsNotExist(err) {
			return newErr(errManifestUnknown, "manifest %s@%s is not known", name, d)
		}
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", mt)
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", `"`+d.String()+`"`)
	if inm := req.Header.Get("If-None-Match"); inm != "" && (inm == `"`+d.String()+`"` || inm == d.String()) {
		h.Del("Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		io.Copy(w, f)
	}
	return nil
}

func (r *Registry) deleteManifest(w http.ResponseWriter, req *http.Request, name, ref string) error {
	mu := r.repoLock(name)
	mu.Lock()
	defer mu.Unlock()
	if !isDigestRef(ref) {
		if err := checkTag(ref); err != nil {
			return err
		}
		if err := os.Remove(r.st.tagPath(name, ref)); err != nil {
			if os.IsNotExist(err) {
				return newErr(errManifestUnknown, "tag %s:%s is not known", name, ref).withDetail(map[string]string{"tag": ref})
			}
			return err
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	d, _, err := r.resolve(name, ref)
	if err != nil {
		return err
	}
	if err := r.removeManifest(name, d); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// removeManifest unlinks manifest d from repository name with the tags
// that point to it and its referrers entry. The content stays in blobs/
// for gc. The caller holds the repository lock.
func (r *Registry) removeManifest(name string, d digest.Digest) error {
	if b, err := os.ReadFile(r.st.blobPath(d)); err == nil {
		var m manifest
		if json.Unmarshal(b, &m) == nil && m.Subject != nil {
			if sd, err := digest.Parse(string(m.Subject.Digest)); err == nil {
				removeFile(filepath.Join(r.st.referrersDir(name, sd), referrerFile(d)))
			}
		}
	}
	if err := removeFile(r.st.revisionLink(name, d)); err != nil {
		return err
	}
	tags, err := r.st.tags(name)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if td, err := r.st.readTag(name, t); err == nil && td == d {
			if err := removeFile(r.st.tagPath(name, t)); err != nil {
				return err
			}
		}
	}
	return nil
}

var specsVersioned2 = specs.Versioned{SchemaVersion: 2}
