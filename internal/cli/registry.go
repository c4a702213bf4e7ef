package cli

import (
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth/berth/internal/registry"
)

// newRegistryCmd is `berth registry`: an OCI registry served from this
// process, and its garbage collector.
func newRegistryCmd(g *globals) *cobra.Command {
	var opts registry.Options
	var serve registry.ServeOptions
	var logLevel string
	cmd := &cobra.Command{
		Use:   "registry [OPTIONS]",
		Short: "Run an OCI image registry (Distribution Spec 1.1) in the foreground",
		Long: `Run an OCI registry that docker, podman, skopeo and berth can push to and
pull from. Content lives under --root, stored once however many repositories
share it; 'berth registry gc' removes what no manifest references.

With --htpasswd, every request needs basic auth from a user of that file
(bcrypt entries, as 'htpasswd -B' writes them). Use --tls-cert/--tls-key to
serve HTTPS; clients treat plain HTTP as insecure except on loopback.

Stop it with Ctrl-C or SIGTERM; requests in flight finish first.`,
		GroupID: "engine",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return &flagError{cmd: "registry", err: fmt.Errorf("invalid --log-level %q (want debug, info, warn or error)", logLevel)}
			}
			log := slog.New(slog.NewTextHandler(g.err, &slog.HandlerOptions{Level: level}))
			opts.Log = log
			serve.Log = log
			if opts.Htpasswd != "" && serve.TLSCert == "" {
				if host, _, err := net.SplitHostPort(serve.Addr); err != nil || !isLoopback(host) {
					log.Warn("basic auth over plain HTTP sends passwords in the clear; pass --tls-cert and --tls-key")
				}
			}
			h, err := registry.New(opts)
			if err != nil {
				return err
			}
			defer h.(*registry.Registry).Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			scheme := "http"
			if serve.TLSCert != "" {
				scheme = "https"
			}
			return registry.ListenAndServe(ctx, h, serve, func(a net.Addr) {
				log.Info("berth registry listening", "url", scheme+"://"+a.String(), "root", opts.Root, "auth", opts.Htpasswd != "")
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&serve.Addr, "addr", "127.0.0.1:5000", "Address to listen on (host:port; use :5000 for all interfaces)")
	f.StringVar(&opts.Root, "root", "/var/lib/berth/registry", "Directory holding the registry's content")
	f.StringVar(&serve.TLSCert, "tls-cert", "", "TLS certificate file (PEM); serve HTTPS with --tls-key")
	f.StringVar(&serve.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	f.StringVar(&opts.Htpasswd, "htpasswd", "", "Require basic auth from the users of this htpasswd file (bcrypt entries: htpasswd -B)")
	f.StringVar(&logLevel, "log-level", "info", "Log level: debug (logs every request), info, warn, error")
	cmd.AddCommand(newRegistryGCCmd(g))
	return cmd
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newRegistryGCCmd(g *globals) *cobra.Command {
	var root string
	var opts registry.GCOptions
	cmd := &cobra.Command{
		Use:   "gc [OPTIONS]",
		Short: "Remove blobs no manifest references from a registry's storage",
		Long: `Garbage-collect a registry root: mark every blob a manifest of any
repository references, then remove the rest (and unfinished uploads older
than a day). With --delete-untagged, manifests no tag reaches are removed
first (the manifests of a tagged index and the referrers of a kept manifest
are kept). Each removal is printed.

The registry must be stopped: gc refuses to run while one serves the root.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out = g.out
			st, err := registry.GC(root, opts)
			if err != nil {
				return err
			}
			verb := "removed"
			if opts.DryRun {
				verb = "would remove"
			}
			fmt.Fprintf(g.out, "gc: %d repositories scanned; %s %d manifests, %d blobs (%d bytes), %d uploads\n",
				st.Repository, verb, st.Manifests, st.Blobs, st.BlobBytes, st.Uploads)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "/var/lib/berth/registry", "Directory holding the registry's content")
	f.BoolVar(&opts.DryRun, "dry-run", false, "Print what would be removed; remove nothing")
	f.BoolVar(&opts.DeleteUntagged, "delete-untagged", false, "Also remove manifests that no tag reaches")
	return cmd
}
