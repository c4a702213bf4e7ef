// Package ipam owns IPv4 address allocation inside one network's subnet: the
// gateway, static (--ip) and dynamic leases, and their release. A Pool is
// plain data (JSON-serialisable) so the network manager persists it with the
// rest of its state; it performs no I/O.
package ipam

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/berth/berth/internal/errdefs"
)

// Pool hands out the addresses of one IPv4 subnet. The network address, the
// broadcast address and the gateway are never leased. Dynamic allocation
// continues after the last address handed out (wrapping around), so a just
// released address is not reused at once, as Docker does.
type Pool struct {
	Subnet  netip.Prefix          `json:"subnet"`
	Gateway netip.Addr            `json:"gateway"`
	Leases  map[netip.Addr]string `json:"leases"` // address -> owner (endpoint key)
	Last    netip.Addr            `json:"last,omitzero"`
}

// NewPool validates subnet and gateway and returns an empty pool. An empty
// gateway picks the first usable address of the subnet.
func NewPool(subnet, gateway string) (*Pool, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return nil, fmt.Errorf("subnet %q: want an IPv4 CIDR such as 172.30.0.0/16: %w", subnet, errdefs.ErrInvalidArgument)
	}
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("subnet %q: only IPv4 subnets are supported: %w", subnet, errdefs.ErrInvalidArgument)
	}
	if p.Bits() > 30 {
		return nil, fmt.Errorf("subnet %q: prefix longer than /30 leaves no room for a gateway and a container: %w", subnet, errdefs.ErrInvalidArgument)
	}
	if p.Bits() < 8 {
		return nil, fmt.Errorf("subnet %q: prefix shorter than /8 is not supported: %w", subnet, errdefs.ErrInvalidArgument)
	}
	if p.Masked() != p {
		return nil, fmt.Errorf("subnet %q: host bits are set, did you mean %s?: %w", subnet, p.Masked(), errdefs.ErrInvalidArgument)
	}
	pool := &Pool{Subnet: p, Leases: map[netip.Addr]string{}}
	if gateway == "" {
		pool.Gateway = p.Addr().Next()
		return pool, nil
	}
	gw, err := netip.ParseAddr(gateway)
	if err != nil {
		return nil, fmt.Errorf("gateway %q: want an IPv4 address: %w", gateway, errdefs.ErrInvalidArgument)
	}
	if !pool.usable(gw) {
		return nil, fmt.Errorf("gateway %q: not a usable address of subnet %s: %w", gateway, p, errdefs.ErrInvalidArgument)
	}
	pool.Gateway = gw
	return pool, nil
}

// broadcast returns the last address of the subnet.
func (p *Pool) broadcast() netip.Addr {
	a := p.Subnet.Addr().As4()
	host := uint32(1)<<(32-p.Subnet.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (p *Pool) usable(a netip.Addr) bool {
	return a.Is4() && p.Subnet.Contains(a) && a != p.Subnet.Addr() && a != p.broadcast()
}

// Size is the number of addresses that can be leased (excluding network,
// broadcast and gateway).
func (p *Pool) Size() int {
	return 1<<(32-p.Subnet.Bits()) - 3
}

// Allocate leases the next free address to owner. It fails with
// errdefs.ErrUnavailable when the subnet is full.
func (p *Pool) Allocate(owner string) (netip.Addr, error) {
	if p.Leases == nil {
		p.Leases = map[netip.Addr]string{}
	}
	start := p.Last
	if !start.IsValid() || !p.Subnet.Contains(start) {
		start = p.Subnet.Addr()
	}
	a := start
	for range 1 << (32 - p.Subnet.Bits()) {
		a = a.Next()
		if !p.Subnet.Contains(a) {
			a = p.Subnet.Addr()
			continue
		}
		if !p.usable(a) || a == p.Gateway {
			continue
		}
		if _, taken := p.Leases[a]; taken {
			continue
		}
		p.Leases[a] = owner
		p.Last = a
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("subnet %s: no free address left: %w", p.Subnet, errdefs.ErrUnavailable)
}

// AllocateStatic leases addr (a --ip request) to owner.
func (p *Pool) AllocateStatic(addr, owner string) (netip.Addr, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("ip %q: want an IPv4 address: %w", addr, errdefs.ErrInvalidArgument)
	}
	if !p.Subnet.Contains(a) {
		return netip.Addr{}, fmt.Errorf("ip %q: outside subnet %s: %w", addr, p.Subnet, errdefs.ErrInvalidArgument)
	}
	if !p.usable(a) || a == p.Gateway {
		return netip.Addr{}, fmt.Errorf("ip %q: reserved in subnet %s (network, broadcast or gateway address): %w", addr, p.Subnet, errdefs.ErrInvalidArgument)
	}
	if p.Leases == nil {
		p.Leases = map[netip.Addr]string{}
	}
	if o, taken := p.Leases[a]; taken {
		return netip.Addr{}, fmt.Errorf("ip %q: already in use by %s: %w", addr, o, errdefs.ErrConflict)
	}
	p.Leases[a] = owner
	return a, nil
}

// Release returns addr to the pool. Releasing a free address is a no-op.
func (p *Pool) Release(addr netip.Addr) {
	delete(p.Leases, addr)
}

// InUse lists the leased addresses in order.
func (p *Pool) InUse() []netip.Addr {
	out := make([]netip.Addr, 0, len(p.Leases))
	for a := range p.Leases {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
