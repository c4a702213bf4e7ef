package network

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berth/berth/internal/engine/network/dns"
	"github.com/berth/berth/internal/engine/network/ipam"
	"github.com/berth/berth/internal/engine/network/nft"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/lazyre"
)

const stateVersion = 1

type netState struct {
	Network
	Pool      *ipam.Pool           `json:"pool"`
	Endpoints map[string]*Endpoint `json:"endpoints"`
}

type stateFile struct {
	Version  int                      `json:"version"`
	Seq      uint64                   `json:"seq"`
	Networks map[string]*netState     `json:"networks"`
	Ports    map[string][]PortMapping `json:"ports,omitempty"`
}

// Manager owns the networks of one daemon. All methods are safe for
// concurrent use; they are serialised internally.
type Manager struct {
	cfg       Config
	log       *slog.Logger
	upstreams func() []string

	mu       sync.Mutex
	st       stateFile
	dns      map[string]*dns.Server // by network name
	reserved map[string][]io.Closer // by container ID: sockets holding published ports

	nmu      sync.RWMutex
	names    map[string]map[string][]netip.Addr // network -> name -> addresses
	gateways map[netip.Addr]bool
}

var nameRE = lazyre.New(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// New loads the state under cfg.StateDir and reconciles it with the host:
// bridges and their addresses are (re)created, endpoints whose veth or
// namespace vanished are released, stray veths on berth bridges are
// deleted, the nftables table is rewritten, DNS servers start and published
// ports are reserved again. The default network is created if missing.
func New(cfg Config) (*Manager, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("network: state dir: empty: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.BridgeName == "" {
		cfg.BridgeName = "berth0"
	}
	if len(cfg.BridgeName) > 15 || !nameRE.MatchString(cfg.BridgeName) {
		return nil, fmt.Errorf("network: bridge name %q: want at most 15 letters, digits, '_', '.', '-': %w", cfg.BridgeName, errdefs.ErrInvalidArgument)
	}
	if cfg.DefaultSubnet == "" {
		cfg.DefaultSubnet = "172.30.0.0/16"
	}
	if cfg.NftTable == "" {
		sum := sha256.Sum256([]byte(filepath.Clean(cfg.StateDir)))
		cfg.NftTable = "berth_" + hex.EncodeToString(sum[:4])
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("network: state dir: %w", err)
	}
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "network"),
		dns:      map[string]*dns.Server{},
		reserved: map[string][]io.Closer{},
		names:    map[string]map[string][]netip.Addr{},
		gateways: map[netip.Addr]bool{},
	}
	if len(cfg.DNSUpstreams) > 0 {
		ups := append([]string(nil), cfg.DNSUpstreams...)
		m.upstreams = func() []string { return ups }
	} else {
		m.upstreams = dns.HostUpstreams(cfg.ResolvConf, func(a netip.Addr) bool {
			m.nmu.RLock()
			defer m.nmu.RUnlock()
			return m.gateways[a]
		})
	}
	if err := enableForwarding(); err != nil {
		return nil, err
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.reconcile(); err != nil {
		m.stopAllLocked()
		return nil, err
	}
	return m, nil
}

func enableForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("network: read %s: %w", p, err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("network: enable IPv4 forwarding: %w", err)
	}
	return nil
}

func (m *Manager) statePath() string { return filepath.Join(m.cfg.StateDir, "network.json") }

func (m *Manager) load() error {
	m.st = stateFile{Version: stateVersion, Networks: map[string]*netState{}, Ports: map[string][]PortMapping{}}
	b, err := os.ReadFile(m.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("network: state: %w", err)
	}
	if err := json.Unmarshal(b, &m.st); err != nil {
		return fmt.Errorf("network: state %s: %w", m.statePath(), err)
	}
	if m.st.Networks == nil {
		m.st.Networks = map[string]*netState{}
	}
	if m.st.Ports == nil {
		m.st.Ports = map[string][]PortMapping{}
	}
	for _, n := range m.st.Networks {
		if n.Endpoints == nil {
			n.Endpoints = map[string]*Endpoint{}
		}
		if n.Pool == nil {
			return fmt.Errorf("network: state %s: network %q has no address pool", m.statePath(), n.Name)
		}
	}
	return nil
}

