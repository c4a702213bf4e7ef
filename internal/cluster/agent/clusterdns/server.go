package clusterdns

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/berth/berth/internal/engine/network/dns"
)

// Defaults of the agent's flags.
const (
	DefaultAddress = "169.254.20.10" // NodeLocal DNSCache's address
	DefaultDomain  = "cluster.local"
	DefaultLink    = "berth-dns"
)

// Options configure Run.
type Options struct {
	// Address is the IP the server listens on (port Port, UDP and TCP).
	Address string
	// Port defaults to 53; -1 picks a free port (tests, see Ready).
	Port int
	// Domain is the cluster domain (default cluster.local).
	Domain string
	// Link, if set, is a dummy link that Run creates if missing and puts
	// Address on, so the pods reach the address through their default
	// route (the engine bridge's gateway is in the agent's network
	// namespace). It is kept when Run returns, unless RemoveLink: pods'
	// resolv.conf keep naming the address across agent restarts.
	Link       string
	RemoveLink bool
	// ResolvConf is the node's resolv.conf whose nameservers get every
	// name outside the cluster domain (default /etc/resolv.conf; Address
	// itself is skipped). Upstreams, if set, replaces it (tests).
	ResolvConf string
	Upstreams  func() []string
	// Ready, if set, is called with the bound "ip:port" once the server
	// answers (tests use port 0).
	Ready  func(addr string)
	Logger *slog.Logger
}

// Run serves the cluster DNS until ctx ends: it watches Services and
// EndpointSlices in all namespaces, waits for them to sync, sets up the
// address and listens. If the address is taken (another agent on the
// same network namespace) it retries every 5 s, so it takes over when the
// other stops.
func Run(ctx context.Context, cs kubernetes.Interface, o Options) error {
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if err := CheckDomain(o.Domain); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(o.Address)
	if err != nil || !ip.Is4() {
		return fmt.Errorf("cluster DNS address %q: want an IPv4 address such as %s (or \"\" to disable the cluster DNS)", o.Address, DefaultAddress)
	}
	switch o.Port {
	case 0:
		o.Port = 53
	case -1:
		o.Port = 0
	}
	if o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	log := o.Logger
	ups := o.Upstreams
	if ups == nil {
		ups = dns.HostUpstreams(o.ResolvConf, func(a netip.Addr) bool { return a == ip })
	}

	f := informers.NewSharedInformerFactory(cs, 0)
	svcInf := f.Core().V1().Services().Informer()
	sliceInf := f.Discovery().V1().EndpointSlices().Informer()
	for inf, idx := range map[cache.SharedIndexInformer]cache.Indexers{svcInf: ServiceIndexers(), sliceInf: SliceIndexers()} {
		for name := range inf.GetIndexer().GetIndexers() {
			delete(idx, name) // the factory's namespace index
		}
		if err := inf.AddIndexers(idx); err != nil {
			return fmt.Errorf("cluster DNS: %w", err)
		}
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.HasSynced, sliceInf.HasSynced) {
		return ctx.Err()
	}
	r := NewResolver(o.Domain, svcInf.GetIndexer(), sliceInf.GetIndexer())
	r.Chase = func(name dnsmessage.Name, qtype dnsmessage.Type) []dnsmessage.Resource {
		return chase(ups(), name, qtype)
	}

	link := ""
	if o.Link != "" {
		if link, err = EnsureLink(o.Link, ip); err != nil {
			return err
		}
		if link != o.Link {
			log.Warn("cluster DNS: the kernel has no dummy link driver; the address is on the loopback device instead", "addr", ip, "link", link)
		}
		if o.RemoveLink {
			defer func() {
				if err := RemoveAddress(o.Link, ip); err != nil {
					log.Warn("cluster DNS: removing the address", "link", link, "err", err)
				}
			}()
		}
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(o.Port))
	var srv *dns.Server
	for warned := false; ; {
		srv, err = dns.Listen(dns.Options{Addr: addr, Handler: r.Resolve, Upstreams: ups, Logger: log})
		if err == nil {
			break
		}
		if !warned {
			log.Warn("cluster DNS: cannot listen yet, retrying every 5s (another agent on this network namespace?)", "addr", addr, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	defer srv.Close()
	log.Info("cluster DNS serving", "addr", srv.Addr(), "domain", o.Domain, "link", link)
	if o.Ready != nil {
		o.Ready(srv.Addr())
	}
	<-ctx.Done()
	return nil
}

// chase resolves name (an ExternalName target) through the upstreams and
// returns the answer's address and alias records.
func chase(upstreams []string, name dnsmessage.Name, qtype dnsmessage.Type) []dnsmessage.Resource {
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: binary.BigEndian.Uint16(idb[:]), RecursionDesired: true})
	if b.StartQuestions() != nil || b.Question(dnsmessage.Question{Name: name, Type: qtype, Class: dnsmessage.ClassINET}) != nil {
		return nil
	}
	req, err := b.Finish()
	if err != nil {
		return nil
	}
	for _, up := range upstreams {
		out, err := dns.Exchange("udp", up, req, 2*time.Second)
		var m dnsmessage.Message
		if err == nil {
			err = m.Unpack(out)
		}
		if err == nil && m.Truncated {
			if out, err = dns.Exchange("tcp", up, req, 2*time.Second); err == nil {
				err = m.Unpack(out)
			}
		}
		if err != nil {
			continue
		}
		var rrs []dnsmessage.Resource
		for _, a := range m.Answers {
			switch a.Header.Type {
			case dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeCNAME:
				rrs = append(rrs, a)
			}
		}
		return rrs
	}
	return nil
}

// ErrNotSupported is returned where the platform cannot manage the link.
var ErrNotSupported = errors.New("not supported on this platform")
