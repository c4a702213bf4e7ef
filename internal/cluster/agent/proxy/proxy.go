package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/berth/berth/internal/errdefs"
)

// Options configure a proxy.
type Options struct {
	Client   kubernetes.Interface
	NodeName string // for internalTrafficPolicy Local
	Table    string // default DefaultTable
	// MinSyncPeriod is the least time between two applies: changes that
	// arrive meanwhile are coalesced into the next one (default 150ms).
	MinSyncPeriod time.Duration
	// CheckPeriod is how often the proxy checks that its table is still
	// there (someone may flush the ruleset) and re-applies it (default 30s).
	CheckPeriod time.Duration
	Logger      *slog.Logger

	// apply, exists and flush replace the kernel (tests).
	apply  func(table string, rs Ruleset) error
	exists func(table string) (bool, error)
	flush  func([]ConntrackFlush) (uint, error)
}

// Run keeps the table in step with the cluster's Services and
// EndpointSlices until ctx ends. It applies nothing before both caches
// have synced, so a restarting agent never replaces a working table with
// an empty one, and it leaves the table in place when it returns: Services
// keep working while the agent restarts (remove it with Delete).
func Run(ctx context.Context, o Options) error {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if o.MinSyncPeriod <= 0 {
		o.MinSyncPeriod = 150 * time.Millisecond
	}
	if o.CheckPeriod <= 0 {
		o.CheckPeriod = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.apply == nil {
		o.apply, o.exists, o.flush = Apply, Exists, FlushConntrack
		if err := EnableForwarding(); err != nil {
			return err
		}
	}
	log := o.Logger

	f := informers.NewSharedInformerFactory(o.Client, 0)
	svcs := f.Core().V1().Services()
	eps := f.Discovery().V1().EndpointSlices()
	kick := make(chan struct{}, 1)
	changed := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify(kick) },
		UpdateFunc: func(any, any) { notify(kick) },
		DeleteFunc: func(any) { notify(kick) },
	}
	_, _ = svcs.Informer().AddEventHandler(changed)
	_, _ = eps.Informer().AddEventHandler(changed)
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcs.Informer().HasSynced, eps.Informer().HasSynced) {
		return ctx.Err()
	}

	// applied is the ruleset in the kernel (nil: unknown, at start);
	// failed forces the next sync to apply even if nothing changed.
	var applied *Ruleset
	failed := false
	retry := time.Second // doubles per failure in a row, up to 30 s
	check := time.NewTicker(o.CheckPeriod)
	defer check.Stop()
	sync := func(force bool) {
		sl, _ := svcs.Lister().List(labels.Everything())
		el, _ := eps.Lister().List(labels.Everything())
		rs := Build(sl, el, o.NodeName)
		if !force && !failed && applied != nil && reflect.DeepEqual(*applied, rs) {
			return
		}
		start := time.Now()
		if err := o.apply(o.Table, rs); err != nil {
			log.Error("applying service rules", "table", o.Table, "service-ports", len(rs.Services), "retry-in", retry, "err", err)
			failed = true
			time.AfterFunc(retry, func() { notify(kick) })
			retry = min(2*retry, 30*time.Second)
			return
		}
		retry = time.Second
		took := time.Since(start)
		failed = false
		// The first apply after a start knows nothing of the table it
		// replaced (the same rules, most likely): entries stay.
		if applied != nil {
			if stale := StaleUDP(*applied, rs); len(stale) > 0 {
				n, err := o.flush(stale)
				if err != nil {
					log.Warn("deleting stale UDP conntrack entries", "err", err)
				}
				log.Debug("stale UDP conntrack entries deleted", "filters", len(stale), "entries", n)
			}
		}
		applied = &rs
		level := slog.LevelDebug
		if took > time.Second {
			level = slog.LevelInfo // worth knowing: every change waits that long
		}
		log.Log(context.Background(), level, "service rules applied", "table", o.Table, "service-ports", len(rs.Services), "took", took)
	}
	notify(kick)
	first := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-check.C:
			if ok, err := o.exists(o.Table); err == nil && !ok {
				log.Warn("service rules table vanished; applying it again", "table", o.Table)
				sync(true)
			}
			continue
		}
		sync(false)
		if first && applied != nil {
			log.Info("service proxy ready", "table", o.Table, "service-ports", len(applied.Services))
			first = false
		}
		// Coalesce: whatever changes during the pause is one apply.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.MinSyncPeriod):
		}
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Mode is how the agent proxies Services.
type Mode string

// The proxy modes of `berth agent --proxy-mode`.
const (
	ModeNFTables Mode = "nftables"
	ModeNone     Mode = "none"
)

// ParseMode checks a --proxy-mode value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeNFTables, ModeNone:
		return Mode(s), nil
	}
	return "", fmt.Errorf("--proxy-mode %q: want nftables or none: %w", s, errdefs.ErrInvalidArgument)
}
