// Package agent is berth's node agent (the kubelet's role): it joins a
// cluster with a join token, registers its Node and renews its Lease, and
// runs the pods bound to its node on the local berth engine, reporting
// their status and events. All per-pod state lives in the engine as
// container labels (see spec.go), so a restarted agent adopts the pods its
// predecessor started without restarting them.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/berth/berth/internal/cluster/agent/clusterdns"
	"github.com/berth/berth/internal/cluster/agent/envvars"
	"github.com/berth/berth/internal/cluster/agent/proxy"
	"github.com/berth/berth/internal/cluster/agent/volumes"
	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/errdefs"
)

// Options configure an agent.
type Options struct {
	Server        string // https://HOST:PORT of an API server (with Token)
	Token         string // join token K<ca fingerprint>.<secret>
	NodeName      string // default: the hostname, lower-cased
	Engine        string // default unix:///run/berth/berth.sock
	DataDir       string // default /var/lib/berth/agent
	NodeIP        string // default: the address of the default route
	Labels        map[string]string
	Taints        []corev1.Taint
	CPUs          string        // capacity overrides ("2", "1500m")
	Memory        string        // ("4Gi")
	MaxPods       int           // default 110
	LeaseDuration time.Duration // default 4s, renewed every LeaseDuration/4
	StreamingPort int           // default 10250 (kubeletEndpoint)
	// ClusterDNS is the address the agent serves the cluster DNS on (port
	// 53, on the dummy link ClusterDNSLink) and gives pods with dnsPolicy
	// ClusterFirst as their nameserver; "" serves none (pods then get the
	// node's resolv.conf). `berth agent` defaults it to 169.254.20.10.
	ClusterDNS string
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string
	// ClusterDNSLink is the dummy link holding ClusterDNS (default
	// berth-dns); it outlives the agent unless RemoveClusterDNSLink.
	ClusterDNSLink       string
	RemoveClusterDNSLink bool
	// ResolvConf is the node's resolver file (default /etc/resolv.conf):
	// the cluster DNS forwards other names to its nameservers, and pods
	// with dnsPolicy Default get it.
	ResolvConf string
	// Config, if set, is used instead of joining (the all-in-one server
	// passes a node credential it issued itself).
	Config *rest.Config
	Logger *slog.Logger
	// CAFile, ServingCertFile and ServingKeyFile are the cluster CA and
	// the node's serving certificate for the streaming endpoint. A joining
	// agent obtains them at join (see CredentialFiles); with Config the
	// caller gives them.
	CAFile, ServingCertFile, ServingKeyFile string
	// Streaming, if set, serves the node's logs/exec/attach/port-forward
	// endpoint; Run calls it in a goroutine once the node is registered
	// and cancels its context when Run returns.
	Streaming func(ctx context.Context, s StreamingSetup) error
	// VolumesDir holds the node's local-path persistent volumes, one
	// directory per volume (default /var/lib/berth/volumes); the node
	// announces it in its berth.dev/volumes-dir annotation.
	VolumesDir string
	// ProxyMode is how the node proxies Services: "nftables" (the
	// default: the berth-services table, see package proxy) or "none".
	ProxyMode string

	// engine replaces the engine client (tests).
	engine Engine
	// client replaces the clientset (tests).
	client kubernetes.Interface
	// resync is how often each pod is re-checked without a trigger.
	resync time.Duration
}

