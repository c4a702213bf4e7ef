// Package controlplane is the composition root of `berth server`: it
// prepares the data directory (CA, certificates, tokens, kubeconfig),
// starts or joins etcd, and serves the API over HTTPS until stopped. It also
// implements the HA join protocol (server side and client side).
package controlplane

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/internal/cluster/apiserver"
	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/cluster/store"
	"github.com/berth/berth/internal/errdefs"
	"k8s.io/client-go/rest"
)

// Options are the flags of `berth server`.
type Options struct {
	DataDir          string
	BindAddress      string
	Port             int
	AdvertiseAddress string
	EtcdClientPort   int
	EtcdPeerPort     int
	EtcdEndpoints    []string
	// EtcdCAFile, EtcdCertFile and EtcdKeyFile secure the connection to
	// external etcd (optional).
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	ClusterInit                           bool
	Join                                  string // https://FIRST:PORT
	Token                                 string
	Name                                  string // etcd member name
	ServiceCIDR                           string // range of service cluster IPs
	Logger                                *slog.Logger
	// Node lifecycle timing (see docs/controllers.md): a node is Unknown
	// after NodeMonitorGracePeriod without a Lease renewal (or
	// NodeStartupGracePeriod if it has no Lease), checked every
	// NodeMonitorPeriod. Zero: the nodelifecycle package defaults.
	NodeMonitorGracePeriod, NodeStartupGracePeriod, NodeMonitorPeriod time.Duration
	// HPASyncPeriod is how often each HorizontalPodAutoscaler is evaluated
	// (0: podautoscaler.DefaultSyncPeriod, 15s).
	HPASyncPeriod time.Duration
	// DefaultNotReadyTolerationSeconds and DefaultUnreachableTolerationSeconds
	// bound the tolerations new pods get for the not-ready and unreachable
	// NoExecute taints. nil: DefaultNotReadyTolerationSeconds and
	// DefaultUnreachableTolerationSeconds.
	DefaultNotReadyTolerationSeconds, DefaultUnreachableTolerationSeconds *int64
	// Ready, if set, is closed once the API serves.
	Ready chan<- struct{}
	// NodeAgent, if set, runs this host's node agent (all-in-one) once the
	// API serves, with node credentials for AgentNode issued here. Run
	// waits for it to return after ctx ends.
	NodeAgent func(ctx context.Context, creds NodeCredentials) error
	AgentNode string
	// AgentAddresses are the IPs/names the agent's serving certificate
	// names (its node IP).
	AgentAddresses []string
}

