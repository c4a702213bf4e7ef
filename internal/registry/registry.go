// Package registry is berth's OCI registry server: the OCI Distribution
// Spec 1.1 (pull, push, content discovery with the referrers API, content
// management) over a content-addressed store on disk, with optional basic
// authentication from an htpasswd file, and an offline garbage collector.
//
// New returns the HTTP handler; `berth registry` and the engine daemon
// (--registry-addr) serve it. Blobs are stored once under the root and
// linked into each repository that may serve them; manifests are blobs too,
// linked as revisions and named by tags. Every blob and manifest is verified
// against its digest before it is stored, and every write is a temporary
// file renamed into place, so a failed request leaves nothing behind.
package registry

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Options configure a registry.
type Options struct {
	// Root is the directory holding the registry's content (created if
	// missing). Required.
	Root string
	// Htpasswd names a file of "user:bcrypt-hash" lines (as written by
	// `htpasswd -B`). When set, every request needs basic auth from one of
	// its users. The file is re-read when it changes.
	Htpasswd string
	// Realm is the basic auth realm; default "berth-registry".
	Realm string
	// Log receives warnings and, at debug level, one line per request
	// (never its headers). Nil discards.
	Log *slog.Logger
	// MaxManifestSize bounds a manifest push; default 4 MiB, the size the
	// spec asks registries to accept at least.
	MaxManifestSize int64
}

// DefaultMaxManifestSize is the default bound on a pushed manifest.
const DefaultMaxManifestSize = 4 << 20

// Registry is the handler returned by New.
type Registry struct {
	opts  Options
	st    *store
	log   *slog.Logger
	auth  *htpasswd
	lock  *os.File
	realm string

	upMu    sync.Mutex
	uploads map[string]*upload

	repoLocks [64]sync.Mutex
}

var _ http.Handler = (*Registry)(nil)

// New opens (creating if needed) the registry at opts.Root and returns its
// HTTP handler, a *Registry. It fails if a gc holds the root.
func New(opts Options) (http.Handler, error) {
	return open(opts)
}

func open(opts Options) (*Registry, error) {
	if opts.Root == "" {
		return nil, errors.New("registry: no root directory given (--root)")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{root, filepath.Join(root, "blobs"), filepath.Join(root, "repositories"), filepath.Join(root, "uploads")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("registry root %s: %w (choose another directory with --root)", root, err)
		}
	}
	lock, err := lockRoot(root, false)
	if err != nil {
		return nil, err
	}
	r := &Registry{
		opts:    opts,
		st:      &store{root: root},
		log:     opts.Log,
		lock:    lock,
		realm:   opts.Realm,
		uploads: map[string]*upload{},
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.realm == "" {
		r.realm = "berth-registry"
	}
	if r.opts.MaxManifestSize <= 0 {
		r.opts.MaxManifestSize = DefaultMaxManifestSize
	}
	if opts.Htpasswd != "" {
		r.auth, err = loadHtpasswd(opts.Htpasswd, r.log)
		if err != nil {
			unlockRoot(lock)
			return nil, err
		}
	}
	return r, nil
}

// Close releases the registry's hold on its root (so a gc may run).
func (r *Registry) Close() error {
	unlockRoot(r.lock)
	return nil
}

// repoLock serializes manifest, tag and referrer changes of one repository.
func (r *Registry) repoLock(name string) *sync.Mutex {
	var h uint32 = 2166136261
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return &r.repoLocks[h%uint32(len(r.repoLocks))]
}

type routeKind int

const (
	routeNone routeKind = iota
	routeBase
	routeCatalog
	routeTags
	routeManifest
	routeBlob
	routeUpload
	routeReferrers
)

// parseRoute splits a /v2/ path into its route, repository name and last
// component (reference, digest or upload ID). Names contain slashes, so the
// route is found from the end of the path.
func parseRoute(path string) (kind routeKind, name, ref string) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return routeBase, "", ""
		}
		return routeNone, "", ""
	}
	if rest == "" {
		return routeBase, "", ""
	}
	if rest == "_catalog" {
		return routeCatalog, "", ""
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	join := func(k int) string { return strings.Join(segs[:k], "/") }
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		return routeTags, join(n - 2), ""
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		return routeUpload, join(n - 3), segs[n-1]
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		return routeUpload, join(n - 2), ""
	case n >= 3 && segs[n-2] == "blobs":
		return routeBlob, join(n - 2), segs[n-1]
	case n >= 3 && segs[n-2] == "manifests":
		return routeManifest, join(n - 2), segs[n-1]
	case n >= 3 && segs[n-2] == "referrers":
		return routeReferrers, join(n - 2), segs[n-1]
	}
	return routeNone, "", ""
}

