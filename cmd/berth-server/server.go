package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/berth/berth/internal/cluster/agent"
	"github.com/berth/berth/internal/cluster/controller/nodelifecycle"
	"github.com/berth/berth/internal/cluster/controller/podautoscaler"
	"github.com/berth/berth/internal/cluster/controlplane"
)

func runServer(args []string) error {
	fs := newFlagSet("server", "server [flags]", "Run the control plane (embedded etcd, the Kubernetes API over HTTPS, the scheduler and\nthe controllers) and, unless --disable-agent, a node agent for this host.")
	var o controlplane.Options
	fs.StringVar(&o.DataDir, "data-dir", defaultDataDir, "data directory (CA, credentials, etcd data)")
	fs.StringVar(&o.BindAddress, "bind-address", "0.0.0.0", "address the HTTPS API listens on")
	fs.IntVar(&o.Port, "port", 6443, "HTTPS API port")
	fs.StringVar(&o.AdvertiseAddress, "advertise-address", "", "address other servers and nodes reach this one at (default: bind address, or 127.0.0.1)")
	fs.IntVar(&o.EtcdClientPort, "etcd-client-port", 2379, "embedded etcd client port (loopback)")
	fs.IntVar(&o.EtcdPeerPort, "etcd-peer-port", 2380, "embedded etcd peer port (advertise address, mutual TLS)")
	endpoints := fs.String("etcd-endpoints", "", "comma-separated external etcd endpoints (instead of the embedded member)")
	fs.StringVar(&o.EtcdCAFile, "etcd-cafile", "", "CA bundle of the external etcd (with --etcd-endpoints)")
	fs.StringVar(&o.EtcdCertFile, "etcd-certfile", "", "client certificate for the external etcd")
	fs.StringVar(&o.EtcdKeyFile, "etcd-keyfile", "", "client key for the external etcd")
	fs.BoolVar(&o.ClusterInit, "cluster-init", false, "first server of a high-availability cluster")
	fs.StringVar(&o.Join, "join", "", "join the HA cluster of the server at https://HOST:PORT")
	fs.StringVar(&o.Token, "token", "", "join token (from `berth token` on the first server)")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", "10.43.0.0/16", "range of service cluster IPs")
	fs.StringVar(&o.Name, "name", "", "etcd member name (default hostname-port)")
	fs.DurationVar(&o.NodeMonitorGracePeriod, "node-monitor-grace-period", nodelifecycle.DefaultGracePeriod, "a node that has not renewed its Lease for this long goes Ready=Unknown and gets the unreachable taints (at least 2s)")
	fs.DurationVar(&o.NodeStartupGracePeriod, "node-startup-grace-period", nodelifecycle.DefaultStartupGracePeriod, "grace for a node that has no Lease yet")
	fs.DurationVar(&o.NodeMonitorPeriod, "node-monitor-period", nodelifecycle.DefaultMonitorPeriod, "how often node health is checked")
	fs.DurationVar(&o.HPASyncPeriod, "horizontal-pod-autoscaler-sync-period", podautoscaler.DefaultSyncPeriod, "how often each HorizontalPodAutoscaler is evaluated")
	notReadySecs := fs.Int64("default-not-ready-toleration-seconds", controlplane.DefaultNotReadyTolerationSeconds, "tolerationSeconds of the node.kubernetes.io/not-ready:NoExecute toleration added to new pods that have none")
	unreachableSecs := fs.Int64("default-unreachable-toleration-seconds", controlplane.DefaultUnreachableTolerationSeconds, "tolerationSeconds of the node.kubernetes.io/unreachable:NoExecute toleration added to new pods that have none")
	disableAgent := fs.Bool("disable-agent", false, "run a pure control plane: no node agent and no engine on this host")
	var ao agent.Options
	fs.StringVar(&ao.DataDir, "agent-data-dir", "/var/lib/berth/agent", "data directory of this host's node agent")
	labels, taints := agentFlags(fs, &ao)
	debug := fs.Bool("debug", false, "log every request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := parseNodeFlags(&ao, *labels, *taints); err != nil {
		return err
	}
	o.DefaultNotReadyTolerationSeconds, o.DefaultUnreachableTolerationSeconds = notReadySecs, unreachableSecs
	if *endpoints != "" {
		o.EtcdEndpoints = strings.Split(*endpoints, ",")
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if !*disableAgent {
		if ao.NodeName == "" {
			h, err := os.Hostname()
			if err != nil {
				return fmt.Errorf("--node-name: the hostname is unknown: %w", err)
			}
			ao.NodeName = strings.ToLower(h)
		}
		ao.Logger = o.Logger.With("component", "agent")
		ao.Streaming = serveStreaming
		o.AgentNode = ao.NodeName
		if ao.NodeIP != "" {
			o.AgentAddresses = []string{ao.NodeIP}
		} else {
			o.AgentAddresses = []string{agent.DefaultNodeIP()}
		}
		o.NodeAgent = func(ctx context.Context, creds controlplane.NodeCredentials) error {
			stopEngine, err := ensureEngine(ctx, ao.Engine, ao.Logger)
			if err != nil {
				return err
			}
			defer stopEngine()
			ao.Config, ao.CAFile, ao.ServingCertFile, ao.ServingKeyFile = creds.Config, creds.CAFile, creds.ServingCert, creds.ServingKey
			return agent.Run(ctx, ao)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return controlplane.Run(ctx, o)
}
