// Package network owns the engine's container networking on one host:
// bridge networks (the default "bridge" on berth0 and user-defined ones),
// per-network IPAM with persisted leases, veth endpoints inside container
// network namespaces (and the named namespaces themselves), the embedded DNS
// server of each network, masquerade, isolation between networks and
// published ports in one nftables table per daemon, and the resolv.conf and
// hosts files a container gets. See docs/networking.md for the design.
//
// Lifecycle: New (reconciles with what exists) → Recover(running) once the
// daemon knows which containers still run → per container CreateNetNS,
// Connect, PublishPorts … DisconnectAll, DeleteNetNS → Close.
package network

import (
	"log/slog"
	"time"
)

// DefaultNetwork is the name of the network created on start.
const DefaultNetwork = "bridge"

// Config configures a Manager.
type Config struct {
	// StateDir holds network.json and netns/<container id> (required).
	StateDir string
	// BridgeName of the default network; "" means "berth0".
	BridgeName string
	// DefaultSubnet of the default network; "" means "172.30.0.0/16".
	DefaultSubnet string
	// NftTable is the name of this daemon's nftables table (family ip); ""
	// derives "berth_" + 8 hex digits of a hash of StateDir, so two
	// daemons with different state directories never share a table.
	NftTable string
	// ResolvConf is the host's resolver configuration the embedded DNS
	// forwards to; "" means /etc/resolv.conf.
	ResolvConf string
	// DNSUpstreams, when set, replaces the resolvers of ResolvConf
	// ("ip:port" each).
	DNSUpstreams []string
	Logger       *slog.Logger
}

// Network describes one network.
type Network struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Subnet   string            `json:"subnet"`
	Gateway  string            `json:"gateway"`
	Bridge   string            `json:"bridge"`
	Internal bool              `json:"internal,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Created  time.Time         `json:"created"`
	// Endpoints of the network by container ID (filled by Get and List).
	Endpoints map[string]Endpoint `json:"-"`
}

// EndpointOpts are the per-connection options (docker run --ip,
// --network-alias, the container's name and hostname, --mac-address).
type EndpointOpts struct {
	IP       string
	Aliases  []string
	Name     string // container name; resolvable on the network
	Hostname string // resolvable on the network too
	MAC      string // "" derives 02:42:<ip>
}

// Endpoint is one container's attachment to one network.
type Endpoint struct {
	ContainerID string   `json:"container_id"`
	Network     string   `json:"network"`
	NetworkID   string   `json:"network_id"`
	IfName      string   `json:"ifname"`      // inside the container: eth0, eth1…
	HostIfName  string   `json:"host_ifname"` // host end of the veth pair
	IP          string   `json:"ip"`
	PrefixLen   int      `json:"prefix_len"`
	Gateway     string   `json:"gateway"`
	MAC         string   `json:"mac"`
	Name        string   `json:"name,omitempty"`
	Hostname    string   `json:"hostname,omitempty"`
	Aliases     []string `json:"aliases,omitempty"`
	NetNSPath   string   `json:"netns_path"`
	// DNS is the embedded DNS server for this network (the gateway);
	// put it in the container's resolv.conf.
	DNS string `json:"dns"`
	// Seq orders a container's endpoints: the lowest holds the default
	// route and receives its published ports.
	Seq uint64 `json:"seq"`
}

// PortMapping is one published port (-p). HostIP "" means every host
// address; HostPort 0 asks for a random free port (PublishPorts returns the
// chosen one). Proto is "tcp" or "udp".
type PortMapping struct {
	HostIP        string `json:"host_ip,omitempty"`
	HostPort      uint16 `json:"host_port"`
	ContainerPort uint16 `json:"container_port"`
	Proto         string `json:"proto"`
}
