package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/engine/network"
	"github.com/berth/berth/internal/engine/network/dns"
	"github.com/berth/berth/internal/errdefs"
)

// networkRequest turns the create request's network mode, endpoint
// configs and port bindings into what the container record keeps.
func (d *Daemon) networkRequest(req api.CreateRequest, hc *api.HostConfig) ([]container.NetworkAttachment, []network.PortMapping, error) {
	mode := hc.NetworkMode
	defaultMode := mode == "" || mode == "default"
	if defaultMode {
		mode = network.DefaultNetwork
	}
	hc.NetworkMode = mode
	if mode == "none" || mode == "host" {
		if len(hc.PortBindings) > 0 || hc.PublishAllPorts {
			return nil, nil, fmt.Errorf("published ports need a bridge network (not --network %s): %w", mode, errdefs.ErrInvalidArgument)
		}
		return nil, nil, nil
	}
	if _, ok := joinedContainer(mode); ok {
		// checkNamespaceModes checked it; resolveNamespaces joins it.
		return nil, nil, nil
	}
	if _, err := d.net.Get(mode); err != nil {
		return nil, nil, fmt.Errorf("network %s not found (create it with `berth network create %s`): %w", mode, mode, errdefs.ErrNotFound)
	}
	primary := container.NetworkAttachment{Name: mode}
	var extra []container.NetworkAttachment
	if req.NetworkingConfig != nil {
		names := make([]string, 0, len(req.NetworkingConfig.EndpointsConfig))
		for n := range req.NetworkingConfig.EndpointsConfig {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			ec := req.NetworkingConfig.EndpointsConfig[n]
			a := container.NetworkAttachment{Name: n}
			if ec != nil {
				a.Aliases = ec.Aliases
				if ec.IPAMConfig != nil {
					a.IP = ec.IPAMConfig.IPv4Address
				}
			}
			// The docker CLI names the endpoint of NetworkMode "default"
			// "default" too.
			if n == mode || (defaultMode && n == "default") {
				primary = a
				primary.Name = mode
				continue
			}
			if _, err := d.net.Get(n); err != nil {
				return nil, nil, fmt.Errorf("network %s not found: %w", n, errdefs.ErrNotFound)
			}
			extra = append(extra, a)
		}
	}
	if (primary.IP != "" || len(primary.Aliases) > 0) && mode == network.DefaultNetwork {
		return nil, nil, fmt.Errorf("user specified IP address and aliases are supported only on user defined networks, not on the default bridge: %w", errdefs.ErrInvalidArgument)
	}
	var ports []network.PortMapping
	keys := make([]string, 0, len(hc.PortBindings))
	for k := range hc.PortBindings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cport, proto, _ := strings.Cut(k, "/")
		if proto == "" {
			proto = "tcp"
		}
		cp, err := strconv.ParseUint(cport, 10, 16)
		if err != nil || cp == 0 || (proto != "tcp" && proto != "udp") {
			return nil, nil, fmt.Errorf("invalid port %q: want PORT[/tcp|udp] with PORT from 1 to 65535: %w", k, errdefs.ErrInvalidArgument)
		}
		bindings := hc.PortBindings[k]
		if len(bindings) == 0 {
			bindings = []api.PortBinding{{}}
		}
		for _, b := range bindings {
			var hp uint64
			if b.HostPort != "" {
				if hp, err = strconv.ParseUint(b.HostPort, 10, 16); err != nil {
					return nil, nil, fmt.Errorf("invalid host port %q for %s: %w", b.HostPort, k, errdefs.ErrInvalidArgument)
				}
			}
			ports = append(ports, network.PortMapping{HostIP: b.HostIP, HostPort: uint16(hp), ContainerPort: uint16(cp), Proto: proto})
		}
	}
	if hc.PublishAllPorts {
		var exposed []string
		for p := range req.ExposedPorts {
			exposed = append(exposed, p)
		}
		sort.Strings(exposed)
		all, err := network.ExposeAll(exposed)
		if err != nil {
			return nil, nil, err
		}
		ports = append(ports, all...)
	}
	return append([]container.NetworkAttachment{primary}, extra...), ports, nil
}

