// Package daemon is the engine's composition root: it wires the image store,
// snapshots, the OCI runtime driver and the shims into one container
// lifecycle, recovers running containers after a restart, and serves the
// engine API (the Docker Engine API shape) on a unix socket.
package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/build"
	"github.com/berth/berth/internal/engine/cgroups"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/engine/distribution"
	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/engine/network"
	"github.com/berth/berth/internal/engine/runtime"
	"github.com/berth/berth/internal/engine/snapshot"
	"github.com/berth/berth/internal/engine/volume"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/registry"
)

// Config is the daemon's configuration: command-line flags, optionally
// loaded first from a JSON file (see LoadConfigFile).
type Config struct {
	Root     string `json:"root"`      // persistent state, default /var/lib/berth
	ExecRoot string `json:"exec-root"` // bundles and shim sockets, default /run/berth
	Socket   string `json:"socket"`    // API socket, default /run/berth/berth.sock
	// DefaultRuntime names the OCI runtime used when a container names none.
	DefaultRuntime string `json:"default-runtime"`
	// Runtimes maps runtime names to binaries; crun and runc are always
	// known and found on PATH.
	Runtimes map[string]RuntimeConfig `json:"runtimes"`
	// LogOpts are the default log options: max-size (e.g. "10m") and max-file.
	LogOpts map[string]string `json:"log-opts"`
	// ShimPath is the berth-shim binary; default: next to this executable.
	ShimPath string `json:"shim"`
	// PausePath is the berth-pause binary, the process of the built-in
	// pod sandbox image; default: next to this executable.
	PausePath string `json:"pause"`
	// CgroupParent is the cgroup under which containers are created.
	CgroupParent string `json:"cgroup-parent"`
	// Bridge and BridgeSubnet are the default network's bridge and
	// subnet (default berth0, 172.30.0.0/16). Two daemons on one host need
	// different ones.
	Bridge       string `json:"bridge"`
	BridgeSubnet string `json:"bridge-subnet"`
	// Cleanup removes the daemon's bridges and packet rules when it stops.
	Cleanup bool `json:"cleanup"`
	// RegistryAddr, if set, is a TCP address on which the daemon also
	// serves an OCI registry (internal/registry); RegistryRoot holds its
	// content (default <root>/registry).
	RegistryAddr string `json:"registry-addr"`
	RegistryRoot string `json:"registry-root"`
	// TCPAddr, if set, is a TCP address on which the daemon also serves
	// its API, over TLS with client certificates only (TLSCACert verifies
	// them; TLSCert and TLSKey are the server's), as Docker's -H tcp://…
	// with --tlsverify.
	TCPAddr   string `json:"tcp-addr"`
	TLSCACert string `json:"tlscacert"`
	TLSCert   string `json:"tlscert"`
	TLSKey    string `json:"tlskey"`
	// InsecureRegistries may be reached over plain HTTP (or HTTPS without
	// certificate checks): host[:port] or CIDR, as Docker's flag.
	InsecureRegistries []string `json:"insecure-registries"`
}

// RuntimeConfig names one OCI runtime binary.
type RuntimeConfig struct {
	Path string `json:"path"`
}