func (m *Manager) save() error {
	b, err := json.MarshalIndent(&m.st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(m.statePath(), b); err != nil {
		return fmt.Errorf("network: save state: %w", err)
	}
	return nil
}

func (m *Manager) reconcile() error {
	if _, ok := m.st.Networks[DefaultNetwork]; !ok {
		if _, err := m.createLocked(DefaultNetwork, m.cfg.DefaultSubnet, "", false, nil, m.cfg.BridgeName); err != nil {
			return fmt.Errorf("network: default network: %w", err)
		}
	}
	ours := map[int]bool{}
	for _, n := range m.sortedNetworks() {
		if _, err := m.ensureBridge(n); err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
		if l, err := netlink.LinkByName(n.Bridge); err == nil {
			ours[l.Attrs().Index] = true
		}
		for cid, ep := range n.Endpoints {
			_, lerr := netlink.LinkByName(ep.HostIfName)
			_, serr := os.Stat(ep.NetNSPath)
			if lerr == nil && serr == nil {
				continue
			}
			m.log.Info("dropping endpoint whose veth or namespace is gone", "container", cid, "network", n.Name)
			if lerr == nil {
				netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ep.HostIfName}})
			}
			m.releaseLocked(n, cid)
		}
	}
	// Veths on our bridges that no endpoint owns are leftovers of a crash.
	known := map[string]bool{}
	for _, n := range m.st.Networks {
		for _, ep := range n.Endpoints {
			known[ep.HostIfName] = true
		}
	}
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			a := l.Attrs()
			if l.Type() == "veth" && ours[a.MasterIndex] && !known[a.Name] {
				m.log.Info("deleting stray veth", "link", a.Name)
				netlink.LinkDel(l)
			}
		}
	}
	for cid := range m.st.Ports {
		if _, ok := m.portTarget(cid); !ok {
			delete(m.st.Ports, cid)
		}
	}
	if err := m.applyRules(); err != nil {
		return err
	}
	for _, n := range m.sortedNetworks() {
		if err := m.startDNS(n); err != nil {
			return err
		}
		m.rebuildNames(n)
	}
	for cid, ports := range m.st.Ports {
		closers, _, err := reservePorts(ports)
		if err != nil {
			m.log.Warn("published port could not be reserved again; its rule still forwards", "container", cid, "err", err)
			continue
		}
		m.reserved[cid] = closers
	}
	return m.save()
}

func (m *Manager) sortedNetworks() []*netState {
	out := make([]*netState, 0, len(m.st.Networks))
	for _, n := range m.st.Networks {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ensureBridge creates the bridge of n if missing, gives it the gateway
// address, brings it up and lets it route 127.0.0.1 traffic (published
// ports answer on localhost through DNAT).
func (m *Manager) ensureBridge(n *netState) (created bool, err error) {
	link, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return false, fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge}}); err != nil {
			return false, fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		created = true
		if link, err = netlink.LinkByName(n.Bridge); err != nil {
			return false, fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
	} else if link.Type() != "bridge" {
		return false, fmt.Errorf("interface %s exists and is not a bridge: %w", n.Bridge, errdefs.ErrConflict)
	}
	defer func() {
		if err != nil && created {
			netlink.LinkDel(link)
		}
	}()
	gw := n.Pool.Gateway
	want := &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(n.Pool.Subnet.Bits(), 32)}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return created, fmt.Errorf("bridge %s: list addresses: %w", n.Bridge, err)
	}
	have := false
	for _, a := range addrs {
		if a.IPNet.String() == want.String() {
			have = true
		}
	}
	if !have {
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: want}); err != nil && !errors.Is(err, unix.EEXIST) {
			return created, fmt.Errorf("bridge %s: add %s: %w", n.Bridge, want, err)
		}
	}
	// A bridge without an address of its own takes the lowest MAC of its
	// ports, so it changed whenever a container came or went: every other
	// container's cached MAC for the gateway then pointed at a removed veth
	// and its traffic through the gateway (DNS, services, the outside)
	// vanished until the neighbour entry expired, several seconds. A set
	// address stays (Docker sets one too).
	if mac := macFor(gw); !bytes.Equal(link.Attrs().HardwareAddr, mac) {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return created, fmt.Errorf("bridge %s: set address %s: %w", n.Bridge, mac, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return created, fmt.Errorf("bridge %s: up: %w", n.Bridge, err)
	}
	p := fmt.Sprintf("/proc/sys/net/ipv4/conf/%s/route_localnet", n.Bridge)
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return created, fmt.Errorf("bridge %s: route_localnet: %w", n.Bridge, err)
	}
	return created, nil
}