// setupNetwork gives a starting container its network namespace,
// endpoints, published ports and /etc files. It returns the namespace for
// the spec and the file mounts. On error nothing is left behind.
func (d *Daemon) setupNetwork(c *container.Container) (netns string, mounts []specs.Mount, err error) {
	mode := c.HostConfig.NetworkMode
	if mode == "none" || mode == "host" {
		if mode == "host" {
			netns = "host"
			resolv, err := hostModeResolvConf(c)
			if err != nil {
				return "", nil, err
			}
			mounts = append(mounts, resolv, roBind("/etc/hosts", "/etc/hosts"))
		}
		return netns, mounts, nil
	}
	defer func() {
		if err != nil {
			d.teardownNetwork(c)
		}
	}()
	path, err := d.net.CreateNetNS(c.ID)
	if err != nil {
		return "", nil, err
	}
	var eps []network.Endpoint
	for _, a := range c.Networks {
		ep, err := d.net.Connect(c.ID, path, a.Name, network.EndpointOpts{IP: a.IP, Aliases: a.Aliases, Name: c.Name, Hostname: c.Config.Hostname})
		if err != nil {
			return "", nil, fmt.Errorf("connecting to network %s: %w", a.Name, err)
		}
		eps = append(eps, ep)
	}
	if len(c.Ports) > 0 {
		if _, err := d.net.PublishPorts(c.ID, c.Ports); err != nil {
			return "", nil, err
		}
	}
	var hosts []network.HostsEntry
	for _, ep := range eps {
		hosts = append(hosts, network.HostsEntry{IP: ep.IP, Names: []string{c.Config.Hostname}})
	}
	for _, h := range c.HostConfig.ExtraHosts {
		e, err := network.ParseAddHost(h)
		if err != nil {
			return "", nil, err
		}
		hosts = append(hosts, e)
	}
	hostsPath := filepath.Join(c.Dir(), "hosts")
	if err := network.WriteHosts(hostsPath, hosts); err != nil {
		return "", nil, err
	}
	servers := c.HostConfig.DNS
	if len(servers) == 0 && len(eps) > 0 {
		servers = []string{eps[0].DNS}
	}
	resolvPath := filepath.Join(c.Dir(), "resolv.conf")
	if err := network.WriteResolvConf(resolvPath, servers, c.HostConfig.DNSSearch, c.HostConfig.DNSOptions); err != nil {
		return "", nil, err
	}
	hostnamePath := filepath.Join(c.Dir(), "hostname")
	if err := os.WriteFile(hostnamePath, []byte(c.Config.Hostname+"\n"), 0o644); err != nil {
		return "", nil, err
	}
	mounts = append(mounts, rwBind(hostsPath, "/etc/hosts"), rwBind(resolvPath, "/etc/resolv.conf"), rwBind(hostnamePath, "/etc/hostname"))
	return path, mounts, nil
}

// hostModeResolvConf is the /etc/resolv.conf of a container on the host's
// network: the host's own, or, when the container sets DNS servers,
// searches or options (as Docker allows with --network host), a file of
// its own written from them.
func hostModeResolvConf(c *container.Container) (specs.Mount, error) {
	hc := c.HostConfig
	if len(hc.DNS)+len(hc.DNSSearch)+len(hc.DNSOptions) == 0 {
		return roBind("/etc/resolv.conf", "/etc/resolv.conf"), nil
	}
	servers := hc.DNS
	if len(servers) == 0 {
		if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			servers = dns.ParseResolvConf(data).Nameservers
		}
	}
	p := filepath.Join(c.Dir(), "resolv.conf")
	if err := network.WriteResolvConf(p, servers, hc.DNSSearch, hc.DNSOptions); err != nil {
		return specs.Mount{}, err
	}
	return rwBind(p, "/etc/resolv.conf"), nil
}