func (o *Options) defaults() error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--node-name: none given and the hostname is unknown: %w", err)
		}
		o.NodeName = strings.ToLower(h)
	}
	if errs := validation.IsDNS1123Subdomain(o.NodeName); len(errs) > 0 {
		return fmt.Errorf("--node-name %q: %s: %w", o.NodeName, strings.Join(errs, "; "), errdefs.ErrInvalidArgument)
	}
	if o.Engine == "" {
		o.Engine = "unix:///run/berth/berth.sock"
	}
	if o.DataDir == "" {
		o.DataDir = "/var/lib/berth/agent"
	}
	if o.Config == nil && o.client == nil {
		if o.Server == "" || !strings.HasPrefix(o.Server, "https://") {
			return fmt.Errorf("--server %q: want https://HOST:PORT of a berth server: %w", o.Server, errdefs.ErrInvalidArgument)
		}
	}
	if o.NodeIP == "" {
		o.NodeIP = DefaultNodeIP()
	} else if net.ParseIP(o.NodeIP) == nil {
		return fmt.Errorf("--node-ip %q: want an IP address: %w", o.NodeIP, errdefs.ErrInvalidArgument)
	}
	for flag, v := range map[string]string{"--cpus": o.CPUs, "--memory": o.Memory} {
		if v == "" {
			continue
		}
		if q, err := resource.ParseQuantity(v); err != nil || q.Sign() <= 0 {
			return fmt.Errorf("%s %q: want a positive quantity such as 2, 1500m or 4Gi: %w", flag, v, errdefs.ErrInvalidArgument)
		}
	}
	if o.MaxPods < 0 {
		return fmt.Errorf("--max-pods %d: want a positive number: %w", o.MaxPods, errdefs.ErrInvalidArgument)
	}
	if o.MaxPods == 0 {
		o.MaxPods = 110
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 4 * time.Second
	}
	if o.StreamingPort == 0 {
		o.StreamingPort = 10250
	}
	if o.ProxyMode == "" {
		o.ProxyMode = string(proxy.ModeNFTables)
	}
	if _, err := proxy.ParseMode(o.ProxyMode); err != nil {
		return err
	}
	if o.resync == 0 {
		o.resync = 3 * time.Second
	}
	if o.ClusterDNS != "" {
		if ip, err := netip.ParseAddr(o.ClusterDNS); err != nil || !ip.Is4() {
			return fmt.Errorf("--cluster-dns %q: want an IPv4 address such as %s, or \"\" to serve no cluster DNS: %w", o.ClusterDNS, clusterdns.DefaultAddress, errdefs.ErrInvalidArgument)
		}
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = clusterdns.DefaultDomain
	}
	if err := clusterdns.CheckDomain(o.ClusterDomain); err != nil {
		return fmt.Errorf("--cluster-domain: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	o.ClusterDomain = strings.ToLower(strings.Trim(o.ClusterDomain, "."))
	if o.ClusterDNSLink == "" {
		o.ClusterDNSLink = clusterdns.DefaultLink
	}
	if o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if o.VolumesDir == "" {
		o.VolumesDir = kube.DefaultVolumesDir
	}
	if !filepath.IsAbs(o.VolumesDir) || filepath.Clean(o.VolumesDir) == "/" {
		return fmt.Errorf("--volumes-dir %q: want an absolute directory other than /: %w", o.VolumesDir, errdefs.ErrInvalidArgument)
	}
	o.VolumesDir = filepath.Clean(o.VolumesDir)
	return nil
}

// StreamingSetup is what the streaming endpoint needs from the agent.
type StreamingSetup struct {
	NodeName string
	Port     int
	// Engine is the engine socket (unix:///…).
	Engine                    string
	CAFile, CertFile, KeyFile string
	Logger                    *slog.Logger
}

// DefaultNodeIP is the source address of the default route, else the first
// non-loopback address, else 127.0.0.1.
func DefaultNodeIP() string {
	if c, err := net.Dial("udp", "192.0.2.1:9"); err == nil { // no packet is sent
		ip := c.LocalAddr().(*net.UDPAddr).IP.String()
		c.Close()
		return ip
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return "127.0.0.1"
}

// Agent runs one node.
type Agent struct {
	o      Options
	node   string
	eng    Engine
	cs     kubernetes.Interface
	rec    record.EventRecorder
	log    *slog.Logger
	hostIP string
	// flat is set when the engine cannot run pod sandboxes yet: each
	// container then gets its own network namespace.
	flat bool
	// envSrc reads ConfigMaps and Secrets for env and volumes; vols owns
	// the pods' volume directories under DataDir/pods.
	envSrc envvars.Source
	vols   *volumes.Manager

	// reapKick wakes the reaper of deleted local-path volumes.
	reapKick chan struct{}

	// dns is how pods' resolv.conf are made (dnsconfig.go).
	dns dnsSettings

	// nodeKick asks for an immediate node status update.
	nodeKick chan struct{}

	pods    corelisters.PodLister
	synced  cache.InformerSynced
	mu      sync.Mutex
	workers map[types.UID]*podWorker
	wg      sync.WaitGroup
}

// Run joins (unless o.Config is set), registers the node and runs its pods
// until ctx ends. Pods keep running when it returns.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	log := o.Logger.With("node", o.NodeName)
	eng := o.engine
	if eng == nil {
		var err error
		if eng, err = NewEngine(o.Engine); err != nil {
			return err
		}
	}
	cs := o.client
	var clients *kube.Clients
	if cs == nil {
		cfg := o.Config
		if cfg == nil {
			var err error
			host, _ := os.Hostname()
			if cfg, err = Join(ctx, o.Server, o.Token, o.NodeName, o.DataDir, []string{o.NodeIP, strings.ToLower(host)}, log); err != nil {
				return err
			}
			if o.CAFile == "" {
				_, o.CAFile, o.ServingCertFile, o.ServingKeyFile = CredentialFiles(o.DataDir)
			}
		}
		cfg = rest.CopyConfig(cfg)
		cfg.UserAgent = "berth-agent/" + o.NodeName
		// JSON on the wire: every berth API server decodes it (protobuf
		// request bodies such as DeleteOptions are not everywhere yet).
		cfg.ContentType, cfg.AcceptContentTypes = "application/json", "application/json"
		var err error
		if clients, err = kube.NewClients(cfg, 0, log); err != nil {
			return err
		}
		defer clients.Shutdown()
		cs = clients.Client
	}
	a := &Agent{o: o, node: o.NodeName, eng: eng, cs: cs, log: log, hostIP: o.NodeIP, workers: map[types.UID]*podWorker{}, nodeKick: make(chan struct{}, 1), reapKick: make(chan struct{}, 1),
		dns: dnsSettings{clusterDNS: o.ClusterDNS, domain: o.ClusterDomain, resolvConf: o.ResolvConf}}
	a.setupPodInputs()
	if clients != nil {
		a.rec = clients.Recorder("kubelet", o.NodeName)
	} else {
		a.rec = record.NewFakeRecorder(1000)
	}
	if err := a.waitEngine(ctx); err != nil {
		return err
	}
	a.flat = !a.sandboxSupported(ctx)
	if a.flat {
		log.Warn("the engine cannot run pod sandboxes yet (pause image or container: network mode missing); each pod container gets its own network namespace")
	}
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	go a.leaseLoop(ctx)
	go a.nodeStatusLoop(ctx)
	if o.Streaming != nil {
		go func() {
			err := o.Streaming(ctx, StreamingSetup{NodeName: o.NodeName, Port: o.StreamingPort, Engine: o.Engine,
				CAFile: o.CAFile, CertFile: o.ServingCertFile, KeyFile: o.ServingKeyFile, Logger: log.With("component", "streaming")})
			if err != nil && ctx.Err() == nil {
				log.Error("streaming endpoint stopped", "port", o.StreamingPort, "err", err)
			}
		}()
	}

	dnsDone := make(chan struct{})
	if o.ClusterDNS != "" {
		go func() {
			defer close(dnsDone)
			err := clusterdns.Run(ctx, cs, clusterdns.Options{Address: o.ClusterDNS, Domain: o.ClusterDomain, Link: o.ClusterDNSLink,
				RemoveLink: o.RemoveClusterDNSLink, ResolvConf: o.ResolvConf, Logger: log.With("component", "cluster-dns")})
			if err != nil && ctx.Err() == nil {
				log.Error("cluster DNS stopped; pods with dnsPolicy ClusterFirst cannot resolve names", "addr", o.ClusterDNS, "err", err)
			}
		}()
	} else {
		close(dnsDone)
	}
	defer func() { <-dnsDone }() // its link is removed before Run returns
	a.startProxy(ctx)

	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.FieldSelector = "spec.nodeName=" + o.NodeName
	}))
	inf := f.Core().V1().Pods()
	a.pods = inf.Lister()
	a.synced = inf.Informer().HasSynced
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.podChanged(ctx, obj) },
		UpdateFunc: func(_, obj any) { a.podChanged(ctx, obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				a.podGone(p.UID)
			}
		},
	})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), a.synced) {
		return ctx.Err()
	}
	log.Info("node agent ready", "engine", o.Engine, "node-ip", a.hostIP, "sandboxes", !a.flat, "cluster-dns", o.ClusterDNS, "cluster-domain", o.ClusterDomain)
	go a.engineEvents(ctx)
	go a.reapVolumes(ctx)
	a.housekeeping(ctx)
	f.Shutdown()
	a.wg.Wait()
	return nil
}

