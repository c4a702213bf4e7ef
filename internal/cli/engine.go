package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/daemon"
	"github.com/berth/berth/internal/units"
)

func engineCommands(g *globals) []*cobra.Command {
	system := &cobra.Command{Use: "system", Short: "Manage berth"}
	system.AddCommand(newSystemPruneCmd(g), newInfoCmd(g), newEventsCmd(g))
	cmds := []*cobra.Command{newDaemonCmd(g), newVersionCmd(g), newInfoCmd(g), newEventsCmd(g), system, newVolumeCmd(g), newNetworkCmd(g)}
	for _, name := range []string{"server", "agent", "kubeconfig", "token"} {
		cmds = append(cmds, newForwardCmd(name))
	}
	return cmds
}

func newDaemonCmd(g *globals) *cobra.Command {
	var cfg daemon.Config
	var configFile, logLevel string
	var debug bool
	cmd := &cobra.Command{
		Use:   "daemon [OPTIONS]",
		Short: "Run the berth engine (containers, images) on this host",
		Long: `Run the berth engine: it keeps images and containers under --root and serves
the engine API (the Docker Engine API) on --socket. Containers keep running
when the daemon stops or dies; the next daemon reattaches to them.

Two daemons can run side by side with different --root, --exec-root and --socket.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var fileCfg daemon.Config
			if err := daemon.LoadConfigFile(configFile, &fileCfg); err != nil {
				return err
			}
			merged := fileCfg
			fs := cmd.Flags()
			for flag, v := range map[string]*string{"root": &merged.Root, "exec-root": &merged.ExecRoot, "socket": &merged.Socket,
				"default-runtime": &merged.DefaultRuntime, "shim": &merged.ShimPath, "pause-binary": &merged.PausePath, "cgroup-parent": &merged.CgroupParent,
				"bridge": &merged.Bridge, "bridge-subnet": &merged.BridgeSubnet,
				"registry-addr": &merged.RegistryAddr, "registry-root": &merged.RegistryRoot,
				"tcp-addr": &merged.TCPAddr, "tlscacert": &merged.TLSCACert, "tlscert": &merged.TLSCert, "tlskey": &merged.TLSKey} {
				if fs.Changed(flag) || *v == "" {
					val, _ := fs.GetString(flag)
					*v = val
				}
			}
			if fs.Changed("cleanup") {
				merged.Cleanup = cfg.Cleanup
			}
			if fs.Changed("insecure-registry") {
				merged.InsecureRegistries = append(merged.InsecureRegistries, cfg.InsecureRegistries...)
			}
			if merged.Socket == "" && merged.ExecRoot != "" {
				merged.Socket = filepath.Join(merged.ExecRoot, "berth.sock")
			}
			if debug {
				if fs.Changed("log-level") && logLevel != "debug" {
					return &flagError{cmd: "daemon", err: fmt.Errorf("--debug and --log-level %s contradict each other; give one", logLevel)}
				}
				logLevel = "debug"
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return &flagError{cmd: "daemon", err: fmt.Errorf("invalid --log-level %q (want debug, info, warn or error)", logLevel)}
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			d, err := daemon.New(merged, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return d.Serve(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Root, "root", "/var/lib/berth", "Root directory of persistent state (images, containers, logs)")
	f.StringVar(&cfg.ExecRoot, "exec-root", "/run/berth", "Directory for runtime state (bundles, shim sockets)")
	f.StringVar(&cfg.Socket, "socket", "", "API socket (default <exec-root>/berth.sock)")
	f.StringVar(&cfg.DefaultRuntime, "default-runtime", "crun", "Default OCI runtime for containers")
	f.StringVar(&cfg.ShimPath, "shim", "", "Path of the berth-shim binary (default: next to berth)")
	f.StringVar(&cfg.PausePath, "pause-binary", "", "Path of the berth-pause binary, the process of pod sandboxes (default: next to berth)")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", "berth", "Parent cgroup of containers")
	f.StringVar(&cfg.Bridge, "bridge", "berth0", "Bridge of the default network (two daemons on one host need different ones)")
	f.StringVar(&cfg.BridgeSubnet, "bridge-subnet", "172.30.0.0/16", "Subnet of the default network")
	f.BoolVar(&cfg.Cleanup, "cleanup", false, "Remove the daemon's bridges and packet rules when it stops")
	f.StringVar(&cfg.RegistryAddr, "registry-addr", "", "Also serve an OCI registry on this address (e.g. 127.0.0.1:5000; see 'berth registry')")
	f.StringVar(&cfg.RegistryRoot, "registry-root", "", "Directory of the registry's content (default <root>/registry)")
	f.StringVar(&cfg.TCPAddr, "tcp-addr", "", "Also serve the API on this TCP address (e.g. 127.0.0.1:2376), over TLS with client certificates only; needs --tlscacert, --tlscert and --tlskey")
	f.StringVar(&cfg.TLSCACert, "tlscacert", "", "CA certificate (PEM) that signs the client certificates --tcp-addr accepts")
	f.StringVar(&cfg.TLSCert, "tlscert", "", "The daemon's TLS certificate (PEM) for --tcp-addr")
	f.StringVar(&cfg.TLSKey, "tlskey", "", "The daemon's TLS key (PEM) for --tcp-addr")
	f.StringSliceVar(&cfg.InsecureRegistries, "insecure-registry", nil, "Registry (host[:port] or CIDR) that may be reached over plain HTTP or unverified HTTPS; loopback registries always may (repeatable)")
	f.StringVar(&configFile, "config", "/etc/berth/daemon.json", "Daemon configuration file (JSON; flags override it)")
	f.StringVarP(&logLevel, "log-level", "l", "info", "Log level: debug, info, warn, error")
	f.BoolVarP(&debug, "debug", "D", false, "Log at debug level (as --log-level debug; dockerd's -D)")
	return cmd
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the berth version information",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(g.out, "Client:\n Version:\t%s\n API version:\t%s\n\n", Version, api.Version)
			cl, err := g.client()
			if err != nil {
				return err
			}
			var v api.VersionResponse
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/version", nil, nil, &v); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "Server:\n Version:\t%s\n API version:\t%s (minimum version %s)\n Go version:\t%s\n OS/Arch:\t%s/%s\n Kernel:\t%s\n",
				v.Version, v.APIVersion, v.MinAPIVersion, v.GoVersion, v.Os, v.Arch, v.KernelVersion)
			return nil
		},
	}
}

func newInfoCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Display system-wide information",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var in api.Info
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/info", nil, nil, &in); err != nil {
				return err
			}
			if format != "" {
				return renderEach(g.out, format, []any{in})
			}
			tw := tabwriter.NewWriter(g.out, 0, 0, 1, ' ', 0)
			fmt.Fprintf(tw, "Containers:\t%d (running %d, paused %d, stopped %d)\n", in.Containers, in.ContainersRunning, in.ContainersPaused, in.ContainersStopped)
			fmt.Fprintf(tw, "Images:\t%d\n", in.Images)
			fmt.Fprintf(tw, "Server Version:\t%s\n", in.ServerVersion)
			fmt.Fprintf(tw, "Storage Driver:\t%s\n", in.Driver)
			fmt.Fprintf(tw, "Cgroup Version:\t%s\n", in.CgroupVersion)
			fmt.Fprintf(tw, "Default Runtime:\t%s\n", in.DefaultRuntime)
			for n, r := range in.Runtimes {
				fmt.Fprintf(tw, "Runtime %s:\t%s\n", n, r.Path)
			}
			fmt.Fprintf(tw, "Security Options:\t%v\n", in.SecurityOptions)
			fmt.Fprintf(tw, "Kernel Version:\t%s\n", in.KernelVersion)
			fmt.Fprintf(tw, "Operating System:\t%s\n", in.OperatingSystem)
			fmt.Fprintf(tw, "CPUs:\t%d\n", in.NCPU)
			fmt.Fprintf(tw, "Total Memory:\t%s\n", units.BytesSize(float64(in.MemTotal)))
			fmt.Fprintf(tw, "Root Dir:\t%s\n", in.DockerRootDir)
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a Go template")
	return cmd
}

func newSystemPruneCmd(g *globals) *cobra.Command {
	var force, all bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused data: stopped containers, unused networks and dangling (or, with -a, unused) images",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			what := "  - all dangling images\n"
			if all {
				what = "  - all images without at least one container associated to them\n"
			}
			if !force && !confirm(g, "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n"+what+"\nAre you sure you want to continue? [y/N] ") {
				return nil
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			crep, err := pruneContainers(cmd.Context(), cl, nil)
			if err != nil {
				return err
			}
			if len(crep.ContainersDeleted) > 0 {
				fmt.Fprintln(g.out, "Deleted Containers:")
				for _, id := range crep.ContainersDeleted {
					fmt.Fprintln(g.out, id)
				}
				fmt.Fprintln(g.out)
			}
			var nrep api.NetworkPruneReport
			if err := cl.JSON(cmd.Context(), http.MethodPost, "/networks/prune", nil, nil, &nrep); err != nil {
				return err
			}
			if len(nrep.NetworksDeleted) > 0 {
				fmt.Fprintln(g.out, "Deleted Networks:")
				for _, n := range nrep.NetworksDeleted {
					fmt.Fprintln(g.out, n)
				}
				fmt.Fprintln(g.out)
			}
			irep, err := pruneImages(cmd.Context(), cl, all)
			if err != nil {
				return err
			}
			irep.SpaceReclaimed += crep.SpaceReclaimed
			printImagePrune(g, irep)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Remove all unused images not just dangling ones")
	return cmd
}

// newForwardCmd hands a control-plane command to berth-server, installed
// next to berth. The control plane lives in its own binary so that the
// CLI and engine do not pay for etcd and the Kubernetes types at every
// start (see docs/design.md).
func newForwardCmd(name string) *cobra.Command {
	short := map[string]string{
		"server":     "Run the control plane (Kubernetes API on etcd); runs berth-server",
		"agent":      "Join a cluster as a node and run its pods on the local engine; runs berth-server",
		"kubeconfig": "Print the admin kubeconfig of a control plane",
		"token":      "Print or create control-plane tokens",
	}[name]
	return &cobra.Command{
		Use:                name,
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			bin := filepath.Join(filepath.Dir(exe), "berth-server")
			if _, err := os.Stat(bin); err != nil {
				return fmt.Errorf("%s: the control plane binary is not installed next to berth (build it with `make build`)", bin)
			}
			return syscall.Exec(bin, append([]string{"berth-server", name}, args...), os.Environ())
		},
	}
}
