package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"

	"github.com/berth/berth/internal/lazyre"
)

// upload is one blob upload session: its data grows under
// uploads/<id>/data until the final PUT verifies the digest and moves it
// into blobs/. The SHA-256 of the data so far is kept in memory so the
// final PUT need not read the data again; a session recovered after a
// restart (h == nil) or finished with another algorithm is hashed anew.
type upload struct {
	id, repo string

	mu   sync.Mutex // held while a request works on the session
	size int64
	h    hash.Hash
	done bool // committed or cancelled
}

var uploadIDRE = lazyre.New(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func newUploadID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newUpload creates a session for repository name, locked.
func (r *Registry) newUpload(name string) (*upload, error) {
	id := newUploadID()
	dir := r.st.uploadDir(id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "repo"), []byte(name), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f, err := os.OpenFile(r.st.uploadData(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f.Close()
	u := &upload{id: id, repo: name, h: sha256.New()}
	u.mu.Lock()
	r.upMu.Lock()
	r.uploads[id] = u
	r.upMu.Unlock()
	return u, nil
}

// getUpload finds session id of repository name and locks it. Sessions
// survive a restart of the registry: they are found again on disk.
func (r *Registry) getUpload(name, id string) (*upload, error) {
	unknown := newErr(errBlobUploadUnknown, "blob upload %q is not known in repository %s (it finished, was cancelled, or never existed; start a new one with POST /v2/%s/blobs/uploads/)", id, name, name)
	if !uploadIDRE.MatchString(id) {
		return nil, unknown
	}
	r.upMu.Lock()
	u := r.uploads[id]
	if u == nil {
		repo, err := os.ReadFile(filepath.Join(r.st.uploadDir(id), "repo"))
		fi, serr := os.Stat(r.st.uploadData(id))
		if err != nil || serr != nil {
			r.upMu.Unlock()
			return nil, unknown
		}
		u = &upload{id: id, repo: string(repo), size: fi.Size()}
		r.uploads[id] = u
	}
	r.upMu.Unlock()
	if u.repo != name {
		return nil, unknown
	}
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return nil, unknown
	}
	return u, nil
}

// finish ends a session (committed or cancelled) and removes its files.
func (r *Registry) finish(u *upload) {
	u.done = true
	os.RemoveAll(r.st.uploadDir(u.id))
	r.upMu.Lock()
	delete(r.uploads, u.id)
	r.upMu.Unlock()
}

func (r *Registry) uploadHeaders(w http.ResponseWriter, name string, u *upload) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/uploads/"+u.id)
	h.Set("Range", fmt.Sprintf("0-%d", max(u.size-1, 0)))
	h.Set("Docker-Upload-UUID", u.id)
	h.Set("Content-Length", "0")
}

// blobCreated answers a finished upload or mount.
func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// startUpload answers POST /v2/<name>/blobs/uploads/: a cross-repository
// mount (?mount=&from=), a monolithic upload (?digest=, body is the blob)
// or the start of a session.
func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, name string) error {
	q := req.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := parseDigest(m)
		if err != nil {
			return err
		}
		from := q.Get("from")
		var ok bool
		if from != "" {
			if err := checkName(from); err != nil {
				return err
			}
			ok = exists(r.st.layerLink(from, d)) && exists(r.st.blobPath(d))
		} else {
			// Without "from" the client asks the registry to find the blob
			// itself (spec 1.1 "automatic content discovery").
			ok = exists(r.st.blobPath(d))
		}
		if ok {
			if err := r.linkBlob(name, d); err != nil {
				return err
			}
			blobCreated(w, name, d)
			return nil
		}
		// Not mountable: fall back to a new upload session, as the spec says.
	}
	if dg := q.Get("digest"); dg != "" {
		d, err := parseDigest(dg)
		if err != nil {
			return err
		}
		u, err := r.newUpload(name)
		if err != nil {
			return err
		}
		defer u.mu.Unlock()
		if err := r.appendBody(w, req, u); err != nil {
			r.finish(u)
			return err
		}
		if err := r.commit(u, name, d); err != nil {
			return err
		}
		blobCreated(w, name, d)
		return nil
	}
	u, err := r.newUpload(name)
	if err != nil {
		return err
	}
	defer u.mu.Unlock()
	r.uploadHeaders(w, name, u)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (r *Registry) uploadStatus(w http.ResponseWriter, req *http.Request, name, id string) error {
	u, err := r.getUpload(name, id)
	if err != nil {
		return err
	}
	defer u.mu.Unlock()
	r.uploadHeaders(w, name, u)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (r *Registry) patchUpload(w http.ResponseWriter, req *http.Request, name, id string) error {
	u, err := r.getUpload(name, id)
	if err != nil {
		return err
	}
	defer u.mu.Unlock()
	if err := r.appendBody(w, req, u); err != nil {
		return err
	}
	r.uploadHeaders(w, name, u)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (r *Registry) putUpload(w http.ResponseWriter, req *http.Request, name, id string) error {
	dg := req.URL.Query().Get("digest")
	if dg == "" {
		return newErr(errDigestInvalid, "the final PUT of an upload needs the blob's digest: ?digest=<algorithm>:<hex>")
	}
	d, err := parseDigest(dg)
	if err != nil {
		return err
	}
	u, err := r.getUpload(name, id)
	if err != nil {
		return err
	}
	defer u.mu.Unlock()
	if err := r.appendBody(w, req, u); err != nil {
		return err
	}
	if err := r.commit(u, name, d); err != nil {
		return err
	}
	blobCreated(w, name, d)
	return nil
}

func (r *Registry) cancelUpload(w http.ResponseWriter, req *http.Request, name, id string) error {
	u, err := r.getUpload(name, id)
	if err != nil {
		return err
	}
	defer u.mu.Unlock()
	r.finish(u)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// parseContentRange parses a chunk's Content-Range: the spec's
// "<start>-<end>", also accepting the "bytes " prefix and "/<total>" suffix
// of RFC 9110 that some clients send.
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "bytes")
	s = strings.TrimLeft(s, " =")
	s, _, _ = strings.Cut(s, "/")
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	return start, end, true
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// appendBody appends the request body to the session, checking a
// Content-Range against the data received so far. On any failure the data
// and hash are rolled back, so the session is as before the request.
func (r *Registry) appendBody(w http.ResponseWriter, req *http.Request, u *upload) error {
	want := int64(-1)
	if cr := req.Header.Get("Content-Range"); cr != "" {
		start, end, ok := parseContentRange(cr)
		if !ok {
			return newErr(errBlobUploadInvalid, "invalid Content-Range %q: want <start>-<end> (inclusive byte offsets), e.g. 0-1023", cr)
		}
		if start != u.size {
			r.uploadHeaders(w, u.repo, u)
			return newErr(errRangeInvalid, "chunk starts at byte %d but the upload has %d bytes; send the chunk starting at %d (GET the upload URL for its Range)", start, u.size, u.size)
		}
		want = end - start + 1
		if req.ContentLength >= 0 && req.ContentLength != want {
			return newErr(errSizeInvalid, "Content-Length %d does not match Content-Range %q (%d bytes)", req.ContentLength, cr, want)
		}
	}
	if req.ContentLength == 0 {
		return nil
	}
	f, err := os.OpenFile(r.st.uploadData(u.id), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(u.size, io.SeekStart); err != nil {
		return err
	}
	var state []byte
	if u.h != nil {
		state, _ = u.h.(encoding.BinaryMarshaler).MarshalBinary()
	}
	var dst io.Writer = f
	if u.h != nil {
		dst = io.MultiWriter(f, u.h)
	}
	var src io.Reader = req.Body
	if want >= 0 {
		src = io.LimitReader(req.Body, want+1)
	}
	buf := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(dst, src, *buf)
	copyBufs.Put(buf)
	if err == nil && want >= 0 && n != want {
		err = newErr(errSizeInvalid, "chunk has %s bytes but Content-Range announced %d", sizeWord(n, want), want)
	}
	if err != nil {
		if terr := f.Truncate(u.size); terr != nil {
			return terr
		}
		if u.h != nil {
			if state == nil || u.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state) != nil {
				u.h = nil
			}
		}
		var re *regError
		if errors.As(err, &re) {
			return err
		}
		return newErr(errBlobUploadInvalid, "reading the blob data: %v", err)
	}
	u.size += n
	return nil
}

func sizeWord(n, want int64) string {
	if n > want {
		return "more"
	}
	return strconv.FormatInt(n, 10)
}

// commit verifies the session's data against d and moves it into the
// blob store, linked into repository name. A mismatch cancels the session:
// nothing of it is kept.
func (r *Registry) commit(u *upload, name string, d digest.Digest) error {
	path := r.st.uploadData(u.id)
	var got digest.Digest
	if d.Algorithm() == digest.SHA256 && u.h != nil {
		got = digest.NewDigest(digest.SHA256, u.h)
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		h := d.Algorithm().Hash()
		buf := copyBufs.Get().(*[]byte)
		_, err = io.CopyBuffer(h, f, *buf)
		copyBufs.Put(buf)
		f.Close()
		if err != nil {
			return err
		}
		got = digest.NewDigest(d.Algorithm(), h)
	}
	if got != d {
		size := u.size
		r.finish(u)
		return newErr(errDigestInvalid, "uploaded content (%d bytes) has digest %s, not %s; the upload was discarded", size, got, d).withDetail(map[string]string{"digest": d.String()})
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	if err := commitFile(path, r.st.blobPath(d)); err != nil {
		return err
	}
	if err := r.linkBlob(name, d); err != nil {
		return err
	}
	r.finish(u)
	return nil
}

// linkBlob lets repository name serve blob d.
func (r *Registry) linkBlob(name string, d digest.Digest) error {
	link := r.st.layerLink(name, d)
	if exists(link) {
		return nil
	}
	return writeFileAtomic(link, nil)
}
