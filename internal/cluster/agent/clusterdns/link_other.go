//go:build !linux

package clusterdns

import (
	"fmt"
	"net/netip"
)

// EnsureLink needs Linux.
func EnsureLink(name string, _ netip.Addr) (string, error) {
	return "", fmt.Errorf("cluster DNS link %q: %w", name, ErrNotSupported)
}

// RemoveAddress needs Linux.
func RemoveAddress(name string, _ netip.Addr) error {
	return fmt.Errorf("cluster DNS link %q: %w", name, ErrNotSupported)
}