func roBind(src, dst string) specs.Mount {
	return specs.Mount{Source: src, Destination: dst, Type: "bind", Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}}
}

func rwBind(src, dst string) specs.Mount {
	return specs.Mount{Source: src, Destination: dst, Type: "bind", Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}}
}

// teardownNetworkAsync tears the network of an exited container down in
// the background: deleting a veth waits on the kernel for tens of
// milliseconds, which neither `wait` nor removal needs to pay. A new start
// of the container waits for it (waitNetworkTeardown).
func (d *Daemon) teardownNetworkAsync(c *container.Container, l *live) {
	if !ownsNetwork(c) {
		return
	}
	done := make(chan struct{})
	l.mu.Lock()
	l.netDone = done
	l.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(done)
		d.teardownNetwork(c)
	}()
}

// waitNetworkTeardown waits for a background teardown; it reports whether
// there was one.
func (d *Daemon) waitNetworkTeardown(l *live) bool {
	l.mu.Lock()
	ch := l.netDone
	l.mu.Unlock()
	if ch == nil {
		return false
	}
	<-ch
	return true
}

// teardownNetwork releases a stopped container's endpoints, ports and
// namespace. It is safe to call again.
func (d *Daemon) teardownNetwork(c *container.Container) {
	if !ownsNetwork(c) {
		return
	}
	if err := d.net.DisconnectAll(c.ID); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
		d.log.Warn("disconnecting container", "id", c.ShortID(), "err", err)
	}
	if err := d.net.DeleteNetNS(c.ID); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("deleting network namespace", "id", c.ShortID(), "err", err)
	}
}

// ownsNetwork reports whether c has a network namespace of its own that
// the daemon sets up and tears down (not none, host or another's).
func ownsNetwork(c *container.Container) bool {
	m := c.HostConfig.NetworkMode
	return m != "none" && m != "host" && !strings.HasPrefix(m, "container:")
}

// networkSettings fills inspect's NetworkSettings. The caller holds c.Mu.
func (d *Daemon) networkSettings(c *container.Container, ns *api.NetworkSettings) {
	if c.HostConfig.NetworkMode == "host" || c.HostConfig.NetworkMode == "none" {
		ns.Networks[c.HostConfig.NetworkMode] = &api.EndpointSettings{}
		return
	}
	if !ownsNetwork(c) {
		return // Docker shows no networks for a container sharing another's
	}
	eps := d.net.Endpoints(c.ID)
	for i, ep := range eps {
		es := &api.EndpointSettings{NetworkID: ep.NetworkID, EndpointID: ep.ContainerID[:12] + "-" + ep.NetworkID[:12],
			Gateway: ep.Gateway, IPAddress: ep.IP, IPPrefixLen: ep.PrefixLen, MacAddress: ep.MAC, Aliases: ep.Aliases}
		ns.Networks[ep.Network] = es
		if i == 0 {
			ns.IPAddress = ep.IP
		}
	}
	for _, a := range c.Networks {
		if _, ok := ns.Networks[a.Name]; !ok {
			ns.Networks[a.Name] = &api.EndpointSettings{Aliases: a.Aliases}
		}
	}
	for _, p := range d.net.Ports(c.ID) {
		k := fmt.Sprintf("%d/%s", p.ContainerPort, p.Proto)
		ns.Ports[k] = append(ns.Ports[k], api.PortBinding{HostIP: p.HostIP, HostPort: strconv.Itoa(int(p.HostPort))})
	}
	for p := range c.Config.ExposedPorts {
		if _, ok := ns.Ports[p]; !ok {
			ns.Ports[p] = nil
		}
	}
}

// summaryPorts lists a container's published ports for `ps`.
func (d *Daemon) summaryPorts(c *container.Container) []api.Port {
	out := []api.Port{}
	for _, p := range d.net.Ports(c.ID) {
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		out = append(out, api.Port{IP: ip, PrivatePort: p.ContainerPort, PublicPort: p.HostPort, Type: p.Proto})
	}
	return out
}