// checkSubnet refuses p if it overlaps another network of this daemon or
// a route of the host's main table (another daemon's bridge, a LAN…).
// Routes on the link named adopt (a bridge this daemon is re-creating after
// its state was lost) do not count.
func (m *Manager) checkSubnet(p netip.Prefix, input, adopt string) error {
	for _, n := range m.st.Networks {
		if n.Pool.Subnet.Overlaps(p) {
			return fmt.Errorf("subnet %q overlaps subnet %s of network %q: %w", input, n.Pool.Subnet, n.Name, errdefs.ErrConflict)
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue // the default route overlaps everything
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		rp := netip.PrefixFrom(a.Unmap(), ones)
		if rp.Overlaps(p) {
			dev := ""
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				if adopt != "" && l.Attrs().Name == adopt {
					continue
				}
				dev = " dev " + l.Attrs().Name
			}
			return fmt.Errorf("subnet %q collides with host route %s%s: %w", input, rp, dev, errdefs.ErrConflict)
		}
	}
	return nil
}

func (m *Manager) pickSubnet() (string, error) {
	var cands []string
	for i := 16; i < 32; i++ {
		cands = append(cands, fmt.Sprintf("172.%d.0.0/16", i))
	}
	for i := 0; i < 256; i += 16 {
		cands = append(cands, fmt.Sprintf("192.168.%d.0/20", i))
	}
	for _, c := range cands {
		if m.checkSubnet(netip.MustParsePrefix(c), c, "") == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("no free subnet left in 172.16.0.0/12 and 192.168.0.0/16; pass --subnet: %w", errdefs.ErrUnavailable)
}

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Create makes a network: a bridge with the gateway address, its rules and
// its DNS server. subnet "" picks a free one; gateway "" the subnet's first
// address. On failure nothing is left behind.
func (m *Manager) Create(name, subnet, gateway string, internal bool, labels map[string]string) (Network, error) {
	if !nameRE.MatchString(name) {
		return Network{}, fmt.Errorf("network name %q: want letters, digits, '_', '.', '-', starting with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	if name == "none" || name == "host" || name == DefaultNetwork {
		return Network{}, fmt.Errorf("network name %q: reserved for a predefined network: %w", name, errdefs.ErrConflict)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.createLocked(name, subnet, gateway, internal, labels, "")
	if err != nil {
		return Network{}, err
	}
	return m.view(n), nil
}

func (m *Manager) createLocked(name, subnet, gateway string, internal bool, labels map[string]string, bridge string) (_ *netState, err error) {
	if _, ok := m.st.Networks[name]; ok {
		return nil, fmt.Errorf("network %q: %w", name, errdefs.ErrAlreadyExists)
	}
	if subnet == "" {
		if gateway != "" {
			return nil, fmt.Errorf("gateway %q: needs --subnet: %w", gateway, errdefs.ErrInvalidArgument)
		}
		if subnet, err = m.pickSubnet(); err != nil {
			return nil, err
		}
	}
	pool, err := ipam.NewPool(subnet, gateway)
	if err != nil {
		return nil, err
	}
	if err := m.checkSubnet(pool.Subnet, subnet, bridge); err != nil {
		return nil, err
	}
	id := newID()
	if bridge == "" {
		bridge = "br-" + id[:12]
	}
	lbl := map[string]string{}
	for k, v := range labels {
		lbl[k] = v
	}
	n := &netState{
		Network: Network{ID: id, Name: name, Subnet: pool.Subnet.String(), Gateway: pool.Gateway.String(),
			Bridge: bridge, Internal: internal, Labels: lbl, Created: time.Now().UTC()},
		Pool:      pool,
		Endpoints: map[string]*Endpoint{},
	}
	created, err := m.ensureBridge(n)
	if err != nil {
		return nil, fmt.Errorf("network %q: %w", name, err)
	}
	m.st.Networks[name] = n
	defer func() {
		if err != nil {
			delete(m.st.Networks, name)
			m.stopDNS(name)
			m.applyRules()
			if created {
				netlink.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}})
			}
		}
	}()
	if err = m.applyRules(); err != nil {
		return nil, err
	}
	if err = m.startDNS(n); err != nil {
		return nil, err
	}
	if err = m.save(); err != nil {
		return nil, err
	}
	m.rebuildNames(n)
	return n, nil
}

func (m *Manager) view(n *netState) Network {
	v := n.Network
	v.Labels = map[string]string{}
	for k, val := range n.Labels {
		v.Labels[k] = val
	}
	v.Endpoints = map[string]Endpoint{}
	for cid, ep := range n.Endpoints {
		e := *ep
		e.Aliases = append([]string(nil), ep.Aliases...)
		v.Endpoints[cid] = e
	}
	return v
}

// Get returns the network called name or whose ID starts with name.
func (m *Manager) Get(name string) (Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.find(name)
	if err != nil {
		return Network{}, err
	}
	return m.view(n), nil
}