// startProxy runs the node's service proxy in a goroutine until ctx ends;
// its table stays when the agent stops (Services keep working while it
// restarts; `berth agent --cleanup-proxy` removes it).
func (a *Agent) startProxy(ctx context.Context) {
	if a.o.client != nil || a.o.engine != nil || proxy.Mode(a.o.ProxyMode) == proxy.ModeNone {
		return // none, or a test (fake API or engine): leave the host's rules alone
	}
	go func() {
		err := proxy.Run(ctx, proxy.Options{Client: a.cs, NodeName: a.node, Logger: a.log.With("component", "proxy")})
		if err != nil && ctx.Err() == nil {
			a.log.Error("service proxy stopped; Services do not work on this node", "err", err)
		}
	}()
}

// waitEngine waits up to a minute for the engine to answer.
func (a *Agent) waitEngine(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := a.eng.Version(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("--engine %s: %w", a.o.Engine, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// sandboxSupported checks once whether the engine has the pause image and
// the container: network mode, by creating (not starting) two containers.
func (a *Agent) sandboxSupported(ctx context.Context) bool {
	name := fmt.Sprintf("berth-agent-probe-%d", time.Now().UnixNano())
	hc := &api.HostConfig{}
	hc.NetworkMode = "none"
	id, err := a.eng.Create(ctx, name, api.CreateRequest{Config: sandboxProbeConfig(), HostConfig: hc})
	if err != nil {
		a.log.Debug("sandbox probe", "err", err)
		return false
	}
	defer a.eng.Remove(context.WithoutCancel(ctx), id)
	hc2 := &api.HostConfig{IpcMode: "container:" + id}
	hc2.NetworkMode = "container:" + id
	id2, err := a.eng.Create(ctx, name+"-2", api.CreateRequest{Config: sandboxProbeConfig(), HostConfig: hc2})
	if err != nil {
		a.log.Debug("sandbox probe", "err", err)
		return false
	}
	_ = a.eng.Remove(context.WithoutCancel(ctx), id2)
	return true
}

func sandboxProbeConfig() (c api.Config) {
	c.Image = PauseImage
	return c
}

// podChanged hands the pod to its worker, starting one if needed.
func (a *Agent) podChanged(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != a.node {
		return
	}
	a.mu.Lock()
	w := a.workers[pod.UID]
	if w == nil {
		w = newPodWorker(a, pod.UID)
		// The pod is in place before the worker first looks: a worker
		// that found none would take the pod for gone and end, and the
		// pod would wait for its next change, maybe forever.
		w.setPod(pod)
		a.workers[pod.UID] = w
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			w.run(ctx)
			a.mu.Lock()
			if a.workers[pod.UID] == w {
				delete(a.workers, pod.UID)
			}
			a.mu.Unlock()
		}()
	}
	a.mu.Unlock()
	w.setPod(pod)
}

// podGone tells a pod's worker the pod left the API.
func (a *Agent) podGone(uid types.UID) {
	a.mu.Lock()
	w := a.workers[uid]
	a.mu.Unlock()
	if w != nil {
		w.setPod(nil)
	}
}

func (a *Agent) kick(uid types.UID) {
	a.mu.Lock()
	w := a.workers[uid]
	a.mu.Unlock()
	if w != nil {
		w.trigger()
	}
}

// engineEvents wakes a pod's worker when one of its containers changes
// state, so exits are answered at once rather than at the next resync.
func (a *Agent) engineEvents(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.eng.Events(ctx, func(action string, labels map[string]string) {
			switch action {
			case "die", "oom", "start", "destroy", "kill":
			default:
				return
			}
			if uid := labels[LabelPodUID]; uid != "" {
				a.kick(types.UID(uid))
			}
		})
		if ctx.Err() == nil {
			a.log.Debug("engine event stream ended; reconnecting", "err", err)
			time.Sleep(time.Second)
		}
	}
}

// housekeeping removes containers of pods this node no longer has (deleted
// while the agent was down or the node partitioned) until ctx ends.
func (a *Agent) housekeeping(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		a.collectOrphans(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) collectOrphans(ctx context.Context) {
	all, err := a.eng.List(ctx, LabelNode, a.node)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("listing pod containers", "err", err)
		}
		return
	}
	pods, _ := a.pods.List(everything)
	known := map[string]bool{}
	for _, p := range pods {
		known[string(p.UID)] = true
	}
	a.mu.Lock()
	for uid := range a.workers {
		known[string(uid)] = true
	}
	a.mu.Unlock()
	byPod := map[string][]containerRef{}
	for _, c := range all {
		uid := c.Labels[LabelPodUID]
		if uid == "" || known[uid] {
			continue
		}
		byPod[uid] = append(byPod[uid], containerRef{id: c.ID, labels: c.Labels, running: c.State == "running"})
	}
	// Pods in parallel: each may wait out its own grace period (a PID 1
	// that ignores SIGTERM takes all of it), and one slow pod must not
	// hold up the others.
	var wg sync.WaitGroup
	for uid, cs := range byPod {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.log.Info("stopping containers of a pod no longer bound to this node", "pod", cs[0].labels[LabelPodNamespace]+"/"+cs[0].labels[LabelPodName], "uid", uid, "containers", len(cs))
			removeAll(ctx, a.eng, cs, -1)
			if a.vols != nil {
				if err := a.vols.Teardown(uid); err != nil {
					a.log.Warn("removing the volumes of a pod no longer bound to this node", "uid", uid, "err", err)
				}
				a.kickReaper()
			}
		}()
	}
	wg.Wait()
}

