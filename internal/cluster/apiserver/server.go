// Package apiserver owns berth's Kubernetes-compatible API: discovery,
// OpenAPI, generic REST storage of the k8s.io/api types over etcd (create,
// get, list, watch, update, patch, server-side apply, delete, status and
// scale subresources), defaulting and validation, Table output,
// authentication and authorization, and the built-in garbage and namespace
// collectors. It is driven by the resource table in registry.go.
package apiserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/version"
)

// Config wires a Server.
type Config struct {
	// Client is the etcd client holding all state.
	Client *clientv3.Client
	// Auth authenticates requests; nil rejects everything but health checks.
	Auth Authenticator
	// Logger receives one line per request at debug level and errors.
	Logger *slog.Logger
	// GitVersion is reported by /version.
	GitVersion string
	// AdvertiseAddress and AdvertisePort are where clients reach this API
	// server; Bootstrap publishes them in the default/kubernetes service's
	// endpoints. Optional.
	AdvertiseAddress string
	AdvertisePort    int
	// ServiceCIDR is the range of service cluster IPs (default DefaultServiceCIDR).
	ServiceCIDR string
	// DefaultNotReadyTolerationSeconds and DefaultUnreachableTolerationSeconds
	// bound the NoExecute tolerations of the not-ready and unreachable taints
	// added to new pods that have none (Kubernetes' DefaultTolerationSeconds
	// admission, 300 s there). nil adds none.
	DefaultNotReadyTolerationSeconds    *int64
	DefaultUnreachableTolerationSeconds *int64
	// KubeletClientCertFile and KubeletClientKeyFile are the API server's
	// client certificate towards node agents (CN pki.KubeletClientCN);
	// KubeletCAFile is the CA their serving certificates chain to. Without
	// them pods/log, exec, attach and portforward answer 503.
	KubeletClientCertFile, KubeletClientKeyFile, KubeletCAFile string
	// Extra handles /berth/... paths (the HA join endpoint); it runs after
	// authentication, with the user in the request context.
	Extra http.Handler
}

// Server is the API server. Create with New, serve Handler, and Run the
// background controllers.
type Server struct {
	cfg    Config
	st     *storage
	log    *slog.Logger
	scheme *runtime.Scheme
	proto  *protobuf.Serializer

	owners      *ownerIndex // dependents by owner UID, kept by the collector
	nodeTLS     *nodeTLS    // client side of the node agent proxy
	serviceCIDR netip.Prefix
	metrics     metricsCache // node agents' usage for metrics.k8s.io

	openapiOnce sync.Once
	openapiV3   map[string][]byte // "api/v1" -> document
	openapiIdx  []byte
	openapiV2   []byte
	openapiV2pb []byte
}

// New returns a server over the etcd client.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.GitVersion == "" {
		cfg.GitVersion = "v1.33.0-berth"
	}
	s := &Server{cfg: cfg, st: &storage{cli: cfg.Client}, log: cfg.Logger, owners: &ownerIndex{}}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	p, err := netip.ParsePrefix(cfg.ServiceCIDR)
	if err != nil || !p.Addr().Is4() || p.Bits() > 28 {
		p = netip.MustParsePrefix(DefaultServiceCIDR)
		s.log.Warn("service CIDR invalid, using the default", "cidr", cfg.ServiceCIDR, "default", DefaultServiceCIDR)
	}
	s.serviceCIDR = p
	s.nodeTLS = loadNodeTLS(cfg)
	if s.nodeTLS.err != nil && cfg.KubeletClientCertFile != "" {
		s.log.Error("logs, exec, attach and port-forward are unavailable", "err", s.nodeTLS.err)
	}
	s.scheme = newScheme()
	s.proto = protobuf.NewSerializer(s.scheme, s.scheme)
	return s
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(c int) { r.code = c; r.ResponseWriter.WriteHeader(c) }

// Unwrap lets http.ResponseController (the node proxy's upgrades) reach
// the connection's Hijacker.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Handler returns the HTTP handler: authentication, then routing.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: 200}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					// A proxied stream (logs -f, exec) ended mid-way:
					// let net/http drop the connection quietly.
					panic(p)
				}
				s.log.Error("panic serving request", "method", req.Method, "path", req.URL.Path, "panic", p)
				writeError(rec, errInternal("internal error"))
			}
			s.log.Debug("request", "method", req.Method, "path", req.URL.Path, "code", rec.code, "dur", time.Since(start))
		}()
		s.serve(rec, req)
	})
}

func errInternal(msg string) *apiError { return newStatus(500, "InternalError", nil, msg) }

func (s *Server) serve(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path
	switch p {
	case "/healthz", "/livez", "/readyz", "/healthz/etcd", "/livez/etcd", "/readyz/etcd":
		s.health(w, req)
		return
	}
	var user *User
	if s.cfg.Auth != nil {
		user = s.cfg.Auth.Authenticate(req)
	}
	if user == nil {
		writeError(w, newStatus(401, "Unauthorized", nil, "Unauthorized"))
		return
	}
	req = req.WithContext(withUser(req.Context(), user))
	switch {
	case p == "/version" || p == "/version/":
		writeJSON(w, 200, version.Info{Major: "1", Minor: "33", GitVersion: s.cfg.GitVersion, GitCommit: "berth", GitTreeState: "clean", BuildDate: "2026-01-01T00:00:00Z", GoVersion: goVersion(), Compiler: "gc", Platform: "linux/amd64"})
	case p == "/api" || p == "/api/":
		s.discoveryAPI(w, req)
	case p == "/apis" || p == "/apis/":
		s.discoveryAPIs(w, req)
	case strings.HasPrefix(p, "/openapi/"), p == "/swagger-2.0.0.pb-v1", p == "/swagger.json":
		s.serveOpenAPI(w, req)
	case strings.HasPrefix(p, "/api/"), strings.HasPrefix(p, "/apis/"):
		s.serveResource(w, req)
	case strings.HasPrefix(p, "/berth/") && s.cfg.Extra != nil:
		s.cfg.Extra.ServeHTTP(w, req)
	default:
		writeError(w, newStatus(404, "NotFound", nil, "the server could not find the requested resource"))
	}
}

func (s *Server) health(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.cfg.Client.Get(ctx, "/registry-health"); err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(503)
		_, _ = w.Write([]byte("[-]etcd failed: " + err.Error() + "\nhealthz check failed\n"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if req.URL.Query().Has("verbose") {
		_, _ = w.Write([]byte("[+]ping ok\n[+]etcd ok\nhealthz check passed\n"))
		return
	}
	_, _ = w.Write([]byte("ok"))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = 500
		b = []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"encoding response failed","reason":"InternalError","code":500}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
	_, _ = w.Write([]byte("\n"))
}

func writeRaw(w http.ResponseWriter, code int, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
