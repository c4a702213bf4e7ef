//go:build !linux

package snapshot

import (
	"fmt"
	"io/fs"

	"github.com/berth/berth/internal/errdefs"
)

func inode(fs.FileInfo) uint64 { return 0 }
func mounted(string) bool      { return false }
func mountOverlay(string, []string) error {
	return fmt.Errorf("overlay snapshots: %w on this OS", errdefs.ErrNotImplemented)
}
func unmount(string) error { return nil }