// LoadConfigFile reads a daemon.json into cfg. A missing file is not an error.
func LoadConfigFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err = dec.Decode(cfg)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			// As dockerd does, an option berth does not know is an error,
			// not silently ignored: a typo would otherwise go unnoticed.
			return fmt.Errorf("daemon config %s: unknown option %s; berth daemon knows %s: %w", path, name, strings.Join(configKeys(), ", "), errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("daemon config %s: %v (expected a JSON object such as {\"default-runtime\": \"crun\"}): %w", path, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// configKeys lists the options of the daemon config file.
func configKeys() []string {
	var keys []string
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

func (c *Config) setDefaults() error {
	if c.Root == "" {
		c.Root = "/var/lib/berth"
	}
	if c.ExecRoot == "" {
		c.ExecRoot = "/run/berth"
	}
	if c.Socket == "" {
		c.Socket = filepath.Join(c.ExecRoot, "berth.sock")
	}
	if c.DefaultRuntime == "" {
		c.DefaultRuntime = "crun"
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "berth"
	}
	if c.RegistryRoot == "" {
		c.RegistryRoot = filepath.Join(c.Root, "registry")
	}
	if c.ShimPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		c.ShimPath = filepath.Join(filepath.Dir(exe), "berth-shim")
	}
	if c.PausePath == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		c.PausePath = filepath.Join(filepath.Dir(exe), "berth-pause")
	}
	if _, err := os.Stat(c.ShimPath); err != nil {
		return fmt.Errorf("shim binary %s: %v (build it with `make build`, or pass --shim): %w", c.ShimPath, err, errdefs.ErrUnavailable)
	}
	for k, v := range map[string]string{"max-size": "10m", "max-file": "3"} {
		if c.LogOpts == nil {
			c.LogOpts = map[string]string{}
		}
		if _, ok := c.LogOpts[k]; !ok {
			c.LogOpts[k] = v
		}
	}
	if _, _, err := parseLogOpts(c.LogOpts, 0, 0); err != nil {
		return fmt.Errorf("daemon log-opts: %w", err)
	}
	return nil
}

// Daemon is one running engine.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	images   *image.Store
	snaps    *snapshot.Store
	ctrs     *container.Store
	volumes  *volume.Store
	net      *network.Manager
	cgroupV2 bool
	started  time.Time

	// tasks are the live shims of running containers, by container ID.
	tasksMu sync.Mutex
	// pauseMu serializes making the built-in pause image.
	pauseMu sync.Mutex
	tasks   map[string]*task
	lives   map[string]*live
	execs   *execStore
	seccomp *runtime.SeccompCache
	events  *eventBus
	dist    *distribution.Client

	registry http.Handler // the OCI registry, nil unless cfg.RegistryAddr is set
	builder  *build.Builder

	ctx    context.Context // lives as long as the daemon
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// bg counts background clean-ups (the writable layers of auto-removed
	// containers); Close waits for them.
	bg sync.WaitGroup
}

// New prepares the host, opens the stores and recovers the containers that
// were running when the previous daemon stopped.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("berth daemon must run as root (it creates namespaces, mounts and cgroups): %w", errdefs.ErrForbidden)
	}
	// A daemon started with `ip netns exec` (one engine per network
	// namespace, as a multi-node test runs them) sees a fresh /sys with no
	// cgroups mounted.
	if restored, err := cgroups.RestoreMounts(); err != nil {
		return nil, fmt.Errorf("preparing cgroups: %w", err)
	} else if restored {
		log.Info("mounted the host's cgroup hierarchies in this mount namespace (its /sys hid them, as `ip netns exec` does)")
	}
	if err := cgroups.PrepareHost(); err != nil {
		return nil, fmt.Errorf("preparing cgroups: %w", err)
	}
	for _, d := range []string{cfg.Root, cfg.ExecRoot} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	images, err := image.New(filepath.Join(cfg.Root, "image"))
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	snaps := images.Snapshots()
	dist, err := distribution.New(images, distribution.Config{InsecureRegistries: cfg.InsecureRegistries, UserAgent: "berth/" + BuildVersion})
	if err != nil {
		return nil, err
	}
	ctrs, warns, err := container.NewStore(cfg.Root, filepath.Join(cfg.ExecRoot, "c"))
	if err != nil {
		return nil, fmt.Errorf("container store: %w", err)
	}
	for _, w := range warns {
		log.Warn("skipping container record", "err", w)
	}
	volumes, vwarns, err := volume.New(filepath.Join(cfg.Root, "volumes"))
	if err != nil {
		return nil, fmt.Errorf("volume store: %w", err)
	}
	for _, w := range vwarns {
		log.Warn("skipping volume", "err", w)
	}
	nm, err := network.New(network.Config{StateDir: filepath.Join(cfg.Root, "network"), BridgeName: cfg.Bridge,
		DefaultSubnet: cfg.BridgeSubnet, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("networking: %w", err)
	}
	var reg http.Handler
	if cfg.RegistryAddr != "" {
		if reg, err = registry.New(registry.Options{Root: cfg.RegistryRoot, Log: log}); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{cfg: cfg, registry: reg, log: log, images: images, snaps: snaps, ctrs: ctrs, volumes: volumes, net: nm,
		cgroupV2: cgroups.Detect(), started: time.Now(), tasks: map[string]*task{},
		execs: newExecStore(), seccomp: runtime.NewSeccompCache(filepath.Join(cfg.Root, "seccomp")), events: newEventBus(), dist: dist, ctx: ctx, cancel: cancel}
	d.recover()
	d.cleanupBuilds()
	d.sweepSnapshots()
	if d.builder, err = build.New(filepath.Join(cfg.Root, "build"), images, &buildExecutor{d}, log); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	d.builder.SetPuller(buildPuller{d})
	if err := nm.Recover(d.isRunning); err != nil {
		log.Warn("recovering networks", "err", err)
	}
	return d, nil
}

// runtimeFor returns the OCI runtime driver named name ("" = default).
func (d *Daemon) runtimeFor(name string) (*runtime.Runtime, error) {
	if name == "" {
		name = d.cfg.DefaultRuntime
	}
	path := ""
	if rc, ok := d.cfg.Runtimes[name]; ok {
		path = rc.Path
	} else if name == "crun" || name == "runc" {
		p, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("runtime %q: binary not found on PATH (install it: apt-get install %s): %w", name, name, errdefs.ErrInvalidArgument)
		}
		path = p
	} else {
		return nil, fmt.Errorf("unknown runtime %q (known: crun, runc, or one configured under \"runtimes\" in daemon.json): %w", name, errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("runtime %q: binary %s not installed (install it or fix daemon.json): %w", name, path, errdefs.ErrInvalidArgument)
	}
	return &runtime.Runtime{Name: name, Path: path, Root: filepath.Join(d.cfg.ExecRoot, "runtime", name)}, nil
}

// Serve listens on the configured socket and serves the API until ctx ends.
func (d *Daemon) Serve(ctx context.Context) error {
	l, err := listenUnix(d.cfg.Socket)
	if err != nil {
		d.Close()
		return err
	}
	srv := &http.Server{Handler: d.router(), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(l) }()
	if d.cfg.TCPAddr != "" {
		tl, err := d.listenTLS()
		if err != nil {
			l.Close()
			d.Close()
			return err
		}
		go func() { errc <- srv.Serve(tl) }()
		d.log.Info("berth daemon listening", "tcp", tl.Addr().String(), "tls", "client certificates required")
	}
	if d.registry != nil {
		go func() {
			err := registry.ListenAndServe(ctx, d.registry, registry.ServeOptions{Addr: d.cfg.RegistryAddr, Log: d.log}, func(a net.Addr) {
				d.log.Info("berth registry listening", "addr", a.String(), "root", d.cfg.RegistryRoot)
			})
			if err != nil {
				errc <- err
			}
		}()
	}
	d.log.Info("berth daemon listening", "socket", d.cfg.Socket, "root", d.cfg.Root)
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		d.Close()
		return nil
	case err := <-errc:
		d.Close()
		return err
	}
}

