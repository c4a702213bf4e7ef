package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/berth/berth/internal/cluster/agent"
	"github.com/berth/berth/internal/cluster/agent/clusterdns"
	"github.com/berth/berth/internal/cluster/agent/metrics"
	"github.com/berth/berth/internal/cluster/agent/proxy"
	"github.com/berth/berth/internal/cluster/agent/streaming"
	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/internal/engine/client"
	"github.com/berth/berth/internal/errdefs"
)

// agentFlags registers the node flags shared by `agent` and `server`.
func agentFlags(fs *flag.FlagSet, o *agent.Options) (labels, taints *string) {
	fs.StringVar(&o.NodeName, "node-name", "", "node name (default: the hostname)")
	fs.StringVar(&o.Engine, "engine", client.DefaultHost, "berth engine socket the node runs pods on")
	fs.StringVar(&o.NodeIP, "node-ip", "", "node address reported to the cluster (default: the source address of the default route)")
	labels = fs.String("node-labels", "", "labels to add to the node: k=v,k2=v2")
	taints = fs.String("register-with-taints", "", "taints the node registers with: key=value:Effect,key:Effect")
	fs.StringVar(&o.CPUs, "cpus", "", "CPU capacity to report instead of the host's (e.g. 2, 1500m)")
	fs.StringVar(&o.Memory, "memory", "", "memory capacity to report instead of the host's (e.g. 4Gi)")
	fs.IntVar(&o.MaxPods, "max-pods", 110, "most pods this node runs")
	fs.DurationVar(&o.LeaseDuration, "lease-duration", 4*time.Second, "node lease duration (renewed every quarter of it)")
	fs.IntVar(&o.StreamingPort, "streaming-port", 10250, "port of the node's logs/exec/port-forward endpoint")
	fs.StringVar(&o.ClusterDNS, "cluster-dns", clusterdns.DefaultAddress, "address of the node's cluster DNS (port 53, on the dummy link berth-dns) given to ClusterFirst pods; \"\" serves none (pods get the node's resolv.conf)")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", clusterdns.DefaultDomain, "the cluster's DNS domain")
	fs.BoolVar(&o.RemoveClusterDNSLink, "cluster-dns-remove-link", false, "remove the berth-dns link when the agent stops (kept by default, so pods' resolv.conf stay valid across restarts)")
	fs.StringVar(&o.VolumesDir, "volumes-dir", kube.DefaultVolumesDir, "where the node keeps its local-path persistent volumes (one directory per volume)")
	fs.StringVar(&o.ProxyMode, "proxy-mode", string(proxy.ModeNFTables), "how the node proxies Services: nftables (the "+proxy.DefaultTable+" table) or none")
	return labels, taints
}

// parseNodeFlags completes o from the --node-labels and
// --register-with-taints strings.
func parseNodeFlags(o *agent.Options, labels, taints string) error {
	if _, err := proxy.ParseMode(o.ProxyMode); err != nil {
		return err
	}
	if labels != "" {
		o.Labels = map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return fmt.Errorf("--node-labels %q: want key=value[,key=value…]: %w", labels, errdefs.ErrInvalidArgument)
			}
			o.Labels[k] = v
		}
	}
	if taints != "" {
		for _, t := range strings.Split(taints, ",") {
			kv, effect, ok := strings.Cut(strings.TrimSpace(t), ":")
			k, v, _ := strings.Cut(kv, "=")
			e := corev1.TaintEffect(effect)
			if !ok || k == "" || (e != corev1.TaintEffectNoSchedule && e != corev1.TaintEffectPreferNoSchedule && e != corev1.TaintEffectNoExecute) {
				return fmt.Errorf("--register-with-taints %q: want key[=value]:NoSchedule|PreferNoSchedule|NoExecute[,…]: %w", taints, errdefs.ErrInvalidArgument)
			}
			o.Taints = append(o.Taints, corev1.Taint{Key: k, Value: v, Effect: e})
		}
	}
	return nil
}

