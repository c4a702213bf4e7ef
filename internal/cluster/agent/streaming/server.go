// Package streaming is the node agent's kubelet-like streaming server: the
// API server proxies `kubectl logs`, `exec`, `attach`, `cp` and
// `port-forward` to it, and it serves them from the node's berth engine.
//
// It listens on HTTPS (port 10250 by default) with the node's serving
// certificate and accepts only clients whose certificate chains to the
// cluster CA and names the API server's kubelet-client identity
// (pki.KubeletClientCN): it trusts the API server to have authorized the
// user, as a kubelet does.
//
// Endpoints, as the kubelet's:
//
//	GET  /containerLogs/{ns}/{pod}/{container}?follow&previous&tailLines&sinceSeconds&sinceTime&timestamps&limitBytes
//	GET|POST /exec/{ns}/{pod}[/{uid}]/{container}?command=…&stdin&stdout&stderr&tty
//	GET|POST /attach/{ns}/{pod}[/{uid}]/{container}?stdin&stdout&stderr&tty
//	GET|POST /portForward/{ns}/{pod}[/{uid}]
//	GET  /stats/metrics (berth's own: node and pod CPU/memory usage)
//
// exec and attach speak the remotecommand protocols over SPDY/3.1
// (channel.k8s.io v1–v4) and WebSocket (v5.channel.k8s.io and v4 and
// older); port-forward speaks portforward.k8s.io over SPDY, either plain or
// tunneled in a WebSocket (SPDY/3.1+portforward.k8s.io), as kubectl 1.31+
// sends it.
package streaming

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/engine/client"
	"github.com/berth/berth/internal/errdefs"
)

// DefaultPort is the kubelet's port, which the agent publishes in its Node's
// status.daemonEndpoints.kubeletEndpoint.
const DefaultPort = 10250

// Options configures a Server.
type Options struct {
	// Engine is the node's berth engine.
	Engine *client.Client
	// CertFile and KeyFile are the node's serving certificate (signed by the
	// cluster CA; the API server checks it names the node's address or name).
	CertFile, KeyFile string
	// CAFile is the cluster CA: client certificates must chain to it.
	CAFile string
	// AllowedClients lists the client certificate common names accepted;
	// default {pki.KubeletClientCN}.
	AllowedClients []string
	// Logger receives errors and one debug line per request.
	Logger *slog.Logger
	// Metrics, if set, answers GET /stats/metrics: the node's and its
	// pods' resource usage (package metrics), which the API server turns
	// into metrics.k8s.io NodeMetrics and PodMetrics.
	Metrics http.Handler
}

// Server serves the streaming endpoints. Create it with New.
type Server struct {
	o   Options
	eng *client.Client
	log *slog.Logger
	// sessions counts exec/attach sessions in progress (tests check that a
	// client leaving ends its session).
	sessions atomic.Int64
}

// New returns a server; Serve starts it.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.AllowedClients) == 0 {
		o.AllowedClients = []string{pki.KubeletClientCN}
	}
	return &Server{o: o, eng: o.Engine, log: o.Logger}
}

// TLSConfig is the server side TLS of Serve: the serving certificate, and
// client certificates required and verified against the cluster CA.
func (s *Server) TLSConfig() (*tls.Config, error) {
	if s.o.CertFile == "" || s.o.KeyFile == "" || s.o.CAFile == "" {
		return nil, fmt.Errorf("streaming server: CertFile, KeyFile and CAFile are required (the node's serving certificate and the cluster CA): %w", errdefs.ErrInvalidArgument)
	}
	cert, err := tls.LoadX509KeyPair(s.o.CertFile, s.o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("streaming server certificate %s: %w", s.o.CertFile, err)
	}
	ca, err := os.ReadFile(s.o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("streaming server CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("streaming server CA %s: no PEM certificate in it: %w", s.o.CAFile, errdefs.ErrInvalidArgument)
	}
	// HTTP/1.1 only: SPDY and WebSocket upgrades need it.
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil
}

// Serve serves HTTPS on ln until ctx ends. Only clients presenting a
// certificate from the cluster CA with an allowed common name get in.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	tc, err := s.TLSConfig()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.authenticated(s.Handler()),
		TLSConfig:         tc,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, tc)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	// Hijacked streams (exec, port-forward) are not tracked by Shutdown;
	// Close ends the listener and idle connections.
	_ = srv.Close()
	return nil
}

// authenticated lets through only the API server's client certificate.
func (s *Server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "a client certificate from the cluster CA is required")
			return
		}
		cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if !slices.Contains(s.o.AllowedClients, cn) {
			s.log.Warn("streaming request refused", "client", cn, "path", r.URL.Path)
			writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf("client %q may not use the node's streaming endpoints (only %v)", cn, s.o.AllowedClients))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Handler returns the endpoints without authentication: Serve wraps it
// with the client certificate check. Use it alone only in tests.
func (s *Server) Handler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", s.serveLogs)
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		m.HandleFunc("GET "+p, s.serveExec)
		m.HandleFunc("POST "+p, s.serveExec)
	}
	for _, p := range []string{"/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"} {
		m.HandleFunc("GET "+p, s.serveAttach)
		m.HandleFunc("POST "+p, s.serveAttach)
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		m.HandleFunc("GET "+p, s.servePortForward)
		m.HandleFunc("POST "+p, s.servePortForward)
	}
	m.HandleFunc("GET /stats/metrics", func(w http.ResponseWriter, r *http.Request) {
		if s.o.Metrics == nil {
			writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "this node agent collects no resource metrics")
			return
		}
		s.o.Metrics.ServeHTTP(w, r)
	})
	m.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("no streaming endpoint %s %s: want /containerLogs, /exec, /attach, /portForward or /stats/metrics", r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.ServeHTTP(w, r)
		s.log.Debug("streaming request", "method", r.Method, "path", r.URL.Path, "dur", time.Since(start))
	})
}

// writeStatus answers with a Kubernetes Status, which kubectl prints.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg}
	b, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// writeError maps an engine or lookup error to a Status.
func writeError(w http.ResponseWriter, err error) {
	code, reason := http.StatusInternalServerError, metav1.StatusReasonInternalError
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		code, reason = http.StatusNotFound, metav1.StatusReasonNotFound
	case errors.Is(err, errdefs.ErrInvalidArgument), errors.Is(err, errdefs.ErrConflict):
		code, reason = http.StatusBadRequest, metav1.StatusReasonBadRequest
	case errors.Is(err, errdefs.ErrUnavailable):
		code, reason = http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable
	}
	writeStatus(w, code, reason, err.Error())
}
