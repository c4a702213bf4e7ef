//go:build !linux

package volume

import (
	"fmt"

	"github.com/berth/berth/internal/errdefs"
)

func ensureTarget(root, rel string, file bool) error {
	return fmt.Errorf("creating mount target %s: %w: volumes need Linux", rel, errdefs.ErrNotImplemented)
}

func copyTree(src, dst string) error {
	return fmt.Errorf("copying %s: %w: volumes need Linux", src, errdefs.ErrNotImplemented)
}