func (m *Manager) find(name string) (*netState, error) {
	if n, ok := m.st.Networks[name]; ok {
		return n, nil
	}
	if name != "" {
		var hit *netState
		for _, n := range m.st.Networks {
			if n.ID == name || (len(name) >= 3 && strings.HasPrefix(n.ID, name)) {
				if hit != nil {
					return nil, fmt.Errorf("network %q: ambiguous ID prefix: %w", name, errdefs.ErrInvalidArgument)
				}
				hit = n
			}
		}
		if hit != nil {
			return hit, nil
		}
	}
	return nil, fmt.Errorf("network %q: %w", name, errdefs.ErrNotFound)
}

// List returns all networks sorted by name.
func (m *Manager) List() []Network {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Network
	for _, n := range m.sortedNetworks() {
		out = append(out, m.view(n))
	}
	return out
}

// Remove deletes a network that has no endpoints: DNS server, rules, bridge.
func (m *Manager) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.find(name)
	if err != nil {
		return err
	}
	return m.removeLocked(n)
}

func (m *Manager) removeLocked(n *netState) error {
	if n.Name == DefaultNetwork {
		return fmt.Errorf("network %q: the default network cannot be removed: %w", n.Name, errdefs.ErrForbidden)
	}
	if len(n.Endpoints) > 0 {
		ids := make([]string, 0, len(n.Endpoints))
		for cid := range n.Endpoints {
			ids = append(ids, shortID(cid))
		}
		sort.Strings(ids)
		return fmt.Errorf("network %q has active endpoints (containers %s): %w", n.Name, strings.Join(ids, ", "), errdefs.ErrConflict)
	}
	delete(m.st.Networks, n.Name)
	if err := m.applyRules(); err != nil {
		m.st.Networks[n.Name] = n
		return err
	}
	m.stopDNS(n.Name)
	if err := netlink.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge}}); err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) && !errors.Is(err, unix.ENODEV) {
			m.log.Warn("delete bridge", "bridge", n.Bridge, "err", err)
		}
	}
	m.nmu.Lock()
	delete(m.names, n.Name)
	delete(m.gateways, n.Pool.Gateway)
	m.nmu.Unlock()
	return m.save()
}

// Prune removes every user network without endpoints and returns their names.
func (m *Manager) Prune() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, n := range m.sortedNetworks() {
		if n.Name == DefaultNetwork || len(n.Endpoints) > 0 {
			continue
		}
		if err := m.removeLocked(n); err != nil {
			return out, err
		}
		out = append(out, n.Name)
	}
	return out, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func vethName(netID, cid string) string {
	sum := sha256.Sum256([]byte(netID + "/" + cid))
	return "vb" + hex.EncodeToString(sum[:])[:12]
}

