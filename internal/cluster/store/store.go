// Package store owns the control plane's etcd: it starts the embedded
// member (alone, as the first member of an HA cluster, or joining one) or
// connects to external endpoints, and hands out the client the API server
// uses. It knows nothing of Kubernetes objects.
package store

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"

	"github.com/berth/berth/internal/errdefs"
)

// Config describes the etcd to run or use.
type Config struct {
	// Endpoints, when set, selects external etcd; everything below is ignored
	// except the client TLS files.
	Endpoints []string
	// DataDir holds the member's data (embedded only).
	DataDir string
	// Name is the member name, unique in the cluster.
	Name string
	// ClientURL is where the member serves clients (loopback is enough:
	// the API server uses the in-process client). With https and
	// CertFile set, clients need a certificate signed by CAFile.
	ClientURL string
	// PeerURL is where the member listens for and advertises peer traffic.
	PeerURL string
	// InitialCluster is "name=peerURL,..."; empty means this member alone.
	InitialCluster string
	// Existing joins an existing cluster (after MemberAdd) instead of
	// bootstrapping a new one.
	Existing bool
	// CertFile, KeyFile and CAFile secure peer traffic (mutual TLS) and,
	// for external endpoints, the client connection. Optional.
	CertFile, KeyFile, CAFile string
	// LogFile receives etcd's own log; default DataDir/etcd.log.
	LogFile string
}

// Store is a running (or connected) etcd with a client.
type Store struct {
	Client *clientv3.Client
	etcd   *embed.Etcd
	once   sync.Once
}

// Embedded reports whether this store runs an in-process member.
func (s *Store) Embedded() bool { return s.etcd != nil }

// Open starts the embedded member or connects to external endpoints.
func Open(ctx context.Context, c Config) (*Store, error) {
	if len(c.Endpoints) > 0 {
		cc := clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second}
		if c.CAFile != "" {
			ti := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}
			tc, err := ti.ClientConfig()
			if err != nil {
				return nil, fmt.Errorf("etcd client TLS: %w", err)
			}
			cc.TLS = tc
		}
		cli, err := clientv3.New(cc)
		if err != nil {
			return nil, fmt.Errorf("etcd endpoints %v: %v: %w", c.Endpoints, err, errdefs.ErrUnavailable)
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := cli.Get(tctx, "/berth-probe"); err != nil {
			cli.Close()
			return nil, fmt.Errorf("etcd endpoints %v: %v: %w", c.Endpoints, err, errdefs.ErrUnavailable)
		}
		return &Store{Client: cli}, nil
	}
	if c.Name == "" {
		c.Name = "default"
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.DataDir
	cu, err := url.Parse(c.ClientURL)
	if err != nil || cu.Host == "" {
		return nil, fmt.Errorf("etcd client URL %q: want http://host:port: %w", c.ClientURL, errdefs.ErrInvalidArgument)
	}
	pu, err := url.Parse(c.PeerURL)
	if err != nil || pu.Host == "" {
		return nil, fmt.Errorf("etcd peer URL %q: want http(s)://host:port: %w", c.PeerURL, errdefs.ErrInvalidArgument)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	if c.InitialCluster != "" {
		cfg.InitialCluster = c.InitialCluster
	} else {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}
	if c.Existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.InitialClusterToken = "berth"
	if c.CertFile != "" {
		cfg.PeerTLSInfo = transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile, ClientCertAuth: true}
		if cu.Scheme == "https" {
			// The client port holds every secret: only holders of a
			// certificate from the cluster CA may use it.
			cfg.ClientTLSInfo = transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile, ClientCertAuth: true}
		}
	}
	// Keep about ten minutes of history: older resourceVersions get 410 Gone.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "10m"
	cfg.WatchProgressNotifyInterval = 5 * time.Second
	cfg.LogLevel = "warn"
	if c.LogFile == "" {
		c.LogFile = filepath.Join(c.DataDir, "etcd.log")
	}
	if err := os.MkdirAll(filepath.Dir(c.LogFile), 0o700); err != nil {
		return nil, err
	}
	cfg.LogOutputs = []string{c.LogFile}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd (data %s, peer %s): %w", c.DataDir, c.PeerURL, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcd member %s: not ready after 60s (is the cluster quorum reachable?): %w", c.Name, errdefs.ErrUnavailable)
	}
	return &Store{Client: v3client.New(e.Server), etcd: e}, nil
}

// Err reports fatal errors of the embedded member.
func (s *Store) Err() <-chan error {
	if s.etcd == nil {
		return nil
	}
	return s.etcd.Err()
}

// Close stops the client and the embedded member (once).
func (s *Store) Close() {
	s.once.Do(func() {
		if s.Client != nil {
			s.Client.Close()
		}
		if s.etcd != nil {
			s.etcd.Close()
		}
	})
}

// MemberAdd adds a peer to the cluster and returns the initial-cluster
// string the new member must start with.
func (s *Store) MemberAdd(ctx context.Context, name, peerURL string) (string, error) {
	if _, err := url.Parse(peerURL); err != nil || name == "" {
		return "", fmt.Errorf("member %q at %q: want a name and a peer URL: %w", name, peerURL, errdefs.ErrInvalidArgument)
	}
	ml, err := s.Client.MemberList(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range ml.Members {
		if m.Name == name {
			// A member that restarts with a wiped data dir: replace it.
			if _, err := s.Client.MemberRemove(ctx, m.ID); err != nil {
				return "", err
			}
		}
	}
	// The new member joins as a learner: it does not count for quorum
	// until it has caught up, so the cluster keeps serving writes while it
	// starts. promoteWhenReady makes it a voting member.
	resp, err := s.Client.MemberAddAsLearner(ctx, []string{peerURL})
	if err != nil {
		return "", fmt.Errorf("etcd member add %s: %w", peerURL, err)
	}
	go s.promoteWhenReady(resp.Member.ID, name)
	ic := ""
	for _, m := range resp.Members {
		n := m.Name
		if m.ID == resp.Member.ID {
			n = name
		}
		if n == "" {
			continue
		}
		for _, u := range m.PeerURLs {
			if ic != "" {
				ic += ","
			}
			ic += n + "=" + u
		}
	}
	return ic, nil
}

// promoteWhenReady promotes a learner once it is in sync with the leader
// (etcd refuses earlier), retrying for up to five minutes.
func (s *Store) promoteWhenReady(id uint64, name string) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.Client.MemberPromote(ctx, id)
		cancel()
		if err == nil {
			return
		}
		if ml, lerr := s.Client.MemberList(context.Background()); lerr == nil {
			found := false
			for _, m := range ml.Members {
				if m.ID == id {
					found = true
					if !m.IsLearner {
						return // promoted by someone else
					}
				}
			}
			if !found {
				return // removed
			}
		}
	}
}

// WaitWritable blocks until the store accepts linearizable requests (a
// joining learner does once promoted).
func (s *Store) WaitWritable(ctx context.Context) error {
	for {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.Client.Get(tctx, "/berth-writable-probe")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd not writable: %v: %w", err, errdefs.ErrUnavailable)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
