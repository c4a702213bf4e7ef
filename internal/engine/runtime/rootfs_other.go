//go:build !linux

package runtime

import (
	"fmt"
	"os"

	"github.com/berth/berth/internal/errdefs"
)

func openInRoot(rootfs, path string, flags int) (*os.File, error) {
	return nil, fmt.Errorf("open %s in container root: %w on this OS", path, errdefs.ErrNotImplemented)
}

func statInRoot(rootfs, path string) (os.FileInfo, error) {
	return nil, fmt.Errorf("stat %s in container root: %w on this OS", path, errdefs.ErrNotImplemented)
}