func macFor(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

// Connect attaches container containerID, whose network namespace is at
// netnsPath, to network: a veth pair (host end on the bridge, the other end
// named eth0, eth1… in the namespace), an address from the network's pool
// (opts.IP for a static one), lo and eth up, and a default route via the
// gateway if the namespace has none yet (so the first network wins). Its
// name, hostname and aliases become resolvable on the network.
func (m *Manager) Connect(containerID, netnsPath, network string, opts EndpointOpts) (_ Endpoint, err error) {
	if err := validID(containerID); err != nil {
		return Endpoint{}, err
	}
	for _, a := range append([]string{opts.Name, opts.Hostname}, opts.Aliases...) {
		if strings.ContainsAny(a, " \t\n/") {
			return Endpoint{}, fmt.Errorf("alias %q: want a DNS name: %w", a, errdefs.ErrInvalidArgument)
		}
	}
	for _, a := range opts.Aliases {
		if a == "" {
			return Endpoint{}, fmt.Errorf("alias %q: empty: %w", a, errdefs.ErrInvalidArgument)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.find(network)
	if err != nil {
		return Endpoint{}, err
	}
	if _, ok := n.Endpoints[containerID]; ok {
		return Endpoint{}, fmt.Errorf("container %q is already connected to network %q: %w", shortID(containerID), n.Name, errdefs.ErrAlreadyExists)
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return Endpoint{}, fmt.Errorf("network namespace %q: %w", netnsPath, errdefs.ErrNotFound)
	}
	defer ns.Close()

	used := map[string]bool{}
	for _, other := range m.st.Networks {
		if ep, ok := other.Endpoints[containerID]; ok {
			used[ep.IfName] = true
		}
	}
	ifName := ""
	for i := 0; ; i++ {
		if ifName = fmt.Sprintf("eth%d", i); !used[ifName] {
			break
		}
	}
	var ip netip.Addr
	if opts.IP != "" {
		ip, err = n.Pool.AllocateStatic(opts.IP, containerID)
	} else {
		ip, err = n.Pool.Allocate(containerID)
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("network %q: %w", n.Name, err)
	}
	hostName := vethName(n.ID, containerID)
	defer func() {
		if err != nil {
			netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}})
			n.Pool.Release(ip)
		}
	}()
	mac := macFor(ip)
	if opts.MAC != "" {
		if mac, err = net.ParseMAC(opts.MAC); err != nil || len(mac) != 6 {
			return Endpoint{}, fmt.Errorf("mac address %q: want six hex bytes like 02:42:ac:11:00:02: %w", opts.MAC, errdefs.ErrInvalidArgument)
		}
	}
	if l, lerr := netlink.LinkByName(hostName); lerr == nil {
		netlink.LinkDel(l) // leftover of an interrupted Connect
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return Endpoint{}, fmt.Errorf("network %q: bridge %s: %w", n.Name, n.Bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: hostName, MasterIndex: br.Attrs().Index, MTU: br.Attrs().MTU},
		PeerName:         ifName,
		PeerNamespace:    netlink.NsFd(ns),
		PeerHardwareAddr: mac,
		PeerMTU:          uint32(br.Attrs().MTU),
	}
	if err = netlink.LinkAdd(veth); err != nil {
		return Endpoint{}, fmt.Errorf("network %q: create veth %s: %w", n.Name, hostName, err)
	}
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return Endpoint{}, fmt.Errorf("network %q: veth %s: %w", n.Name, hostName, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err = netlink.LinkSetMasterByIndex(host, br.Attrs().Index); err != nil {
			return Endpoint{}, fmt.Errorf("network %q: attach %s to %s: %w", n.Name, hostName, n.Bridge, err)
		}
	}
	// Hairpin: with br_netfilter the DNAT of a container's own published
	// port happens while bridging, and the frame must go back out the port
	// it came in on.
	if err = netlink.LinkSetHairpin(host, true); err != nil {
		return Endpoint{}, fmt.Errorf("network %q: hairpin on %s: %w", n.Name, hostName, err)
	}
	if err = netlink.LinkSetUp(host); err != nil {
		return Endpoint{}, fmt.Errorf("network %q: up %s: %w", n.Name, hostName, err)
	}
	if err = configureInside(ns, ifName, ip, n.Pool.Subnet.Bits(), n.Pool.Gateway, !n.Internal); err != nil {
		return Endpoint{}, fmt.Errorf("network %q: inside %s: %w", n.Name, netnsPath, err)
	}
	m.st.Seq++
	ep := &Endpoint{
		ContainerID: containerID, Network: n.Name, NetworkID: n.ID,
		IfName: ifName, HostIfName: hostName,
		IP: ip.String(), PrefixLen: n.Pool.Subnet.Bits(), Gateway: n.Pool.Gateway.String(), MAC: mac.String(),
		Name: opts.Name, Hostname: opts.Hostname, Aliases: append([]string(nil), opts.Aliases...),
		NetNSPath: netnsPath, DNS: n.Pool.Gateway.String(), Seq: m.st.Seq,
	}
	n.Endpoints[containerID] = ep
	if len(m.st.Ports[containerID]) > 0 {
		if err = m.applyRules(); err != nil {
			delete(n.Endpoints, containerID)
			return Endpoint{}, err
		}
	}
	if err = m.save(); err != nil {
		delete(n.Endpoints, containerID)
		return Endpoint{}, err
	}
	m.rebuildNames(n)
	return *ep, nil
}

