//go:build unix

package registry

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockRoot takes root/.lock: shared for a serving registry (several may
// share a root), exclusive for gc, which must not sweep blobs of pushes in
// flight.
func lockRoot(root string, exclusive bool) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(root, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("registry root %s: %w", root, err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if exclusive {
			return nil, fmt.Errorf("registry root %s is in use by a running registry; stop it (berth registry, or the daemon's --registry-addr) before gc", root)
		}
		return nil, fmt.Errorf("registry root %s is locked by a running gc; start the registry when it has finished", root)
	}
	return f, nil
}

func unlockRoot(f *os.File) {
	if f != nil {
		f.Close()
	}
}
