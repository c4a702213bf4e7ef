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

// ChangeKind is Docker's kind of a file system change.
type ChangeKind int

// Change is one changed path of a container's file system.
type Change struct {
	Path string     `json:"Path"`
	Kind ChangeKind `json:"Kind"`
}

// OverlayChanges lists an overlay upper directory's changes; it needs Linux.
func OverlayChanges(upper string, lowers []string) ([]Change, error) {
	_, err := Apply(upper, nil)
	return nil, err
}

// WriteContainerDiff writes a container's writable layer as a layer tar;
// it needs Linux.
func WriteContainerDiff(w io.Writer, upper string, lowers []string) (int64, error) {
	return Apply(upper, nil)
}