// configureInside addresses ifName inside ns, brings it and lo up and, when
// defaultRoute is set and the namespace has no default route yet, routes
// through gw (internal networks give no default route, as in Docker).
func configureInside(ns netns.NsHandle, ifName string, ip netip.Addr, bits int, gw netip.Addr, defaultRoute bool) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(ifName)
	if err != nil {
		return err
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(bits, 32)}}); err != nil {
		return fmt.Errorf("add address %s/%d: %w", ip, bits, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("up %s: %w", ifName, err)
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	if !defaultRoute {
		return nil
	}
	return ensureDefaultRoute(h, link, gw)
}

func ensureDefaultRoute(h *netlink.Handle, link netlink.Link, gw netip.Addr) error {
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst == nil {
			return nil // already has a default route (an earlier network)
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			return nil
		}
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// restoreDefaultRoute gives containerID a default route through its oldest
// remaining non-internal endpoint after the one holding it went away.
func (m *Manager) restoreDefaultRoute(containerID string) {
	ep, ok := m.portTarget(containerID)
	if !ok {
		return
	}
	ns, err := netns.GetFromPath(ep.NetNSPath)
	if err != nil {
		return
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return
	}
	defer h.Close()
	link, err := h.LinkByName(ep.IfName)
	if err != nil {
		return
	}
	if err := ensureDefaultRoute(h, link, netip.MustParseAddr(ep.Gateway)); err != nil {
		m.log.Warn("restore default route", "container", containerID, "err", err)
	}
}

// Disconnect detaches containerID from network and releases its address.
func (m *Manager) Disconnect(containerID, network string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.find(network)
	if err != nil {
		return err
	}
	if _, ok := n.Endpoints[containerID]; !ok {
		return fmt.Errorf("container %q is not connected to network %q: %w", shortID(containerID), n.Name, errdefs.ErrNotFound)
	}
	m.releaseLocked(n, containerID)
	if _, ok := m.portTarget(containerID); !ok {
		m.dropPortsLocked(containerID)
	} else {
		m.restoreDefaultRoute(containerID)
	}
	if err := m.applyRules(); err != nil {
		return err
	}
	m.rebuildNames(n)
	return m.save()
}

// DisconnectAll detaches containerID from every network and unpublishes
// its ports (container stop or removal). Safe to call for a container with
// no endpoints.
func (m *Manager) DisconnectAll(containerID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.disconnectAllLocked(containerID)
}

func (m *Manager) disconnectAllLocked(containerID string) error {
	hadPorts := len(m.st.Ports[containerID]) > 0
	m.dropPortsLocked(containerID)
	changed := hadPorts
	for _, n := range m.st.Networks {
		if _, ok := n.Endpoints[containerID]; ok {
			m.releaseLocked(n, containerID)
			m.rebuildNames(n)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if hadPorts {
		if err := m.applyRules(); err != nil {
			return err
		}
	}
	return m.save()
}

// releaseLocked deletes the veth of containerID on n and frees its address.
func (m *Manager) releaseLocked(n *netState, containerID string) {
	ep := n.Endpoints[containerID]
	if ep == nil {
		return
	}
	if err := netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ep.HostIfName}}); err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) && !errors.Is(err, unix.ENODEV) {
			m.log.Warn("delete veth", "link", ep.HostIfName, "err", err)
		}
	}
	if a, err := netip.ParseAddr(ep.IP); err == nil {
		n.Pool.Release(a)
	}
	delete(n.Endpoints, containerID)
}

// Endpoints returns the endpoints of containerID, lowest Seq first.
func (m *Manager) Endpoints(containerID string) []Endpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Endpoint
	for _, n := range m.st.Networks {
		if ep, ok := n.Endpoints[containerID]; ok {
			e := *ep
			e.Aliases = append([]string(nil), ep.Aliases...)
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// portTarget is the endpoint that receives containerID's published ports:
// its oldest endpoint on a non-internal network.
func (m *Manager) portTarget(containerID string) (*Endpoint, bool) {
	var best *Endpoint
	for _, n := range m.st.Networks {
		if n.Internal {
			continue
		}
		if ep, ok := n.Endpoints[containerID]; ok && (best == nil || ep.Seq < best.Seq) {
			best = ep
		}
	}
	return best, best != nil
}

func normalizePort(p PortMapping) (PortMapping, error) {
	switch p.Proto {
	case "":
		p.Proto = "tcp"
	case "tcp", "udp":
	default:
		return p, fmt.Errorf("port %d: protocol %q: want tcp or udp: %w", p.ContainerPort, p.Proto, errdefs.ErrInvalidArgument)
	}
	if p.ContainerPort == 0 {
		return p, fmt.Errorf("port mapping %+v: container port 0: %w", p, errdefs.ErrInvalidArgument)
	}
	if p.HostIP != "" {
		a, err := netip.ParseAddr(p.HostIP)
		if err != nil || !a.Is4() {
			return p, fmt.Errorf("host ip %q: want an IPv4 address: %w", p.HostIP, errdefs.ErrInvalidArgument)
		}
		p.HostIP = a.String()
		if a.IsUnspecified() {
			p.HostIP = ""
		}
	}
	return p, nil
}

func hostAddr(p PortMapping) string {
	ip := p.HostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return net.JoinHostPort(ip, fmt.Sprint(p.HostPort))
}

// reservePorts binds a socket on each host port so no other program can
// take it while it is published (Docker's docker-proxy holds it the same
// way); port 0 gets a free port from the kernel. On error nothing stays
// bound.
func reservePorts(ports []PortMapping) ([]io.Closer, []PortMapping, error) {
	var closers []io.Closer
	out := make([]PortMapping, len(ports))
	fail := func(err error) ([]io.Closer, []PortMapping, error) {
		for _, c := range closers {
			c.Close()
		}
		return nil, nil, err
	}
	for i, p := range ports {
		var (
			c    io.Closer
			port int
			err  error
		)
		if p.Proto == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp4", hostAddr(p)); err == nil {
				c, port = pc, pc.LocalAddr().(*net.UDPAddr).Port
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp4", hostAddr(p)); err == nil {
				c, port = l, l.Addr().(*net.TCPAddr).Port
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, syscall.EADDRINUSE):
				return fail(fmt.Errorf("port %s/%s is already in use on the host: %w", hostAddr(p), p.Proto, errdefs.ErrConflict))
			case errors.Is(err, syscall.EADDRNOTAVAIL):
				return fail(fmt.Errorf("host ip %q is not an address of this host: %w", p.HostIP, errdefs.ErrInvalidArgument))
			default:
				return fail(fmt.Errorf("reserve port %s/%s: %w", hostAddr(p), p.Proto, err))
			}
		}
		closers = append(closers, c)
		p.HostPort = uint16(port)
		out[i] = p
	}
	return closers, out, nil
}

