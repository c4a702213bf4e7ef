package clusterdns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureLink makes sure a dummy link name exists, is up and carries ip/32,
// and returns the link that holds the address. It is idempotent: an agent
// restart finds the link as it left it. A kernel without the dummy driver
// gets the address on the loopback device instead (packets from the
// bridge reach a local address on any device).
func EnsureLink(name string, ip netip.Addr) (string, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}})
		if errors.Is(err, unix.EOPNOTSUPP) {
			if l, err = netlink.LinkByName("lo"); err != nil {
				return "", fmt.Errorf("cluster DNS address %s: no dummy driver, and the loopback device: %w", ip, err)
			}
			break
		}
		if err != nil {
			return "", fmt.Errorf("cluster DNS link %q: create: %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return "", fmt.Errorf("cluster DNS link %q: %w", name, err)
		}
	case err != nil:
		return "", fmt.Errorf("cluster DNS link %q: %w", name, err)
	case l.Type() != "dummy":
		return "", fmt.Errorf("cluster DNS link %q exists and is a %s link, not a dummy one: remove it or pick another name", name, l.Type())
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return "", fmt.Errorf("cluster DNS link %q: set up: %w", l.Attrs().Name, err)
	}
	if err := netlink.AddrReplace(l, hostAddr(ip)); err != nil {
		return "", fmt.Errorf("cluster DNS link %q: address %s: %w", l.Attrs().Name, ip, err)
	}
	return l.Attrs().Name, nil
}

func hostAddr(ip netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}}
}

// RemoveAddress undoes EnsureLink: it deletes the dummy link (and so its
// address), or the address from the loopback device where the kernel
// has no dummy driver. Neither being there is not an error.
func RemoveAddress(name string, ip netip.Addr) error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		if err := netlink.AddrDel(lo, hostAddr(ip)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("cluster DNS address %s on lo: %w", ip, err)
		}
	}
	return removeLink(name)
}

func removeLink(name string) error {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster DNS link %q: %w", name, err)
	}
	if l.Type() != "dummy" {
		return fmt.Errorf("cluster DNS link %q is a %s link, not the agent's dummy: left alone", name, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("cluster DNS link %q: delete: %w", name, err)
	}
	return nil
}
