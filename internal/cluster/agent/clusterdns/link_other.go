//go:build !linux

package clusterdns

import (
	"fmt"
	"net/netip"
)

// EnsureLink needs Linux.
func EnsureLink(name string, _ netip.Addr) error {
	return fmt.Errorf("cluster DNS link %q: %w", name, ErrNotSupported)
}

// RemoveLink needs Linux.
func RemoveLink(name string) error {
	return fmt.Errorf("cluster DNS link %q: %w", name, ErrNotSupported)
}
