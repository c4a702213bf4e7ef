package clusterdns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// EnsureLink makes sure a dummy link name exists, is up and carries ip/32.
// It is idempotent: an agent restart finds the link as it left it.
func EnsureLink(name string, ip netip.Addr) error {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			return fmt.Errorf("cluster DNS link %q: create: %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("cluster DNS link %q: %w", name, err)
		}
	case err != nil:
		return fmt.Errorf("cluster DNS link %q: %w", name, err)
	case l.Type() != "dummy":
		return fmt.Errorf("cluster DNS link %q exists and is a %s link, not a dummy one: remove it or pick another name", name, l.Type())
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("cluster DNS link %q: set up: %w", name, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}}
	if err := netlink.AddrReplace(l, a); err != nil {
		return fmt.Errorf("cluster DNS link %q: address %s: %w", name, ip, err)
	}
	return nil
}

// RemoveLink deletes the dummy link (and so its address); a missing link
// is not an error.
func RemoveLink(name string) error {
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