func (o *Options) defaults() error {
	if o.DataDir == "" {
		return fmt.Errorf("--data-dir is required: %w", errdefs.ErrInvalidArgument)
	}
	if o.BindAddress == "" {
		o.BindAddress = "0.0.0.0"
	}
	if net.ParseIP(o.BindAddress) == nil {
		return fmt.Errorf("--bind-address %q: want an IP address: %w", o.BindAddress, errdefs.ErrInvalidArgument)
	}
	if o.Port <= 0 || o.Port > 65535 {
		return fmt.Errorf("--port %d: want 1-65535: %w", o.Port, errdefs.ErrInvalidArgument)
	}
	if o.EtcdClientPort <= 0 || o.EtcdClientPort > 65535 || o.EtcdPeerPort <= 0 || o.EtcdPeerPort > 65535 {
		return fmt.Errorf("--etcd-client-port/--etcd-peer-port %d/%d: want 1-65535: %w", o.EtcdClientPort, o.EtcdPeerPort, errdefs.ErrInvalidArgument)
	}
	if o.AdvertiseAddress == "" {
		o.AdvertiseAddress = o.BindAddress
		if ip := net.ParseIP(o.BindAddress); ip.IsUnspecified() {
			o.AdvertiseAddress = "127.0.0.1"
		}
	}
	if (o.Join == "") != (o.Token == "") {
		return fmt.Errorf("--join and --token go together: %w", errdefs.ErrInvalidArgument)
	}
	if o.Join != "" && !strings.HasPrefix(o.Join, "https://") {
		return fmt.Errorf("--join %q: want https://HOST:PORT: %w", o.Join, errdefs.ErrInvalidArgument)
	}
	if o.Name == "" {
		h, _ := os.Hostname()
		o.Name = h + "-" + strconv.Itoa(o.Port)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DefaultNotReadyTolerationSeconds == nil {
		v := int64(DefaultNotReadyTolerationSeconds)
		o.DefaultNotReadyTolerationSeconds = &v
	}
	if o.DefaultUnreachableTolerationSeconds == nil {
		v := int64(DefaultUnreachableTolerationSeconds)
		o.DefaultUnreachableTolerationSeconds = &v
	}
	if *o.DefaultNotReadyTolerationSeconds < 0 || *o.DefaultUnreachableTolerationSeconds < 0 {
		return fmt.Errorf("--default-not-ready-toleration-seconds/--default-unreachable-toleration-seconds %d/%d: want 0 or more: %w", *o.DefaultNotReadyTolerationSeconds, *o.DefaultUnreachableTolerationSeconds, errdefs.ErrInvalidArgument)
	}
	if o.NodeMonitorGracePeriod < 0 || o.NodeStartupGracePeriod < 0 || o.NodeMonitorPeriod < 0 {
		return fmt.Errorf("--node-monitor-grace-period/--node-startup-grace-period/--node-monitor-period: want positive durations: %w", errdefs.ErrInvalidArgument)
	}
	if o.HPASyncPeriod < 0 {
		return fmt.Errorf("--horizontal-pod-autoscaler-sync-period %v: want a positive duration: %w", o.HPASyncPeriod, errdefs.ErrInvalidArgument)
	}
	if o.NodeMonitorGracePeriod > 0 && o.NodeMonitorGracePeriod < 2*time.Second {
		return fmt.Errorf("--node-monitor-grace-period %v: want at least 2s (agents renew their Lease every second): %w", o.NodeMonitorGracePeriod, errdefs.ErrInvalidArgument)
	}
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = apiserver.DefaultServiceCIDR
	}
	if p, err := netip.ParsePrefix(o.ServiceCIDR); err != nil || !p.Addr().Is4() || p.Bits() > 28 || p.Bits() < 12 {
		return fmt.Errorf("--service-cidr %q: want an IPv4 prefix between /12 and /28: %w", o.ServiceCIDR, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Default toleration of new pods for the node.kubernetes.io/not-ready and
// unreachable NoExecute taints (Kubernetes: 300 s each). Unreachable is
// short so that a lost node's pods run elsewhere within 10 s; not-ready (an
// agent that reports its node unwell, e.g. while it restarts) is longer.
const (
	DefaultNotReadyTolerationSeconds    = 10
	DefaultUnreachableTolerationSeconds = 2
)

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// caFingerprint is the first 16 hex digits of the CA certificate's SHA-256;
// join tokens start with it so joiners can pin the CA.
func caFingerprint(caPEM []byte) string {
	s := sha256.Sum256(caPEM)
	return hex.EncodeToString(s[:])[:16]
}

// Run serves the control plane until ctx ends.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	dir := pki.Dir{Root: o.DataDir}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	etcdDir := dir.Path("etcd")
	_, statErr := os.Stat(etcdDir + "/member")
	fresh := errors.Is(statErr, os.ErrNotExist)
	peerURL := "https://" + hostPort(o.AdvertiseAddress, o.EtcdPeerPort)
	var initialCluster string
	if o.Join != "" && fresh && len(o.EtcdEndpoints) == 0 {
		resp, err := joinCluster(ctx, o.Join, o.Token, o.Name, peerURL)
		if err != nil {
			return err
		}
		ca, err := pki.ParseCA([]byte(resp.CACert), []byte(resp.CAKey))
		if err != nil {
			return err
		}
		if err := dir.SaveCA(ca); err != nil {
			return err
		}
		initialCluster = resp.InitialCluster
		if err := dir.AddTokenHash(pki.TokenRecord{Hash: pki.HashToken(o.Token), Role: pki.RoleJoin, Name: "join", Created: time.Now().UTC()}); err != nil {
			return err
		}
		if err := writeSecret(dir.Path("token"), o.Token+"\n"); err != nil {
			return err
		}
	}
	ca, err := dir.EnsureCA()
	if err != nil {
		return err
	}
	serverCert, serverKey, err := dir.EnsureCert(ca, "server", pki.ServingRequest("berth-server", []string{o.AdvertiseAddress, o.BindAddress}))
	if err != nil {
		return err
	}
	peerCert, peerKey, err := dir.EnsureCert(ca, "peer", pki.ServingRequest("berth-etcd-peer", []string{o.AdvertiseAddress}))
	if err != nil {
		return err
	}
	adminCert, adminKey, err := dir.EnsureCert(ca, "admin", pki.CertRequest{CommonName: "admin", Organization: []string{"system:masters"}, Client: true})
	if err != nil {
		return err
	}
	// The API server's identity towards node agents (logs, exec, attach,
	// port-forward); agents accept only this common name.
	kubeletCert, kubeletKey, err := dir.EnsureCert(ca, "apiserver-kubelet-client", pki.CertRequest{CommonName: pki.KubeletClientCN, Organization: []string{pki.KubeletClientOrg}, Client: true})
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir.Path("token")); errors.Is(err, os.ErrNotExist) {
		tok := "K" + caFingerprint(ca.CertPEM) + "." + strings.TrimPrefix(pki.NewToken(), "berth-")
		if err := dir.AddTokenHash(pki.TokenRecord{Hash: pki.HashToken(tok), Role: pki.RoleJoin, Name: "join", Created: time.Now().UTC()}); err != nil {
			return err
		}
		if err := writeSecret(dir.Path("token"), tok+"\n"); err != nil {
			return err
		}
	}
	certPEM, _ := os.ReadFile(adminCert)
	keyPEM, _ := os.ReadFile(adminKey)
	kcHost := o.AdvertiseAddress
	if ip := net.ParseIP(kcHost); ip != nil && ip.IsUnspecified() {
		kcHost = "127.0.0.1"
	}
	if err := writeSecret(dir.Path("kubeconfig"), string(pki.Kubeconfig("https://"+hostPort(kcHost, o.Port), ca.CertPEM, certPEM, keyPEM, ""))); err != nil {
		return err
	}

	cfg := store.Config{
		Endpoints: o.EtcdEndpoints, DataDir: etcdDir, Name: o.Name,
		ClientURL: "https://" + hostPort("127.0.0.1", o.EtcdClientPort), PeerURL: peerURL,
		InitialCluster: initialCluster, Existing: initialCluster != "",
		CertFile: peerCert, KeyFile: peerKey, CAFile: dir.Path("pki", "ca.crt"),
	}
	if len(o.EtcdEndpoints) > 0 {
		cfg.CertFile, cfg.KeyFile, cfg.CAFile = o.EtcdCertFile, o.EtcdKeyFile, o.EtcdCAFile
	}
	st, err := store.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	api := apiserver.New(apiserver.Config{
		Client:                              st.Client,
		Auth:                                &apiserver.CredentialAuth{Tokens: pki.NewTokenStore(dir)},
		Logger:                              o.Logger,
		ServiceCIDR:                         o.ServiceCIDR,
		DefaultNotReadyTolerationSeconds:    o.DefaultNotReadyTolerationSeconds,
		DefaultUnreachableTolerationSeconds: o.DefaultUnreachableTolerationSeconds,
		// Published in default/kubernetes only when pods can reach it.
		AdvertiseAddress: publishable(o.AdvertiseAddress),
		AdvertisePort:    o.Port,
		Extra:            extraHandler(joinHandler(st, ca), nodeJoinHandler(ca)),
		// Proxying to node agents' streaming servers.
		KubeletClientCertFile: kubeletCert, KubeletClientKeyFile: kubeletKey, KubeletCAFile: dir.Path("pki", "ca.crt"),
	})
	bctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	err = st.WaitWritable(bctx) // a joining member serves once promoted
	if err == nil {
		err = api.Bootstrap(bctx)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("bootstrap namespaces: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go api.Run(runCtx)

	cert, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ln, err := net.Listen("tcp", hostPort(o.BindAddress, o.Port))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", hostPort(o.BindAddress, o.Port), err)
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	o.Logger.Info("berth server ready", "api", "https://"+hostPort(o.BindAddress, o.Port), "kubeconfig", dir.Path("kubeconfig"), "etcd-member", o.Name, "embedded-etcd", st.Embedded())
	loopHost := o.BindAddress
	if ip := net.ParseIP(loopHost); ip == nil || ip.IsUnspecified() {
		loopHost = "127.0.0.1"
	}
	loopback := kube.Config("https://"+hostPort(loopHost, o.Port), ca.CertPEM, certPEM, keyPEM, "")
	if comps := components(o); len(comps) > 0 {
		go func() {
			if err := kube.RunLeader(runCtx, loopback, kube.LeaderOptions{Identity: o.Name}, comps, o.Logger); err != nil {
				o.Logger.Error("leader election", "err", err)
			}
		}()
	}
	agentDone := make(chan struct{})
	if o.NodeAgent != nil {
		nodeCert, nodeKey, err := dir.EnsureCert(ca, "node-"+o.AgentNode, pki.CertRequest{CommonName: "system:node:" + o.AgentNode, Organization: []string{"system:nodes"}, Client: true})
		if err != nil {
			return err
		}
		nc, _ := os.ReadFile(nodeCert)
		nk, _ := os.ReadFile(nodeKey)
		sreq := pki.ServingRequest("system:node:"+o.AgentNode, append([]string{o.AgentNode}, o.AgentAddresses...))
		sreq.Organization = []string{"system:nodes"}
		servingCert, servingKey, err := dir.EnsureCert(ca, "node-"+o.AgentNode+"-serving", sreq)
		if err != nil {
			return err
		}
		creds := NodeCredentials{
			Config: kube.Config("https://"+hostPort(loopHost, o.Port), ca.CertPEM, nc, nk, ""),
			CAFile: dir.Path("pki", "ca.crt"), ServingCert: servingCert, ServingKey: servingKey,
		}
		go func() {
			defer close(agentDone)
			if err := o.NodeAgent(runCtx, creds); err != nil && runCtx.Err() == nil {
				o.Logger.Error("node agent stopped", "err", err)
			}
		}()
	} else {
		close(agentDone)
	}
	defer func() { stop(); <-agentDone }()
	if o.Ready != nil {
		close(o.Ready)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	case err := <-st.Err():
		return fmt.Errorf("etcd: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// NodeCredentials are what the all-in-one node agent runs with: a client
// config (CN=system:node:NAME) and the files of the cluster CA and of its
// serving certificate.
type NodeCredentials struct {
	Config                          *rest.Config
	CAFile, ServingCert, ServingKey string
}

func writeSecret(path, data string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// publishable returns addr if it is an IP other than unspecified, else "".
func publishable(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.IsUnspecified() {
		return ""
	}
	return addr
}
