package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServeOptions say where and how to serve a registry handler.
type ServeOptions struct {
	Addr    string // host:port to listen on
	TLSCert string // PEM certificate (chain) file; with TLSKey, serve HTTPS
	TLSKey  string // PEM private key file
	Log     *slog.Logger
}

// ListenAndServe serves h on opts.Addr until ctx is done, then shuts down
// gracefully (in-flight requests get 5 s). With TLSCert and TLSKey it serves
// HTTPS. ready, if not nil, is called with the bound address once listening.
func ListenAndServe(ctx context.Context, h http.Handler, opts ServeOptions, ready func(net.Addr)) error {
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		return errors.New("registry TLS needs both --tls-cert and --tls-key")
	}
	var tlsCfg *tls.Config
	if opts.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return fmt.Errorf("registry TLS certificate %s / key %s: %w", opts.TLSCert, opts.TLSKey, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("registry: listen on %s: %w", opts.Addr, err)
	}
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	logger := opts.Log
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	if ready != nil {
		ready(l.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return err
	}
}
