package proxy

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FlushConntrack deletes the UDP conntrack entries fs names (see StaleUDP)
// in the calling thread's network namespace and returns how many went.
func FlushConntrack(fs []ConntrackFlush) (uint, error) {
	if len(fs) == 0 {
		return 0, nil
	}
	var filters []netlink.CustomConntrackFilter
	for _, f := range fs {
		cf := &netlink.ConntrackFilter{}
		if err := cf.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return 0, err
		}
		if err := cf.AddPort(netlink.ConntrackOrigDstPort, f.Port); err != nil {
			return 0, err
		}
		if f.Dst.IsValid() {
			if err := cf.AddIP(netlink.ConntrackOrigDstIP, net.IP(f.Dst.AsSlice())); err != nil {
				return 0, err
			}
		}
		if f.Endpoint.IsValid() {
			if err := cf.AddIP(netlink.ConntrackReplySrcIP, net.IP(f.Endpoint.AsSlice())); err != nil {
				return 0, err
			}
		}
		filters = append(filters, cf)
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		return n, fmt.Errorf("deleting stale UDP conntrack entries: %w", err)
	}
	return n, nil
}