// ServeHTTP implements the distribution API under /v2/.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	defer func() {
		if r.log.Enabled(req.Context(), slog.LevelDebug) {
			user := ""
			if u, _, ok := req.BasicAuth(); ok {
				user = u
			}
			r.log.Debug("registry request", "method", req.Method, "path", req.URL.Path, "query", req.URL.RawQuery, "status", rw.status,
				"bytes", rw.n, "duration", time.Since(start), "user", user, "remote", req.RemoteAddr)
		}
	}()
	rw.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.auth != nil && !r.authorized(req) {
		rw.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", r.realm))
		writeError(rw, newErr(errUnauthorized, "authentication required: log in with a user of the registry's htpasswd file"))
		return
	}
	if err := r.serve(rw, req); err != nil {
		var re *regError
		if !errors.As(err, &re) {
			r.log.Warn("registry request failed", "method", req.Method, "path", req.URL.Path, "err", err)
		}
		if rw.status == 0 {
			writeError(rw, err)
		}
	}
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) error {
	kind, name, ref := parseRoute(req.URL.Path)
	if kind == routeNone {
		return newErr(errNotFound, "no such endpoint %s (the registry API lives under /v2/)", req.URL.Path)
	}
	if kind != routeBase && kind != routeCatalog {
		if err := checkName(name); err != nil {
			return err
		}
	}
	m := req.Method
	switch kind {
	case routeBase:
		if m == http.MethodGet || m == http.MethodHead {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "2")
			w.WriteHeader(http.StatusOK)
			if m == http.MethodGet {
				io.WriteString(w, "{}")
			}
			return nil
		}
		return methodNotAllowed(w, m, "GET, HEAD")
	case routeCatalog:
		if m == http.MethodGet {
			return r.getCatalog(w, req)
		}
		return methodNotAllowed(w, m, "GET")
	case routeTags:
		if m == http.MethodGet {
			return r.getTags(w, req, name)
		}
		return methodNotAllowed(w, m, "GET")
	case routeReferrers:
		if m == http.MethodGet {
			return r.getReferrers(w, req, name, ref)
		}
		return methodNotAllowed(w, m, "GET")
	case routeManifest:
		switch m {
		case http.MethodGet, http.MethodHead:
			return r.getManifest(w, req, name, ref)
		case http.MethodPut:
			return r.putManifest(w, req, name, ref)
		case http.MethodDelete:
			return r.deleteManifest(w, req, name, ref)
		}
		return methodNotAllowed(w, m, "GET, HEAD, PUT, DELETE")
	case routeBlob:
		switch m {
		case http.MethodGet, http.MethodHead:
			return r.getBlob(w, req, name, ref)
		case http.MethodDelete:
			return r.deleteBlob(w, req, name, ref)
		}
		return methodNotAllowed(w, m, "GET, HEAD, DELETE")
	case routeUpload:
		if ref == "" {
			if m == http.MethodPost {
				return r.startUpload(w, req, name)
			}
			return methodNotAllowed(w, m, "POST")
		}
		switch m {
		case http.MethodGet:
			return r.uploadStatus(w, req, name, ref)
		case http.MethodPatch:
			return r.patchUpload(w, req, name, ref)
		case http.MethodPut:
			return r.putUpload(w, req, name, ref)
		case http.MethodDelete:
			return r.cancelUpload(w, req, name, ref)
		}
		return methodNotAllowed(w, m, "GET, PATCH, PUT, DELETE")
	}
	return newErr(errNotFound, "no such endpoint %s", req.URL.Path)
}

func methodNotAllowed(w http.ResponseWriter, method, allow string) error {
	w.Header().Set("Allow", allow)
	return newErr(errUnsupported, "method %s is not supported here (allowed: %s)", method, allow)
}

// statusWriter records the status and size of a response for the request
// log, and passes ReadFrom through so blob downloads can use sendfile.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.n += int64(n)
	return n, err
}

func (s *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(src)
		s.n += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{s.ResponseWriter}, src)
	s.n += n
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