type containerRef struct {
	id      string
	labels  map[string]string
	running bool
}

// removeAll stops (grace seconds; -1: each container's label) and removes
// containers, application containers before sandboxes, in parallel.
func removeAll(ctx context.Context, eng Engine, cs []containerRef, grace int) {
	stop := func(list []containerRef) {
		var wg sync.WaitGroup
		for _, c := range list {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c.running {
					g := grace
					if g < 0 {
						g = atoiDefault(c.labels[LabelGrace], 30)
					}
					_ = eng.Stop(ctx, c.id, g)
				}
				_ = eng.Remove(ctx, c.id)
			}()
		}
		wg.Wait()
	}
	var apps, sandboxes []containerRef
	for _, c := range cs {
		if c.labels[LabelKind] == KindSandbox {
			sandboxes = append(sandboxes, c)
		} else {
			apps = append(apps, c)
		}
	}
	stop(apps)
	stop(sandboxes)
}

var errBackoff = errors.New("in back-off")

// setupPodInputs prepares the sources of env and volumes.
func (a *Agent) setupPodInputs() {
	a.envSrc = envvars.ClientSource(a.cs)
	capacity, _ := a.capacity()
	a.vols = &volumes.Manager{Root: filepath.Join(a.o.DataDir, "pods"), Src: a.envSrc, Allocatable: capacity, Log: a.log,
		Claims: clientClaims{a.cs}, VolumesDir: a.o.VolumesDir, RecordDir: filepath.Join(a.o.DataDir, "local-volumes"),
		NodeName: a.node, NodeLabels: a.nodeLabels()}
}

var everything = labels.Everything()

func atoiDefault(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}