// Close stops the daemon's goroutines. Containers keep running: their
// shims hold them and the next daemon reattaches.
func (d *Daemon) Close() {
	d.cancel()
	d.wg.Wait()
	d.bg.Wait()
	if c, ok := d.registry.(io.Closer); ok {
		c.Close()
	}
	if err := d.net.Close(d.cfg.Cleanup); err != nil {
		d.log.Warn("closing networks", "err", err)
	}
}

// isRunning reports whether the container with id runs (for recovery).
func (d *Daemon) isRunning(id string) bool {
	c, err := d.ctrs.Get(id)
	if err != nil {
		return false
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return c.State.Running || c.State.Restarting
}

func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: another berth daemon is already listening there (stop it, or pass a different --socket and --root): %w", path, errdefs.ErrConflict)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// listenTLS listens on cfg.TCPAddr for the API over TLS, accepting only
// clients with a certificate signed by cfg.TLSCACert: the API is
// root-equivalent, so it is never served on TCP without that.
func (d *Daemon) listenTLS() (net.Listener, error) {
	c := d.cfg
	if c.TLSCACert == "" || c.TLSCert == "" || c.TLSKey == "" {
		return nil, fmt.Errorf("--tcp-addr %s: the API gives root on this host, so TCP needs TLS with client certificates: give --tlscacert (the CA that signs client certificates), --tlscert and --tlskey (the daemon's own): %w", c.TCPAddr, errdefs.ErrInvalidArgument)
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tlscert %s / --tlskey %s: %w", c.TLSCert, c.TLSKey, err)
	}
	caPEM, err := os.ReadFile(c.TLSCACert)
	if err != nil {
		return nil, fmt.Errorf("--tlscacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--tlscacert %s: no PEM certificate in it: %w", c.TLSCACert, errdefs.ErrInvalidArgument)
	}
	l, err := net.Listen("tcp", c.TCPAddr)
	if err != nil {
		return nil, fmt.Errorf("--tcp-addr %s: %w", c.TCPAddr, err)
	}
	return tls.NewListener(l, &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}), nil
}
