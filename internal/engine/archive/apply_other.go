//go:build !linux

package archive

import (
	"fmt"
	"io"

	"github.com/berth/berth/internal/errdefs"
)

// Apply unpacks a layer; it needs Linux (openat2, overlay whiteouts).
func Apply(dir string, r io.Reader) (int64, error) {
	return 0, fmt.Errorf("layer unpacking: %w on this OS", errdefs.ErrNotImplemented)
}

// ApplyUncompressed unpacks a layer; it needs Linux.
func ApplyUncompressed(dir string, r io.Reader) (int64, error) { return Apply(dir, r) }

// WriteOverlayDiff writes an overlay upper directory as a layer tar; it
// needs Linux.
func WriteOverlayDiff(w io.Writer, dir string) (int64, error) { return Apply(dir, nil) }