// PublishPorts publishes ports of containerID on the host (DNAT to its
// first non-internal endpoint) and returns them with the chosen host ports.
// A host port that is taken is an errdefs.ErrConflict error; on any error
// nothing is published.
func (m *Manager) PublishPorts(containerID string, ports []PortMapping) ([]PortMapping, error) {
	norm := make([]PortMapping, 0, len(ports))
	for _, p := range ports {
		q, err := normalizePort(p)
		if err != nil {
			return nil, err
		}
		norm = append(norm, q)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.portTarget(containerID); !ok {
		return nil, fmt.Errorf("container %q: publishing ports needs an endpoint on a non-internal network: %w", shortID(containerID), errdefs.ErrInvalidArgument)
	}
	closers, resolved, err := reservePorts(norm)
	if err != nil {
		return nil, err
	}
	prev := m.st.Ports[containerID]
	m.st.Ports[containerID] = append(append([]PortMapping(nil), prev...), resolved...)
	undo := func() {
		for _, c := range closers {
			c.Close()
		}
		if prev == nil {
			delete(m.st.Ports, containerID)
		} else {
			m.st.Ports[containerID] = prev
		}
	}
	if err := m.applyRules(); err != nil {
		undo()
		m.applyRules()
		return nil, err
	}
	if err := m.save(); err != nil {
		undo()
		m.applyRules()
		return nil, err
	}
	m.reserved[containerID] = append(m.reserved[containerID], closers...)
	return resolved, nil
}

// UnpublishPorts removes every published port of containerID.
func (m *Manager) UnpublishPorts(containerID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.st.Ports[containerID]) == 0 {
		return nil
	}
	m.dropPortsLocked(containerID)
	if err := m.applyRules(); err != nil {
		return err
	}
	return m.save()
}

// Ports returns the published ports of containerID.
func (m *Manager) Ports(containerID string) []PortMapping {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]PortMapping(nil), m.st.Ports[containerID]...)
}

func (m *Manager) dropPortsLocked(containerID string) {
	for _, c := range m.reserved[containerID] {
		c.Close()
	}
	delete(m.reserved, containerID)
	delete(m.st.Ports, containerID)
}

