// Package cli implements the berth command line. Commands talk to the
// engine daemon through its API only (internal/engine/client); `berth
// daemon` is the one command that runs the engine itself.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth/berth/internal/engine/client"
)

// StatusError carries a process exit status out of a command, like the
// container's exit code for `run`.
type StatusError struct {
	Status int
	Err    error // printed if not nil
}

func (e *StatusError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("exit status %d", e.Status)
}

func (e *StatusError) Unwrap() error { return e.Err }

type globals struct {
	host string
	// TLS to a tcp:// daemon, as the docker CLI's flags.
	tlsVerify                  bool
	tlsCACert, tlsCert, tlsKey string
	cl                         *client.Client
	out                        io.Writer
	err                        io.Writer
	in                         io.Reader
}

func (g *globals) client() (*client.Client, error) {
	if g.cl != nil {
		return g.cl, nil
	}
	cl, err := client.New(g.host)
	if err != nil {
		return nil, err
	}
	if g.tlsVerify {
		if err := cl.UseTLS(g.tlsCACert, g.tlsCert, g.tlsKey); err != nil {
			return nil, err
		}
	}
	g.cl = cl
	return cl, nil
}

// Main runs the CLI with args (without the program name) and returns the
// process exit status.
func Main(args []string) int {
	return run(&globals{out: os.Stdout, err: os.Stderr, in: os.Stdin}, args)
}

func run(g *globals, args []string) int {
	root := newRoot(g)
	root.SetArgs(args)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var se *StatusError
	if errors.As(err, &se) {
		if se.Err != nil {
			fmt.Fprintln(g.err, "berth:", se.Err)
		}
		return se.Status
	}
	fmt.Fprintln(g.err, "berth:", err)
	var fe *flagError
	if errors.As(err, &fe) {
		fmt.Fprintf(g.err, "See 'berth %s --help'.\n", fe.cmd)
		return 125
	}
	return 1
}

// flagError is a usage error: the user typed a wrong flag or argument.
type flagError struct {
	cmd string
	err error
}

func (e *flagError) Error() string { return e.err.Error() }

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "berth runs OCI containers on this host and orchestrates them across many",
		Long: `berth runs OCI containers on this host (like Docker) and orchestrates them across
many hosts (like Kubernetes), with one binary and one install.

Start the engine with 'berth daemon', then run containers with 'berth run'.
The CLI talks to the daemon at -H/--host, BERTH_HOST, or ` + client.DefaultHost + `.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetVersionTemplate("berth version {{.Version}}\n")
	root.PersistentFlags().StringVarP(&g.host, "host", "H", client.HostFromEnv(), "daemon socket to connect to (unix:///path or tcp://host:port; env BERTH_HOST)")
	// TLS for a tcp:// daemon (berth daemon --tcp-addr), as the docker
	// CLI's: BERTH_TLS_VERIFY=1 and BERTH_CERT_PATH (ca.pem, cert.pem,
	// key.pem) set the defaults.
	certPath := os.Getenv("BERTH_CERT_PATH")
	if certPath == "" {
		home, _ := os.UserHomeDir()
		certPath = filepath.Join(home, ".berth")
	}
	root.PersistentFlags().BoolVar(&g.tlsVerify, "tlsverify", os.Getenv("BERTH_TLS_VERIFY") != "", "use TLS with a client certificate to reach a tcp:// daemon (env BERTH_TLS_VERIFY)")
	root.PersistentFlags().StringVar(&g.tlsCACert, "tlscacert", filepath.Join(certPath, "ca.pem"), "CA that signed the daemon's certificate ($BERTH_CERT_PATH/ca.pem by default)")
	root.PersistentFlags().StringVar(&g.tlsCert, "tlscert", filepath.Join(certPath, "cert.pem"), "client certificate ($BERTH_CERT_PATH/cert.pem by default)")
	root.PersistentFlags().StringVar(&g.tlsKey, "tlskey", filepath.Join(certPath, "key.pem"), "client key ($BERTH_CERT_PATH/key.pem by default)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &flagError{cmd: subcommand(c), err: err}
	})
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddGroup(&cobra.Group{ID: "containers", Title: "Containers:"},
		&cobra.Group{ID: "images", Title: "Images:"},
		&cobra.Group{ID: "engine", Title: "Engine and cluster:"})
	for _, c := range containerCommands(g) {
		c.GroupID = "containers"
		root.AddCommand(c)
	}
	for _, c := range imageCommands(g) {
		c.GroupID = "images"
		root.AddCommand(c)
	}
	for _, c := range distributionCommands(g) {
		c.GroupID = "images"
		root.AddCommand(c)
	}
	if img, _, err := root.Find([]string{"image"}); err == nil && img != root {
		img.AddCommand(newPullCmd(g), newPushCmd(g))
	}
	for _, c := range engineCommands(g) {
		c.GroupID = "engine"
		root.AddCommand(c)
	}
	root.AddCommand(newRegistryCmd(g))
	return root
}

// Version is berth's version, set at link time.
var Version = "dev"

// exactArgs etc. wrap cobra's argument checks into usage errors that name
// the command, as Docker's CLI prints them.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &flagError{cmd: subcommand(cmd), err: fmt.Errorf("%q requires exactly %d argument(s), got %d\nUsage: %s", cmd.CommandPath(), n, len(args), cmd.UseLine())}
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return &flagError{cmd: subcommand(cmd), err: fmt.Errorf("%q requires at least %d argument(s)\nUsage: %s", cmd.CommandPath(), n, cmd.UseLine())}
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &flagError{cmd: subcommand(cmd), err: fmt.Errorf("%q accepts no arguments\nUsage: %s", cmd.CommandPath(), cmd.UseLine())}
	}
	return nil
}

// forEach runs f for each argument, printing each error and returning a
// failure status if any failed, as Docker's multi-argument commands do.
func forEach(g *globals, args []string, f func(string) error) error {
	failed := false
	for _, a := range args {
		if err := f(a); err != nil {
			fmt.Fprintln(g.err, err)
			failed = true
		}
	}
	if failed {
		return &StatusError{Status: 1}
	}
	return nil
}

// subcommand is cmd's path below "berth" ("cp", "container ls"), for
// "See 'berth … --help'".
func subcommand(cmd *cobra.Command) string {
	return strings.TrimSpace(strings.TrimPrefix(cmd.CommandPath(), "berth"))
}
