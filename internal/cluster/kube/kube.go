// Package kube connects berth's in-process cluster components (the
// scheduler, the controllers, the node agent) to the API server with
// client-go, the same client library third-party controllers use. Going
// through the HTTPS API rather than etcd keeps one code path for validation,
// admission, authorization and watch semantics.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// Config returns a client config for an API server at host ("https://…")
// that trusts caPEM and authenticates with a client certificate or a
// bearer token.
func Config(host string, caPEM, certPEM, keyPEM []byte, token string) *rest.Config {
	c := &rest.Config{
		Host:            host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM, CertData: certPEM, KeyData: keyPEM},
		// berth's components share one process; be generous but bounded.
		QPS:   500,
		Burst: 1000,
	}
	return c
}

// ConfigFromKubeconfig loads a kubeconfig file.
func ConfigFromKubeconfig(path string) (*rest.Config, error) {
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	c.QPS, c.Burst = 500, 1000
	return c, nil
}

// Clients is what a component gets: a clientset, a shared informer factory
// (call Informers.Start after registering informers; Start may be called
// again for informers registered later), an event recorder factory and a
// logger.
type Clients struct {
	Config    *rest.Config
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Logger    *slog.Logger

	mu          sync.Mutex
	broadcaster record.EventBroadcaster
}

// NewClients builds Clients from a config. Informers resync every resync
// (0: never).
func NewClients(cfg *rest.Config, resync time.Duration, log *slog.Logger) (*Clients, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Clients{Config: cfg, Client: cs, Informers: informers.NewSharedInformerFactory(cs, resync), Logger: log}, nil
}

// Recorder returns an event recorder that reports as component (the
// event's source, e.g. "default-scheduler", "deployment-controller") and
// optionally host (a node name, for the agent).
func (c *Clients) Recorder(component, host string) record.EventRecorder {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broadcaster == nil {
		c.broadcaster = record.NewBroadcaster()
		c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.Client.CoreV1().Events("")})
	}
	return c.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component, Host: host})
}

// Shutdown stops the event broadcaster (flushing what it can).
func (c *Clients) Shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broadcaster != nil {
		c.broadcaster.Shutdown()
		c.broadcaster = nil
	}
}

// Component is one control loop of the server (scheduler, a controller).
// Run blocks until ctx ends; an error ends only that component (logged).
type Component struct {
	Name string
	Run  func(ctx context.Context, c *Clients) error
}

// LeaderOptions tune leader election. Zero values get defaults that fail
// over in under 10 s.
type LeaderOptions struct {
	Identity      string
	LeaseDuration time.Duration // default 8s
	RenewDeadline time.Duration // default 5s
	RetryPeriod   time.Duration // default 1s
}

// RunLeader runs comps while this server holds the
// kube-system/berth-controller-manager Lease, so that in an HA cluster one
// server at a time schedules and reconciles. It returns when ctx ends.
func RunLeader(ctx context.Context, cfg *rest.Config, lo LeaderOptions, comps []Component, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if lo.Identity == "" {
		h, _ := os.Hostname()
		lo.Identity = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if lo.LeaseDuration == 0 {
		lo.LeaseDuration = 8 * time.Second
	}
	if lo.RenewDeadline == 0 {
		lo.RenewDeadline = 5 * time.Second
	}
	if lo.RetryPeriod == 0 {
		lo.RetryPeriod = time.Second
	}
	// client-go logs through klog; send it to the server's log.
	klog.SetSlogLogger(log)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaLease(),
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: lo.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   lo.LeaseDuration,
			RenewDeadline:   lo.RenewDeadline,
			RetryPeriod:     lo.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            "berth-controller-manager",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					log.Info("leading: starting scheduler and controllers", "identity", lo.Identity, "components", len(comps))
					runComponents(lctx, cfg, comps, log)
				},
				OnStoppedLeading: func() { log.Info("stopped leading", "identity", lo.Identity) },
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx)
		if ctx.Err() == nil {
			time.Sleep(lo.RetryPeriod)
		}
	}
	return nil
}

func runComponents(ctx context.Context, cfg *rest.Config, comps []Component, log *slog.Logger) {
	c, err := NewClients(cfg, 0, log)
	if err != nil {
		log.Error("controller clients", "err", err)
		return
	}
	defer c.Shutdown()
	var wg sync.WaitGroup
	for _, comp := range comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := comp.Run(ctx, c); err != nil && ctx.Err() == nil {
				log.Error("component stopped", "component", comp.Name, "err", err)
			}
		}()
	}
	<-ctx.Done()
	c.Informers.Shutdown()
	wg.Wait()
}

func metaLease() metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: "berth-controller-manager", Namespace: "kube-system"}
}