func (m *Manager) applyRules() error {
	var rs nft.Ruleset
	for _, n := range m.sortedNetworks() {
		rs.Bridges = append(rs.Bridges, nft.Bridge{Name: n.Bridge, Subnet: n.Pool.Subnet, Gateway: n.Pool.Gateway, Internal: n.Internal})
	}
	cids := make([]string, 0, len(m.st.Ports))
	for cid := range m.st.Ports {
		cids = append(cids, cid)
	}
	sort.Strings(cids)
	for _, cid := range cids {
		ep, ok := m.portTarget(cid)
		if !ok {
			continue
		}
		addr := netip.MustParseAddr(ep.IP)
		for _, p := range m.st.Ports[cid] {
			np := nft.Port{Proto: p.Proto, HostPort: p.HostPort, Addr: addr, Port: p.ContainerPort}
			if p.HostIP != "" {
				np.HostIP = netip.MustParseAddr(p.HostIP)
			}
			rs.Ports = append(rs.Ports, np)
		}
	}
	if err := nft.Apply(m.cfg.NftTable, rs); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

func (m *Manager) startDNS(n *netState) error {
	if m.dns[n.Name] != nil {
		return nil
	}
	var ups func() []string
	if !n.Internal {
		ups = m.upstreams
	}
	name := n.Name
	s, err := dns.Listen(dns.Options{
		Addr:      net.JoinHostPort(n.Pool.Gateway.String(), "53"),
		Allow:     n.Pool.Subnet,
		Lookup:    func(q string) []netip.Addr { return m.lookup(name, q) },
		Upstreams: ups,
		Logger:    m.log,
	})
	if err != nil {
		return fmt.Errorf("network %q: embedded DNS: %w", n.Name, err)
	}
	m.dns[n.Name] = s
	m.nmu.Lock()
	m.gateways[n.Pool.Gateway] = true
	m.nmu.Unlock()
	return nil
}

func (m *Manager) stopDNS(name string) {
	if s := m.dns[name]; s != nil {
		s.Close()
		delete(m.dns, name)
	}
}

func (m *Manager) lookup(network, name string) []netip.Addr {
	m.nmu.RLock()
	defer m.nmu.RUnlock()
	return m.names[network][name]
}

// rebuildNames recomputes the DNS names of network n: each endpoint's
// container name, hostname, aliases, full and short container ID.
func (m *Manager) rebuildNames(n *netState) {
	names := map[string][]netip.Addr{}
	add := func(name string, a netip.Addr) {
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		if name == "" {
			return
		}
		for _, have := range names[name] {
			if have == a {
				return
			}
		}
		names[name] = append(names[name], a)
	}
	for cid, ep := range n.Endpoints {
		a, err := netip.ParseAddr(ep.IP)
		if err != nil {
			continue
		}
		add(ep.Name, a)
		add(ep.Hostname, a)
		for _, al := range ep.Aliases {
			add(al, a)
		}
		add(cid, a)
		add(shortID(cid), a)
	}
	for _, as := range names {
		sort.Slice(as, func(i, j int) bool { return as[i].Less(as[j]) })
	}
	m.nmu.Lock()
	m.names[n.Name] = names
	m.nmu.Unlock()
}

// Recover releases the endpoints, published ports and namespace files of
// every container for which running returns false. Call it once after New,
// when the daemon knows which containers survived.
func (m *Manager) Recover(running func(containerID string) bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := map[string]bool{}
	for _, n := range m.st.Networks {
		for cid := range n.Endpoints {
			ids[cid] = true
		}
	}
	for cid := range m.st.Ports {
		ids[cid] = true
	}
	for _, cid := range m.listNetNS() {
		ids[cid] = true
	}
	var errs []error
	for cid := range ids {
		if running(cid) {
			continue
		}
		m.log.Info("releasing network resources of a container that no longer runs", "container", cid)
		if err := m.disconnectAllLocked(cid); err != nil {
			errs = append(errs, err)
		}
		if err := m.DeleteNetNS(cid); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) stopAllLocked() {
	for name := range m.dns {
		m.stopDNS(name)
	}
	for cid, cs := range m.reserved {
		for _, c := range cs {
			c.Close()
		}
		delete(m.reserved, cid)
	}
}

// Close stops the DNS servers and releases the port reservations. The
// bridges, endpoints and rules stay, so running containers keep their
// network while the daemon is down. With cleanup (daemon --cleanup) it
// also deletes every veth, namespace file, bridge, the nftables table and
// the state file.
func (m *Manager) Close(cleanup bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopAllLocked()
	if !cleanup {
		// Running containers keep their namespace files (the next daemon
		// adopts them); with none left, the shared directory mount goes
		// too, so the daemon's root can be removed.
		if len(m.listNetNS()) == 0 {
			dir := filepath.Join(m.cfg.StateDir, "netns")
			if err := unix.Unmount(dir, unix.MNT_DETACH); err == nil {
				netnsDirOnce.Delete(dir)
			}
		}
		return nil
	}
	var errs []error
	for _, n := range m.st.Networks {
		for cid := range n.Endpoints {
			m.releaseLocked(n, cid)
		}
	}
	for _, cid := range m.listNetNS() {
		if err := m.DeleteNetNS(cid); err != nil {
			errs = append(errs, err)
		}
	}
	if err := nft.Delete(m.cfg.NftTable); err != nil {
		errs = append(errs, err)
	}
	for _, n := range m.st.Networks {
		if err := netlink.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge}}); err != nil {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete bridge %s: %w", n.Bridge, err))
			}
		}
	}
	dir := filepath.Join(m.cfg.StateDir, "netns")
	if err := unix.Unmount(dir, unix.MNT_DETACH); err == nil {
		netnsDirOnce.Delete(dir)
	}
	os.Remove(dir)
	if err := os.Remove(m.statePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	m.st.Networks = map[string]*netState{}
	m.st.Ports = map[string][]PortMapping{}
	return errors.Join(errs...)
}

// Table is the name of this daemon's nftables table.
func (m *Manager) Table() string { return m.cfg.NftTable }