func runAgent(args []string) error {
	fs := newFlagSet("agent", "agent --server https://HOST:PORT --token TOKEN [flags]", "Join this host to a cluster as a node: register it, renew its lease and run the pods\nbound to it on the local berth engine.")
	var o agent.Options
	fs.StringVar(&o.Server, "server", "", "API server to join: https://HOST:PORT")
	fs.StringVar(&o.Token, "token", "", "join token (from 'berth token' on a server); not needed once joined")
	fs.StringVar(&o.DataDir, "data-dir", "/var/lib/berth/agent", "where the node keeps its credential")
	labels, taints := agentFlags(fs, &o)
	debug := fs.Bool("debug", false, "debug logging")
	cleanupProxy := fs.Bool("cleanup-proxy", false, "remove the service proxy's nftables table ("+proxy.DefaultTable+") and exit; the agent leaves it when it stops so that Services keep working while it restarts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only): %w", fs.Arg(0), errdefs.ErrInvalidArgument)
	}
	if *cleanupProxy {
		if err := proxy.Delete(proxy.DefaultTable); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "removed table ip %s\n", proxy.DefaultTable)
		return nil
	}
	if err := parseNodeFlags(&o, *labels, *taints); err != nil {
		return err
	}
	if o.Server == "" {
		return fmt.Errorf("--server is required: the https://HOST:PORT of a berth server: %w", errdefs.ErrInvalidArgument)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	o.Streaming = serveStreaming
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return agent.Run(ctx, o)
}

// ensureEngine makes sure a berth engine answers at host: if none does
// and host is a unix socket, it starts `berth daemon` (the berth binary
// next to this one) as a child and returns a function stopping it.
func ensureEngine(ctx context.Context, host string, log *slog.Logger) (func(), error) {
	c, err := client.New(host)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = c.Ping(pctx)
	cancel()
	if err == nil {
		return func() {}, nil
	}
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return nil, fmt.Errorf("--engine %s does not answer (%v); start its daemon: %w", host, err, errdefs.ErrUnavailable)
	}
	exe, _ := os.Executable()
	bin := filepath.Join(filepath.Dir(exe), "berth")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no engine answers at %s and %s is not installed to start one: %w", host, bin, errdefs.ErrUnavailable)
	}
	logPath := "/var/log/berth-daemon.log"
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "daemon", "--socket", sock)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s daemon: %w", bin, err)
	}
	log.Info("started the berth engine", "pid", cmd.Process.Pid, "socket", sock, "log", logPath)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); lf.Close() }()
	stopFn := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	for i := 0; i < 300; i++ {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err = c.Ping(pctx)
		cancel()
		if err == nil {
			return stopFn, nil
		}
		select {
		case e := <-exited:
			return nil, fmt.Errorf("berth daemon exited at start (%v); see %s", e, logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
	stopFn()
	return nil, errors.New("berth daemon did not answer within 30s; see " + logPath)
}

// serveStreaming serves the node's logs/exec/attach/port-forward endpoint
// (the kubelet's port) that the API server proxies kubectl to.
func serveStreaming(ctx context.Context, s agent.StreamingSetup) error {
	if s.CertFile == "" || s.KeyFile == "" || s.CAFile == "" {
		return fmt.Errorf("no serving certificate for the streaming endpoint (join again with a fresh --data-dir): %w", errdefs.ErrInvalidArgument)
	}
	eng, err := client.New(s.Engine)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(s.Port)))
	if err != nil {
		return fmt.Errorf("--streaming-port %d: %w", s.Port, err)
	}
	s.Logger.Info("streaming endpoint listening", "addr", ln.Addr().String())
	// Resource metrics (kubectl top, autoscaling) are sampled here, next
	// to the endpoint that serves them.
	col := metrics.New(metrics.Options{NodeName: s.NodeName, Source: metrics.EngineSource(eng), Logger: s.Logger.With("component", "metrics")})
	go col.Run(ctx)
	return streaming.New(streaming.Options{Engine: eng, CertFile: s.CertFile, KeyFile: s.KeyFile, CAFile: s.CAFile, Logger: s.Logger, Metrics: col}).Serve(ctx, ln)
}
